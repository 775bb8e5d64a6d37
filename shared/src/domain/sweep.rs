//! The scheduled sweep: what a lost or dead-lettered message would leave behind. It releases
//! deferred orders that are due, cancels orders unpaid past their deadline, queues fulfillment
//! again for paid orders left unshipped, retries refunds the gateway has not confirmed,
//! publishes low-stock alerts from their outbox, and relays notices whose message was lost.

use std::sync::Arc;
use std::time::Instant;

use time::{Duration, OffsetDateTime};

use super::inventory::Alerts;
use super::ledger::{Ledger, TransitionError};
use super::notifications::relay_lost_notices;
use super::orders::{DEADLINE_PASSED, Orders, Release, SYSTEM};
use super::payments::{FulfillmentMessage, Payments};
use crate::error::{Error, Result};
use crate::model::{Order, OrderEvent, OrderStatus};
use crate::queue::QueueName;
use crate::store::{ExpiryStore, NoticeStore, PageRequest};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub released: u32,
    pub expired: u32,
    pub requeued_fulfillment: u32,
    /// Refunds the gateway had not confirmed before, confirmed now.
    pub refunds_confirmed: u32,
    /// Expired login counters, revocations, idempotency records and cooldowns collected.
    pub expired_rows_deleted: u32,
    /// Low-stock alerts taken from the outbox and published.
    pub alerts_published: u32,
    /// Notices whose delivery message was lost, queued again.
    pub notices_relayed: u32,
}

/// How long a relayed notice waits before the sweep may relay it again.
const NOTICE_RELAY_EVERY: Duration = Duration::minutes(10);

/// Expired rows collected per sweep, in batches: bounded work per run, and a backlog (say,
/// after downtime) is worked off over the next runs.
const EXPIRED_BATCH: u32 = 1_000;
const EXPIRED_BATCHES_PER_SWEEP: u32 = 10;

/// Orders due read per status and sweep: `DUE_PAGES` pages of `DUE_PAGE`. A larger backlog
/// (say, after downtime) is worked off over the next runs.
const DUE_PAGE: u32 = 100;
const DUE_PAGES: usize = 10;
/// Wall-clock time each of the order steps (release, expire, ship again) may take per sweep;
/// what is left waits for the next run. Three of them leave the other steps room within the
/// order worker's 30 s Lambda timeout.
const STEP_BUDGET: std::time::Duration = std::time::Duration::from_secs(6);

/// How long a paid order may wait for its shipment before the sweep queues it again.
const UNSHIPPED_GRACE: Duration = Duration::minutes(5);

#[derive(Clone)]
pub struct Sweeper {
    ledger: Ledger,
    orders: Orders,
    payments: Payments,
    expiry: Arc<dyn ExpiryStore>,
    alerts: Alerts,
    notices: Arc<dyn NoticeStore>,
}

impl Sweeper {
    pub fn new(ledger: Ledger, expiry: Arc<dyn ExpiryStore>, alerts: Alerts, notices: Arc<dyn NoticeStore>) -> Self {
        Self {
            orders: Orders::new(ledger.clone()),
            payments: Payments::new(ledger.clone()),
            ledger,
            expiry,
            alerts,
            notices,
        }
    }

