//! Queues behind one trait, with the production backend ([`sqs`]) and the embedded one
//! ([`sqlite`]) side by side, plus the consumer side shared by the Lambda workers and the local
//! server ([`worker`]). `tests/queue_conformance.rs` runs the same suite against both.
//!
//! The semantics are SQS standard queues' (at-least-once, no order guarantee), and the embedded
//! queue deliberately offers nothing more, so code that passes locally holds up in production:
//! - a received message is hidden for a visibility timeout, then delivered again unless it was
//!   deleted; every delivery has a fresh receipt and a higher `receive_count`;
//! - a message delivered `max_receives` times without being deleted is moved to the queue's
//!   dead-letter queue instead of being delivered once more (SQS's `maxReceiveCount` redrive);
//! - delays stop at [`MAX_DELAY`]; a caller that needs longer re-delays when the message arrives.
//!
//! Consumers must therefore be idempotent: a duplicate or late message is a no-op for them.

#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod sqs;
pub mod worker;

use std::fmt;

use async_trait::async_trait;
use time::Duration;

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteQueue;
pub use sqs::{QueueUrls, SqsQueue, create_queues};
pub use worker::{Consumer, Outcome, process_batch, run_local_worker};

/// SQS's longest `DelaySeconds`; longer delays are the caller's job (send again on arrival).
pub const MAX_DELAY: Duration = Duration::seconds(900);
/// SQS's longest visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::seconds(43_200);
/// SQS's longest long poll.
pub const MAX_WAIT: Duration = Duration::seconds(20);
/// SQS's largest receive batch.
pub const MAX_BATCH: u32 = 10;
/// SQS's largest message: body plus attributes (256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The message attribute (SQS) / column (embedded) carrying the correlation id.
pub const CORRELATION_ID_ATTRIBUTE: &str = "correlation_id";

/// The application's logical queues; each backend maps them to its own queues (URLs, rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// Deferred-order releases (order-worker; the sweep expires unpaid orders).
    Orders,
    /// Payment attempts (payment-worker).
    Payments,
    /// Shipments for paid orders (fulfillment-worker).
    Fulfillment,
    /// Customers' notices to deliver (notification-worker).
    Notifications,
}

impl QueueName {
    pub const ALL: [QueueName; 4] =
        [QueueName::Orders, QueueName::Payments, QueueName::Fulfillment, QueueName::Notifications];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Orders => "orders",
            QueueName::Payments => "payments",
            QueueName::Fulfillment => "fulfillment",
            QueueName::Notifications => "notifications",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to send. The correlation id travels beside the body, so every consumer's log
/// lines can carry the id of the HTTP request that started the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Left out when `None` or empty (SQS refuses empty attribute values).
    pub correlation_id: Option<String>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self { body: body.into(), correlation_id: None }
    }

    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// The correlation id worth sending: present and non-empty.
    pub(crate) fn correlation(&self) -> Option<&str> {
        self.correlation_id.as_deref().filter(|id| !id.is_empty())
    }

    /// Refuses what SQS would refuse, on every backend, so the embedded queue never accepts a
    /// message production would reject: an empty body, more than [`MAX_MESSAGE_BYTES`], or
    /// characters outside the XML character set SQS allows.
    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if self.body.is_empty() {
            return Err(QueueError::Backend("a message body must not be empty".into()));
        }
        let size = self.body.len()
            + self.correlation().map_or(0, |id| CORRELATION_ID_ATTRIBUTE.len() + "String".len() + id.len());
        if size > MAX_MESSAGE_BYTES {
            return Err(QueueError::Backend(format!("message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")));
        }
        // XML 1.0 characters: a Rust char is never a surrogate, so only these are left out.
        let allowed =
            |c: char| !matches!(c, '\0'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}');
        if !self.body.chars().all(allowed) || !self.correlation().unwrap_or_default().chars().all(allowed) {
            return Err(QueueError::Backend("message contains characters SQS does not accept".into()));
        }
        Ok(())
    }
}

/// One delivery of a message. `receipt` identifies this delivery (not the message): it is what
/// `delete` and `change_visibility` take, and it changes on every redelivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    pub correlation_id: Option<String>,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Worth retrying later: throttling, network trouble, a busy database.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("queue error: {0}")]
    Backend(String),
}

impl QueueError {
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Visible to receivers after `delay` (clamped to 0..=[`MAX_DELAY`]).
    async fn send(&self, queue: QueueName, message: &OutgoingMessage, delay: Duration) -> Result<(), QueueError>;

    /// Up to `max` (clamped to 1..=[`MAX_BATCH`]) visible messages, each hidden for
    /// `visibility` (0..=[`MAX_VISIBILITY`]) afterwards; waits up to `wait` (0..=[`MAX_WAIT`],
    /// long poll) when none is visible. Returns early with whatever is visible, possibly fewer
    /// than `max` even when more are waiting (SQS samples its servers).
    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Deletes the delivered message (acknowledges it). A receipt that no longer leases the
    /// message — it was deleted, or delivered again since — is a no-op, not an error.
    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError>;

    /// Makes a received message visible again after `visibility` (retry backoff), counted from
    /// now. A receipt that no longer leases the message is a no-op, not an error.
    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError>;

    /// Messages that exceeded the max receive count (the dead-letter queue), oldest first, without
    /// removing them. Dead letters are peeked, not leased: their `receipt` is empty.
    async fn dead_letters(&self, queue: QueueName, max: u32) -> Result<Vec<Delivery>, QueueError>;

    /// How many messages the queue's dead-letter queue holds (SQS: approximately).
    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError>;
}

/// `d` within `0..=max`.
pub(crate) fn clamp(d: Duration, max: Duration) -> Duration {
    d.clamp(Duration::ZERO, max)
}

/// A batch size within what SQS accepts.
pub(crate) fn clamp_batch(max: u32) -> u32 {
    max.clamp(1, MAX_BATCH)
}
