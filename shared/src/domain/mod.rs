//! The domain: one service per area, each holding only the store traits it uses, and the input
//! types parsed at the edge. Handlers parse → authorize → call a service → map the result.
//!
//! - [`Sessions`]: access tokens (every function checks them); [`Accounts`]: login and admins;
//!   [`Customers`]: sign-up and customer records; [`Catalog`]: products and categories.
//! - [`Orders`], [`Payments`], [`Fulfillment`] and the [`Sweeper`] share a [`Ledger`]: the order
//!   and payment stores, the queue and the gateway, and the one way an order changes status.
//! - [`Inventory`] and [`Alerts`]: the back office's stock view, adjustments and low-stock alerts.

#[cfg(feature = "passwords")]
mod accounts;
mod auth;
mod back_office;
#[cfg(feature = "passwords")]
mod customers;
mod directory;
mod fulfillment;
mod inventory;
mod jwt_crypto;
mod ledger;
mod messages;
mod notifications;
mod orders;
#[cfg(feature = "passwords")]
mod passwords;
mod payments;
mod products;
#[cfg(feature = "passwords")]
mod services;
mod sweep;

#[cfg(feature = "passwords")]
pub use accounts::{Accounts, LoginRequest, PasswordChangeRequest, PasswordResetConfirmation, PasswordResetRequest};
pub use auth::{
    AccessToken, AuthConfig, Caller, LoginLimits, MIN_SECRET_BYTES, Password, PasswordCost, Session, Sessions,
    TOKEN_REFUSED,
};
pub use back_office::{AdminMetrics, BackOffice, DeadLetters};
#[cfg(feature = "passwords")]
pub use customers::{CustomerPatch, Customers, NewCustomer};
pub use directory::{CustomerDirectory, CustomerQuery};
pub use fulfillment::{Fulfillment, FulfillmentAction, FulfillmentRequest, Tracking, TrackingEvent};
pub use inventory::{Adjusted, AlertQuery, Alerts, Inventory, InventoryItem, InventoryQuery, NewAdjustment};
pub use ledger::{IdempotencyKey, Ledger, OrderSettings, Placed, TransitionError};
pub use messages::OrderMessage;
pub use notifications::{
    AccountChange, Delivery, NoticeBoard, NoticeMessage, NoticeQuery, Notifier, ResetEmail, render,
    render_account_email,
};
pub use orders::{
    CancelRequest, MAX_ORDER_LINES, NewOrder, NewOrderItem, OrderAmendment, OrderMetrics, OrderQuery, Orders, Release,
    StatusChange,
};
#[cfg(feature = "passwords")]
pub use passwords::{Hasher, random_secret};
pub use payments::{
    CardInput, ChargeError, ChargeResult, FulfillmentMessage, NewPayment, PaymentMessage, PaymentQuery, Payments,
};
pub use products::{Catalog, NewProduct, ProductPatch, ProductQuery};
#[cfg(feature = "passwords")]
pub use services::Services;
pub use sweep::{SweepReport, Sweeper};

use uuid::Uuid;

use crate::error::{Error, FieldError};
use crate::retry::backoff;
use crate::store::{PageRequest, StoreError};

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

/// Collects the errors of independently parsed fields, so one answer names every bad field.
fn field_errors<const N: usize>(errors: [Vec<FieldError>; N]) -> Error {
    Error::Validation(errors.into_iter().flatten().collect())
}

/// The field errors of one parsed input: none, one, or several (an address's parts).
trait Invalid {
    fn invalid(self) -> Vec<FieldError>;
}

impl<T> Invalid for std::result::Result<T, FieldError> {
    fn invalid(self) -> Vec<FieldError> {
        self.err().into_iter().collect()
    }
}

impl<T> Invalid for std::result::Result<T, Vec<FieldError>> {
    fn invalid(self) -> Vec<FieldError> {
        self.err().unwrap_or_default()
    }
}
