//! Payments: a customer pays a `pending` order by card; the payment worker charges it through
//! the gateway in the background. Card numbers and CVCs reach the gateway once (tokenization)
//! and are never stored, queued or logged: a payment keeps brand and last four digits.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::Session;
use super::ledger::{IdempotencyKey, Ledger, Placed};
use crate::error::{Error, FieldError, Result};
use crate::gateway::{CardDetails, CardToken, ChargeOutcome, GatewayError};
use crate::model::{
    CardSummary, IdempotencyRecord, Order, OrderEvent, OrderStatus, Payment, PaymentStatus, optional_text,
};
use crate::queue::QueueName;
use crate::store::{Page, PageRequest, PaymentChange, PaymentFilter, StoreError, TransitionWrite};

/// GET /payments query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct PaymentQuery {
    pub order_id: Option<Uuid>,
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// POST /payments body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"order_id": "01900000-0000-7000-8000-000000000003", "method": "card", "card": {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2030, "cvc": "123", "holder": "Ada Lovelace"}})))]
pub struct NewPayment {
    pub order_id: Uuid,
    pub method: String,
    pub card: CardInput,
}

/// Card fields as sent: never printed (Debug shows the last four digits only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CardInput {
    pub number: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvc: String,
    #[serde(default)]
    pub holder: Option<String>,
}

impl fmt::Debug for CardInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits: String = self.number.chars().filter(char::is_ascii_digit).collect();
        write!(f, "CardInput(**** {})", digits.get(digits.len().saturating_sub(4)..).unwrap_or(""))
    }
}

/// The payment queue's messages. The token is the gateway's, short-lived and single-use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentMessage {
    Charge {
        payment_id: Uuid,
        token: CardToken,
        /// When `POST /payments` queued it, just before recording the payment; a postponed
        /// charge keeps it. Absent from messages queued before it was added.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
        queued_at: Option<OffsetDateTime>,
    },
}

/// The fulfillment queue's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FulfillmentMessage {
    Ship { order_id: Uuid },
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn brand_of(digits: &str) -> &'static str {
    let prefix = |n: usize| digits.get(..n).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    match () {
        _ if digits.starts_with('4') => "visa",
        _ if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) => "mastercard",
        _ if matches!(prefix(2), 34 | 37) => "amex",
        _ if prefix(4) == 6011 || prefix(2) == 65 => "discover",
        _ => "card",
    }
}

