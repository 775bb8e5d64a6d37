//! The domain: entities, parsing of client input into valid values, and the service every
//! handler calls. Handlers parse → authorize → call [`Orderly`] → map the result.

mod auth;
mod customers;
mod fulfillment;
mod messages;
mod orders;
mod payments;
mod products;

pub use auth::{
    AccessToken, AuthConfig, LoginLimits, LoginRequest, MIN_SECRET_BYTES, Password, PasswordCost, Session,
    random_secret,
};
pub use customers::{CustomerPatch, NewCustomer};
pub use fulfillment::{FulfillmentAction, FulfillmentRequest, Tracking, TrackingEvent};
pub use messages::OrderMessage;
pub use orders::{
    CancelRequest, IdempotencyKey, MAX_ORDER_LINES, NewOrder, NewOrderItem, OrderMetrics, OrderQuery, OrderSettings,
    Placed, Release, StatusChange, SweepReport,
};
pub use payments::{CardInput, ChargeError, ChargeResult, FulfillmentMessage, NewPayment, PaymentMessage};
pub use products::{NewProduct, ProductPatch, ProductQuery};

use std::sync::Arc;

use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, FieldError};
use crate::gateway::PaymentGateway;
use crate::queue::Queue;
use crate::retry::backoff;
use crate::store::{PageRequest, Store, StoreError};

/// The service behind every route: holds the store, the clock and the auth settings, and
/// enforces the rules. Cheap to clone (all shared).
#[derive(Clone)]
pub struct Orderly {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    auth: Arc<AuthConfig>,
    /// Where deferred-order releases (and later payments, fulfillment) are sent; functions
    /// that send nothing have none.
    queue: Option<Arc<dyn Queue>>,
    /// The card processor; only the payments side needs one.
    gateway: Option<Arc<dyn PaymentGateway>>,
    orders: OrderSettings,
}

impl Orderly {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, auth: AuthConfig) -> Self {
        Self { store, clock, auth: Arc::new(auth), queue: None, gateway: None, orders: OrderSettings::default() }
    }

    pub fn with_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn with_order_settings(mut self, settings: OrderSettings) -> Self {
        self.orders = settings;
        self
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// How many times a read-modify-write without a client precondition is retried when another
/// writer got in between (each attempt is still one conditional write).
const UNCONDITIONAL_UPDATE_ATTEMPTS: usize = 5;

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Duplicate(key) => Error::Conflict(key.to_string()),
            // Callers that can tell 404 from 412 handle this before it gets here.
            StoreError::VersionConflict => Error::Conflict("the resource was changed concurrently; retry".into()),
            StoreError::InvalidPageToken => Error::invalid("next_token", "is not a token this list returned"),
            StoreError::InsufficientStock(ids) => {
                let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
                Error::Conflict(format!("not enough stock for: {}", ids.join(", ")))
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "store unavailable");
                Error::Unavailable
            }
            StoreError::Backend(detail) => Error::Internal(detail),
        }
    }
}

/// Page size bounds for every list endpoint.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// Parses the `limit` and `next_token` query parameters shared by all lists.
pub fn page_request(limit: Option<u32>, next_token: Option<String>) -> Result<PageRequest, Error> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Error::invalid("limit", format!("must be between 1 and {MAX_PAGE_SIZE}")));
    }
    let token = next_token.filter(|t| !t.is_empty());
    Ok(PageRequest { limit, token })
}

/// Collects the errors of independently parsed fields.
fn field_errors<const N: usize>(errors: [Option<FieldError>; N]) -> Error {
    Error::Validation(errors.into_iter().flatten().collect())
}
