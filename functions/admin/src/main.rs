//! The `admin` Lambda function: the back office, routes in `orderly::http::admin`.

use orderly::domain::{BackOffice, Orders, Payments};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|cold, _| {
        let ledger = cold.ledger()?;
        Ok(orderly::http::admin::routes(BackOffice {
            orders: Orders::new(ledger.clone()),
            payments: Payments::new(ledger),
            catalog: cold.catalog(),
            inventory: cold.inventory(),
            alerts: cold.alerts(),
            customers: cold.customers_directory(),
            queue: cold.queue()?,
        }))
    })
    .await
}
