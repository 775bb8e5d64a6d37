//! The ledger: the order and payment stores with the clock, the queue and the gateway, shared
//! by the order-side services (orders, payments, fulfillment, the sweep). It holds the one way
//! an order moves along the transition table ([`Ledger::apply`]), refunds, idempotent replays
//! and message sending, so no service repeats them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::auth::Session;
use super::notifications::NoticeMessage;
use crate::clock::Clock;
use crate::error::{Error, FieldError, Result};
use crate::gateway::PaymentGateway;
use crate::model::{
    HistoryEntry, IdempotencyRecord, Order, OrderEvent, OrderStatus, Payment, PaymentStatus, notice_of_transition,
};
use crate::queue::{MAX_DELAY, OutgoingMessage, Queue, QueueName};
use crate::store::{OrderStore, PaymentChange, PaymentStore, StoreError, TransitionWrite};

/// Why a payment whose order was cancelled before its charge went out is failed.
pub(crate) const ORDER_CANCELLED: &str = "order cancelled";

/// An `Idempotency-Key` header: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let ok = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new("Idempotency-Key", "must be 1-255 visible ASCII characters"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The live record `owner` saved under `key`, if any; one saved for a different request
/// (another `fingerprint`) refuses the key (422).
pub(crate) async fn saved_answer(
    store: &dyn OrderStore,
    now: OffsetDateTime,
    owner: Uuid,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Option<IdempotencyRecord>> {
    let Some(record) = store.get_idempotency(owner, key.as_str()).await? else {
        return Ok(None);
    };
    if record.expires_at <= now {
        return Ok(None);
    }
    if record.request != fingerprint {
        return Err(Error::invalid("Idempotency-Key", "was already used with a different request body"));
    }
    Ok(Some(record))
}

/// The answer to a create request (POST /orders: 201 for `pending`, 202 for `processing
/// order`; POST /payments: 202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub status_code: u16,
    /// The created resource as JSON: for a replay, exactly what the first request was answered.
    pub body: String,
    /// The created resource's id.
    pub id: Uuid,
}

/// Order rules that operators tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderSettings {
    /// After every accepted order the customer's cooldown moves on by this much.
    pub cooldown: Duration,
    /// Deferred (`processing order`) orders a customer may hold at once.
    pub max_deferred: i64,
    /// A `pending` order unpaid this long after it became pending is cancelled (not while a
    /// payment is being charged).
    pub payment_deadline: Duration,
    /// Idempotency records are kept this long.
    pub idempotency_ttl: Duration,
    /// What one customer may hold in unpaid (`processing order`, `pending`) orders at once.
    pub max_unpaid_units: i64,
    pub max_unpaid_cents: i64,
    /// A payment not charged this long after it was accepted (its message dead-lettered, or
    /// the gateway down all along) is failed: the order can be paid again or expire.
    pub charge_window: Duration,
}

impl Default for OrderSettings {
    fn default() -> Self {
        Self {
            cooldown: Duration::seconds(300),
            max_deferred: 3,
            payment_deadline: Duration::minutes(30),
            idempotency_ttl: Duration::hours(24),
            max_unpaid_units: 100,
            max_unpaid_cents: 1_000_000,
            charge_window: Duration::minutes(15),
        }
    }
}

/// Why an order did not move.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The transition table has no such move from this status.
    #[error("an order that is {from} cannot be {}", event_verb(*event))]
    Illegal { from: OrderStatus, event: OrderEvent },
    /// Another writer changed the order after it was read (its version moved): read it again.
    #[error("the order changed meanwhile; read it again")]
    Raced,
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<TransitionError> for Error {
    fn from(err: TransitionError) -> Self {
        match err {
            TransitionError::Illegal { .. } | TransitionError::Raced => Error::Conflict(err.to_string()),
            TransitionError::Failed(inner) => inner,
        }
    }
}

fn event_verb(event: OrderEvent) -> &'static str {
    match event {
        OrderEvent::Released => "released",
        OrderEvent::PaymentSucceeded => "paid",
        OrderEvent::PaymentDeclined => "declined",
        OrderEvent::PaymentDeadlinePassed => "expired",
        OrderEvent::ShipmentCreated => "shipped",
        OrderEvent::DeliveryRecorded => "delivered",
        OrderEvent::Cancelled => "cancelled",
    }
}

#[derive(Clone)]
pub struct Ledger {
    pub(super) orders: Arc<dyn OrderStore>,
    pub(super) payments: Arc<dyn PaymentStore>,
    clock: Arc<dyn Clock>,
    queue: Arc<dyn Queue>,
    /// Refunds go back through it.
    pub(super) gateway: Arc<dyn PaymentGateway>,
    pub(super) settings: OrderSettings,
}

