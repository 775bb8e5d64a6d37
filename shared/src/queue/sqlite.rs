//! The embedded queue: one table of messages, in its own SQLite file or in the store's
//! ([`SqliteQueue::on`]; `:memory:` in tests), with SQS standard-queue semantics — delays,
//! visibility timeouts, receive counts and a dead-letter state reached after `max_receives`
//! deliveries, like SQS's redrive policy. Every change is one write of the [`EmbeddedDb`]
//! engine's group commit (atomic on its own), so concurrent receivers never get the same
//! delivery, and WAL with `synchronous=FULL` means an acknowledged send survives a crash. A
//! receive reads on a reader connection before it writes, so an idle poll never wakes the writer.
//!
//! Time (delays, visibility) comes from the injected [`Clock`], so tests can move it with a
//! `FakeClock`; the long poll's `wait` is real time, since it paces this process, not the data.
//!
//! Receipts: every delivery stores a fresh UUID, replacing the previous one. `delete` and
//! `change_visibility` act only through the current receipt, so a consumer whose lease expired
//! and whose message went to someone else cannot delete or re-time it under them: its call is a
//! no-op. (SQS documents the same for stale receipts on delete — "succeeds, but the message might
//! not be deleted" — and may reject them on ChangeMessageVisibility; moto accepts them. The
//! conformance suite does not depend on either.)

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, params};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{
    Delivery, MAX_DELAY, MAX_VISIBILITY, MAX_WAIT, OutgoingMessage, Queue, QueueError, QueueName, clamp, clamp_batch,
};
use crate::clock::Clock;
use crate::embedded_db::{CachedStatements, EmbeddedDb, EngineError, Schema};

/// How often a long poll looks again while nothing is visible.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// The queue's tables, on their own file or beside the store's (see [`SqliteQueue::on`]).
pub const SCHEMA: Schema = Schema { name: "queue", migrations: MIGRATIONS };

/// Schema versions, applied in order.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE messages (
        seq            INTEGER PRIMARY KEY,
        message_id     TEXT NOT NULL UNIQUE,
        queue          TEXT NOT NULL,
        body           TEXT NOT NULL,
        correlation_id TEXT,
        -- Unix milliseconds, from the injected clock.
        sent_at        INTEGER NOT NULL,
        visible_at     INTEGER NOT NULL,
        receive_count  INTEGER NOT NULL DEFAULT 0,
        -- The current delivery's receipt; NULL before the first delivery and once dead.
        receipt        TEXT UNIQUE,
        -- 1 once moved to the dead-letter state (never delivered again).
        dead           INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX messages_ready ON messages (queue, dead, visible_at);
"#];

#[derive(Clone)]
pub struct SqliteQueue {
    db: EmbeddedDb,
    clock: Arc<dyn Clock>,
    max_receives: u32,
}

