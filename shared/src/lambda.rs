//! Cold-start wiring for the Lambda functions: AWS config, the DynamoDB store and the queue
//! client are built once per execution environment ([`ColdStart`]) and every invocation it
//! serves shares them. Each function builds only the services its routes or messages use.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use serde_json::Value;

use crate::alerts::{AlertPublisher, LoggedAlerts, sns::SnsAlerts};
#[cfg(feature = "passwords")]
use crate::domain::{Accounts, Customers, Hasher};
use crate::domain::{
    Alerts, AuthConfig, Catalog, CustomerDirectory, Inventory, Ledger, NoticeBoard, Orders, Sessions, Sweeper,
};
use crate::error::Error;
use crate::queue::{Queue, QueueUrls, SqsQueue};
use crate::store::DynamoStore;
use crate::workers::OrderWorker;

/// What a function is built from, configured from the environment: table names and queue
/// URLs, JWT secret, order rules, region, `AWS_ENDPOINT_URL*` for emulators.
pub struct ColdStart {
    config: aws_config::SdkConfig,
    store: Arc<DynamoStore>,
    clock: Arc<dyn Clock>,
}

impl ColdStart {
    pub async fn load() -> Self {
        let config = crate::aws::lambda_sdk_config();
        let mut store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), crate::config::table_names_from_env());
        // The deployed stack relays notices from the orders table's stream (template.yaml).
        if crate::config::var_or("NOTICE_RELAY", "queue") == "stream" {
            store = store.with_notices_relayed_by_stream();
        }
        Self { config, store: Arc::new(store), clock: Arc::new(SystemClock) }
    }

    fn auth(&self) -> Result<Arc<AuthConfig>, String> {
        Ok(Arc::new(crate::config::auth_from_env(None)?))
    }

    pub fn sessions(&self) -> Result<Sessions, String> {
        Ok(Sessions::new(self.store.clone(), self.clock.clone(), self.auth()?))
    }

    #[cfg(feature = "passwords")]
    pub fn accounts(&self, sessions: Sessions) -> Result<Accounts, String> {
        let auth = self.auth()?;
        let hasher = Hasher::per_core(auth.cost);
        Ok(Accounts::new(self.store.clone(), self.clock.clone(), auth, sessions, hasher, self.queue()?))
    }

    #[cfg(feature = "passwords")]
    pub fn customers(&self) -> Result<Customers, String> {
        let auth = self.auth()?;
        let hasher = Hasher::per_core(auth.cost);
        Ok(Customers::new(self.store.clone(), self.clock.clone(), hasher, auth.limits, self.queue()?))
    }

    /// Customers' notices as they read them.
    pub fn notice_board(&self) -> NoticeBoard {
        NoticeBoard::new(self.store.clone())
    }

    /// Delivering notices by email with Amazon SES, from `MAIL_FROM` (a verified identity).
    #[cfg(feature = "ses")]
    pub fn notifier(&self) -> Result<crate::domain::Notifier, String> {
        let sender = crate::mail::compose::sender(&crate::config::var_or("MAIL_FROM", ""))?;
        let mailer = crate::mail::ses::SesMailer::new(aws_sdk_sesv2::Client::new(&self.config), sender);
        Ok(crate::domain::Notifier::new(self.store.clone(), Arc::new(mailer), self.clock.clone()))
    }

    /// Reading customers, without the password hashing sign-up needs.
    pub fn customers_directory(&self) -> CustomerDirectory {
        CustomerDirectory::new(self.store.clone())
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::new(self.store.clone(), self.clock.clone())
    }

    /// The back office's inventory; its adjustments keep `Idempotency-Key`s as long as orders do.
    pub fn inventory(&self) -> Result<Inventory, String> {
        let idempotency_ttl = crate::config::order_settings_from_env()?.idempotency_ttl;
        Ok(Inventory::new(self.store.clone(), self.store.clone(), self.clock.clone(), idempotency_ttl))
    }

    /// Low-stock alerts, published to the SNS topic `LOW_STOCK_TOPIC_ARN` names (without one,
    /// only logged: the back office still lists them).
    pub fn alerts(&self) -> Alerts {
        let publisher: Arc<dyn AlertPublisher> = match std::env::var("LOW_STOCK_TOPIC_ARN") {
            Ok(arn) if !arn.is_empty() => Arc::new(SnsAlerts::new(aws_sdk_sns::Client::new(&self.config), arn)),
            _ => Arc::new(LoggedAlerts),
        };
        Alerts::new(self.store.clone(), publisher, self.clock.clone())
    }

    /// The SQS queues (and their dead-letter queues) the environment names.
    pub fn queue(&self) -> Result<Arc<dyn Queue>, String> {
        Ok(Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&self.config), QueueUrls::from_env()?)))
    }

    /// The order side: stores, the SQS queues, the gateway and the order rules.
    pub fn ledger(&self) -> Result<Ledger, String> {
        let queue = self.queue()?;
        // The simulated gateway stands in for a real card processor (see crate::gateway).
        let gateway = crate::config::simulated_gateway_from_env()?;
        Ok(Ledger::new(
            self.store.clone(),
            self.store.clone(),
            self.clock.clone(),
            queue,
            Arc::new(gateway),
            crate::config::order_settings_from_env()?,
        ))
    }
}

