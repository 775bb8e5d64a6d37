//! `orderly-local`: every HTTP function's routes in one process.
//!
//! Configuration (all optional):
//! - `ORDERLY_ADDR`: listen address, default `127.0.0.1:3000`.
//! - `ORDERLY_DATA_DIR`: where the embedded database lives, default `.data` in the repository.
//! - `ORDERLY_STORE`: `sqlite` (default) or `dynamodb` (uses the AWS environment, e.g.
//!   `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local, and creates missing tables).

use std::path::PathBuf;
use std::sync::Arc;

use orderly::clock::SystemClock;
use orderly::config::{var_or, TableNames};
use orderly::domain::Orderly;
use orderly::http::{app, customers, products};
use orderly::store::{dynamodb, DynamoStore, SqliteStore, Store};

const DEFAULT_DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.data");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    orderly::telemetry::init_local();
    let addr = var_or("ORDERLY_ADDR", "127.0.0.1:3000");
    let store = open_store().await?;
    let orderly = Orderly::new(store, Arc::new(SystemClock));
    let routes = customers::routes().merge(products::routes());

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "orderly-local listening");
    axum::serve(listener, app(routes, orderly)).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("orderly-local stopped");
    Ok(())
}

async fn open_store() -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    match var_or("ORDERLY_STORE", "sqlite").as_str() {
        "sqlite" => {
            let dir = PathBuf::from(var_or("ORDERLY_DATA_DIR", DEFAULT_DATA_DIR));
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("orderly.sqlite3");
            tracing::info!(path = %path.display(), "embedded store");
            Ok(Arc::new(SqliteStore::open(&path)?))
        }
        "dynamodb" => {
            let config = aws_config::load_from_env().await;
            let client = aws_sdk_dynamodb::Client::new(&config);
            let tables = TableNames::from_env();
            dynamodb::schema::create_tables(&client, &tables).await?;
            tracing::info!(?tables, "dynamodb store");
            Ok(Arc::new(DynamoStore::new(client, tables)))
        }
        other => Err(format!("ORDERLY_STORE must be sqlite or dynamodb, not {other:?}").into()),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
