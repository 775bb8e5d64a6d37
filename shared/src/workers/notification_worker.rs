//! The notification worker: delivers customers' notices by email (see
//! `crate::domain::Notifier`), and an account's emails (a reset's code, a security email). A
//! message is handled once per notice whatever how often it arrives: the notice is claimed,
//! sent, then marked sent. Notices come from the notifications
//! queue and from an outbox relay ([`deliver_relayed`]): the orders table's stream on AWS, the
//! notices table's feed on the local server (`super::run_local_notice_relay`).

use async_trait::async_trait;
use time::Duration;

use crate::domain::{Delivery, NoticeMessage, Notifier, ResetEmail, render_account_email};
use crate::queue::{Consumer, Delivery as QueueDelivery, Outcome, OutgoingMessage, Queue, QueueName, process_batch};

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
        let delivered = match serde_json::from_str(&delivery.body) {
            Ok(NoticeMessage::Deliver { notice_id }) => self.notifier.deliver(notice_id).await,
            Ok(NoticeMessage::PasswordReset { reset_id, to_name, to_email, code, expires_at }) => {
                let reset = ResetEmail { reset_id, to_name: &to_name, to_email: &to_email, code: &code, expires_at };
                Ok(self.notifier.send_password_reset(reset).await)
            }
            Ok(NoticeMessage::AccountChanged { email_id, to_name, to_email, change, at }) => {
                let email = render_account_email(email_id, &to_name, &to_email, &change, at);
                Ok(self.notifier.send_account_email(&email, "security").await)
            }
            Err(err) => {
                tracing::error!(error = %err, "unreadable notification message; dropped");
                crate::telemetry::metric("PoisonMessages", 1);
                return Outcome::Done;
            }
        };
        match delivered {
            Ok(Delivery::Sent | Delivery::NothingToDo | Delivery::Refused) => Outcome::Done,
            // Growing waits: after the queue's last receive it goes to the dead letters.
            Ok(Delivery::Retry) => {
                Outcome::Retry { after: Duration::seconds(30 * i64::from(delivery.receive_count.max(1))) }
            }
            Err(err) => {
                tracing::warn!(error = %err, "notice delivery failed; will retry");
                Outcome::Retry { after: Duration::seconds(30) }
            }
        }
    }
}

/// How long a notice handed from an outbox relay to the queue waits before its first retry.
pub const HANDED_OFF_RETRY: Duration = Duration::seconds(30);

/// Delivers the notices an outbox relay brings (the orders table's stream on AWS, the notices
/// table's feed on the local server) through `consumer`. One that cannot be sent now (the mail
/// service down, another delivery holding it) is handed to the notifications queue, which
/// retries it and dead-letters what keeps failing. Answers the message ids of the deliveries
/// whose hand-off failed: the relay must bring those again.
pub async fn deliver_relayed<C: Consumer + ?Sized>(
    consumer: &C,
    queue: &dyn Queue,
    deliveries: &[QueueDelivery],
) -> Vec<String> {
    let mut not_handed_off = Vec::new();
    for message_id in process_batch(consumer, deliveries).await {
        let Some(delivery) = deliveries.iter().find(|d| d.message_id == message_id) else { continue };
        let message = OutgoingMessage { body: delivery.body.clone(), correlation_id: delivery.correlation_id.clone() };
        if let Err(err) = queue.send(QueueName::Notifications, &message, HANDED_OFF_RETRY).await {
            tracing::warn!(message_id, error = %err, "notice not handed to the queue");
            not_handed_off.push(message_id);
        }
    }
    not_handed_off
}