/// Checks a card (Luhn, expiry in the future, CVC shape) into gateway input and its summary.
fn parse_card(card: CardInput, now: OffsetDateTime) -> Result<(CardDetails, CardSummary)> {
    let digits: String = card.number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let mut errors = Vec::new();
    let number_ok =
        (12..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && luhn_valid(&digits);
    if !number_ok {
        errors.push(FieldError::new("card.number", "is not a valid card number"));
    }
    let brand = brand_of(&digits);
    let month_ok = (1..=12).contains(&card.exp_month);
    if !month_ok {
        errors.push(FieldError::new("card.exp_month", "must be between 1 and 12"));
    }
    let (year, month) = (i64::from(now.year()), i64::from(u8::from(now.month())));
    if !(year..=year + 20).contains(&card.exp_year) {
        errors.push(FieldError::new("card.exp_year", format!("must be between {year} and {}", year + 20)));
    } else if month_ok && card.exp_year == year && card.exp_month < month {
        errors.push(FieldError::new("card.exp_month", "the card has expired"));
    }
    let cvc_len = if brand == "amex" { 4 } else { 3 };
    if card.cvc.len() != cvc_len || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(FieldError::new("card.cvc", format!("must be {cvc_len} digits")));
    }
    if let Err(error) = optional_text("card.holder", card.holder.as_deref(), 100) {
        errors.push(error);
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (exp_month, exp_year) = (card.exp_month as u8, card.exp_year as u16);
    let summary = CardSummary {
        brand: brand.to_owned(),
        last4: digits.get(digits.len() - 4..).unwrap_or("").to_owned(),
        exp_month,
        exp_year,
    };
    Ok((CardDetails { number: digits, exp_month, exp_year, cvc: card.cvc }, summary))
}

/// Paying for orders: accepting a card payment, charging it in the background, settling the
/// outcome on the order, and refunds.
#[derive(Clone)]
pub struct Payments {
    ledger: Ledger,
}

impl Payments {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    /// POST /payments: validates the card, tokenizes it, queues the charge, then records a
    /// `pending` payment marked in flight on its order (one conditional write). 202 with the
    /// payment.
    ///
    /// Queued first because the card token lives only in the message: a crash between the two
    /// steps then leaves a message whose payment never appears, which the worker drops
    /// ([`ChargeResult::NeverRecorded`]), never a recorded payment that nothing will charge. A
    /// charge that cannot be queued writes nothing (503: pay again), and neither does a write
    /// not done within [`RECORD_WITHIN`] of the queueing (the worker gives up on the payment
    /// at [`UNRECORDED_GIVE_UP`]).
    pub async fn create_payment(
        &self,
        session: &Session,
        input: NewPayment,
        key: Option<IdempotencyKey>,
        correlation_id: &str,
    ) -> Result<Placed> {
        if session.is_admin() {
            return Err(Error::Forbidden("only the order's customer pays for it"));
        }
        if input.method != "card" {
            return Err(Error::invalid("method", "must be \"card\""));
        }
        let now = self.ledger.now();
        let (card, summary) = parse_card(input.card, now)?;
        let order = self.ledger.order_for(session, input.order_id).await?;
        // Identifies the request without keeping the card number.
        let fingerprint = format!(
            "payment|{}|{}|{}|{}/{}",
            order.id, summary.brand, summary.last4, summary.exp_month, summary.exp_year
        );
        if let Some(key) = &key
            && let Some(replay) = self.ledger.replay(order.customer_id, key, &fingerprint).await?
        {
            return Ok(replay);
        }
        let order = self.payable(session, order).await?;
        let token = self.ledger.gateway.tokenize(&card).await.map_err(|e| match e {
            GatewayError::Transient(_) => Error::Unavailable,
            GatewayError::Permanent(detail) => Error::invalid("card", detail),
        })?;
        let payment = Payment {
            id: Uuid::now_v7(),
            order_id: order.id,
            customer_id: order.customer_id,
            amount_cents: order.total_cents,
            status: PaymentStatus::Pending,
            method: "card".into(),
            card: summary,
            gateway_reference: None,
            at_gateway_since: None,
            failure_reason: None,
            correlation_id: correlation_id.to_owned(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let mut updated = order.clone();
        updated.payment_id = Some(payment.id);
        updated.version += 1;
        updated.updated_at = now;
        let body = serde_json::to_string(&payment).map_err(|e| Error::Internal(format!("payment JSON: {e}")))?;
        let idempotency = key.as_ref().map(|key| IdempotencyRecord {
            customer_id: order.customer_id,
            key: key.as_str().to_owned(),
            request: fingerprint.clone(),
            status_code: 202,
            response: body.clone(),
            expires_at: now + self.ledger.settings.idempotency_ttl,
        });
        let write = TransitionWrite {
            previous: &order,
            updated: &updated,
            restock: false,
            payment: Some(PaymentChange::Insert(&payment)),
            idempotency: idempotency.as_ref(),
            notice: None,
        };
        let message = PaymentMessage::Charge { payment_id: payment.id, token, queued_at: Some(now) };
        if let Err(err) = self.ledger.send(QueueName::Payments, &message, correlation_id, time::Duration::ZERO).await {
            tracing::error!(payment_id = %payment.id, error = %err, "charge not queued; nothing recorded");
            return Err(Error::Unavailable);
        }
        let recorded = tokio::time::timeout(RECORD_WITHIN, self.ledger.commit(write)).await.unwrap_or_else(|_| {
            tracing::error!(payment_id = %payment.id, "payment not recorded in time after its charge was queued");
            Err(StoreError::Unavailable("recording the payment took too long".into()))
        });
        match recorded {
            Ok(()) => {}
            Err(StoreError::Duplicate(crate::store::UniqueKey::IdempotencyKey)) => {
                if let Some(key) = &key
                    && let Some(replay) = self.ledger.replay(order.customer_id, key, &fingerprint).await?
                {
                    return Ok(replay);
                }
                return Err(Error::Unavailable);
            }
            Err(StoreError::VersionConflict) => {
                return Err(Error::Conflict("the order changed meanwhile (another payment?); read it again".into()));
            }
            Err(other) => return Err(other.into()),
        }
        tracing::info!(payment_id = %payment.id, order_id = %order.id, amount_cents = payment.amount_cents, brand = %payment.card.brand, last4 = %payment.card.last4, "payment accepted");
        Ok(Placed { status_code: 202, body, id: payment.id })
    }

    /// An order can be paid while `pending` with no payment in flight or captured.
    /// A payment that was never charged within the window (dead-lettered, or the gateway down
    /// all along) is failed first, and the order read again: it no longer blocks paying. The
    /// order read again is checked like the first: a concurrent request may have failed that
    /// payment first and placed its own, or the sweep expired the order.
    async fn payable(&self, session: &Session, mut order: Order) -> Result<Order> {
        for _ in 0..PAYABLE_READS {
            if order.status != OrderStatus::Pending {
                return Err(Error::Conflict(format!("an order that is {} cannot be paid", order.status)));
            }
            if !self.settle_if_stale(&order, OrderEvent::PaymentDeclined).await? {
                return Err(Error::Conflict("this order already has a payment in progress".into()));
            }
            let Some(settled) = order.payment_id else {
                return Ok(order);
            };
            let current = self.ledger.order_for(session, order.id).await?;
            if current.status == OrderStatus::Pending && current.payment_id == Some(settled) {
                return Ok(current);
            }
            order = current;
        }
        Err(Error::Conflict("the order changed meanwhile (another payment?); read it again".into()))
    }

    /// Whether `order` is free of a payment in progress. A pending payment older than the
    /// charge window is failed here (the write is conditioned on its version, and a capture
    /// that lands after all is refunded); a younger one is still in progress.
    /// `then`: what the failure does to the order, `PaymentDeclined` (it may be paid again) or,
    /// from the sweep, `PaymentDeadlinePassed` (it expires in the same write, so its customer
    /// is told once, not "pay again" and then "cancelled").
    pub(super) async fn settle_if_stale(&self, order: &Order, then: OrderEvent) -> Result<bool> {
        let Some(id) = order.payment_id else {
            return Ok(true);
        };
        let Some(payment) = self.ledger.payments.get_payment(id).await? else {
            return Ok(true);
        };
        match payment.status {
            PaymentStatus::Failed | PaymentStatus::Refunded => Ok(true),
            PaymentStatus::Succeeded => Ok(false),
            // Not charged in time and not out at the gateway: nothing was captured.
            PaymentStatus::Pending if self.is_stale(&payment) && payment.at_gateway_since.is_none() => {
                self.settle_failure_then(id, NOT_CHARGED_IN_TIME, then).await?;
                Ok(true)
            }
            PaymentStatus::Pending => Ok(false),
        }
    }

    fn is_stale(&self, payment: &Payment) -> bool {
        payment.created_at + self.ledger.settings.charge_window <= self.ledger.now()
    }

    /// Puts a charge back on the queue for later, as a new message: waiting for the gateway
    /// (its breaker open) then uses none of the message's deliveries, which are kept for real
    /// failures. The charge window still bounds how long a payment may wait.
    pub async fn postpone_charge(
        &self,
        message: &PaymentMessage,
        correlation_id: &str,
        delay: time::Duration,
    ) -> Result<()> {
        self.ledger.send(QueueName::Payments, &message, correlation_id, delay).await
    }

    /// GET /payments/{id}: the payer or an admin (404 for anyone else).
    pub async fn payment_for(&self, session: &Session, id: Uuid) -> Result<Payment> {
        let payment = self.ledger.payments.get_payment(id).await?.ok_or(Error::NotFound("payment"))?;
        session.require_self_or_admin(payment.customer_id, "payment")?;
        Ok(payment)
    }

    /// GET /payments and GET /admin/payments (admin): by order and status, newest first.
    pub async fn payments(&self, session: &Session, query: PaymentQuery) -> Result<Page<Payment>> {
        session.require_admin()?;
        let page = super::page_request(query.limit, query.next_token)?;
        let status = query
            .status
            .as_deref()
            .map(|s| match s {
                "pending" => Ok(PaymentStatus::Pending),
                "succeeded" => Ok(PaymentStatus::Succeeded),
                "failed" => Ok(PaymentStatus::Failed),
                "refunded" => Ok(PaymentStatus::Refunded),
                _ => Err(Error::invalid("status", "must be one of pending, succeeded, failed, refunded")),
            })
            .transpose()?;
        let filter = PaymentFilter { order: query.order_id, status };
        Ok(self.ledger.payments.list_payments(&filter, &page).await?)
    }

    pub async fn payments_of(&self, order_id: Uuid) -> Result<Vec<Payment>> {
        let mut page = PageRequest::first(100);
        let mut payments = Vec::new();
        loop {
            let filter = PaymentFilter { order: Some(order_id), status: None };
            let result = self.ledger.payments.list_payments(&filter, &page).await?;
            payments.extend(result.items);
            match result.next_token {
                Some(token) => page.token = Some(token),
                None => return Ok(payments),
            }
        }
    }

    /// The payment worker's charge: asks the gateway once and records the outcome. A payment
    /// no longer `pending` (a redelivered message) is left alone. `queued_at`: when the charge
    /// was queued, which tells a payment not recorded yet from one that never will be.
    pub async fn charge(
        &self,
        payment_id: Uuid,
        token: &CardToken,
        queued_at: Option<OffsetDateTime>,
    ) -> std::result::Result<ChargeResult, ChargeError> {
        let Some(payment) = self.recorded_payment(payment_id).await.map_err(ChargeError::Store)? else {
            return Ok(match queued_at {
                Some(at) if self.ledger.now() - at < UNRECORDED_GIVE_UP => ChargeResult::NotRecordedYet,
                _ => ChargeResult::NeverRecorded,
            });
        };
        if payment.status != PaymentStatus::Pending {
            return Ok(ChargeResult::NotApplicable);
        }
        // Given up on (a redriven dead letter, or postponed past the window): never charged late,
        // unless an earlier charge may have gone through, which is asked about again below.
        if self.is_stale(&payment) && payment.at_gateway_since.is_none() {
            self.settle_failure(payment_id, NOT_CHARGED_IN_TIME).await.map_err(ChargeError::Store)?;
            return Ok(ChargeResult::GivenUp);
        }
        // Cancelled before the charge went out: no need to take the money and give it back. One
        // marked out at the gateway may have been captured: it is asked again below, and a
        // capture is refunded as a late success.
        let order = self.ledger.orders.get_order(payment.order_id).await.map_err(|e| ChargeError::Store(e.into()))?;
        let cancelled = order.as_ref().is_some_and(|o| o.status == OrderStatus::Cancelled);
        if order.is_none() || (cancelled && payment.at_gateway_since.is_none()) {
            self.settle_failure(payment_id, super::ledger::ORDER_CANCELLED).await.map_err(ChargeError::Store)?;
            return Ok(ChargeResult::GivenUp);
        }
        // Marked first, so a crash after a capture never leaves a payment that looks uncharged.
        if !self.mark_at_gateway(&payment, true).await.map_err(ChargeError::Store)? {
            return Ok(ChargeResult::NotApplicable);
        }
        let charged = self.ledger.gateway.charge(token, payment.amount_cents, &payment.id.to_string()).await;
        if let Err(GatewayError::Transient(_)) = &charged {
            // The gateway says it charged nothing: the payment may be given up on again. If this
            // write fails, the mark stays and the next delivery asks the gateway again.
            let _ = self.mark_at_gateway(&payment, false).await;
        }
        match charged {
            Ok(ChargeOutcome::Captured { reference }) => {
                self.settle_success(payment_id, &reference).await.map_err(ChargeError::Store)
            }
            Ok(ChargeOutcome::Declined { reason }) => {
                self.settle_failure(payment_id, &reason).await.map_err(ChargeError::Store)?;
                crate::telemetry::metric("PaymentsFailed", 1);
                Ok(ChargeResult::Declined)
            }
            // The gateway will never take this token (say, it expired while the breaker held
            // the message): fail the payment so the customer can pay again.
            Err(GatewayError::Permanent(detail)) => {
                tracing::error!(payment_id = %payment_id, %detail, "gateway refused the charge");
                self.settle_failure(payment_id, "the payment processor refused the card; please pay again")
                    .await
                    .map_err(ChargeError::Store)?;
                crate::telemetry::metric("PaymentsFailed", 1);
                Ok(ChargeResult::Declined)
            }
            Err(transient) => Err(ChargeError::Gateway(transient)),
        }
    }

    /// The payment a charge is for. The charge is queued just before its payment is recorded,
    /// so a worker may get there first: a missing payment is read a few more times, briefly.
    async fn recorded_payment(&self, id: Uuid) -> Result<Option<Payment>> {
        for attempt in 0..UNRECORDED_READS {
            if let Some(payment) = self.ledger.payments.get_payment(id).await? {
                return Ok(Some(payment));
            }
            if attempt + 1 < UNRECORDED_READS {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
        Ok(None)
    }

    /// Marks the payment as out at the gateway (or back), if it is still pending: one
    /// conditional write with its order. False when it is not pending any more.
    async fn mark_at_gateway(&self, read: &Payment, out: bool) -> Result<bool> {
        for attempt in 0..5 {
            let payment = match attempt {
                0 => read.clone(),
                _ => self.ledger.payments.get_payment(read.id).await?.ok_or(Error::NotFound("payment"))?,
            };
            if payment.status != PaymentStatus::Pending {
                return Ok(false);
            }
            let order = self.ledger.orders.get_order(payment.order_id).await?.ok_or(Error::NotFound("order"))?;
            let mut same = order.clone();
            same.version += 1;
            let mut marked = payment.clone();
            marked.at_gateway_since = out.then(|| self.ledger.now());
            marked.version += 1;
            marked.updated_at = self.ledger.now();
            if self.write_with_order((&order, &same), (&payment, &marked)).await? {
                return Ok(true);
            }
            crate::retry::backoff(attempt).await;
        }
        Err(Error::Unavailable)
    }

    /// One conditional write of a payment's change with its order's; false when either moved
    /// since it was read (read them again).
    async fn write_with_order(&self, order: (&Order, &Order), payment: (&Payment, &Payment)) -> Result<bool> {
        let write = TransitionWrite {
            previous: order.0,
            updated: order.1,
            // An order expiring with its payment gives its stock back in the same write.
            restock: order.1.status == OrderStatus::Cancelled && order.0.status.holds_stock(),
            payment: Some(PaymentChange::Update { previous: payment.0, updated: payment.1 }),
            idempotency: None,
            notice: None,
        };
        match self.ledger.commit(write).await {
            Ok(()) => Ok(true),
            Err(StoreError::VersionConflict) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }

    /// A captured charge: payment `succeeded` and order `paid` in one write, then fulfillment
    /// is queued. If the order was cancelled meanwhile, the payment is refunded instead.
    async fn settle_success(&self, payment_id: Uuid, reference: &str) -> Result<ChargeResult> {
        for attempt in 0..5 {
            let payment = self.ledger.payments.get_payment(payment_id).await?.ok_or(Error::NotFound("payment"))?;
            let given_up = match payment.status {
                PaymentStatus::Pending => false,
                // Failed while this charge was at the gateway (not charged in time): the money
                // came after all, and goes back.
                PaymentStatus::Failed => true,
                PaymentStatus::Succeeded | PaymentStatus::Refunded => return Ok(ChargeResult::NotApplicable),
            };
            let order = self.ledger.orders.get_order(payment.order_id).await?.ok_or(Error::NotFound("order"))?;
            // Captured for an order that no longer wants it (cancelled, or marked paid by an
            // admin meanwhile), or for a payment given up on: refund. The payment's version
            // condition below makes sure a concurrent settlement is never refunded by mistake.
            let (updated, late) = match order.status {
                OrderStatus::Pending | OrderStatus::Cancelled if !given_up => {
                    match self.ledger.next_order(&order, OrderEvent::PaymentSucceeded, "system:payment-worker", None) {
                        Some(next) => (next, order.status == OrderStatus::Cancelled),
                        None => return Err(Error::Internal("the transition table lost payment success".into())),
                    }
                }
                _ => {
                    let mut same = order.clone();
                    same.version += 1;
                    (same, true)
                }
            };
            let mut settled = payment.clone();
            settled.status = if late { PaymentStatus::Refunded } else { PaymentStatus::Succeeded };
            settled.gateway_reference = Some(reference.to_owned());
            settled.at_gateway_since = None;
            settled.version += 1;
            settled.updated_at = self.ledger.now();
            if !self.write_with_order((&order, &updated), (&payment, &settled)).await? {
                crate::retry::backoff(attempt).await;
                continue;
            }
            if late {
                tracing::warn!(payment_id = %payment.id, order_id = %order.id, "payment captured for an order that no longer needs it; refunding");
                // A refund the gateway does not confirm now is retried by the sweep.
                let _ = self.ledger.refund(&settled).await;
                return Ok(ChargeResult::RefundedLate);
            }
            tracing::info!(payment_id = %payment.id, order_id = %order.id, "payment succeeded; order paid");
            crate::telemetry::metric("PaymentsSucceeded", 1);
            let message = FulfillmentMessage::Ship { order_id: order.id };
            if let Err(err) =
                self.ledger.send(QueueName::Fulfillment, &message, &order.correlation_id, time::Duration::ZERO).await
            {
                // The sweep queues fulfillment for paid orders that have no shipment.
                tracing::warn!(order_id = %order.id, error = %err, "fulfillment not queued; the sweep will");
            }
            return Ok(ChargeResult::Captured);
        }
        Err(Error::Unavailable)
    }

    /// A declined (or unqueueable) payment: `failed`, and the order free to be paid again.
    async fn settle_failure(&self, payment_id: Uuid, reason: &str) -> Result<()> {
        self.settle_failure_then(payment_id, reason, OrderEvent::PaymentDeclined).await
    }

    /// A failed payment, and `event` applied to its order in the same write (an order that moved
    /// on meanwhile keeps its status; only the payment changes).
    async fn settle_failure_then(&self, payment_id: Uuid, reason: &str, event: OrderEvent) -> Result<()> {
        // The sweep expires the order; a payment's own failure is the payment worker's.
        let (actor, cancel_reason) = match event {
            OrderEvent::PaymentDeadlinePassed => {
                (super::orders::SYSTEM, Some(super::orders::DEADLINE_PASSED.to_owned()))
            }
            _ => ("system:payment-worker", None),
        };
        for attempt in 0..5 {
            let payment = self.ledger.payments.get_payment(payment_id).await?.ok_or(Error::NotFound("payment"))?;
            if payment.status != PaymentStatus::Pending {
                return Ok(());
            }
            let order = self.ledger.orders.get_order(payment.order_id).await?.ok_or(Error::NotFound("order"))?;
            let mut failed = payment.clone();
            failed.status = PaymentStatus::Failed;
            failed.failure_reason = Some(reason.to_owned());
            failed.at_gateway_since = None;
            failed.version += 1;
            failed.updated_at = self.ledger.now();
            let updated = match self.ledger.next_order(&order, event, actor, cancel_reason.clone()) {
                Some(mut next) => {
                    next.payment_id = None;
                    next
                }
                // The order moved on (cancelled): only the payment changes.
                None => {
                    let mut same = order.clone();
                    same.version += 1;
                    same
                }
            };
            if self.write_with_order((&order, &updated), (&payment, &failed)).await? {
                tracing::info!(payment_id = %payment.id, order_id = %order.id, reason, "payment failed");
                return Ok(());
            }
            crate::retry::backoff(attempt).await;
        }
        Err(Error::Unavailable)
    }

    /// The sweep's part for payments: retries the refunds the gateway has not confirmed yet, those
    /// not tried lately first; one still not confirmed waits behind the others for a while.
    pub(crate) async fn retry_refunds(&self) -> Result<u32> {
        let mut confirmed = 0;
        for payment_id in self.ledger.payments.pending_refunds(100).await? {
            let Some(payment) = self.ledger.payments.get_payment(payment_id).await? else {
                self.ledger.payments.confirm_refund(payment_id).await?;
                continue;
            };
            if self.ledger.refund(&payment).await.is_ok() {
                confirmed += 1;
            } else if let Err(err) =
                self.ledger.payments.postpone_refund(payment_id, self.ledger.now() + REFUND_RETRY_AFTER).await
            {
                // It keeps its turn; the others are still tried.
                tracing::warn!(%payment_id, error = %err, "refund not put behind the others");
            }
        }
        Ok(confirmed)
    }
}

/// How far a refund the gateway did not confirm moves its turn on: it goes behind the refunds
/// due before then (with fewer than a sweep's worth pending, it is still tried every sweep).
const REFUND_RETRY_AFTER: time::Duration = time::Duration::minutes(5);
/// Reads of an order before paying it gives way to the payments racing it.
const PAYABLE_READS: usize = 3;
/// Reads of a charge's payment before the charge is put off as not recorded yet.
const UNRECORDED_READS: usize = 3;
/// How long after queueing its charge `POST /payments` may still record the payment; past it
/// the request answers 503 and writes nothing (on Lambda the function's 10 s timeout comes
/// first).
pub const RECORD_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
/// How old a charge whose payment is still missing must be before the worker drops it: well
/// past [`RECORD_WITHIN`], so the payment can no longer appear, and reached by the third
/// delivery a minute apart (the worker's retry locally, the queue's 60 s visibility timeout on
/// AWS), before the dead-letter queue's fifth.
pub const UNRECORDED_GIVE_UP: time::Duration = time::Duration::minutes(2);
/// Why a payment that was never charged is failed.
const NOT_CHARGED_IN_TIME: &str = "the payment could not be charged in time; please pay again";

/// What a charge attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeResult {
    Captured,
    Declined,
    /// Captured for an order cancelled meanwhile: refunded.
    RefundedLate,
    /// Failed without asking the gateway: past the charge window, or its order cancelled.
    GivenUp,
    /// Not `pending` any more (a duplicate message).
    NotApplicable,
    /// No such payment yet: the request that queued the charge may still be recording it.
    NotRecordedYet,
    /// No such payment, [`UNRECORDED_GIVE_UP`] after the charge was queued: its request failed
    /// or crashed before recording it, and never will.
    NeverRecorded,
}

impl ChargeResult {
    /// Whether the gateway gave a verdict (the circuit breaker counts only those).
    pub fn heard_from_gateway(self) -> bool {
        matches!(self, Self::Captured | Self::Declined | Self::RefundedLate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error(transparent)]
    Gateway(GatewayError),
    #[error(transparent)]
    Store(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, month: i64, year: i64, cvc: &str) -> CardInput {
        CardInput { number: number.into(), exp_month: month, exp_year: year, cvc: cvc.into(), holder: None }
    }

    #[test]
    fn cards_are_checked_and_summarized() {
        let now = time::macros::datetime!(2026-11-23 10:00 UTC);
        let (details, summary) = parse_card(card("4242 4242 4242 4242", 12, 2030, "123"), now).expect("valid");
        assert_eq!(details.number, "4242424242424242");
        assert_eq!((summary.brand.as_str(), summary.last4.as_str()), ("visa", "4242"));
        assert_eq!(format!("{details:?}"), "CardDetails(**** 4242)");
        assert_eq!(format!("{:?}", card("4242424242424242", 1, 2030, "123")), "CardInput(**** 4242)");

        let fields = |input: CardInput| match parse_card(input, now) {
            Err(Error::Validation(errors)) => errors.into_iter().map(|e| e.field).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(fields(card("4242424242424241", 12, 2030, "123")), ["card.number"], "Luhn");
        assert_eq!(fields(card("4242424242424242", 10, 2026, "123")), ["card.exp_month"], "expired");
        assert_eq!(fields(card("4242424242424242", 13, 2025, "12")), ["card.exp_month", "card.exp_year", "card.cvc"]);
        assert_eq!(fields(card("378282246310005", 12, 2030, "123")), ["card.cvc"], "amex wants 4 digits");
        assert!(parse_card(card("4242424242424242", 11, 2026, "123"), now).is_ok(), "valid through its month");
    }
}