#[cfg(feature = "lambda-http")]
/// Runs an HTTP function: logging first, then its routes built once (with the session check
/// every function shares), then the Lambda runtime loop serving API Gateway events with them.
/// Fails on missing or invalid configuration, so a broken deploy fails at cold start.
pub async fn serve_http(
    routes: impl FnOnce(&ColdStart, &Sessions) -> Result<axum::Router, String>,
) -> Result<(), lambda_http::Error> {
    crate::telemetry::init_lambda();
    let cold = ColdStart::load().await;
    let app = cold
        .sessions()
        .and_then(|sessions| Ok(crate::http::app(routes(&cold, &sessions)?, sessions)))
        .inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    lambda_http::run(app).await
}

/// Runs a queue worker function: logging first, then its consumer built once, then the Lambda
/// runtime loop handing each SQS batch to it and answering with partial batch failures (the
/// event source mapping must set `FunctionResponseTypes: [ReportBatchItemFailures]`). A
/// `Retry` is reported as a failure, so SQS delivers that message again after the queue's
/// visibility timeout; the others are deleted by Lambda. See [`crate::queue::worker`].
pub async fn serve_worker<C: crate::queue::Consumer>(
    consumer: impl FnOnce(&ColdStart) -> Result<C, String>,
) -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_lambda();
    let cold = ColdStart::load().await;
    let consumer = Arc::new(consumer(&cold).inspect_err(|e| tracing::error!(error = %e, "configuration"))?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| {
            let consumer = Arc::clone(&consumer);
            async move {
                let response = crate::queue::worker::handle_sqs_event(&*consumer, event.payload).await;
                Ok::<_, lambda_runtime::Error>(response)
            }
        },
    ))
    .await
}

