//! The `orders` Lambda function: routes in `orderly::http::orders`.

use orderly::domain::{Fulfillment, Orders, Payments};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|cold, _| {
        let ledger = cold.ledger()?;
        Ok(orderly::http::orders::routes(
            Orders::new(ledger.clone()),
            Payments::new(ledger.clone()),
            Fulfillment::new(ledger),
        ))
    })
    .await
}
