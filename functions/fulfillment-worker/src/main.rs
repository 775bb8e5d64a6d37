//! The `fulfillment-worker` Lambda function: consumer in `orderly::workers`.

use orderly::domain::Fulfillment;
use orderly::workers::FulfillmentWorker;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    orderly::lambda::serve_worker(|cold| Ok(FulfillmentWorker::new(Fulfillment::new(cold.ledger()?)))).await
}