    /// The scheduled sweep: releases deferred orders whose message was lost, and cancels
    /// pending orders unpaid past their deadline (returning their stock). Every step runs even
    /// when an earlier one could not read its work; the first such error is answered at the
    /// end, so the run still shows as failed.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let now = self.ledger.now();
        let mut report = SweepReport::default();
        let mut unread = None;
        // One order failing never stops the sweep of the others: it is logged and retried next time.
        for order in self.orders_due(OrderStatus::ProcessingOrder, now, &mut unread).await {
            match self.orders.release_order(order.id).await {
                Ok(Release::Released) => report.released += 1,
                Ok(_) => {}
                Err(err) => tracing::error!(order_id = %order.id, error = %err, "sweep could not release"),
            }
        }
        for order in self.orders_due(OrderStatus::Pending, now, &mut unread).await {
            let Some(order) = self.unpaid_and_not_paying(order).await else { continue };
            let (id, reason) = (order.id, Some(DEADLINE_PASSED.to_owned()));
            match self.ledger.apply(order, OrderEvent::PaymentDeadlinePassed, SYSTEM, reason).await {
                Ok(_) => report.expired += 1,
                // Paid, cancelled or changed meanwhile: nothing to expire.
                Err(TransitionError::Illegal { .. } | TransitionError::Raced) => {}
                Err(TransitionError::Failed(err)) => {
                    tracing::error!(order_id = %id, error = %err, "sweep could not expire")
                }
            }
        }
        // Paid a while ago and still not shipped: the fulfillment message was lost (or is
        // dead-lettered); queue it again (shipping is idempotent).
        for order in self.orders_due(OrderStatus::Paid, now - UNSHIPPED_GRACE, &mut unread).await {
            let message = FulfillmentMessage::Ship { order_id: order.id };
            if self.ledger.send(QueueName::Fulfillment, &message, &order.correlation_id, Duration::ZERO).await.is_ok() {
                report.requeued_fulfillment += 1;
            }
        }
        match relay_lost_notices(&*self.notices, &self.ledger, now, NOTICE_RELAY_EVERY).await {
            Ok(relayed) => report.notices_relayed = relayed,
            Err(err) => tracing::error!(error = %err, "sweep could not relay notices"),
        }
        match self.alerts.publish_pending().await {
            Ok(published) => report.alerts_published = published,
            Err(err) => tracing::error!(error = %err, "sweep could not publish alerts"),
        }
        match self.payments.retry_refunds().await {
            Ok(confirmed) => report.refunds_confirmed = confirmed,
            Err(err) => tracing::error!(error = %err, "sweep could not retry refunds"),
        }
        for _ in 0..EXPIRED_BATCHES_PER_SWEEP {
            match self.expiry.delete_expired(now, EXPIRED_BATCH).await {
                Ok(deleted) => {
                    report.expired_rows_deleted += deleted;
                    if deleted < EXPIRED_BATCH {
                        break;
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "sweep could not delete expired rows");
                    break;
                }
            }
        }
        if report != SweepReport::default() {
            tracing::info!(?report, "sweep");
        }
        match unread {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }

    /// Orders in `status` due by `due_by`, oldest first, up to `DUE_PAGES` pages of `DUE_PAGE`,
    /// for one step of the sweep: read page by page, so orders the sweep must leave for now (a
    /// payment out at the gateway, a release that keeps failing) never hide newer ones behind
    /// them, unless there are thousands. Reading and handing out stop once the step has had its
    /// `STEP_BUDGET`. What could not be read is logged, and the first error kept in `unread`.
    async fn orders_due(
        &self,
        status: OrderStatus,
        due_by: OffsetDateTime,
        unread: &mut Option<Error>,
    ) -> impl Iterator<Item = Order> + use<> {
        let step = Instant::now();
        let mut due = Vec::new();
        let mut page = PageRequest::first(DUE_PAGE);
        for _ in 0..DUE_PAGES {
            if step.elapsed() > STEP_BUDGET {
                break;
            }
            match self.ledger.orders.orders_due(status, due_by, &page).await {
                Ok(read) => {
                    due.extend(read.items);
                    match read.next_token {
                        Some(token) => page.token = Some(token),
                        None => break,
                    }
                }
                Err(err) => {
                    tracing::error!(%status, error = %err, "sweep could not read the orders due");
                    unread.get_or_insert(err.into());
                    break;
                }
            }
        }
        due.into_iter().take_while(move |_| step.elapsed() <= STEP_BUDGET)
    }

    /// The order as it stands if no payment of it is being charged: a payment accepted before
    /// the deadline settles the order itself (paid, or payable again), so the order waits; one
    /// not charged within the charge window is failed first. `None`: leave the order for now.
    async fn unpaid_and_not_paying(&self, order: Order) -> Option<Order> {
        let id = order.id;
        match self.payments.settle_if_stale(&order, OrderEvent::PaymentDeadlinePassed).await {
            Ok(true) if order.payment_id.is_none() => Some(order),
            // Its payment may have just been failed, and the order expired with it: read it
            // again (an order expired that way is then left alone).
            Ok(true) => self
                .ledger
                .orders
                .get_order(id)
                .await
                .inspect_err(|err| tracing::error!(order_id = %id, error = %err, "sweep could not read"))
                .ok()
                .flatten(),
            Ok(false) => {
                tracing::info!(order_id = %id, "payment deadline passed with a payment in progress; waiting for it");
                None
            }
            Err(err) => {
                tracing::error!(order_id = %id, error = %err, "sweep could not settle a stale payment");
                None
            }
        }
    }
}
