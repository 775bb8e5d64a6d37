//! The `payments` Lambda function: routes in `orderly::http::payments`.

use orderly::domain::Payments;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|cold, _| Ok(orderly::http::payments::routes(Payments::new(cold.ledger()?)))).await
}
