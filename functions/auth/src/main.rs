//! The `auth` Lambda function: routes in `orderly::http::auth`.

use orderly::http::{app, auth};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|orderly| app(auth::routes(), orderly)).await
}
