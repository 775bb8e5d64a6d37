//! The `auth` Lambda function: routes in `orderly::http::auth`.

use orderly::http::{app, auth};
use orderly::lambda::Needs;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(Needs::Store, |orderly| app(auth::routes(), orderly)).await
}
