//! The `customers` Lambda function: routes in `orderly::http::customers`.

use orderly::http::{app, customers};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|orderly| app(customers::routes(), orderly)).await
}