impl SqliteQueue {
    /// Opens (creating if needed) the queue file at `path`. A message delivered `max_receives`
    /// times (at least 1) without being deleted goes to the dead-letter state.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, max_receives: u32) -> Result<Self, QueueError> {
        Ok(Self::on(EmbeddedDb::open(path, &[SCHEMA])?, clock, max_receives))
    }

    /// The queue in a database opened with [`SCHEMA`] among its schemas: beside the store, so
    /// both share one writer and one fsync per batch.
    pub fn on(db: EmbeddedDb, clock: Arc<dyn Clock>, max_receives: u32) -> Self {
        Self { db, clock, max_receives: max_receives.max(1) }
    }

    /// Moves `queue`'s dead letters back onto it, as new: visible now, with every delivery
    /// again (what the SQS console's DLQ redrive does on AWS). Returns how many moved.
    pub async fn redrive(&self, queue: QueueName) -> Result<usize, QueueError> {
        let now = unix_millis(self.clock.now());
        self.db
            .write(move |tx| {
                tx.exec(
                    "UPDATE messages SET dead = 0, receive_count = 0, receipt = NULL, visible_at = ?2
                     WHERE queue = ?1 AND dead = 1",
                    params![queue.as_str(), now],
                )
                .map_err(sqlite_error)
            })
            .await
    }

    /// Moves every message of the queue file at `old` into this queue, then renames that file
    /// to `<old>.imported`: the local server's queue once had a file of its own, and what was
    /// queued there before an upgrade must still be delivered. A lease held in the old file is
    /// not carried over: the message comes back when that lease would have ended. Returns how
    /// many messages moved; a message already here (an import cut short) is not doubled.
    pub async fn import_file(&self, old: &Path) -> Result<usize, QueueError> {
        type Row = (String, String, String, Option<String>, i64, i64, i64, i64);
        let rows: Vec<Row> = {
            let conn = Connection::open(old).map_err(sqlite_error)?;
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'", [], |row| {
                    row.get(0)
                })
                .map_err(sqlite_error)?;
            if tables == 0 {
                // An empty file (never migrated): nothing was queued in it.
                return Ok(0);
            }
            let mut stmt = conn
                .prepare(
                    "SELECT message_id, queue, body, correlation_id, sent_at, visible_at, receive_count, dead
                     FROM messages",
                )
                .map_err(sqlite_error)?;
            stmt.query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(sqlite_error)?
        };
        let moved = self
            .db
            .write(move |tx| {
                let mut moved = 0;
                for row in &rows {
                    moved += tx
                        .exec(
                            "INSERT OR IGNORE INTO messages
                               (message_id, queue, body, correlation_id, sent_at, visible_at, receive_count, dead)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            params![row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7],
                        )
                        .map_err(sqlite_error)?;
                }
                Ok::<_, QueueError>(moved)
            })
            .await?;
        let mut imported = old.as_os_str().to_owned();
        imported.push(".imported");
        std::fs::rename(old, &imported).map_err(|e| QueueError::Backend(format!("renaming {}: {e}", old.display())))?;
        // The rename must outlast a crash, or the next start would import again messages
        // handled since (INSERT OR IGNORE cannot know a message that was deleted).
        if let Some(dir) = old.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| QueueError::Backend(format!("syncing {}: {e}", dir.display())))?;
        }
        Ok(moved)
    }

    /// `message`, checked and timed now, ready to be written.
    fn prepare(
        &self,
        queue: QueueName,
        message: &OutgoingMessage,
        delay: Duration,
    ) -> Result<PreparedMessage, QueueError> {
        message.validate()?;
        let sent_at = unix_millis(self.clock.now());
        Ok(PreparedMessage {
            queue,
            body: message.body.clone(),
            correlation_id: message.correlation().map(str::to_owned),
            sent_at,
            visible_at: sent_at.saturating_add(millis(clamp(delay, MAX_DELAY))),
        })
    }

    /// A private in-memory queue, for tests.
    pub fn in_memory(clock: Arc<dyn Clock>, max_receives: u32) -> Result<Self, QueueError> {
        Ok(Self::on(EmbeddedDb::in_memory(&[SCHEMA])?, clock, max_receives))
    }

    /// Runs `work` as one write of the engine's group commit, with the clock's now (at the call)
    /// in Unix milliseconds.
    async fn transaction<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnMut(&Connection, i64) -> Result<T, QueueError> + Send + 'static,
    {
        let now = unix_millis(self.clock.now());
        let mut work = work;
        self.db.write(move |conn| work(conn, now)).await
    }

    /// Whether any message of `queue` is visible now.
    async fn any_visible(&self, queue: QueueName) -> Result<bool, QueueError> {
        let now = unix_millis(self.clock.now());
        self.db
            .read(move |conn| {
                conn.row(
                    "SELECT EXISTS (SELECT 1 FROM messages WHERE queue = ?1 AND dead = 0 AND visible_at <= ?2)",
                    params![queue.as_str(), now],
                    |row| row.get(0),
                )
                .map_err(sqlite_error)
            })
            .await
    }

    /// One receive attempt: leases up to `max` visible messages, longest visible first. A message
    /// met on the way that used up its deliveries is retired to the dead letters instead (as SQS
    /// moves it to the DLQ rather than deliver it again). Only the head of the queue is read, so
    /// a receive costs the same however long the backlog behind it.
    async fn receive_once(
        &self,
        queue: QueueName,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let max_receives = self.max_receives;
        let (dead, deliveries) = self
            .transaction(move |tx, now| {
                let mut ready = tx
                    .prepare_cached(
                        "SELECT seq, receive_count FROM messages WHERE queue = ?1 AND dead = 0 AND visible_at <= ?2
                         ORDER BY visible_at, seq LIMIT ?3",
                    )
                    .map_err(sqlite_error)?;
                let mut retire = tx
                    .prepare_cached("UPDATE messages SET dead = 1, receipt = NULL WHERE seq = ?1 RETURNING message_id")
                    .map_err(sqlite_error)?;
                let hidden_until = now.saturating_add(millis(visibility));
                let mut lease = tx
                    .prepare_cached(
                        "UPDATE messages SET receipt = ?2, receive_count = receive_count + 1, visible_at = ?3
                         WHERE seq = ?1
                         RETURNING message_id, receipt, body, correlation_id, receive_count",
                    )
                    .map_err(sqlite_error)?;
                let (mut dead, mut deliveries) = (Vec::new(), Vec::new());
                // With a zero visibility a leased message stays visible: never lease it twice.
                let mut seen = std::collections::HashSet::new();
                loop {
                    let wanted = max - deliveries.len() as u32;
                    let head = ready
                        .query_map(params![queue.as_str(), now, wanted], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, u32>(1)?))
                        })
                        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                        .map_err(sqlite_error)?;
                    let (page_full, retired_before) = (head.len() as u32 == wanted, dead.len());
                    for (seq, receive_count) in head.into_iter().filter(|(seq, _)| seen.insert(*seq)) {
                        if receive_count >= max_receives {
                            dead.push(retire.query_row([seq], |row| row.get::<_, String>(0)).map_err(sqlite_error)?);
                            continue;
                        }
                        let delivery = lease
                            .query_row(params![seq, Uuid::now_v7().to_string(), hidden_until], |row| {
                                Ok(Delivery {
                                    message_id: row.get(0)?,
                                    receipt: row.get(1)?,
                                    body: row.get(2)?,
                                    correlation_id: row.get(3)?,
                                    receive_count: row.get(4)?,
                                })
                            })
                            .map_err(sqlite_error)?;
                        deliveries.push(delivery);
                    }
                    // Retired messages left room: look further, past them.
                    if deliveries.len() as u32 >= max || !page_full || dead.len() == retired_before {
                        break;
                    }
                }
                Ok((dead, deliveries))
            })
            .await?;
        for message_id in dead {
            tracing::warn!(queue = %queue, message_id, max_receives, "receives used up; moved to the dead letters");
        }
        Ok(deliveries)
    }
}

