//! `orderly-local`: every HTTP function's routes in one process.
//!
//! Configuration (all optional):
//! - `ORDERLY_ADDR`: listen address, default `127.0.0.1:3000`.
//! - `ORDERLY_DATA_DIR`: where the embedded database (and the generated development JWT
//!   secret) live, default `.data` in the repository.
//! - `ORDERLY_STORE`: `sqlite` (default) or `dynamodb` (uses the AWS environment, e.g.
//!   `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local, and creates missing tables).
//! - `ORDERLY_ADMIN_USERNAME` + `ORDERLY_ADMIN_PASSWORD`: an admin created at start-up if
//!   missing. `orderly-local create-admin` does only that, then exits (for AWS: run it with
//!   `ORDERLY_STORE=dynamodb` and the stack's table names). `orderly-local reset-admin-password`
//!   sets an existing admin's password to `ORDERLY_ADMIN_PASSWORD` instead, and ends every
//!   session of that admin: the way back for an admin who forgot it.
//! - `MAIL_FROM`: the sender of customers' notices, default `Orderly <orders@orderly.localhost>`.
//!   Notices are written as `.eml` files under `ORDERLY_DATA_DIR/outbox/`, or sent through the
//!   SMTP relay `SMTP_URL` names (e.g. `smtp://127.0.0.1:1025`) when it is set.
//! - everything `orderly::config` reads (`JWT_SECRET`, token lifetime, login limits, order
//!   rules such as `COOLDOWN_SECONDS`).
//!
//! `orderly-local openapi` prints the OpenAPI document (what `docs/openapi.json` holds).
//! `orderly-local redrive <queue>` moves a queue's dead letters back onto it (the server may be
//! running: its workers then deliver them).
//!
//! Queues are always the embedded durable queue, drained by in-process workers: in the store's
//! file (`orderly.sqlite3`) with the embedded store, whose notices a relay delivers from the
//! notices table as the orders table's stream does on AWS; in `queues.sqlite3` with DynamoDB,
//! where each notice's delivery is queued after the write that saves it. A sweep runs every
//! `ORDERLY_SWEEP_SECONDS` (default 30).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use orderly::clock::{Clock, SystemClock};
use orderly::config::{
    auth_from_env, circuit_breaker_from_env, order_settings_from_env, simulated_gateway_from_env, var_or,
};
use orderly::domain::{Password, Services, Sweeper};
use orderly::http::local_app;
use orderly::mail::{Mailer, compose, eml::EmlOutbox, smtp::SmtpRelay};
use orderly::queue::{Consumer, QueueName, SqliteQueue, run_local_worker};
use orderly::store::sqlite::NoticeFeed;
use orderly::store::{DynamoStore, SqliteStore, Store, dynamodb};
use orderly::workers::{FulfillmentWorker, NotificationWorker, OrderWorker, PaymentWorker, run_local_notice_relay};
use tokio::sync::watch;

mod serve;

type BoxError = Box<dyn std::error::Error>;

// The server's many small, short-lived allocations (requests, JSON, statements' values) cost
// less in mimalloc than in the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.data");

/// What `orderly-local help` prints.
const USAGE: &str = "usage: orderly-local [openapi | redrive <queue> | create-admin | reset-admin-password | help]
  (no command)           serve the API on ORDERLY_ADDR (default 127.0.0.1:3000), data in ORDERLY_DATA_DIR
  openapi                print the OpenAPI document
  redrive <queue>        move a queue's dead letters back onto it
  create-admin           create the admin ORDERLY_ADMIN_USERNAME with ORDERLY_ADMIN_PASSWORD, if missing
  reset-admin-password   set that existing admin's password to ORDERLY_ADMIN_PASSWORD; ends its sessions
