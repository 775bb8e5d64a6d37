//! The `products` Lambda function: routes in `orderly::http::products`.

use orderly::http::{app, products};
use orderly::lambda::Needs;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(Needs::Store, |orderly| app(products::routes(), orderly)).await
}
