//! The notification worker: delivers customers' notices by email (see
//! `crate::domain::Notifier`). A message is handled once per notice whatever how often it
//! arrives: the notice is claimed, sent, then marked sent.

use async_trait::async_trait;
use time::Duration;

use crate::domain::{Delivery, NoticeMessage, Notifier};
use crate::queue::{Consumer, Delivery as QueueDelivery, Outcome};

pub struct NotificationWorker {
    notifier: Notifier,
}

impl NotificationWorker {
    pub fn new(notifier: Notifier) -> Self {
        Self { notifier }
    }
}

#[async_trait]
impl Consumer for NotificationWorker {
    async fn handle(&self, delivery: &QueueDelivery) -> Outcome {
        let NoticeMessage::Deliver { notice_id } = match serde_json::from_str(&delivery.body) {
            Ok(message) => message,
            Err(err) => {
                tracing::error!(error = %err, "unreadable notification message; dropped");
                crate::telemetry::metric("PoisonMessages", 1);
                return Outcome::Done;
            }
        };
        match self.notifier.deliver(notice_id).await {
            Ok(Delivery::Sent | Delivery::NothingToDo | Delivery::Refused) => Outcome::Done,
            // Growing waits: after the queue's last receive it goes to the dead letters.
            Ok(Delivery::Retry) => {
                Outcome::Retry { after: Duration::seconds(30 * i64::from(delivery.receive_count.max(1))) }
            }
            Err(err) => {
                tracing::warn!(%notice_id, error = %err, "notice delivery failed; will retry");
                Outcome::Retry { after: Duration::seconds(30) }
            }
        }
    }
}