Configuration is by environment variables: see README.md.";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        None | Some("openapi" | "redrive" | "create-admin" | "reset-admin-password") => {}
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
    if command.as_deref() == Some("openapi") {
        // `docs/openapi.json` is this output: the test that compares them says to run it.
        println!("{}", serde_json::to_string_pretty(&orderly::http::openapi::document())?);
        return Ok(());
    }
    orderly::telemetry::init_local();
    let data_dir = PathBuf::from(var_or("ORDERLY_DATA_DIR", DEFAULT_DATA_DIR));
    if command.as_deref() == Some("redrive") {
        return redrive(&data_dir, std::env::args().nth(2).as_deref()).await;
    }
    std::fs::create_dir_all(&data_dir)?;
    let auth_config = auth_from_env(Some(development_secret(&data_dir)?))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, queue, notice_feed) = open_store_and_queue(&data_dir, clock.clone()).await?;
    let services = Services::new(
        store,
        clock,
        auth_config,
        queue.clone(),
        Arc::new(simulated_gateway_from_env()?),
        order_settings_from_env()?,
        mailer(&data_dir)?,
    );

    let admin = (std::env::var("ORDERLY_ADMIN_USERNAME").ok(), std::env::var("ORDERLY_ADMIN_PASSWORD").ok());
    if command.as_deref() == Some("reset-admin-password") {
        let (Some(username), Some(password)) = admin else {
            return Err("reset-admin-password needs ORDERLY_ADMIN_USERNAME and ORDERLY_ADMIN_PASSWORD".into());
        };
        services.accounts.reset_admin_password(&username, Password::new(password)).await?;
        println!("the password of admin {username} is set; every session of that admin has ended");
        return Ok(());
    }
    let create_admin_only = command.as_deref() == Some("create-admin");
    match admin {
        (Some(username), Some(password)) => {
            services.accounts.ensure_admin(&username, Password::new(password)).await?;
        }
        _ if create_admin_only => {
            return Err("create-admin needs ORDERLY_ADMIN_USERNAME and ORDERLY_ADMIN_PASSWORD".into());
        }
        _ => {}
    }
    if create_admin_only {
        return Ok(());
    }

    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut background = tokio::task::JoinSet::new();
    let notifications: Arc<dyn Consumer> = Arc::new(NotificationWorker::new(services.notifier.clone()));
    // Pollers per queue. Every order has a notice to email: without the embedded store's relay
    // they all come through the notifications queue, and one poller, one batch of ten at a
    // time, falls behind a busy server, where Lambda would scale the worker out.
    let notification_pollers = if notice_feed.is_some() { 2 } else { NOTIFICATION_POLLERS };
    let consumers: [(QueueName, Arc<dyn Consumer>, usize); 4] = [
        (QueueName::Orders, Arc::new(OrderWorker::new(services.orders.clone())), 1),
        (QueueName::Payments, Arc::new(PaymentWorker::new(services.payments.clone(), circuit_breaker_from_env()?)), 1),
        (QueueName::Fulfillment, Arc::new(FulfillmentWorker::new(services.fulfillment.clone())), 1),
        (QueueName::Notifications, notifications.clone(), notification_pollers),
    ];
    for (name, consumer, pollers) in consumers {
        for _ in 0..pollers {
            let worker = run_local_worker(queue.clone(), name, consumer.clone(), WORKER_VISIBILITY, until_stopped());
            background.spawn(worker);
        }
    }
    if let Some(feed) = notice_feed {
        background.spawn(run_local_notice_relay(feed, notifications, queue.clone(), until_stopped()));
    }
    background.spawn(sweep_periodically(services.sweeper.clone(), until_stopped()));

    let addr = var_or("ORDERLY_ADDR", "127.0.0.1:3000");
    let listener = serve::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "orderly-local listening");
    let limits = serve::Limits {
        header_read: std::time::Duration::from_secs(seconds_from_env("ORDERLY_HEADER_TIMEOUT_SECONDS", 10)?),
        body_read: std::time::Duration::from_secs(seconds_from_env("ORDERLY_BODY_TIMEOUT_SECONDS", 10)?),
        shutdown_grace: std::time::Duration::from_secs(seconds_from_env("ORDERLY_SHUTDOWN_GRACE_SECONDS", 10)?),
    };
    serve::serve(listener, local_app(&services), limits, shutdown_signal()).await;
    let _ = stop.send(true);
    while background.join_next().await.is_some() {}
    tracing::info!("orderly-local stopped");
    Ok(())
}

/// `orderly-local redrive <queue>`: moves the queue's dead letters back onto it, for the
/// workers of a running (or the next) server to deliver again: the local counterpart of the SQS
/// console's DLQ redrive.
/// It opens only the queue's file (the store's with the embedded store, `queues.sqlite3` with
/// DynamoDB), as the server's `ORDERLY_STORE` names it, and never creates one.
async fn redrive(data_dir: &Path, name: Option<&str>) -> Result<(), BoxError> {
    let names = QueueName::ALL.map(QueueName::as_str).join(", ");
    let Some(name) = QueueName::ALL.into_iter().find(|q| Some(q.as_str()) == name) else {
        return Err(format!("usage: orderly-local redrive <queue>, the queue one of {names}").into());
    };
    let file = match var_or("ORDERLY_STORE", "sqlite").as_str() {
        "dynamodb" => data_dir.join("queues.sqlite3"),
        _ => data_dir.join("orderly.sqlite3"),
    };
    if !file.exists() {
        return Err(
            format!("no queue at {} (ORDERLY_DATA_DIR and ORDERLY_STORE as the server's)", file.display()).into()
        );
    }
    let queue = SqliteQueue::open(&file, Arc::new(SystemClock), MAX_RECEIVES)?;
    let moved = queue.redrive(name).await?;
    println!("{moved} dead letter(s) of the {name} queue moved back onto it");
    Ok(())
}

