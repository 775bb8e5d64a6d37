//! The `payment-worker` Lambda function: consumer in `orderly::workers`.

use orderly::domain::Payments;
use orderly::workers::PaymentWorker;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    orderly::lambda::serve_worker(|cold| {
        Ok(PaymentWorker::new(Payments::new(cold.ledger()?), orderly::config::circuit_breaker_from_env()?))
    })
    .await
}
