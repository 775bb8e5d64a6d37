//! Cold-start wiring for the Lambda functions: AWS config and the DynamoDB client are built
//! once per execution environment and shared by every invocation it serves.

use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::TableNames;
use crate::domain::Orderly;
use crate::store::DynamoStore;

/// The service over DynamoDB, configured from the environment (table names, JWT secret,
/// region, `AWS_ENDPOINT_URL*` for emulators). Fails on a missing or short JWT secret.
pub async fn orderly_on_dynamodb() -> Result<Orderly, String> {
    let auth = crate::config::auth_from_env(None)?;
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let store = DynamoStore::new(client, TableNames::from_env());
    Ok(Orderly::new(Arc::new(store), Arc::new(SystemClock), auth))
}

/// Runs an HTTP function: logging first, then its app built once over DynamoDB, then the
/// Lambda runtime loop serving API Gateway events with it.
pub async fn serve_http(app: impl FnOnce(Orderly) -> axum::Router) -> Result<(), lambda_http::Error> {
    crate::telemetry::init_lambda();
    let orderly = orderly_on_dynamodb().await.inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    lambda_http::run(app(orderly)).await
}
