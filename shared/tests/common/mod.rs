//! Backends for the suites that run unchanged on every store: SQLite in a temporary file, and
//! DynamoDB Local (started by `scripts/test`) with a fresh set of tables per test.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod entities;
pub mod http;
pub mod logs;
pub mod mail;

use std::sync::Arc;

use orderly::clock::{Clock, SystemClock};
use orderly::domain::{AuthConfig, OrderSettings, PasswordCost, Services};
use orderly::gateway::{PaymentGateway, SimulatedGateway};
use orderly::queue::Queue;
use orderly::store::dynamodb::TableNames;
use orderly::store::{DynamoStore, SqliteStore, Store, dynamodb};

pub const DYNAMODB_ENDPOINT_VAR: &str = "ORDERLY_TEST_DYNAMODB_ENDPOINT";

/// A store in a file of its own (under cargo's per-target temp directory), so the suites run
/// the engine as the local server does: group commit on the writer, reads on reader connections.
pub fn sqlite_store() -> Arc<dyn Store> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("store-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Arc::new(SqliteStore::open(&dir.join("orderly.sqlite3")).expect("SQLite store"))
}

/// A DynamoDB Local client. Without the emulator the test fails, saying how to get one:
/// a run never skips the production backend silently.
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let endpoint = std::env::var(DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{DYNAMODB_ENDPOINT_VAR} is not set. Run ./scripts/test, which installs and starts \
             DynamoDB Local, or start it yourself and export {DYNAMODB_ENDPOINT_VAR}=http://127.0.0.1:PORT"
        )
    });
    aws_sdk_dynamodb::Client::new(&orderly::aws::emulator_sdk_config(&endpoint))
}

pub async fn dynamodb_store() -> Arc<dyn Store> {
    let client = dynamodb_client().await;
    let tables = TableNames::with_prefix(&format!("t{}-", uuid::Uuid::now_v7().simple()));
    dynamodb::schema::create_tables(&client, &tables).await.expect("create tables in DynamoDB Local");
    Arc::new(DynamoStore::new(client, tables))
}

pub const TEST_SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// Auth settings for tests: argon2 at a tenth of the production memory cost so hundreds of
/// sign-ups stay quick (the production cost is exercised in `auth.rs`).
pub fn test_auth() -> AuthConfig {
    AuthConfig::new(TEST_SECRET, None, time::Duration::minutes(15))
        .expect("valid secret")
        .with_cost(PasswordCost { memory_kib: 2048, iterations: 1 })
}

/// Every service over `store`, on the system clock, an in-memory queue and the simulated
/// gateway.
pub fn orderly(store: Arc<dyn Store>) -> Services {
    orderly_with(store, Arc::new(SystemClock), test_auth()).services()
}

/// The parts of [`Services`] a test may swap before building them.
pub struct Wiring {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    auth: AuthConfig,
    queue: Option<Arc<dyn Queue>>,
    gateway: Arc<dyn PaymentGateway>,
    settings: OrderSettings,
    mailer: Arc<dyn orderly::mail::Mailer>,
}

pub fn orderly_with(store: Arc<dyn Store>, clock: Arc<dyn Clock>, auth: AuthConfig) -> Wiring {
    Wiring {
        store,
        clock,
        auth,
        queue: None,
        gateway: Arc::new(SimulatedGateway::default()),
        settings: OrderSettings::default(),
        mailer: Arc::new(mail::RecordingMailer::default()),
    }
}

impl Wiring {
    pub fn with_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn with_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = gateway;
        self
    }

    pub fn with_mailer(mut self, mailer: Arc<dyn orderly::mail::Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    pub fn with_order_settings(mut self, settings: OrderSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Without a queue of its own, an in-memory one on the same clock.
    pub fn services(self) -> Services {
        let queue = self.queue.unwrap_or_else(|| {
            Arc::new(orderly::queue::SqliteQueue::in_memory(self.clock.clone(), 5).expect("in-memory queue"))
        });
        Services::new(self.store, self.clock, self.auth, queue, self.gateway, self.settings, self.mailer)
    }
}

/// Generates `sqlite::name` and `dynamodb::name` tests from `async fn name(Arc<dyn Store>)`.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::sqlite_store()).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::dynamodb_store().await).await
                }
            )*
        }
    };
}

pub const SQS_ENDPOINT_VAR: &str = "ORDERLY_TEST_SQS_ENDPOINT";

/// An SQS client for moto's server. Without the emulator the test fails, saying how to get one:
/// a run never skips the production backend silently.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    let endpoint = std::env::var(SQS_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{SQS_ENDPOINT_VAR} is not set. Run ./scripts/test, which installs and starts moto's \
             server, or start it yourself (.tools/py/bin/moto_server -H 127.0.0.1 -p PORT) and export \
             {SQS_ENDPOINT_VAR}=http://127.0.0.1:PORT"
        )
    });
    aws_sdk_sqs::Client::new(&orderly::aws::emulator_sdk_config(&endpoint))
}

/// SQS queues (and their DLQs) on moto, fresh for each test, redriving after `max_receives`.
pub async fn sqs_queue(max_receives: u32) -> Arc<dyn orderly::queue::Queue> {
    let client = sqs_client().await;
    let prefix = format!("t{}-", uuid::Uuid::now_v7().simple());
    let urls = orderly::queue::create_queues(&client, &prefix, max_receives).await.expect("create queues in moto");
    Arc::new(orderly::queue::SqsQueue::new(client, urls))
}

/// The embedded queue in memory, on the system clock (the shared suite times real delays).
pub fn sqlite_queue(max_receives: u32) -> Arc<dyn orderly::queue::Queue> {
    Arc::new(orderly::queue::SqliteQueue::in_memory(Arc::new(SystemClock), max_receives).expect("in-memory queue"))
}

/// One pass of a local worker over `name`, at the queue clock's time: handles what is visible,
/// deletes what is done, re-times retries. Returns how many deliveries it handled.
pub async fn drain(
    queue: &dyn orderly::queue::Queue,
    name: orderly::queue::QueueName,
    consumer: &dyn orderly::queue::Consumer,
) -> usize {
    use orderly::queue::Outcome;
    let mut handled = 0;
    loop {
        let batch = queue.receive(name, 10, time::Duration::seconds(30), time::Duration::ZERO).await.expect("receive");
        if batch.is_empty() {
            return handled;
        }
        for delivery in batch {
            match consumer.handle(&delivery).await {
                Outcome::Done => queue.delete(name, &delivery.receipt).await.expect("delete"),
                Outcome::Retry { after } => {
                    queue.change_visibility(name, &delivery.receipt, after).await.expect("retry")
                }
            }
            handled += 1;
        }
    }
}
