//! The domain: one service per area, each holding only the store traits it uses, and the input
//! types parsed at the edge. Handlers parse → authorize → call a service → map the result.
//!
//! - [`Sessions`]: access tokens (every function checks them); [`Accounts`]: login and admins;
//!   [`Customers`]: sign-up and customer records; [`Catalog`]: products and categories.
//! - [`Orders`], [`Payments`], [`Fulfillment`] and the [`Sweeper`] share a [`Ledger`]: the order
//!   and payment stores, the queue and the gateway, and the one way an order changes status.

mod accounts;
mod auth;
mod customers;
mod fulfillment;
mod ledger;
mod messages;
mod orders;
mod passwords;
mod payments;
mod products;
mod sweep;

pub use accounts::{Accounts, LoginRequest};
pub use auth::{AccessToken, AuthConfig, LoginLimits, MIN_SECRET_BYTES, Password, PasswordCost, Session, Sessions};
pub use customers::{CustomerPatch, Customers, NewCustomer};
pub use fulfillment::{Fulfillment, FulfillmentAction, FulfillmentRequest, Tracking, TrackingEvent};
pub use ledger::{IdempotencyKey, Ledger, OrderSettings, Placed, TransitionError};
pub use messages::OrderMessage;
pub use orders::{
    CancelRequest, MAX_ORDER_LINES, NewOrder, NewOrderItem, OrderMetrics, OrderQuery, Orders, Release, StatusChange,
};
pub use passwords::random_secret;
pub use payments::{CardInput, ChargeError, ChargeResult, FulfillmentMessage, NewPayment, PaymentMessage, Payments};
pub use products::{Catalog, NewProduct, ProductPatch, ProductQuery};
pub use sweep::{SweepReport, Sweeper};

use std::sync::Arc;

use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, FieldError};
use crate::gateway::PaymentGateway;
use crate::queue::Queue;
use crate::retry::backoff;
use crate::store::{PageRequest, Store, StoreError};

/// Every service over one store: what the local server and the tests run. A Lambda function
/// builds only the services its routes or messages need (see `crate::lambda`).
#[derive(Clone)]
pub struct Services {
    pub sessions: Sessions,
    pub accounts: Accounts,
    pub customers: Customers,
    pub catalog: Catalog,
    pub ledger: Ledger,
    pub orders: Orders,
    pub payments: Payments,
    pub fulfillment: Fulfillment,
    pub sweeper: Sweeper,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        auth: AuthConfig,
        queue: Arc<dyn Queue>,
        gateway: Arc<dyn PaymentGateway>,
        settings: OrderSettings,
    ) -> Self {
        let auth = Arc::new(auth);
        let sessions = Sessions::new(store.clone(), clock.clone(), auth.clone());
        let ledger = Ledger::new(store.clone(), store.clone(), clock.clone(), queue, gateway, settings);
        Self {
            accounts: Accounts::new(store.clone(), clock.clone(), auth.clone(), sessions.clone()),
            customers: Customers::new(store.clone(), clock.clone(), auth.cost),
            catalog: Catalog::new(store, clock),
            sessions,
            orders: Orders::new(ledger.clone()),
            payments: Payments::new(ledger.clone()),
            fulfillment: Fulfillment::new(ledger.clone()),
            sweeper: Sweeper::new(ledger.clone()),
            ledger,
        }
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
