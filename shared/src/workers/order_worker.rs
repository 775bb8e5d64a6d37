//! The order worker: releases deferred orders when their cooldown ends. (Its Lambda function
//! also runs the scheduled sweep: see `crate::lambda`.)

use async_trait::async_trait;
use time::Duration;

use crate::domain::{OrderMessage, Orders};
use crate::error::Error;
use crate::queue::{Consumer, Delivery, Outcome};

/// How long a message waits before another try after a transient failure (locally; in Lambda
/// the queue's visibility timeout decides).
const RETRY_AFTER: Duration = Duration::seconds(10);

pub struct OrderWorker {
    orders: Orders,
}

impl OrderWorker {
    pub fn new(orders: Orders) -> Self {
        Self { orders }
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
