//! `orderly-bench`: load against a running Orderly (the local server over SQLite or DynamoDB
//! Local, or a deployed stack), one distinct customer per order, in one of two scenarios:
//!
//! - `burst`: N customers order the same product at the same moment (a flash sale);
//! - `sustained`: C connections order back to back for D seconds, each order from a customer
//!   who has not ordered yet.
//!
//! Prints accepted/s and latency percentiles, the server's CPU and memory (`--server-pid`),
//! then checks the books: initial stock = remaining stock + units in accepted orders, and never
//! a unit oversold. Exits non-zero if the books do not balance or an answer was unexpected.
//!
//! `scripts/bench` builds it in release mode and runs it against a fresh server; `--accounts N`
//! measures sign-up and login instead.

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
    #[arg(long, env = "ORDERLY_ADMIN_PASSWORD", default_value = "")]
    admin_password: String,
    /// `burst` (every customer at once) or `sustained` (back to back over `--duration`).
    #[arg(long, value_enum, default_value_t = Scenario::Burst)]
    scenario: Scenario,
    /// Customers prepared; each places one order. Default: 1,000 for a burst, and for a
    /// sustained run enough for 15,000 orders a second.
    #[arg(long)]
    customers: Option<usize>,
    /// Sustained: connections ordering at once.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Sustained: seconds to run (fewer if the customers run out first, which is reported).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Prepare only: create the product and the customers, write the product id and then one
    /// access token per line to this file, and exit (for another load generator, e.g. wrk with
    /// scripts/wrk_orders.lua).
    #[arg(long)]
    tokens_out: Option<std::path::PathBuf>,
    /// Instead of load: count the round trips each kind of request makes to DynamoDB (and the
    /// queue sends), running the routes in this process against DynamoDB Local at this URL.
    #[arg(long, value_name = "DYNAMODB_ENDPOINT")]
    trips: Option<String>,
    /// With --trips: how many customers' requests to average over.
    #[arg(long, default_value_t = 20)]
    trips_customers: usize,
    /// With --trips: how many customers rush one product at once, unsharded then sharded.
    #[arg(long, default_value_t = 200)]
    rush_customers: usize,
    /// The product's stock shards (`stock_shards`; DynamoDB spreads its stock over that many
    /// items).
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// The server's `.eml` outbox (`ORDERLY_DATA_DIR/outbox`), to report whether emailing the
    /// accepted orders' notices kept up with the run, and how long it took to catch up.
    #[arg(long)]
    outbox: Option<std::path::PathBuf>,
    /// The server's process id, to report its CPU time and memory over the run.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Stock of the product they all want.
    #[arg(long, default_value_t = 100)]
    stock: i64,
    /// Units per order.
    #[arg(long, default_value_t = 1)]
    quantity: i64,
    /// Concurrent requests while signing customers up and logging them in.
    #[arg(long, default_value_t = 64)]
    setup_concurrency: usize,
    /// Instead of the order burst: sign up and log in this many customers and print the
    /// per-operation latency over the first and the last thousand.
    #[arg(long)]
    accounts: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Burst,
    Sustained,
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
async fn sign_up_customers(client: &Client, args: &Args, run: &str, n: usize) -> Result<Vec<Account>, BoxError> {
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
    let accounts = sign_up_customers(client, args, run, n).await?;
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

/// "p50 …, p99 …, max …" of `latencies`.
fn spread(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    format!(
        "p50 {}, p99 {}, max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    )
}

/// What the orders were answered.
#[derive(Default)]
struct Tally {
    /// 201: accepted as `pending`.
    created: i64,
    /// 202: accepted as `processing order` (the customer's cooldown).
    deferred: i64,
    /// 409: not enough stock.
    refused: i64,
    other: Vec<String>,
    latencies: Vec<Duration>,
    /// The latencies of the accepted orders (201 and 202) and of the refused ones (409) apart:
    /// in a burst on a small stock the accepted ones wait for the writer, the refused ones
    /// mostly do not.
    accepted_latencies: Vec<Duration>,
    refused_latencies: Vec<Duration>,
}

impl Tally {
    fn record(&mut self, answer: Result<StatusCode, reqwest::Error>, latency: Duration) {
        self.latencies.push(latency);
        let by_answer = match answer {
            Ok(StatusCode::CREATED) => {
                self.created += 1;
                &mut self.accepted_latencies
            }
            Ok(StatusCode::ACCEPTED) => {
                self.deferred += 1;
                &mut self.accepted_latencies
            }
            Ok(StatusCode::CONFLICT) => {
                self.refused += 1;
                &mut self.refused_latencies
            }
            Ok(s) => return self.other.push(s.to_string()),
            Err(e) => return self.other.push(e.to_string()),
        };
        by_answer.push(latency);
    }

    fn merge(&mut self, other: Tally) {
        self.created += other.created;
        self.deferred += other.deferred;
        self.refused += other.refused;
        self.other.extend(other.other);
        self.latencies.extend(other.latencies);
        self.accepted_latencies.extend(other.accepted_latencies);
        self.refused_latencies.extend(other.refused_latencies);
    }

    fn accepted(&self) -> i64 {
        self.created + self.deferred
    }
}

async fn place(client: &Client, url: &str, token: &str, body: &Value) -> Result<StatusCode, reqwest::Error> {
    client.post(format!("{url}/orders")).bearer_auth(token).json(body).send().await.map(|r| r.status())
}

/// Every customer waits at a barrier, then all orders leave at once.
async fn burst(client: &Client, url: &str, tokens: Vec<String>, body: Value) -> Result<(Tally, Duration), BoxError> {
    // Everyone first opens a connection (a catalog read), so the burst measures orders, not
    // a thousand TCP handshakes.
    let warm = Arc::new(Barrier::new(tokens.len()));
    let barrier = Arc::new(Barrier::new(tokens.len()));
    let mut orders = JoinSet::new();
    for token in tokens {
        let (client, url, barrier, body) = (client.clone(), url.to_owned(), barrier.clone(), body.clone());
        let warm = warm.clone();
        orders.spawn(async move {
            warm.wait().await;
            if let Ok(response) = client.get(format!("{url}/products?limit=1")).send().await {
                let _ = response.bytes().await;
            }
            barrier.wait().await;
            let sent = Instant::now();
            let answer = place(&client, &url, &token, &body).await;
            (answer, sent.elapsed())
        });
    }
    let started = Instant::now();
    let mut tally = Tally::default();
    while let Some(result) = orders.join_next().await {
        let (answer, latency) = result?;
        tally.record(answer, latency);
    }
    Ok((tally, started.elapsed()))
}

/// `connections` loops, each sending the next unused customer's order as soon as its last
/// one is answered, until `duration` is over or the customers run out.
async fn sustained(
    client: &Client,
    url: &str,
    tokens: Vec<String>,
    body: Value,
    connections: usize,
    duration: Duration,
) -> Result<(Tally, Duration, bool), BoxError> {
    let tokens = Arc::new(tokens);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut loops = JoinSet::new();
    for _ in 0..connections {
        let (client, url, body, tokens, next) =
            (client.clone(), url.to_owned(), body.clone(), tokens.clone(), next.clone());
        loops.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let Some(token) = tokens.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) else {
                    break;
                };
                let sent = Instant::now();
                let answer = place(&client, &url, token, &body).await;
                tally.record(answer, sent.elapsed());
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(result) = loops.join_next().await {
        tally.merge(result?);
    }
    let ran_out = next.load(std::sync::atomic::Ordering::Relaxed) >= tokens.len();
    Ok((tally, started.elapsed(), ran_out))
}

/// `.eml` files in `outbox`.
fn emails_in(outbox: &std::path::Path) -> usize {
    std::fs::read_dir(outbox)
        .map(|entries| {
            entries.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))).count()
        })
        .unwrap_or(0)
}