/// Where customers' notices go: an SMTP relay if `SMTP_URL` is set, else `.eml` files in the
/// data directory's `outbox/`, so a user sees exactly what would be sent.
fn mailer(data_dir: &Path) -> Result<Arc<dyn Mailer>, BoxError> {
    let sender = compose::sender(&var_or("MAIL_FROM", "Orderly <orders@orderly.localhost>"))?;
    Ok(match std::env::var("SMTP_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) => Arc::new(SmtpRelay::from_url(&url, sender)?),
        None => Arc::new(EmlOutbox::new(data_dir.join("outbox"), sender)?),
    })
}

/// Receives before a message goes to the dead-letter state (as the SQS queues' redrive).
const MAX_RECEIVES: u32 = 5;
/// Concurrent pollers of the notifications queue when every notice comes through it (see where
/// the workers start).
const NOTIFICATION_POLLERS: usize = 16;
/// How long a received message stays hidden while a worker handles it.
const WORKER_VISIBILITY: time::Duration = time::Duration::seconds(60);

/// The local stand-in for the EventBridge schedule that runs the sweep in AWS.
async fn sweep_periodically(sweeper: Sweeper, stopped: impl std::future::Future<Output = ()>) {
    let every = std::time::Duration::from_secs(var_or("ORDERLY_SWEEP_SECONDS", "30").parse().unwrap_or(30).max(1));
    let mut ticks = tokio::time::interval(every);
    let mut stopped = std::pin::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = ticks.tick() => {
                if let Err(err) = sweeper.sweep().await {
                    tracing::error!(error = %err, "sweep failed");
                }
            }
        }
    }
}

/// A random JWT secret generated on first start and kept in the data directory, so tokens
/// survive a restart. Never used in Lambda, where `JWT_SECRET` is required.
fn development_secret(data_dir: &Path) -> Result<Vec<u8>, BoxError> {
    let path = data_dir.join("jwt-secret");
    if let Ok(secret) = std::fs::read(&path)
        && secret.len() >= orderly::domain::MIN_SECRET_BYTES
    {
        return Ok(secret);
    }
    let secret = orderly::domain::random_secret();
    write_private(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// The store, the queue, and the embedded store's notice feed. The embedded store shares its
/// file with the queue: one writer for both, and notices relayed from the notices table by the
/// feed. With DynamoDB the queue keeps a file of its own and carries every notice.
async fn open_store_and_queue(
    data_dir: &Path,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn Store>, Arc<SqliteQueue>, Option<NoticeFeed>), BoxError> {
    let queue_file = data_dir.join("queues.sqlite3");
    match var_or("ORDERLY_STORE", "sqlite").as_str() {
        "sqlite" => {
            let path = data_dir.join("orderly.sqlite3");
            tracing::info!(path = %path.display(), "embedded store and queue");
            let (store, queue) = SqliteStore::open_with_queue(&path, clock, MAX_RECEIVES)?;
            // A data directory from before the queue moved into the store's file.
            if queue_file.exists() {
                let moved = queue.import_file(&queue_file).await?;
                tracing::info!(moved, from = %queue_file.display(), "queued messages moved into the store's file");
            }
            let feed = store.notice_feed(MAX_RECEIVES).await?;
            Ok((Arc::new(store), Arc::new(queue), feed))
        }
        "dynamodb" => {
            let config = orderly::aws::local_sdk_config_loader().load().await;
            let client = aws_sdk_dynamodb::Client::new(&config);
            let tables = orderly::config::table_names_from_env();
            dynamodb::schema::create_tables(&client, &tables).await?;
            tracing::info!(?tables, "dynamodb store");
            let queue = SqliteQueue::open(&queue_file, clock, MAX_RECEIVES)?;
            Ok((Arc::new(DynamoStore::new(client, tables)), Arc::new(queue), None))
        }
        other => Err(format!("ORDERLY_STORE must be sqlite or dynamodb, not {other:?}").into()),
    }
}

fn seconds_from_env(name: &str, default: u64) -> Result<u64, BoxError> {
    let value = var_or(name, &default.to_string());
    value.trim().parse().map_err(|_| format!("{name} must be a whole number of seconds, not {value:?}").into())
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
