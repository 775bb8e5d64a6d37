//! The local server's notice relay: the embedded store's notice feed, delivered as the Lambda
//! notification worker delivers the orders table's stream.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::notification_worker::deliver_relayed;
use crate::domain::NoticeMessage;
use crate::queue::{Consumer, Delivery as QueueDelivery, Queue};
use crate::retry::pause_after;
use crate::store::sqlite::NoticeFeed;

/// Notices read from the feed at a time, and batches being delivered at once.
const FEED_BATCH: u32 = 100;
const FEED_BATCHES_IN_FLIGHT: usize = 4;
/// How long the feed waits for a new notice before it looks again anyway.
const FEED_PATIENCE: Duration = Duration::from_secs(1);
/// The longest pause between tries of a hand-off that failed, or of a read of the feed.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// The local server's relay: follows the embedded store's notice feed (see [`NoticeFeed`]) and
/// delivers what it brings as the Lambda worker delivers what the orders table's stream brings
/// ([`deliver_relayed`]), a batch at a time with a few batches in flight. A notice neither sent
/// nor handed to the queue is tried again, with growing pauses, until it is or the relay stops
/// (the next start of the feed then takes it up). Runs until `shutdown` resolves, then lets
/// the batches in hand finish their current try.
pub async fn run_local_notice_relay(
    mut feed: NoticeFeed,
    consumer: Arc<dyn Consumer>,
    queue: Arc<dyn Queue>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let (stop, stopped) = watch::channel(false);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut failed_reads = 0u32;
    tracing::info!("notice relay started");
    'relay: loop {
        let notices = tokio::select! {
            biased;
            () = &mut shutdown => break 'relay,
            notices = feed.next(FEED_BATCH, FEED_PATIENCE) => notices,
        };
        let notices = match notices {
            Ok(notices) => {
                failed_reads = 0;
                notices
            }
            Err(err) => {
                failed_reads = failed_reads.saturating_add(1);
                tracing::error!(error = %err, "reading the notice feed failed");
                tokio::select! {
                    () = &mut shutdown => break 'relay,
                    () = tokio::time::sleep(pause_after(failed_reads, MAX_PAUSE)) => continue,
                }
            }
        };
        if notices.is_empty() {
            continue;
        }
        while in_flight.len() >= FEED_BATCHES_IN_FLIGHT {
            tokio::select! {
                // These stay unsent: the next start of the feed takes them up.
                () = &mut shutdown => break 'relay,
                _ = in_flight.join_next() => {}
            }
        }
        let (consumer, queue, mut stopped) = (consumer.clone(), queue.clone(), stopped.clone());
        in_flight.spawn(async move {
            let mut notices = notices;
            for attempt in 1.. {
                notices = deliver_fed(&*consumer, &*queue, &notices).await;
                if notices.is_empty() {
                    return;
                }
                tracing::warn!(notices = notices.len(), attempt, "notices neither sent nor handed to the queue");
                tokio::select! {
                    () = tokio::time::sleep(pause_after(attempt, MAX_PAUSE)) => {}
                    // Left unsent: the next start of the feed takes them up.
                    _ = stopped.wait_for(|stopped| *stopped) => return,
                }
            }
        });
    }
    let _ = stop.send(true);
    while in_flight.join_next().await.is_some() {}
    tracing::info!("notice relay stopped");
}

/// Delivers notices the feed brought, as [`deliver_relayed`] delivers the stream's; answers the
/// ids of those neither delivered nor handed to the queue.
pub async fn deliver_fed<C: Consumer + ?Sized>(consumer: &C, queue: &dyn Queue, notices: &[Uuid]) -> Vec<Uuid> {
    let deliveries: Vec<QueueDelivery> = notices.iter().filter_map(|id| feed_delivery(*id)).collect();
    let failed = deliver_relayed(consumer, queue, &deliveries).await;
    notices.iter().filter(|id| failed.contains(&id.to_string())).copied().collect()
}

/// A notice from the feed as the delivery the worker takes; its id stands in for the message
/// id and the correlation id.
fn feed_delivery(notice_id: Uuid) -> Option<QueueDelivery> {
    let id = notice_id.to_string();
    match NoticeMessage::delivery(notice_id, &id) {
        Ok(message) => Some(QueueDelivery {
            message_id: id,
            receipt: String::new(),
            body: message.body,
            correlation_id: message.correlation_id,
            receive_count: 1,
        }),
        Err(err) => {
            tracing::error!(%notice_id, error = %err, "notice delivery message not built");
            None
        }
    }
}