/// A message checked and timed by [`SqliteQueue::prepare`], not yet written.
#[derive(Debug)]
struct PreparedMessage {
    queue: QueueName,
    body: String,
    correlation_id: Option<String>,
    sent_at: i64,
    visible_at: i64,
}

impl PreparedMessage {
    /// Writes the message in the transaction `tx` is in.
    fn insert(&self, tx: &Connection) -> Result<(), QueueError> {
        tx.exec(
            "INSERT INTO messages (message_id, queue, body, correlation_id, sent_at, visible_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                Uuid::now_v7().to_string(),
                self.queue.as_str(),
                self.body,
                self.correlation_id,
                self.sent_at,
                self.visible_at
            ],
        )
        .map_err(sqlite_error)?;
        Ok(())
    }
}

impl From<EngineError> for QueueError {
    fn from(err: EngineError) -> Self {
        QueueError::Backend(err.to_string())
    }
}

fn sqlite_error(err: rusqlite::Error) -> QueueError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => QueueError::Unavailable(format!("sqlite: {err}")),
        _ => QueueError::Backend(format!("sqlite: {err}")),
    }
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.whole_milliseconds()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: QueueName, message: &OutgoingMessage, delay: Duration) -> Result<(), QueueError> {
        let message = self.prepare(queue, message, delay)?;
        self.db.write(move |tx| message.insert(tx)).await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let (max, visibility) = (clamp_batch(max), clamp(visibility, MAX_VISIBILITY));
        let wait = std::time::Duration::from_millis(clamp(wait, MAX_WAIT).whole_milliseconds().unsigned_abs() as u64);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // A look on a reader first: an idle poll never wakes the writer.
            let deliveries = if self.any_visible(queue).await? {
                self.receive_once(queue, max, visibility).await?
            } else {
                Vec::new()
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !deliveries.is_empty() || remaining.is_zero() {
                return Ok(deliveries);
            }
            tokio::time::sleep(remaining.min(POLL_INTERVAL)).await;
        }
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.transaction(move |tx, _| {
            tx.exec("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2", params![queue.as_str(), receipt])
                .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        let visibility = millis(clamp(visibility, MAX_VISIBILITY));
        self.transaction(move |tx, now| {
            tx.exec(
                "UPDATE messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2",
                params![queue.as_str(), receipt, now + visibility],
            )
            .map_err(sqlite_error)?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self, queue: QueueName, max: u32) -> Result<Vec<Delivery>, QueueError> {
        let max = clamp_batch(max);
        self.db
            .read(move |tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT message_id, body, correlation_id, receive_count FROM messages
                     WHERE queue = ?1 AND dead = 1 ORDER BY sent_at, seq LIMIT ?2",
                    )
                    .map_err(sqlite_error)?;
                stmt.query_map(params![queue.as_str(), max], |row| {
                    Ok(Delivery {
                        message_id: row.get(0)?,
                        receipt: String::new(),
                        body: row.get(1)?,
                        correlation_id: row.get(2)?,
                        receive_count: row.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(sqlite_error)
            })
            .await
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.db
            .read(move |tx| {
                tx.row("SELECT COUNT(*) FROM messages WHERE queue = ?1 AND dead = 1", [queue.as_str()], |row| {
                    row.get(0)
                })
                .map_err(sqlite_error)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    //! What the shared suite cannot check with real time: exact clock arithmetic, clamping at
    //! 15 minutes, stale receipts, and durability across reopening the file.

    use super::*;
    use crate::clock::FakeClock;

    fn fake_queue(max_receives: u32) -> (Arc<FakeClock>, SqliteQueue) {
        let clock = Arc::new(FakeClock::new(OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)));
        let queue = SqliteQueue::in_memory(clock.clone(), max_receives).expect("in-memory queue");
        (clock, queue)
    }

    async fn receive_now(queue: &SqliteQueue) -> Vec<Delivery> {
        queue.receive(QueueName::Orders, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive")
    }

    #[tokio::test]
    async fn delays_follow_the_injected_clock_and_stop_at_fifteen_minutes() {
        let (clock, queue) = fake_queue(3);
        queue.send(QueueName::Orders, &OutgoingMessage::new("later"), Duration::hours(2)).await.expect("send");
        clock.advance(MAX_DELAY - Duration::milliseconds(1));
        assert!(receive_now(&queue).await.is_empty());
        clock.advance(Duration::milliseconds(1));
        assert_eq!(receive_now(&queue).await.len(), 1);
    }

    #[tokio::test]
    async fn a_message_dies_on_the_delivery_after_its_last() {
        let (clock, queue) = fake_queue(2);
        queue.send(QueueName::Orders, &OutgoingMessage::new("poison"), Duration::ZERO).await.expect("send");
        for expected in 1..=2 {
            let got = receive_now(&queue).await;
            assert_eq!(got.iter().map(|d| d.receive_count).collect::<Vec<_>>(), [expected]);
            clock.advance(Duration::seconds(30));
        }
        assert!(receive_now(&queue).await.is_empty());
        let dead = queue.dead_letters(QueueName::Orders, 10).await.expect("dead letters");
        assert_eq!((dead.len(), dead[0].receive_count, dead[0].receipt.as_str()), (1, 2, ""));
        clock.advance(Duration::hours(1));
        assert!(receive_now(&queue).await.is_empty(), "dead letters are never delivered again");

        // Redriven by hand: delivered again, with all its deliveries.
        assert_eq!(queue.redrive(QueueName::Payments).await.expect("redrive"), 0, "another queue's");
        assert_eq!(queue.redrive(QueueName::Orders).await.expect("redrive"), 1);
        assert_eq!(queue.dead_letter_count(QueueName::Orders).await.expect("count"), 0);
        let again = receive_now(&queue).await;
        assert_eq!(again.iter().map(|d| (d.body.as_str(), d.receive_count)).collect::<Vec<_>>(), [("poison", 1)]);
    }

    #[tokio::test]
    async fn a_receive_retires_spent_messages_at_the_head_and_delivers_the_ones_behind() {
        let (clock, queue) = fake_queue(1);
        for i in 0..15 {
            queue
                .send(QueueName::Orders, &OutgoingMessage::new(format!("spent {i}")), Duration::ZERO)
                .await
                .expect("send");
        }
        assert_eq!(receive_now(&queue).await.len() + receive_now(&queue).await.len(), 15);
        queue.send(QueueName::Orders, &OutgoingMessage::new("fresh"), Duration::seconds(1)).await.expect("send");
        clock.advance(Duration::seconds(30));
        // Fifteen spent messages are visible ahead of the fresh one: more than a page of ten.
        let got = receive_now(&queue).await;
        assert_eq!(got.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(queue.dead_letter_count(QueueName::Orders).await.expect("count"), 15);
    }

    #[tokio::test]
    async fn stale_receipts_are_no_ops() {
        let (clock, queue) = fake_queue(5);
        queue.send(QueueName::Orders, &OutgoingMessage::new("m"), Duration::ZERO).await.expect("send");
        let first = receive_now(&queue).await.remove(0);
        clock.advance(Duration::seconds(30));
        let second = receive_now(&queue).await.remove(0);
        assert_ne!(first.receipt, second.receipt);

        queue.delete(QueueName::Orders, &first.receipt).await.expect("stale delete");
        queue.change_visibility(QueueName::Orders, &first.receipt, Duration::ZERO).await.expect("stale change");
        assert!(receive_now(&queue).await.is_empty(), "the stale receipt changed nothing");

        queue.delete(QueueName::Orders, &second.receipt).await.expect("delete");
        clock.advance(Duration::hours(1));
        assert!(receive_now(&queue).await.is_empty());
    }

    #[tokio::test]
    async fn queues_are_separate() {
        let (_, queue) = fake_queue(5);
        queue.send(QueueName::Payments, &OutgoingMessage::new("pay"), Duration::ZERO).await.expect("send");
        assert!(receive_now(&queue).await.is_empty());
        let got = queue.receive(QueueName::Payments, 10, Duration::seconds(1), Duration::ZERO).await.expect("receive");
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn a_queue_file_of_its_own_is_imported_once_and_kept_aside() {
        let dir = std::env::temp_dir().join(format!("orderly-queue-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (old, new) = (dir.join("queues.sqlite3"), dir.join("orderly.sqlite3"));
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        {
            let queue = SqliteQueue::open(&old, clock.clone(), 3).expect("old queue");
            let message = OutgoingMessage::new("queued before the upgrade").with_correlation_id("c-1");
            queue.send(QueueName::Payments, &message, Duration::ZERO).await.expect("send");
            queue.send(QueueName::Orders, &OutgoingMessage::new("later"), Duration::minutes(10)).await.expect("send");
        }
        let db = EmbeddedDb::open(&new, &[SCHEMA]).expect("shared file");
        let queue = SqliteQueue::on(db, clock, 3);
        assert_eq!(queue.import_file(&old).await.expect("import"), 2);
        assert!(!old.exists() && dir.join("queues.sqlite3.imported").exists());
        let got = queue.receive(QueueName::Payments, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
        assert_eq!(
            got.iter().map(|d| (d.body.as_str(), d.correlation_id.as_deref())).collect::<Vec<_>>(),
            [("queued before the upgrade", Some("c-1"))]
        );
        assert!(receive_now(&queue).await.is_empty(), "the delayed message keeps its delay");
        drop(queue);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn messages_survive_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("orderly-queue-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("queue.db");
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        {
            let queue = SqliteQueue::open(&path, clock.clone(), 3).expect("open");
            let message = OutgoingMessage::new("durable").with_correlation_id("c-1");
            queue.send(QueueName::Fulfillment, &message, Duration::ZERO).await.expect("send");
        }
        let queue = SqliteQueue::open(&path, clock, 3).expect("reopen");
        let got =
            queue.receive(QueueName::Fulfillment, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].body.as_str(), got[0].correlation_id.as_deref()), ("durable", Some("c-1")));
        drop(queue);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn refuses_what_sqs_refuses() {
        let (_, queue) = fake_queue(3);
        for body in [String::new(), "nul \u{0}".to_owned(), "x".repeat(super::super::MAX_MESSAGE_BYTES + 1)] {
            let sent = queue.send(QueueName::Orders, &OutgoingMessage::new(body), Duration::ZERO).await;
            assert!(matches!(sent, Err(QueueError::Backend(_))), "{sent:?}");
        }
    }
}
