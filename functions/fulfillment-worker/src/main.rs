//! The `fulfillment-worker` Lambda function: consumer in `orderly::workers`.

use orderly::workers::FulfillmentWorker;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    orderly::lambda::serve_worker(|orderly| Ok(FulfillmentWorker::new(orderly))).await
}
