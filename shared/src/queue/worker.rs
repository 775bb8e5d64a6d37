//! The consumer side, shared by the Lambda workers and the local server: a [`Consumer`] handles
//! one delivery and says whether it is done; [`process_batch`] runs a batch concurrently, one
//! tracing span per message; [`handle_sqs_event`] turns Lambda's SQS event into a partial batch
//! response; [`run_local_worker`] is the local stand-in for the SQS → Lambda poller.
//!
//! Retry timing differs by host, and consumers should not depend on it:
//! - locally, `Retry { after }` makes the message visible again after `after`;
//! - in Lambda, a retry is reported as a batch item failure and SQS delivers the message again
//!   when the queue's visibility timeout ends (changing it would need the receipt handle and an
//!   SQS client inside the consumer, for a small gain; the queue's timeout is the backoff).
//!
//! Either way a message that keeps failing goes to the dead-letter queue after the queue's max
//! receive count. A permanent failure (a message that can never succeed) is not a retry: the
//! consumer logs it, counts it and returns `Done`, so one bad message never blocks others.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use async_trait::async_trait;
#[cfg(feature = "lambda")]
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use time::Duration;
use tracing::Instrument;

use super::{Delivery, MAX_BATCH, Queue, QueueName};

/// How long the local worker long-polls before looking at its shutdown signal again.
const LOCAL_POLL_WAIT: Duration = Duration::seconds(1);
/// The longest pause after failing receives, so a broken queue is not hammered.
const MAX_RECEIVE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled, or never handleable (logged by the consumer): delete the message.
    Done,
    /// A transient failure: deliver the message again later (locally after `after`; in Lambda
    /// after the queue's visibility timeout).
    Retry { after: Duration },
}

#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Handles one delivery. Must be idempotent: SQS delivers at least once, and a message may
    /// arrive again after it was handled (a lost delete, a retry).
    async fn handle(&self, delivery: &Delivery) -> Outcome;
}

/// Handles a batch concurrently, one tracing span per message (message_id, correlation_id
/// fields); returns the message ids to report as batch item failures: the retries, and the
/// messages whose handler panicked (a panic fails its own message, never the whole batch).
pub async fn process_batch<C: Consumer + ?Sized>(consumer: &C, deliveries: &[Delivery]) -> Vec<String> {
    let outcomes = outcomes(consumer, deliveries).await;
    deliveries
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| !matches!(outcome, Some(Outcome::Done)))
        .map(|(delivery, _)| delivery.message_id.clone())
        .collect()
}

/// Each delivery's outcome, in order; `None` where the handler panicked.
async fn outcomes<C: Consumer + ?Sized>(consumer: &C, deliveries: &[Delivery]) -> Vec<Option<Outcome>> {
    let handlers = deliveries.iter().map(|delivery| {
        let span = tracing::info_span!(
            "message",
            message_id = %delivery.message_id,
            correlation_id = delivery.correlation_id.as_deref(),
            receive_count = delivery.receive_count,
        );
        async move {
            let outcome = consumer.handle(delivery).await;
            match outcome {
                Outcome::Done => tracing::debug!("message handled"),
                Outcome::Retry { after } => {
                    tracing::warn!(retry_after_ms = after.whole_milliseconds() as i64, "message will be retried")
                }
            }
            outcome
        }
        .instrument(span)
    });
    let outcomes = join_all_catching(handlers.collect()).await;
    for (delivery, outcome) in deliveries.iter().zip(&outcomes) {
        if outcome.is_none() {
            tracing::error!(
                message_id = %delivery.message_id,
                correlation_id = delivery.correlation_id.as_deref(),
                "message handler panicked; the message will be retried"
            );
        }
    }
    outcomes
}

/// Polls every future on the current task until all are ready (a batch is at most 10, so
/// polling them all on each wake-up is cheap). A future that panics yields `None`.
async fn join_all_catching<F: Future>(futures: Vec<F>) -> Vec<Option<F::Output>> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_ready = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            let Some(future) = slot else { continue };
            match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(Poll::Ready(value)) => {
                    *output = Some(value);
                    *slot = None;
                }
                Ok(Poll::Pending) => all_ready = false,
                Err(_) => *slot = None,
            }
        }
        if all_ready { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs
}

#[cfg(feature = "lambda")]
/// A Lambda SQS record as a delivery; `None` (logged) for a record without a message id or body,
/// which cannot be handled and is acknowledged rather than retried for ever.
pub fn delivery_from_sqs(message: SqsMessage) -> Option<Delivery> {
    let receive_count =
        message.attributes.get("ApproximateReceiveCount").and_then(|count| count.parse().ok()).unwrap_or(1);
    let correlation_id =
        message.message_attributes.get(super::CORRELATION_ID_ATTRIBUTE).and_then(|a| a.string_value.clone());
    match (message.message_id, message.body) {
        (Some(message_id), Some(body)) => Some(Delivery {
            message_id,
            receipt: message.receipt_handle.unwrap_or_default(),
            body,
            correlation_id,
            receive_count,
        }),
        (message_id, _) => {
            tracing::error!(message_id, "SQS record without a message id or body; acknowledged unhandled");
            None
        }
    }
}

