//! Cold-start wiring for the Lambda functions: AWS config and the DynamoDB client are built
//! once per execution environment and shared by every invocation it serves.

use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::TableNames;
use crate::domain::Orderly;
use crate::queue::{QueueUrls, SqsQueue};
use crate::store::DynamoStore;

/// Which AWS clients a function needs besides DynamoDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Store,
    StoreAndQueues,
}

/// The service over DynamoDB (and SQS when asked), configured from the environment: table
/// names and queue URLs, JWT secret, order rules, region, `AWS_ENDPOINT_URL*` for emulators.
/// Fails on missing or invalid configuration, so a broken deploy fails at cold start.
pub async fn orderly_on_aws(needs: Needs) -> Result<Orderly, String> {
    let auth = crate::config::auth_from_env(None)?;
    let settings = crate::config::order_settings_from_env()?;
    let config = aws_config::load_from_env().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), TableNames::from_env());
    // The simulated gateway stands in for a real card processor (see crate::gateway).
    let gateway = crate::config::simulated_gateway_from_env()?;
    let orderly = Orderly::new(Arc::new(store), Arc::new(SystemClock), auth)
        .with_order_settings(settings)
        .with_gateway(Arc::new(gateway));
    Ok(match needs {
        Needs::Store => orderly,
        Needs::StoreAndQueues => {
            let urls = QueueUrls::from_env()?;
            orderly.with_queue(Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&config), urls)))
        }
    })
}

/// Runs an HTTP function: logging first, then its app built once, then the Lambda runtime
/// loop serving API Gateway events with it.
pub async fn serve_http(needs: Needs, app: impl FnOnce(Orderly) -> axum::Router) -> Result<(), lambda_http::Error> {
    crate::telemetry::init_lambda();
    let orderly = orderly_on_aws(needs).await.inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    lambda_http::run(app(orderly)).await
}

/// Runs a queue worker function: logging first, then its consumer built once from the
/// service, then the Lambda runtime loop handing each SQS batch to it and answering with
/// partial batch failures (the event source mapping must set `FunctionResponseTypes:
/// [ReportBatchItemFailures]`). A `Retry` is reported as a failure, so SQS delivers that
/// message again after the queue's visibility timeout; the others are deleted by Lambda.
/// See [`crate::queue::worker`].
pub async fn serve_worker<C: crate::queue::Consumer>(
    consumer: impl FnOnce(Orderly) -> Result<C, String>,
) -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_lambda();
    let orderly =
        orderly_on_aws(Needs::StoreAndQueues).await.inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let consumer = consumer(orderly).inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    run_sqs(consumer).await
}

async fn run_sqs<C: crate::queue::Consumer>(consumer: C) -> Result<(), lambda_runtime::Error> {
    let consumer = Arc::new(consumer);
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

/// Runs the order worker: SQS batches of release messages, and the scheduled sweep.
pub async fn serve_order_worker() -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_lambda();
    let orderly =
        orderly_on_aws(Needs::StoreAndQueues).await.inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
        let orderly = orderly.clone();
        async move {
            crate::workers::handle_order_worker_event(&orderly, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
