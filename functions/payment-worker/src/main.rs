//! The `payment-worker` Lambda function: consumer in `orderly::workers`.

use orderly::workers::PaymentWorker;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    orderly::lambda::serve_worker(|orderly| {
        Ok(PaymentWorker::new(orderly, orderly::config::circuit_breaker_from_env()?))
    })
    .await
}
