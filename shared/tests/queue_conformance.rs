//! The queue conformance suite: every test runs unchanged against the embedded SQLite queue and
//! against SQS on moto's server (started by `scripts/test`), with fresh queues per test.
//!
//! Timing is real on both (the SQLite queue runs on the system clock here; its own unit tests
//! use a fake one), in whole seconds because SQS counts in seconds. SQS standard queues promise
//! no order, so nothing here asserts one.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use orderly::queue::{Consumer, Delivery, Outcome, OutgoingMessage, Queue, QueueName, process_batch, run_local_worker};
use time::Duration;
use tokio::sync::Barrier;

/// Deliveries before a message goes to the dead letters.
const MAX_RECEIVES: u32 = 3;
/// A visibility timeout no test outlives.
const LONG: Duration = Duration::seconds(60);

/// Generates `sqlite::name` and `sqs::name` tests from `async fn name(Arc<dyn Queue>)`.
macro_rules! on_every_queue {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::sqlite_queue(super::MAX_RECEIVES)).await
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::sqs_queue(super::MAX_RECEIVES).await).await
                }
            )*
        }
    };
}

on_every_queue!(
    round_trip_keeps_the_body_and_correlation_id,
    delayed_messages_stay_hidden_until_due,
    unacknowledged_messages_come_back_after_the_visibility_timeout,
    change_visibility_brings_back_or_holds_a_message,
    deleted_messages_are_gone,
    too_many_receives_move_a_message_to_the_dead_letters,
    process_batch_reports_exactly_the_failures,
    local_worker_drains_the_queue_and_stops_on_shutdown,
);

fn message(body: &str, correlation_id: Option<&str>) -> OutgoingMessage {
    OutgoingMessage { body: body.to_owned(), correlation_id: correlation_id.map(str::to_owned) }
}

/// What is visible right now, without waiting.
async fn receive_now(queue: &dyn Queue, name: QueueName) -> Vec<Delivery> {
    queue.receive(name, 10, LONG, Duration::ZERO).await.expect("receive")
}

/// One long poll of up to `wait`.
async fn receive_within(queue: &dyn Queue, name: QueueName, visibility: Duration, wait: Duration) -> Vec<Delivery> {
    queue.receive(name, 10, visibility, wait).await.expect("receive")
}

/// Exactly `n` deliveries, gathered over as many receives as it takes (SQS may return fewer than
/// are visible), within 10 s.
async fn receive_n(queue: &dyn Queue, name: QueueName, n: usize, visibility: Duration) -> Vec<Delivery> {
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(started.elapsed().as_secs() < 10, "only {} of {n} messages arrived: {got:?}", got.len());
        got.extend(receive_within(queue, name, visibility, Duration::seconds(1)).await);
    }
    assert_eq!(got.len(), n, "more messages than sent: {got:?}");
    got
}

async fn round_trip_keeps_the_body_and_correlation_id(queue: Arc<dyn Queue>) {
    let body = r#"{"order_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","note":"ünïcödé ✓"}"#;
    queue.send(QueueName::Orders, &message(body, Some("req-1")), Duration::ZERO).await.expect("send");
    queue.send(QueueName::Orders, &message("plain", None), Duration::ZERO).await.expect("send");
    queue.send(QueueName::Orders, &message("blank", Some("")), Duration::ZERO).await.expect("send");

    let got = receive_n(&*queue, QueueName::Orders, 3, LONG).await;
    let by_body: HashMap<&str, &Delivery> = got.iter().map(|d| (d.body.as_str(), d)).collect();
    assert_eq!(by_body[body].correlation_id.as_deref(), Some("req-1"));
    assert_eq!(by_body["plain"].correlation_id, None);
    assert_eq!(by_body["blank"].correlation_id, None, "an empty correlation id is not sent");
    assert!(got.iter().all(|d| d.receive_count == 1 && !d.receipt.is_empty()), "{got:?}");
    assert_eq!(got.iter().map(|d| &d.message_id).collect::<HashSet<_>>().len(), 3);

    assert!(receive_now(&*queue, QueueName::Payments).await.is_empty(), "queues are separate");
    assert!(receive_now(&*queue, QueueName::Fulfillment).await.is_empty(), "queues are separate");
    assert!(receive_now(&*queue, QueueName::Orders).await.is_empty(), "received messages are hidden");
    for delivery in &got {
        queue.delete(QueueName::Orders, &delivery.receipt).await.expect("delete");
    }
    assert!(queue.dead_letters(QueueName::Orders, 10).await.expect("dead letters").is_empty());
}

