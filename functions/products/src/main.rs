//! The `products` Lambda function: routes in `orderly::http::products`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|cold, _| Ok(orderly::http::products::routes(cold.catalog()))).await
}