impl Ledger {
    pub fn new(
        orders: Arc<dyn OrderStore>,
        payments: Arc<dyn PaymentStore>,
        clock: Arc<dyn Clock>,
        queue: Arc<dyn Queue>,
        gateway: Arc<dyn PaymentGateway>,
        settings: OrderSettings,
    ) -> Self {
        Self { orders, payments, clock, queue, gateway, settings }
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// An order the session may see (404 for anyone else's).
    pub(crate) async fn order_for(&self, session: &Session, id: Uuid) -> Result<Order> {
        let order = self.orders.get_order(id).await?.ok_or(Error::NotFound("order"))?;
        session.require_self_or_admin(order.customer_id, "order")?;
        Ok(order)
    }

    /// The saved answer to a request already made with `key`, if any and still live; a
    /// different request under the same key is refused.
    pub(crate) async fn replay(
        &self,
        customer_id: Uuid,
        key: &IdempotencyKey,
        fingerprint: &str,
    ) -> Result<Option<Placed>> {
        let Some(record) = saved_answer(&*self.orders, self.clock.now(), customer_id, key, fingerprint).await? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Created {
            id: Uuid,
        }
        let created: Created =
            serde_json::from_str(&record.response).map_err(|e| Error::Internal(format!("saved response: {e}")))?;
        tracing::info!(id = %created.id, "idempotent replay");
        Ok(Some(Placed { status_code: record.status_code, body: record.response, id: created.id }))
    }

    /// The order after `event`, or `None` where the transition table forbids it.
    pub(crate) fn next_order(
        &self,
        order: &Order,
        event: OrderEvent,
        actor: &str,
        reason: Option<String>,
    ) -> Option<Order> {
        let next = order.status.after(event)?;
        let now = self.clock.now();
        let mut updated = order.clone();
        updated.status = next;
        updated.version += 1;
        updated.updated_at = now;
        updated.history.push(HistoryEntry {
            at: now,
            event: Some(event),
            status: next,
            actor: actor.to_owned(),
            change: None,
        });
        match event {
            OrderEvent::Released => {
                updated.release_at = None;
                updated.payment_due_at = Some(now + self.settings.payment_deadline);
            }
            OrderEvent::Cancelled | OrderEvent::PaymentDeadlinePassed => {
                updated.cancel_reason = reason;
                updated.payment_due_at = None;
                updated.release_at = None;
            }
            OrderEvent::PaymentSucceeded => updated.payment_due_at = None,
            OrderEvent::PaymentDeclined | OrderEvent::ShipmentCreated | OrderEvent::DeliveryRecorded => {}
        }
        Some(updated)
    }

    /// One transition: a conditional write from the order's current status and version, with
    /// its side effects in the same write (stock returned on cancellation; a captured payment
    /// refunded when a paid order is cancelled). A concurrent change wins; this one answers
    /// 409, so a duplicate can never apply twice.
    pub(crate) async fn apply(
        &self,
        order: Order,
        event: OrderEvent,
        actor: &str,
        reason: Option<String>,
    ) -> Result<Order, TransitionError> {
        let Some(updated) = self.next_order(&order, event, actor, reason) else {
            return Err(TransitionError::Illegal { from: order.status, event });
        };
        self.write_transition(&order, updated, event).await
    }

    /// Writes `updated` over `order` with the side effects `event` implies.
    pub(crate) async fn write_transition(
        &self,
        order: &Order,
        updated: Order,
        event: OrderEvent,
    ) -> Result<Order, TransitionError> {
        let next = updated.status;
        let restock = next == OrderStatus::Cancelled && order.status.holds_stock();
        // Cancelling settles the order's payment in the same write: a captured one is refunded;
        // one whose charge has not gone out to the gateway is failed, so it never shows
        // `pending` on a cancelled order (its charge, if it ever comes, finds it settled). One
        // out at the gateway may be captured still: it is left to the charge, which refunds a
        // capture as a late success.
        let settled = match (next, order.payment_id) {
            (OrderStatus::Cancelled, Some(payment_id)) if order.status != OrderStatus::Cancelled => {
                let payment = self
                    .payments
                    .get_payment(payment_id)
                    .await
                    .map_err(Error::from)?
                    .ok_or(Error::NotFound("payment"))?;
                let mut settled = payment.clone();
                settled.status = match payment.status {
                    PaymentStatus::Succeeded if order.status == OrderStatus::Paid => PaymentStatus::Refunded,
                    PaymentStatus::Pending if payment.at_gateway_since.is_none() => {
                        settled.failure_reason = Some(ORDER_CANCELLED.to_owned());
                        PaymentStatus::Failed
                    }
                    _ => payment.status,
                };
                settled.version += 1;
                settled.updated_at = updated.updated_at;
                (settled.status != payment.status).then_some((payment, settled))
            }
            _ => None,
        };
        let write = TransitionWrite {
            previous: order,
            updated: &updated,
            restock,
            payment: settled.as_ref().map(|(previous, updated)| PaymentChange::Update { previous, updated }),
            idempotency: None,
            notice: None,
        };
        match self.commit(write).await {
            Ok(()) => {
                tracing::info!(order_id = %order.id, correlation_id = %order.correlation_id, from = %order.status, to = %next, ?event, "order transition");
                if next == OrderStatus::Cancelled && order.status != OrderStatus::Cancelled {
                    crate::telemetry::metric("OrdersCancelled", 1);
                }
                if let Some((_, refunded)) = settled.as_ref().filter(|(_, p)| p.status == PaymentStatus::Refunded) {
                    // Recorded as pending in the same write: if the gateway does not confirm
                    // now, the sweep retries it.
                    let _ = self.refund(refunded).await;
                }
                Ok(updated)
            }
            Err(StoreError::VersionConflict) => Err(TransitionError::Raced),
            Err(other) => Err(TransitionError::Failed(other.into())),
        }
    }

    /// Asks the gateway to return a refunded payment's money. The write that marked it
    /// `refunded` also recorded a pending refund (an outbox entry, in the same transaction), so
    /// a refund the gateway does not confirm now, or one lost to a crash right after that
    /// write, is retried by the sweep until the gateway confirms it.
    pub(crate) async fn refund(&self, payment: &Payment) -> Result<()> {
        let Some(reference) = &payment.gateway_reference else {
            // Never captured: nothing to give back.
            return Ok(self.payments.confirm_refund(payment.id).await?);
        };
        match self.gateway.refund(reference, payment.amount_cents).await {
            Ok(()) => {
                self.payments.confirm_refund(payment.id).await?;
                tracing::info!(payment_id = %payment.id, "refunded");
                crate::telemetry::metric("PaymentsRefunded", 1);
                Ok(())
            }
            Err(err) => {
                tracing::warn!(payment_id = %payment.id, error = %err, "refund not confirmed; the sweep retries it");
                Err(Error::Unavailable)
            }
        }
    }

    /// Writes a transition with the customer's notice of it (derived from the change and saved
    /// in the same write: see [`notice_of_transition`]), then queues the notice's delivery.
    /// Every order transition goes through here.
    pub(crate) async fn commit(&self, write: TransitionWrite<'_>) -> Result<(), StoreError> {
        let payment = match write.payment {
            Some(PaymentChange::Insert(payment)) => Some(payment),
            Some(PaymentChange::Update { updated, .. }) => Some(updated),
            None => None,
        };
        let notice = notice_of_transition(write.previous, write.updated, payment);
        self.orders.transition_order(&TransitionWrite { notice: notice.as_ref(), ..write }).await?;
        self.notice_saved(notice.as_ref(), &write.updated.correlation_id).await;
        Ok(())
    }

    /// After a write that saved `notice`: queues its delivery, unless the store queued it in
    /// that same write.
    pub(crate) async fn notice_saved(&self, notice: Option<&crate::model::Notice>, correlation_id: &str) {
        if let Some(notice) = notice.filter(|_| !self.orders.relays_notices()) {
            self.queue_notice(notice.id, correlation_id).await;
        }
    }

    /// Queues a recorded notice's delivery. A lost message only delays it: the sweep relays
    /// notices no delivery has claimed. True when queued.
    pub(crate) async fn queue_notice(&self, notice_id: Uuid, correlation_id: &str) -> bool {
        let sent = match NoticeMessage::delivery(notice_id, correlation_id) {
            Ok(message) => {
                self.queue.send(QueueName::Notifications, &message, Duration::ZERO).await.map_err(|e| e.to_string())
            }
            Err(err) => Err(err),
        };
        match sent {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(%notice_id, error = %err, "notice not queued; the sweep relays it");
                false
            }
        }
    }

    /// Sends `message` with the flow's correlation id; delays beyond SQS's 15 minutes are
    /// clamped (the consumer re-delays a message that arrives early).
    pub(crate) async fn send<M: Serialize>(
        &self,
        queue: QueueName,
        message: &M,
        correlation_id: &str,
        delay: Duration,
    ) -> Result<()> {
        let body = serde_json::to_string(message).map_err(|e| Error::Internal(format!("message JSON: {e}")))?;
        let outgoing = OutgoingMessage { body, correlation_id: Some(correlation_id.to_owned()) };
        self.queue
            .send(queue, &outgoing, delay.clamp(Duration::ZERO, MAX_DELAY))
            .await
            .map_err(|e| Error::Internal(format!("sending to {queue}: {e}")))
    }
}