/// Every accepted order has a notice to email: how many were written when the run `ended`, and
/// when the rest were (the background work a sustained rate leaves behind).
async fn report_emails(outbox: &std::path::Path, before: usize, accepted: i64, ended: Instant) {
    let expected = usize::try_from(accepted).unwrap_or(0);
    let written = |now: usize| now.saturating_sub(before);
    let at_end = written(emails_in(outbox));
    let deadline = ended + Duration::from_secs(120);
    let mut now = at_end;
    while now < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = written(emails_in(outbox));
    }
    let caught_up = if now >= expected {
        format!("all {} written {:.1} s after the run", count(accepted), ended.elapsed().as_secs_f64())
    } else {
        format!("{} still unwritten 120 s after the run", count((expected - now) as i64))
    };
    println!(
        "notices: {} of {} order emails written by the end of the run; {caught_up}",
        count(at_end as i64),
        count(accepted)
    );
}

/// A process's CPU time (user + system) and resident memory, from /proc (Linux).
struct ProcessSample {
    cpu: Duration,
    rss_kib: u64,
    peak_rss_kib: u64,
}

fn sample(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|t| *t > 0)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status.lines().find_map(|line| line.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some(ProcessSample {
        cpu: Duration::from_millis(ticks * 1000 / per_second),
        rss_kib: kib("VmRSS:")?,
        peak_rss_kib: kib("VmHWM:")?,
    })
}

fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if n < 0 { format!("-{out}") } else { out }
}