#[cfg(feature = "lambda")]
/// Handles a Lambda SQS event: every record through the consumer, retries reported as batch
/// item failures (the function's event source mapping must have `ReportBatchItemFailures`).
pub async fn handle_sqs_event<C: Consumer + ?Sized>(consumer: &C, event: SqsEvent) -> SqsBatchResponse {
    let deliveries: Vec<Delivery> = event.records.into_iter().filter_map(delivery_from_sqs).collect();
    let mut response = SqsBatchResponse::default();
    for message_id in process_batch(consumer, &deliveries).await {
        response.add_failure(message_id);
    }
    response
}

/// The local poller: receive (max 10, `visibility`, a 1 s long poll) → [`process_batch`] →
/// delete what is done, re-time what is to be retried (`change_visibility(after)`). Runs until
/// `shutdown` resolves; it looks at `shutdown` between polls and never abandons a batch it holds,
/// so stopping takes up to a second plus the batch in hand.
pub async fn run_local_worker(
    queue: Arc<dyn Queue>,
    name: QueueName,
    consumer: Arc<dyn Consumer>,
    visibility: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failed_receives = 0u32;
    tracing::info!(queue = %name, "queue worker started");
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = std::future::ready(()) => {}
        }
        let deliveries = match queue.receive(name, MAX_BATCH, visibility, LOCAL_POLL_WAIT).await {
            Ok(deliveries) => {
                failed_receives = 0;
                deliveries
            }
            Err(err) => {
                failed_receives = failed_receives.saturating_add(1);
                let pause = crate::retry::pause_after(failed_receives, MAX_RECEIVE_BACKOFF);
                tracing::error!(queue = %name, error = %err, pause_ms = pause.as_millis() as u64, "receive failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        if deliveries.is_empty() {
            continue;
        }
        let batch = tracing::info_span!("queue_batch", queue = %name, size = deliveries.len());
        let outcomes = outcomes(&*consumer, &deliveries).instrument(batch).await;
        // Settled together: the embedded queue commits them as one group, not one by one.
        let settles = deliveries.iter().zip(outcomes).map(|(delivery, outcome)| {
            let queue = &queue;
            async move {
                let settled = match outcome {
                    Some(Outcome::Done) => queue.delete(name, &delivery.receipt).await,
                    Some(Outcome::Retry { after }) => queue.change_visibility(name, &delivery.receipt, after).await,
                    // A panic: leave the message to reappear when its visibility timeout ends.
                    None => Ok(()),
                };
                if let Err(err) = settled {
                    tracing::error!(
                        queue = %name,
                        message_id = %delivery.message_id,
                        correlation_id = delivery.correlation_id.as_deref(),
                        error = %err,
                        "settling a message failed; it will be delivered again"
                    );
                }
            }
        });
        join_all_catching(settles.collect()).await;
    }
    tracing::info!(queue = %name, "queue worker stopped");
}

#[cfg(all(test, feature = "lambda"))]
mod tests {
    use std::collections::HashMap;

    use aws_lambda_events::sqs::SqsMessageAttribute;

    use super::*;

    struct FailOnPoison;

    #[async_trait]
    impl Consumer for FailOnPoison {
        async fn handle(&self, delivery: &Delivery) -> Outcome {
            match delivery.body.as_str() {
                "poison" => Outcome::Retry { after: Duration::seconds(5) },
                "panic" => panic!("a consumer bug"),
                _ => Outcome::Done,
            }
        }
    }

    fn record(message_id: Option<&str>, body: Option<&str>) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = message_id.map(str::to_owned);
        message.receipt_handle = Some(format!("receipt-{}", message_id.unwrap_or("none")));
        message.body = body.map(str::to_owned);
        message.attributes = HashMap::from([("ApproximateReceiveCount".to_owned(), "3".to_owned())]);
        let mut correlation = SqsMessageAttribute::default();
        correlation.string_value = Some("corr-1".to_owned());
        correlation.data_type = Some("String".to_owned());
        message.message_attributes = HashMap::from([(crate::queue::CORRELATION_ID_ATTRIBUTE.to_owned(), correlation)]);
        message
    }

    #[test]
    fn sqs_records_become_deliveries() {
        let delivery = delivery_from_sqs(record(Some("m-1"), Some("{}"))).expect("a delivery");
        assert_eq!(
            delivery,
            Delivery {
                message_id: "m-1".into(),
                receipt: "receipt-m-1".into(),
                body: "{}".into(),
                correlation_id: Some("corr-1".into()),
                receive_count: 3,
            }
        );
        assert_eq!(delivery_from_sqs(record(None, Some("{}"))), None);
        assert_eq!(delivery_from_sqs(record(Some("m-2"), None)), None);
    }

    #[tokio::test]
    async fn an_sqs_event_reports_retries_and_panics_only() {
        let mut event = SqsEvent::default();
        event.records = vec![
            record(Some("ok"), Some("fine")),
            record(Some("bad"), Some("poison")),
            record(Some("bug"), Some("panic")),
            record(None, Some("poison")),
            record(Some("empty"), None),
        ];
        let response = handle_sqs_event(&FailOnPoison, event).await;
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, ["bad", "bug"]);
        let json = serde_json::to_value(&response).expect("serializes");
        assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "bad");
    }
}
