//! The `customers` Lambda function: routes in `orderly::http::customers`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    orderly::lambda::serve_http(|cold, _| Ok(orderly::http::customers::routes(cold.customers()?, cold.notice_board())))
        .await
}
