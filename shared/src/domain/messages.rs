//! The order queue's messages (the payment and fulfillment queues' are in `payments`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The order queue's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderMessage {
    /// A deferred order's cooldown has (nearly) ended: release it when due.
    Release { order_id: Uuid },
}
