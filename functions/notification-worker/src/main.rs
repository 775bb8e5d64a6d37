//! The `notification-worker` Lambda function: consumer in `orderly::workers`, sending with SES.

use orderly::workers::NotificationWorker;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    orderly::lambda::serve_worker(|cold| Ok(NotificationWorker::new(cold.notifier()?))).await
}
