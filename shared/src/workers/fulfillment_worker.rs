//! The fulfillment worker: ships paid orders (shipment, tracking number, label).

use async_trait::async_trait;
use time::Duration;

use crate::domain::{Fulfillment, FulfillmentMessage};
use crate::error::Error;
use crate::queue::{Consumer, Delivery, Outcome};

pub struct FulfillmentWorker {
    fulfillment: Fulfillment,
}

impl FulfillmentWorker {
    pub fn new(fulfillment: Fulfillment) -> Self {
        Self { fulfillment }
    }
}

#[async_trait]
impl Consumer for FulfillmentWorker {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let message: FulfillmentMessage = match serde_json::from_str(&delivery.body) {
            Ok(message) => message,
            Err(err) => {
                tracing::error!(error = %err, "unreadable fulfillment message; dropped");
                crate::telemetry::metric("PoisonMessages", 1);
                return Outcome::Done;
            }
        };
        match message {
            FulfillmentMessage::Ship { order_id } => {
                match self.fulfillment.ship(order_id, "system:fulfillment-worker").await {
                    Ok(Some(order)) => {
                        let tracking = order.shipment.as_ref().map(|s| s.tracking_number.as_str()).unwrap_or("");
                        tracing::info!(order_id = %order_id, tracking_number = tracking, "order shipped");
                        Outcome::Done
                    }
                    Ok(None) => {
                        tracing::info!(order_id = %order_id, "not a paid order (any more); nothing to ship");
                        Outcome::Done
                    }
                    Err(Error::NotFound(_)) => {
                        tracing::error!(order_id = %order_id, "no such order; dropped");
                        Outcome::Done
                    }
                    Err(err) => {
                        tracing::warn!(order_id = %order_id, error = %err, "shipping failed; will retry");
                        Outcome::Retry { after: Duration::seconds(10) }
                    }
                }
            }
        }
    }
}
