//! `orderly-bench`: N customers order at the same moment against a running Orderly (the local
//! server over SQLite or DynamoDB Local, or a deployed stack). Prints accepted/s and latency
//! percentiles, then checks the books: initial stock = remaining stock + units in accepted
//! orders, and never a unit oversold. Exits non-zero if the books do not balance.
//!
//! `scripts/bench` builds it in release mode and runs both scenarios against a fresh server;
//! `--accounts N` measures sign-up and login instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(about = "Concurrent-order benchmark for Orderly")]
struct Args {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Admin username and password (to create the product and read the books).
    #[arg(long, default_value = "admin")]
    admin: String,
    #[arg(long, env = "ORDERLY_ADMIN_PASSWORD")]
    admin_password: String,
    /// Customers ordering at once (each places one order).
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// Stock of the product they all want.
    #[arg(long, default_value_t = 100)]
    stock: i64,
    /// Units per order.
    #[arg(long, default_value_t = 1)]
    quantity: i64,
    /// Concurrent requests while signing customers up and logging them in.
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
    /// Instead of the order burst: sign up and log in this many customers and print the
    /// per-operation latency over the first and the last thousand.
    #[arg(long)]
    accounts: Option<usize>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn json_ok(response: reqwest::Response, expected: StatusCode) -> Result<Value, BoxError> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != expected {
        return Err(format!("expected {expected}, got {status}: {body}").into());
    }
    Ok(body)
}

async fn login(client: &Client, url: &str, body: Value) -> Result<String, BoxError> {
    let reply = json_ok(client.post(format!("{url}/auth/login")).json(&body).send().await?, StatusCode::OK).await?;
    reply["access_token"].as_str().map(str::to_owned).ok_or_else(|| "no access_token".into())
}

/// One customer's set-up: their token, and how long the sign-up and the login took.
struct Account {
    token: String,
    sign_up: Duration,
    login: Duration,
}

/// Signs up and logs in `n` fresh customers, `concurrency` at a time, in order of `i` (so the
/// first and last thousand are the store's first and last thousand accounts).
async fn customers(client: &Client, args: &Args, run: &str, n: usize) -> Result<Vec<Account>, BoxError> {
    let permits = Arc::new(Semaphore::new(args.setup_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (client, url) = (client.clone(), args.url.clone());
        let permit = permits.clone().acquire_owned().await?;
        let email = format!("bench-{run}-{i}@example.com");
        tasks.spawn(async move {
            let _permit = permit;
            let password = "bench-password-1";
            let address = json!({"line1": format!("{i} Bench Street"), "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"});
            let signup = json!({"name": format!("Bench {i}"), "email": email, "password": password, "address": address});
            let started = Instant::now();
            json_ok(client.post(format!("{url}/customers")).json(&signup).send().await?, StatusCode::CREATED).await?;
            let sign_up = started.elapsed();
            let started = Instant::now();
            let token = login(&client, &url, json!({"email": email, "password": password})).await?;
            Ok::<_, BoxError>((i, Account { token, sign_up, login: started.elapsed() }))
        });
    }
    let mut accounts = Vec::with_capacity(n);
    while let Some(account) = tasks.join_next().await {
        accounts.push(account??);
    }
    accounts.sort_by_key(|(i, _)| *i);
    Ok(accounts.into_iter().map(|(_, account)| account).collect())
}

/// `--accounts N`: signs up and logs in N customers and prints each operation's p50/p99 over
/// the first and the last thousand, so bookkeeping that grows with the number of accounts shows.
async fn accounts_scenario(client: &Client, args: &Args, run: &str, n: usize) -> Result<(), BoxError> {
    let started = Instant::now();
    let accounts = customers(client, args, run, n).await?;
    let elapsed = started.elapsed();
    println!(
        "{n} customers signed up and logged in in {:.1} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    let window = n.min(1_000);
    for (label, slice) in [("first", &accounts[..window]), ("last", &accounts[n - window..])] {
        for (op, pick) in
            [("sign-up", (|a: &Account| a.sign_up) as fn(&Account) -> Duration), ("login", |a: &Account| a.login)]
        {
            let mut latencies: Vec<Duration> = slice.iter().map(pick).collect();
            latencies.sort();
            println!(
                "{label} {window} accounts: {op} p50 {}, p99 {}",
                ms(percentile(&latencies, 50.0)),
                ms(percentile(&latencies, 99.0))
            );
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let client = Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(args.customers).build()?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    if let Some(n) = args.accounts {
        return accounts_scenario(&client, &args, &run, n).await;
    }

    let admin = login(&client, &args.url, json!({"username": args.admin, "password": args.admin_password})).await?;
    let product =
        json!({"name": format!("Bench item {run}"), "price_cents": 999, "stock": args.stock, "category": "bench"});
    let created = client.post(format!("{}/products", args.url)).bearer_auth(&admin).json(&product).send().await?;
    let product_id = json_ok(created, StatusCode::CREATED).await?["id"].as_str().ok_or("no product id")?.to_owned();

    let setup_started = Instant::now();
    let tokens: Vec<String> =
        customers(&client, &args, &run, args.customers).await?.into_iter().map(|a| a.token).collect();
    println!(
        "setup: {} customers signed up and logged in in {:.1} s",
        tokens.len(),
        setup_started.elapsed().as_secs_f64()
    );

    // Everyone waits at the barrier, then all orders leave at once.
    let barrier = Arc::new(Barrier::new(tokens.len()));
    let mut orders = JoinSet::new();
    for token in tokens {
        let (client, url, barrier) = (client.clone(), args.url.clone(), barrier.clone());
        let body = json!({"items": [{"product_id": product_id, "quantity": args.quantity}]});
        orders.spawn(async move {
            barrier.wait().await;
            let sent = Instant::now();
            let status =
                client.post(format!("{url}/orders")).bearer_auth(&token).json(&body).send().await.map(|r| r.status());
            (status, sent.elapsed())
        });
    }
    let started = Instant::now();
    let (mut accepted, mut refused, mut other) = (0i64, 0i64, Vec::new());
    let mut latencies = Vec::with_capacity(args.customers);
    while let Some(result) = orders.join_next().await {
        let (status, latency) = result?;
        latencies.push(latency);
        match status {
            Ok(StatusCode::CREATED | StatusCode::ACCEPTED) => accepted += 1,
            Ok(StatusCode::CONFLICT) => refused += 1,
            Ok(s) => other.push(s.to_string()),
            Err(e) => other.push(e.to_string()),
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();

    let product: Value =
        json_ok(client.get(format!("{}/products/{product_id}", args.url)).send().await?, StatusCode::OK).await?;
    let remaining = product["stock"].as_i64().ok_or("no stock")?;
    let reserved = accepted * args.quantity;
    let balanced = args.stock == remaining + reserved && remaining >= 0;

    println!("customers {}, stock {}, {} unit(s) per order", args.customers, args.stock, args.quantity);
    println!("accepted {accepted}, refused (409) {refused}, other {}", other.len());
    println!(
        "wall {:.2} s, {:.0} orders/s, {:.0} accepted/s",
        elapsed.as_secs_f64(),
        args.customers as f64 / elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {}, p90 {}, p99 {}, max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "books: initial {} = remaining {remaining} + reserved {reserved} -> {}",
        args.stock,
        if balanced { "balanced, no oversell" } else { "NOT BALANCED" }
    );
    if !other.is_empty() {
        println!("unexpected answers: {:?}", &other[..other.len().min(10)]);
    }
    if !balanced || !other.is_empty() {
        return Err("the run failed its checks".into());
    }
    Ok(())
}
