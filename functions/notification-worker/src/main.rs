//! The `notification-worker` Lambda function: new notices from the orders table's stream and
//! notification queue messages, delivered by the consumer in `orderly::workers` with SES.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    orderly::lambda::serve_notification_worker().await
}
