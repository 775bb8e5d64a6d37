//! The `auth` Lambda function: routes in `orderly::http::auth`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|cold, sessions| {
        Ok(orderly::http::auth::routes(cold.accounts(sessions.clone())?, sessions.clone()))
    })
    .await
}
