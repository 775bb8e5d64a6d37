//! The order worker: releases deferred orders when their cooldown ends, and (on a schedule)
//! sweeps up what a lost message left behind and expires unpaid orders.

use async_trait::async_trait;
use serde_json::Value;
use time::Duration;

use crate::domain::{Ledger, OrderMessage, Orders, Sweeper};
use crate::error::Error;
use crate::queue::{Consumer, Delivery, Outcome};

/// How long a message waits before another try after a transient failure (locally; in Lambda
/// the queue's visibility timeout decides).
const RETRY_AFTER: Duration = Duration::seconds(10);

pub struct OrderWorker {
    orders: Orders,
    sweeper: Sweeper,
}

impl OrderWorker {
    pub fn new(ledger: Ledger) -> Self {
        Self { orders: Orders::new(ledger.clone()), sweeper: Sweeper::new(ledger) }
    }

    /// The order-worker Lambda's events: SQS batches (`Records`) and the scheduled sweep
    /// (an EventBridge schedule event). Returns the SQS batch response, or the sweep's report.
    pub async fn handle_event(&self, event: Value) -> Result<Value, Error> {
        if event.get("Records").is_some() {
            let batch =
                serde_json::from_value(event).map_err(|e| Error::BadRequest(format!("not an SQS event: {e}")))?;
            let response = crate::queue::worker::handle_sqs_event(self, batch).await;
            return serde_json::to_value(response).map_err(|e| Error::Internal(format!("batch response: {e}")));
        }
        if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
            let report = self.sweeper.sweep().await?;
            return Ok(serde_json::json!({
                "released": report.released,
                "expired": report.expired,
                "requeued_fulfillment": report.requeued_fulfillment,
                "refunds_confirmed": report.refunds_confirmed,
            }));
        }
        Err(Error::BadRequest("expected an SQS batch or a scheduled event".into()))
    }
}

#[async_trait]
impl Consumer for OrderWorker {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let message: OrderMessage = match serde_json::from_str(&delivery.body) {
            Ok(message) => message,
            Err(err) => {
                // It can never succeed: acknowledge it so it does not block the queue.
                tracing::error!(error = %err, "unreadable order message; dropped");
                crate::telemetry::metric("PoisonMessages", 1);
                return Outcome::Done;
            }
        };
        let correlation_id = delivery.correlation_id.as_deref().unwrap_or(&delivery.message_id);
        match message {
            OrderMessage::Release { order_id } => match self.orders.handle_release(order_id, correlation_id).await {
                Ok(release) => {
                    tracing::info!(order_id = %order_id, ?release, "release message handled");
                    Outcome::Done
                }
                Err(err @ (Error::Unavailable | Error::Internal(_))) => {
                    tracing::warn!(order_id = %order_id, error = %err, "release failed; will retry");
                    Outcome::Retry { after: RETRY_AFTER }
                }
                Err(err) => {
                    tracing::error!(order_id = %order_id, error = %err, "release refused; dropped");
                    Outcome::Done
                }
            },
        }
    }
}
