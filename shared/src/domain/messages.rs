//! Messages the domain puts on queues, and how it sends them.

use serde::{Deserialize, Serialize};
use time::Duration;
use uuid::Uuid;

use super::Orderly;
use crate::error::{Error, Result};
use crate::queue::{MAX_DELAY, OutgoingMessage, QueueName};

/// The order queue's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderMessage {
    /// A deferred order's cooldown has (nearly) ended: release it when due.
    Release { order_id: Uuid },
}

impl Orderly {
    /// Sends `message` with the flow's correlation id; delays beyond SQS's 15 minutes are
    /// clamped (the consumer re-delays a message that arrives early).
    pub(crate) async fn send<M: Serialize>(
        &self,
        queue: QueueName,
        message: &M,
        correlation_id: &str,
        delay: Duration,
    ) -> Result<()> {
        let Some(sender) = &self.queue else {
            return Err(Error::Internal(format!("no queue configured to send to {queue}")));
        };
        let body = serde_json::to_string(message).map_err(|e| Error::Internal(format!("message JSON: {e}")))?;
        let outgoing = OutgoingMessage { body, correlation_id: Some(correlation_id.to_owned()) };
        sender
            .send(queue, &outgoing, delay.clamp(Duration::ZERO, MAX_DELAY))
            .await
            .map_err(|e| Error::Internal(format!("sending to {queue}: {e}")))
    }
}