mod trips;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if let Some(endpoint) = &args.trips {
        return trips::run(endpoint, args.trips_customers, args.rush_customers).await;
    }
    let customers = args.customers.unwrap_or(match args.scenario {
        Scenario::Burst => 1_000,
        Scenario::Sustained => 15_000 * args.duration as usize,
    });
    let pool = match args.scenario {
        Scenario::Burst => customers,
        Scenario::Sustained => args.connections.max(args.setup_concurrency),
    };
    let client = Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(pool).build()?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    if let Some(n) = args.accounts {
        return accounts_scenario(&client, &args, &run, n).await;
    }

    let admin = login(&client, &args.url, json!({"username": args.admin, "password": args.admin_password})).await?;
    let mut product =
        json!({"name": format!("Bench item {run}"), "price_cents": 999, "stock": args.stock, "category": "bench"});
    if args.shards > 1 {
        // Only when asked: servers from before stock shards refuse the field.
        product["stock_shards"] = json!(args.shards);
    }
    let created = client.post(format!("{}/products", args.url)).bearer_auth(&admin).json(&product).send().await?;
    let product_id = json_ok(created, StatusCode::CREATED).await?["id"].as_str().ok_or("no product id")?.to_owned();

    let setup_started = Instant::now();
    let tokens: Vec<String> =
        sign_up_customers(&client, &args, &run, customers).await?.into_iter().map(|a| a.token).collect();
    println!(
        "setup: {} customers signed up and logged in in {:.1} s",
        tokens.len(),
        setup_started.elapsed().as_secs_f64()
    );

    if let Some(path) = &args.tokens_out {
        let lines: Vec<&str> = std::iter::once(product_id.as_str()).chain(tokens.iter().map(String::as_str)).collect();
        std::fs::write(path, lines.join("\n") + "\n")?;
        println!("wrote the product id and {} tokens to {}", tokens.len(), path.display());
        return Ok(());
    }
    let body = json!({"items": [{"product_id": product_id, "quantity": args.quantity}]});
    let server_before = args.server_pid.and_then(sample);
    let emails_before = args.outbox.as_deref().map(emails_in);
    let (tally, elapsed, ran_out) = match args.scenario {
        Scenario::Burst => {
            println!("burst: {customers} customers at once, stock {}, {} unit(s) per order", args.stock, args.quantity);
            let (tally, elapsed) = burst(&client, &args.url, tokens, body).await?;
            (tally, elapsed, false)
        }
        Scenario::Sustained => {
            println!(
                "sustained: {} connections for {} s, stock {}, {} unit(s) per order, {customers} customers ready",
                args.connections, args.duration, args.stock, args.quantity
            );
            let duration = Duration::from_secs(args.duration);
            sustained(&client, &args.url, tokens, body, args.connections, duration).await?
        }
    };
    let server_after = args.server_pid.and_then(sample);
    let ended = Instant::now();
    let mut latencies = tally.latencies.clone();
    latencies.sort();

    let product: Value =
        json_ok(client.get(format!("{}/products/{product_id}", args.url)).send().await?, StatusCode::OK).await?;
    let remaining = product["stock"].as_i64().ok_or("no stock")?;
    let reserved = tally.accepted() * args.quantity;
    let balanced = args.stock == remaining + reserved && remaining >= 0;

    println!(
        "accepted {} ({} pending, {} deferred), refused (409) {}, other {}",
        count(tally.accepted()),
        count(tally.created),
        count(tally.deferred),
        count(tally.refused),
        tally.other.len()
    );
    if ran_out {
        println!("the customers ran out before the time was up: pass more with --customers");
    }
    let seconds = elapsed.as_secs_f64();
    println!(
        "wall {seconds:.2} s, {} orders/s, {} accepted/s",
        count((latencies.len() as f64 / seconds) as i64),
        count((tally.accepted() as f64 / seconds) as i64)
    );
    println!(
        "latency p50 {}, p90 {}, p99 {}, max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    if !tally.accepted_latencies.is_empty() && !tally.refused_latencies.is_empty() {
        println!(
            "by answer: accepted {}; refused {}",
            spread(tally.accepted_latencies.clone()),
            spread(tally.refused_latencies.clone())
        );
    }
    if let (Some(before), Some(after)) = (server_before, server_after) {
        let cores = (after.cpu.saturating_sub(before.cpu)).as_secs_f64() / seconds;
        println!(
            "server: CPU {cores:.2} cores over the run, RSS {:.0} MiB (peak {:.0} MiB)",
            after.rss_kib as f64 / 1024.0,
            after.peak_rss_kib as f64 / 1024.0
        );
    }
    println!(
        "books: initial {} = remaining {} + reserved {} -> {}",
        count(args.stock),
        count(remaining),
        count(reserved),
        if balanced { "balanced, no oversell" } else { "NOT BALANCED" }
    );
    if let (Some(outbox), Some(before)) = (&args.outbox, emails_before) {
        report_emails(outbox, before, tally.accepted(), ended).await;
    }
    if !tally.other.is_empty() {
        println!("unexpected answers: {:?}", &tally.other[..tally.other.len().min(10)]);
    }
    if !balanced || !tally.other.is_empty() {
        return Err("the run failed its checks".into());
    }
    Ok(())
}