/// Runs the notification worker: new notices from the orders table's stream (the deployed
/// relay, see [`crate::store::dynamodb::stream`]) and notification queue messages. A notice
/// the stream brings that cannot be sent now (the mail service down, another delivery holding
/// it) is handed to the notifications queue, which retries it with its visibility timeout and
/// dead-letters a `Deliver` message that can be redriven; the stream itself is retried only for
/// a record whose hand-off failed. SQS batches answer with partial batch failures as usual.
#[cfg(feature = "ses")]
pub async fn serve_notification_worker() -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_lambda();
    let cold = ColdStart::load().await;
    let worker = cold
        .notifier()
        .and_then(|notifier| Ok((crate::workers::NotificationWorker::new(notifier), cold.queue()?)))
        .inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let worker = Arc::new(worker);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<Value>| {
        let worker = Arc::clone(&worker);
        async move {
            let (consumer, queue) = &*worker;
            notification_event(consumer, queue.as_ref(), event.payload).await.map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

/// A stream batch (records from `aws:dynamodb`) or an SQS batch, handled by `consumer`; what the
/// stream brings and cannot be sent now goes to `queue` (see [`serve_notification_worker`]).
#[cfg(feature = "ses")]
async fn notification_event(
    consumer: &dyn crate::queue::Consumer,
    queue: &dyn Queue,
    event: Value,
) -> Result<Value, Error> {
    let source = event.pointer("/Records/0/eventSource").and_then(Value::as_str);
    let response = if source == Some("aws:dynamodb") {
        let stream =
            serde_json::from_value(event).map_err(|e| Error::BadRequest(format!("not a stream event: {e}")))?;
        let deliveries =
            crate::store::dynamodb::stream::notice_deliveries(stream, crate::domain::NoticeMessage::delivery);
        let mut response = aws_lambda_events::sqs::SqsBatchResponse::default();
        // A record whose notice was neither sent nor handed to the queue: the stream retries it.
        for sequence_number in crate::workers::deliver_relayed(consumer, queue, &deliveries).await {
            response.add_failure(sequence_number);
        }
        response
    } else {
        let batch = serde_json::from_value(event).map_err(|e| Error::BadRequest(format!("not an SQS event: {e}")))?;
        crate::queue::worker::handle_sqs_event(consumer, batch).await
    };
    serde_json::to_value(response).map_err(|e| Error::Internal(format!("batch response: {e}")))
}

/// Runs the order worker: SQS batches of release messages, and the scheduled sweep.
pub async fn serve_order_worker() -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_lambda();
    let cold = ColdStart::load().await;
    let ledger = cold.ledger().inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let sweeper = Sweeper::new(ledger.clone(), cold.store.clone(), cold.alerts(), cold.store.clone());
    let worker = Arc::new((OrderWorker::new(Orders::new(ledger)), sweeper));
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<Value>| {
        let worker = Arc::clone(&worker);
        async move {
            let (releases, sweeper) = &*worker;
            order_worker_event(releases, sweeper, event.payload).await.map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}

/// The order worker's two kinds of event: SQS batches (`Records`) and the scheduled sweep (an
/// EventBridge schedule event). Answers the SQS batch response, or the sweep's report.
async fn order_worker_event(releases: &OrderWorker, sweeper: &Sweeper, event: Value) -> Result<Value, Error> {
    if event.get("Records").is_some() {
        let batch = serde_json::from_value(event).map_err(|e| Error::BadRequest(format!("not an SQS event: {e}")))?;
        let response = crate::queue::worker::handle_sqs_event(releases, batch).await;
        return serde_json::to_value(response).map_err(|e| Error::Internal(format!("batch response: {e}")));
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let report = sweeper.sweep().await?;
        return serde_json::to_value(report).map_err(|e| Error::Internal(format!("sweep report: {e}")));
    }
    Err(Error::BadRequest("expected an SQS batch or a scheduled event".into()))
}

#[cfg(all(test, feature = "ses", feature = "sqlite"))]
mod tests {
    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::queue::{Consumer, Delivery, Outcome, QueueName, SqliteQueue};

    /// Sends nothing now: every delivery is to be retried.
    struct MailServiceDown;

    #[async_trait]
    impl Consumer for MailServiceDown {
        async fn handle(&self, _: &Delivery) -> Outcome {
            Outcome::Retry { after: time::Duration::seconds(30) }
        }
    }

    #[tokio::test]
    async fn a_stream_notice_that_cannot_be_sent_now_is_handed_to_the_queue() {
        let clock = Arc::new(crate::clock::FakeClock::new(time::OffsetDateTime::now_utc()));
        let queue = SqliteQueue::in_memory(clock.clone(), 5).expect("queue");
        let notice = uuid::Uuid::now_v7();
        let event = json!({"Records": [{"eventName": "INSERT", "eventSource": "aws:dynamodb",
            "dynamodb": {"Keys": {"pk": {"S": format!("NOTICE#{notice}")}}, "SequenceNumber": "42"}}]});
        let response = notification_event(&MailServiceDown, &queue, event).await.expect("handled");
        assert_eq!(response, json!({"batchItemFailures": []}), "the stream moves on");
        clock.advance(crate::workers::HANDED_OFF_RETRY);
        let queued =
            queue.receive(QueueName::Notifications, 10, time::Duration::seconds(30), time::Duration::ZERO).await;
        let bodies: Vec<Value> =
            queued.expect("receive").iter().map(|d| serde_json::from_str(&d.body).expect("JSON")).collect();
        assert_eq!(bodies, [json!({"kind": "deliver", "notice_id": notice})]);
    }
}
