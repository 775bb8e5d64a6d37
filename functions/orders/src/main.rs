//! The `orders` Lambda function: routes in `orderly::http::orders`.

use orderly::http::{app, orders};
use orderly::lambda::Needs;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(Needs::StoreAndQueues, |orderly| app(orders::routes(), orderly)).await
}
