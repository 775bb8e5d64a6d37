//! The `order-worker` Lambda function: consumer in `orderly::workers`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    orderly::lambda::serve_order_worker().await
}
