//! The `admin` Lambda function: the back office (`orderly::http::admin`) and the API's
//! OpenAPI document (`orderly::http::docs`).

use orderly::domain::{BackOffice, Orders, Payments};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|cold, _| {
        let ledger = cold.ledger()?;
        // The back office, and the API's document.
        let back_office = orderly::http::admin::routes(BackOffice {
            orders: Orders::new(ledger.clone()),
            payments: Payments::new(ledger),
            catalog: cold.catalog(),
            inventory: cold.inventory()?,
            alerts: cold.alerts(),
            customers: cold.customers_directory(),
            queue: cold.queue()?,
        });
        Ok(back_office.merge(orderly::http::docs::routes()))
    })
    .await
}