async fn delayed_messages_stay_hidden_until_due(queue: Arc<dyn Queue>) {
    let started = Instant::now();
    queue.send(QueueName::Payments, &message("later", None), Duration::seconds(2)).await.expect("send");
    queue
        .send(QueueName::Payments, &message("clamped", None), Duration::hours(2))
        .await
        .expect("a long delay is clamped");
    queue.send(QueueName::Payments, &message("now", None), Duration::seconds(-5)).await.expect("send");

    let now = receive_n(&*queue, QueueName::Payments, 1, LONG).await;
    assert_eq!(now[0].body, "now");
    assert!(receive_now(&*queue, QueueName::Payments).await.is_empty(), "the delayed ones are hidden");
    assert!(started.elapsed().as_millis() < 1800, "too slow to tell a 2 s delay apart");

    let later = receive_within(&*queue, QueueName::Payments, LONG, Duration::seconds(5)).await;
    assert_eq!(later.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(), ["later"]);
    assert!(started.elapsed().as_millis() >= 1900, "delivered after {:?}", started.elapsed());
    assert!(receive_now(&*queue, QueueName::Payments).await.is_empty(), "the 15-minute one is still hidden");
}

async fn unacknowledged_messages_come_back_after_the_visibility_timeout(queue: Arc<dyn Queue>) {
    queue.send(QueueName::Fulfillment, &message("ship", Some("req-2")), Duration::ZERO).await.expect("send");
    let first = receive_n(&*queue, QueueName::Fulfillment, 1, Duration::seconds(1)).await.remove(0);
    assert_eq!(first.receive_count, 1);
    assert!(receive_now(&*queue, QueueName::Fulfillment).await.is_empty(), "hidden while leased");

    let again = receive_within(&*queue, QueueName::Fulfillment, LONG, Duration::seconds(4)).await;
    assert_eq!(again.len(), 1, "{again:?}");
    let second = &again[0];
    assert_eq!((&second.message_id, &second.body), (&first.message_id, &first.body));
    assert_eq!(second.correlation_id.as_deref(), Some("req-2"));
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt, first.receipt, "each delivery has its own receipt");
}

async fn change_visibility_brings_back_or_holds_a_message(queue: Arc<dyn Queue>) {
    queue.send(QueueName::Orders, &message("retry me", None), Duration::ZERO).await.expect("send");
    let first = receive_n(&*queue, QueueName::Orders, 1, LONG).await.remove(0);

    queue.change_visibility(QueueName::Orders, &first.receipt, Duration::ZERO).await.expect("release");
    let second = receive_n(&*queue, QueueName::Orders, 1, Duration::seconds(1)).await.remove(0);
    assert_eq!((&second.message_id, second.receive_count), (&first.message_id, 2));

    queue.change_visibility(QueueName::Orders, &second.receipt, LONG).await.expect("extend");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(receive_now(&*queue, QueueName::Orders).await.is_empty(), "the extension outlasts the 1 s lease");
}

async fn deleted_messages_are_gone(queue: Arc<dyn Queue>) {
    queue.send(QueueName::Payments, &message("keep", None), Duration::ZERO).await.expect("send");
    queue.send(QueueName::Payments, &message("drop", None), Duration::ZERO).await.expect("send");
    let got = receive_n(&*queue, QueueName::Payments, 2, Duration::seconds(1)).await;
    let dropped = got.iter().find(|d| d.body == "drop").expect("drop");
    queue.delete(QueueName::Payments, &dropped.receipt).await.expect("delete");
    queue.delete(QueueName::Payments, &dropped.receipt).await.expect("deleting twice is harmless");

    let mut back = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs() < 3 {
        back.extend(receive_within(&*queue, QueueName::Payments, LONG, Duration::seconds(1)).await);
    }
    assert_eq!(back.iter().map(|d| (d.body.as_str(), d.receive_count)).collect::<Vec<_>>(), [("keep", 2)]);
}

async fn too_many_receives_move_a_message_to_the_dead_letters(queue: Arc<dyn Queue>) {
    queue.send(QueueName::Orders, &message("poison", Some("req-dlq")), Duration::ZERO).await.expect("send");
    let mut message_id = None;
    for expected in 1..=MAX_RECEIVES {
        let delivery = receive_n(&*queue, QueueName::Orders, 1, LONG).await.remove(0);
        assert_eq!(delivery.receive_count, expected);
        message_id.get_or_insert(delivery.message_id.clone());
        queue.change_visibility(QueueName::Orders, &delivery.receipt, Duration::ZERO).await.expect("fail it");
    }
    let after_last = receive_within(&*queue, QueueName::Orders, LONG, Duration::seconds(1)).await;
    assert!(after_last.is_empty(), "delivered beyond max receives: {after_last:?}");

    for _ in 0..2 {
        let dead = queue.dead_letters(QueueName::Orders, 10).await.expect("dead letters");
        assert_eq!(dead.len(), 1, "peeking does not remove: {dead:?}");
        assert_eq!(Some(&dead[0].message_id), message_id.as_ref());
        assert_eq!((dead[0].body.as_str(), dead[0].correlation_id.as_deref()), ("poison", Some("req-dlq")));
    }
    assert!(receive_now(&*queue, QueueName::Orders).await.is_empty(), "dead letters are not delivered");
    assert!(queue.dead_letters(QueueName::Payments, 10).await.expect("dead letters").is_empty());
}

