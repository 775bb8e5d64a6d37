//! Orders: the status table (which event takes an order where), the order with its lines,
//! shipment and audit trail, idempotency records and the counters kept with every write.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Address, FieldError};

/// The owner's wording for a deferred order is kept verbatim on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OrderStatus {
    #[serde(rename = "processing order")]
    ProcessingOrder,
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "paid")]
    Paid,
    #[serde(rename = "shipped")]
    Shipped,
    #[serde(rename = "delivered")]
    Delivered,
    #[serde(rename = "cancelled")]
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::ProcessingOrder,
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::ProcessingOrder => "processing order",
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw.trim()).ok_or_else(|| {
            FieldError::new(field, "must be one of: processing order, pending, paid, shipped, delivered, cancelled")
        })
    }

    /// Where `event` takes an order in this status; `None` where the table forbids it.
    /// Every event lists every status, so a new status cannot slip through unconsidered.
    pub fn after(self, event: OrderEvent) -> Option<OrderStatus> {
        use OrderStatus::*;
        match event {
            OrderEvent::Released => match self {
                ProcessingOrder => Some(Pending),
                Pending | Paid | Shipped | Delivered | Cancelled => None,
            },
            OrderEvent::PaymentSucceeded => match self {
                Pending => Some(Paid),
                // A payment that succeeds after cancellation is refunded; the order stays put.
                Cancelled => Some(Cancelled),
                ProcessingOrder | Paid | Shipped | Delivered => None,
            },
            OrderEvent::PaymentDeclined => match self {
                Pending => Some(Pending),
                ProcessingOrder | Paid | Shipped | Delivered | Cancelled => None,
            },
            OrderEvent::PaymentDeadlinePassed => match self {
                Pending => Some(Cancelled),
                ProcessingOrder | Paid | Shipped | Delivered | Cancelled => None,
            },
            OrderEvent::ShipmentCreated => match self {
                Paid => Some(Shipped),
                ProcessingOrder | Pending | Shipped | Delivered | Cancelled => None,
            },
            OrderEvent::DeliveryRecorded => match self {
                Shipped => Some(Delivered),
                ProcessingOrder | Pending | Paid | Delivered | Cancelled => None,
            },
            OrderEvent::Cancelled => match self {
                ProcessingOrder | Pending | Paid => Some(Cancelled),
                Shipped | Delivered | Cancelled => None,
            },
        }
    }

    /// Leaving this status for `Cancelled` gives the reserved stock back.
    pub fn holds_stock(self) -> bool {
        matches!(self, OrderStatus::ProcessingOrder | OrderStatus::Pending | OrderStatus::Paid)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to an order: the events of the transition table (docs/transitions.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OrderEvent {
    Released,
    PaymentSucceeded,
    PaymentDeclined,
    PaymentDeadlinePassed,
    ShipmentCreated,
    DeliveryRecorded,
    Cancelled,
}

/// One line of an order, with the product's name and price as they were at purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLine {
    pub product_id: Uuid,
    pub name: String,
    pub unit_price_cents: i64,
    pub quantity: i64,
    pub line_total_cents: i64,
}

/// [`HistoryEntry::change`] of an internal-note edit: hidden from the customer.
pub const INTERNAL_NOTE_CHANGE: &str = "internal note changed";

/// One entry of an order's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `None` for the placement itself.
    #[serde(default)]
    pub event: Option<OrderEvent>,
    pub status: OrderStatus,
    /// `customer:<id>`, `admin:<id>` or `system`.
    pub actor: String,
    /// What changed besides the status (a corrected address, the internal note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    /// Who the order ships to: the customer's name and contact as they were at placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Where it ships: the request's address, else the customer's on file at placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    /// For a `processing order`: when it goes ahead (the end of the cooldown it waits for).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub release_at: Option<OffsetDateTime>,
    /// For a `pending` order: cancelled, and its stock returned, if unpaid by then.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub payment_due_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// The payment in flight or captured; cleared when one fails, so the order can be paid again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<Shipment>,
    /// The back office's internal note; never shown to the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_note: Option<String>,
    /// The request id of the POST that placed it: follows the order into every worker's logs.
    pub correlation_id: String,
    pub history: Vec<HistoryEntry>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Order {
    /// The order as its customer sees it: without the back office's internal note.
    pub fn for_customer(mut self) -> Self {
        self.admin_note = None;
        self.history.retain(|entry| entry.change.as_deref() != Some(INTERNAL_NOTE_CHANGE));
        self
    }

    /// The time its status's index sorts it by: when it is due to move on by itself.
    pub fn due_at(&self) -> OffsetDateTime {
        match self.status {
            OrderStatus::ProcessingOrder => self.release_at.unwrap_or(self.updated_at),
            OrderStatus::Pending => self.payment_due_at.unwrap_or(self.updated_at),
            _ => self.updated_at,
        }
    }
}

/// The customer an order was placed by, as they were then: the parcel and the notices go to
/// this name and contact even if the customer record changes later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recipient {
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A paid order's parcel: created by fulfillment, printed as a ZPL label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    /// `zpl`: the Zebra label language every thermal label printer takes.
    pub label_format: String,
    pub label: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A saved answer to a request made with an Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub customer_id: Uuid,
    pub key: String,
    /// The request body, normalized: a replay with another body is refused.
    pub request: String,
    pub status_code: u16,
    pub response: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Counters kept in step with every write (never a scan).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCounters {
    pub placed: i64,
    pub by_status: BTreeMap<OrderStatus, i64>,
    /// Sum over delivered orders of (delivered − placed), in seconds.
    pub delivered_seconds: i64,
    pub delivered: i64,
    /// Paid order totals, less those refunded.
    pub revenue_cents: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table_is_the_documented_one() {
        use OrderEvent as E;
        use OrderStatus as S;
        let events = [
            E::Released,
            E::PaymentSucceeded,
            E::PaymentDeclined,
            E::PaymentDeadlinePassed,
            E::ShipmentCreated,
            E::DeliveryRecorded,
            E::Cancelled,
        ];
        let allowed: Vec<(S, E, S)> = S::ALL
            .into_iter()
            .flat_map(|s| events.into_iter().filter_map(move |e| s.after(e).map(|t| (s, e, t))))
            .collect();
        assert_eq!(
            allowed,
            [
                (S::ProcessingOrder, E::Released, S::Pending),
                (S::ProcessingOrder, E::Cancelled, S::Cancelled),
                (S::Pending, E::PaymentSucceeded, S::Paid),
                (S::Pending, E::PaymentDeclined, S::Pending),
                (S::Pending, E::PaymentDeadlinePassed, S::Cancelled),
                (S::Pending, E::Cancelled, S::Cancelled),
                (S::Paid, E::ShipmentCreated, S::Shipped),
                (S::Paid, E::Cancelled, S::Cancelled),
                (S::Shipped, E::DeliveryRecorded, S::Delivered),
                (S::Cancelled, E::PaymentSucceeded, S::Cancelled),
            ]
        );
    }

    #[test]
    fn statuses_use_the_owners_wording() {
        assert_eq!(serde_json::to_string(&OrderStatus::ProcessingOrder).expect("json"), "\"processing order\"");
        assert_eq!(OrderStatus::parse("status", "processing order"), Ok(OrderStatus::ProcessingOrder));
        assert!(OrderStatus::parse("status", "processing").is_err());
    }
}
