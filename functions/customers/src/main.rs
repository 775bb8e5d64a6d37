//! The `customers` Lambda function: routes in `orderly::http::customers`.

use orderly::http::{app, customers};
use orderly::lambda::Needs;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(Needs::Store, |orderly| app(customers::routes(), orderly)).await
}
