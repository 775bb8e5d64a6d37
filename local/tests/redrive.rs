//! `orderly-local redrive <queue>` on a data directory: a queue's dead letters go back onto it,
//! to be delivered again with all their deliveries; another queue's stay where they are.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use orderly::clock::FakeClock;
use orderly::queue::{OutgoingMessage, Queue, QueueName, SqliteQueue};
use orderly::store::SqliteStore;
use time::{Duration, OffsetDateTime};

fn redrive(data_dir: &Path, queue: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderly-local"))
        .args(["redrive", queue])
        .env("ORDERLY_DATA_DIR", data_dir)
        .env_remove("ORDERLY_STORE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run orderly-local redrive")
}

/// The data directory's store and queue, as the server opens them, each message dead after
/// one delivery.
fn open(data_dir: &Path, clock: Arc<FakeClock>) -> SqliteQueue {
    SqliteStore::open_with_queue(&data_dir.join("orderly.sqlite3"), clock, 1).expect("open").1
}

async fn kill_one(queue: &SqliteQueue, clock: &FakeClock, name: QueueName, body: &str) {
    queue.send(name, &OutgoingMessage::new(body), Duration::ZERO).await.expect("send");
    for _ in 0..2 {
        queue.receive(name, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
        clock.advance(Duration::minutes(1));
    }
    assert_eq!(queue.dead_letter_count(name).await.expect("count"), 1, "{name} dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_go_back_onto_their_queue() {
    let dir = std::env::temp_dir().join(format!("orderly-redrive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    {
        let queue = open(&dir, clock.clone());
        kill_one(&queue, &clock, QueueName::Payments, "a charge").await;
        kill_one(&queue, &clock, QueueName::Fulfillment, "a shipment").await;
    }

    let nowhere = redrive(&dir.join("empty"), "payments");
    assert!(!nowhere.status.success());
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("no queue at"), "never creates one");
    assert!(!dir.join("empty").exists());
    let unknown = redrive(&dir, "refunds");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("orders, payments, fulfillment, notifications"));
    let moved = redrive(&dir, "payments");
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    assert!(String::from_utf8_lossy(&moved.stdout).contains("1 dead letter(s) of the payments queue"));

    let queue = open(&dir, clock.clone());
    assert_eq!(queue.dead_letter_count(QueueName::Payments).await.expect("count"), 0);
    assert_eq!(queue.dead_letter_count(QueueName::Fulfillment).await.expect("count"), 1, "another queue's stay");
    let again = queue.receive(QueueName::Payments, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
    assert_eq!(again.iter().map(|d| (d.body.as_str(), d.receive_count)).collect::<Vec<_>>(), [("a charge", 1)]);
    drop(queue);
    let _ = std::fs::remove_dir_all(&dir);
}
