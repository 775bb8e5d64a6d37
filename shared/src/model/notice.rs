//! Notices to customers: what a state change tells the customer it concerns. A notice is
//! derived from the change itself ([`notice_of_placement`], [`notice_of_transition`]) and
//! recorded in the same write, so a change that happened always has its notice and a change
//! that did not never has one.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::order::{Order, OrderEvent, OrderLine, OrderStatus};
use super::payment::{Payment, PaymentStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NoticeKind {
    OrderAccepted,
    OrderReleased,
    PaymentSucceeded,
    PaymentFailed,
    OrderShipped,
    OrderDelivered,
    OrderCancelled,
}

/// The facts a notice states, fixed when the change is written (a later change of the order
/// never rewrites a notice already recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notice {
    /// Also the delivery's idempotency key (the email's Message-ID).
    pub id: Uuid,
    pub customer_id: Uuid,
    pub kind: NoticeKind,
    /// Who it goes to: the order's recipient.
    pub to_name: String,
    pub to_email: String,
    pub order_id: Uuid,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub release_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub payment_due_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<NoticePayment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// A cancellation that refunded a captured payment.
    #[serde(default)]
    pub refunded: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the email went out; `None` while in the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
}

/// What a notice says of a payment: never more of the card than brand and last four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoticePayment {
    pub id: Uuid,
    pub amount_cents: i64,
    pub brand: String,
    pub last4: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl From<&Payment> for NoticePayment {
    fn from(payment: &Payment) -> Self {
        Self {
            id: payment.id,
            amount_cents: payment.amount_cents,
            brand: payment.card.brand.clone(),
            last4: payment.card.last4.clone(),
            failure_reason: payment.failure_reason.clone(),
        }
    }
}

fn notice(kind: NoticeKind, order: &Order) -> Option<Notice> {
    // An order from before orders kept their recipient has no address to write to.
    let to = order.recipient.as_ref()?;
    Some(Notice {
        id: Uuid::now_v7(),
        customer_id: order.customer_id,
        kind,
        to_name: to.name.clone(),
        to_email: to.email.clone(),
        order_id: order.id,
        status: order.status,
        lines: order.lines.clone(),
        total_cents: order.total_cents,
        release_at: order.release_at,
        payment_due_at: order.payment_due_at,
        payment: None,
        carrier: order.shipment.as_ref().map(|s| s.carrier.clone()),
        tracking_number: order.shipment.as_ref().map(|s| s.tracking_number.clone()),
        cancel_reason: order.cancel_reason.clone(),
        refunded: false,
        created_at: order.updated_at,
        sent_at: None,
    })
}

/// The notice of a new order: accepted (`pending`, or `processing order` with its release time).
pub fn notice_of_placement(order: &Order) -> Option<Notice> {
    notice(NoticeKind::OrderAccepted, order)
}

/// The notice of a transition from `previous` to `updated`, with the payment as the same write
/// leaves it; `None` for a change the customer is not told about (an address correction, a
/// note, a payment marked at the gateway, a late capture on a cancelled order).
pub fn notice_of_transition(previous: &Order, updated: &Order, payment: Option<&Payment>) -> Option<Notice> {
    let event = updated.history.last().and_then(|entry| entry.event)?;
    if updated.version == previous.version || updated.history.len() == previous.history.len() {
        return None;
    }
    let kind = match (event, previous.status, updated.status) {
        (OrderEvent::Released, _, OrderStatus::Pending) => NoticeKind::OrderReleased,
        (OrderEvent::PaymentSucceeded, OrderStatus::Pending, OrderStatus::Paid) => NoticeKind::PaymentSucceeded,
        (OrderEvent::PaymentDeclined, _, _) => NoticeKind::PaymentFailed,
        (OrderEvent::ShipmentCreated, _, OrderStatus::Shipped) => NoticeKind::OrderShipped,
        (OrderEvent::DeliveryRecorded, _, OrderStatus::Delivered) => NoticeKind::OrderDelivered,
        (OrderEvent::Cancelled | OrderEvent::PaymentDeadlinePassed, from, OrderStatus::Cancelled)
            if from != OrderStatus::Cancelled =>
        {
            NoticeKind::OrderCancelled
        }
        _ => return None,
    };
    let mut notice = notice(kind, updated)?;
    notice.payment = payment.map(NoticePayment::from);
    notice.refunded =
        kind == NoticeKind::OrderCancelled && payment.is_some_and(|p| p.status == PaymentStatus::Refunded);
    Some(notice)
}
