//! The `payments` Lambda function: routes in `orderly::http::payments`.

use orderly::http::{app, payments};
use orderly::lambda::Needs;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(Needs::StoreAndQueues, |orderly| app(payments::routes(), orderly)).await
}
