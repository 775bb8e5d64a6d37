//! The entities and value types every layer speaks in, and the order status table. This is the
//! bottom of the crate: it imports nothing else of it, so the stores, the domain services and
//! the HTTP layer can all depend on it without depending on each other.

mod account;
mod fields;
mod inventory;
mod notice;
mod order;
mod payment;
mod product;

pub use account::{Address, Admin, Customer, PasswordReset, Principal, Role};
pub use fields::{
    Category, Email, PersonName, ProductName, Username, int_in_range, not_null, optional_multiline_text, optional_text,
    removable,
};
pub use inventory::{AlertCause, StockAdjustment, StockAlert, crosses_threshold};
pub use notice::{Notice, NoticeKind, NoticePayment, notice_of_placement, notice_of_transition};
pub use order::{
    HistoryEntry, INTERNAL_NOTE_CHANGE, IdempotencyRecord, Order, OrderCounters, OrderEvent, OrderLine, OrderStatus,
    Recipient, Shipment,
};
pub use payment::{CardSummary, Payment, PaymentStatus};
pub use product::{CategorySummary, MAX_STOCK, Product};

use serde::Serialize;

/// One invalid input field, reported back to the client verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's JSON path (`price_cents`, `address.city`) or query parameter name.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}