/// Fails on bodies starting with "poison", panics on "panic", handles the rest; every handler
/// first waits for all `batch` handlers to start, so a sequential batch would never finish.
struct FailOnPoison {
    started_together: Barrier,
}

#[async_trait]
impl Consumer for FailOnPoison {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.started_together.wait().await;
        if delivery.body.starts_with("poison") {
            Outcome::Retry { after: Duration::seconds(1) }
        } else if delivery.body == "panic" {
            panic!("a consumer bug, contained to its own message");
        } else {
            Outcome::Done
        }
    }
}

async fn process_batch_reports_exactly_the_failures(queue: Arc<dyn Queue>) {
    let bodies = ["a", "poison-1", "b", "panic", "poison-2", "c"];
    for body in bodies {
        queue.send(QueueName::Fulfillment, &message(body, Some(body)), Duration::ZERO).await.expect("send");
    }
    let deliveries = receive_n(&*queue, QueueName::Fulfillment, bodies.len(), LONG).await;
    let consumer = FailOnPoison { started_together: Barrier::new(bodies.len()) };

    let failed = tokio::time::timeout(std::time::Duration::from_secs(5), process_batch(&consumer, &deliveries))
        .await
        .expect("the batch is handled concurrently");
    let expected: HashSet<&str> = deliveries
        .iter()
        .filter(|d| d.body.starts_with("poison") || d.body == "panic")
        .map(|d| d.message_id.as_str())
        .collect();
    assert_eq!(failed.len(), expected.len(), "{failed:?}");
    assert_eq!(failed.iter().map(String::as_str).collect::<HashSet<_>>(), expected);
}

/// Records what it handled (body → receive count); "flaky" asks for one retry first.
#[derive(Default)]
struct Recorder {
    done: Mutex<HashMap<String, u32>>,
    retried: Mutex<bool>,
}

#[async_trait]
impl Consumer for Recorder {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        if delivery.body == "flaky" {
            let mut retried = self.retried.lock().expect("lock");
            if !*retried {
                *retried = true;
                return Outcome::Retry { after: Duration::seconds(1) };
            }
        }
        self.done.lock().expect("lock").insert(delivery.body.clone(), delivery.receive_count);
        Outcome::Done
    }
}

async fn local_worker_drains_the_queue_and_stops_on_shutdown(queue: Arc<dyn Queue>) {
    let mut bodies: Vec<String> = (0..11).map(|i| format!("m-{i}")).collect();
    bodies.push("flaky".to_owned());
    for body in &bodies {
        queue.send(QueueName::Fulfillment, &message(body, Some("req-w")), Duration::ZERO).await.expect("send");
    }

    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_local_worker(
        Arc::clone(&queue),
        QueueName::Fulfillment,
        Arc::clone(&recorder) as Arc<dyn Consumer>,
        Duration::seconds(2),
        async {
            let _ = stopped.await;
        },
    ));

    let started = Instant::now();
    while recorder.done.lock().expect("lock").len() < bodies.len() {
        assert!(started.elapsed().as_secs() < 15, "not drained: {:?}", recorder.done.lock().expect("lock"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.send(()).expect("worker still running");
    tokio::time::timeout(std::time::Duration::from_secs(5), worker)
        .await
        .expect("the worker stops on shutdown")
        .expect("the worker did not panic");

    let done = recorder.done.lock().expect("lock").clone();
    assert_eq!(done.keys().collect::<HashSet<_>>(), bodies.iter().collect::<HashSet<_>>());
    assert_eq!(done["flaky"], 2, "the retry came back as a second delivery");
    // Anything not deleted would reappear when the worker's 2 s visibility timeout ends.
    let left = receive_within(&*queue, QueueName::Fulfillment, LONG, Duration::seconds(3)).await;
    assert!(left.is_empty(), "acknowledged messages came back: {left:?}");
    assert!(queue.dead_letters(QueueName::Fulfillment, 10).await.expect("dead letters").is_empty());
}
