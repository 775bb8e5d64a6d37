//! `--trips`: counts the round trips the API makes to DynamoDB and SQS per request, against
//! DynamoDB Local. The routes run in this process over the production `DynamoStore`, whose
//! SDK client carries an interceptor that records every HTTP attempt (operation, start, end,
//! consumed capacity); queue sends are recorded by a wrapper around the queue. "Sequential"
//! counts the waves of a request: calls that overlap in time are one wave.
//!
//! Then a flash sale: customers all ordering one product at once, first kept on the product's
//! own item, then spread over stock shards; it prints the transaction attempts DynamoDB
//! cancelled (conflicts on the hot item) and how long the rush took.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_dynamodb::types::ConsumedCapacity;
use aws_smithy_runtime_api::box_error::BoxError as SdkBoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use orderly::clock::SystemClock;
use orderly::domain::{AuthConfig, OrderSettings, PasswordCost, Services};
use orderly::gateway::SimulatedGateway;
use orderly::mail::eml::EmlOutbox;
use orderly::queue::{Delivery, OutgoingMessage, Queue, QueueError, QueueName, SqliteQueue};
use orderly::store::dynamodb::{self, TableNames};
use orderly::store::{DynamoStore, Store};
use serde_json::{Value, json};
use time::Duration;
use tower::ServiceExt;

use crate::BoxError;

/// One round trip: an HTTP attempt to DynamoDB, or a queue send.
#[derive(Debug, Clone)]
struct Call {
    operation: String,
    started: Instant,
    ended: Instant,
    /// Write (or read) capacity units DynamoDB reported for it.
    capacity: f64,
    /// The stock items (a product's own, or a shard) a transaction updates.
    stock_items: Vec<String>,
    /// The HTTP status of DynamoDB's answer (a cancelled transaction is a 400); for a queue
    /// send, 200 or 500.
    status: u16,
}

#[derive(Debug, Default, Clone)]
struct Trips(Arc<Mutex<Vec<Call>>>);

impl Trips {
    fn record(&self, call: Call) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// When the current attempt was sent, kept in the attempt's config bag.
#[derive(Debug, Clone)]
struct SentAt(Instant);

impl Storable for SentAt {
    type Storer = StoreReplace<Self>;
}

/// When the current attempt's response arrived.
#[derive(Debug, Clone)]
struct Answered(Instant);

impl Storable for Answered {
    type Storer = StoreReplace<Self>;
}

/// The stock items the current transaction attempt updates.
#[derive(Debug, Clone)]
struct StockItems(Vec<String>);

impl Storable for StockItems {
    type Storer = StoreReplace<Self>;
}

/// The `pk` of every `Update` of a product or stock-shard item in a `TransactWriteItems` body.
fn stock_items(body: &[u8]) -> Vec<String> {
    let Ok(body) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    let items = body["TransactItems"].as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .filter_map(|item| item["Update"]["Key"]["pk"]["S"].as_str())
        .filter(|pk| pk.starts_with("PRODUCT#"))
        .map(str::to_owned)
        .collect()
}

/// Capacity reported by the deserialized response, kept until the attempt ends.
#[derive(Debug, Clone)]
struct Capacity(f64);

impl Storable for Capacity {
    type Storer = StoreReplace<Self>;
}

#[derive(Debug)]
struct TripRecorder(Trips);

fn capacity_units(consumed: &[ConsumedCapacity]) -> f64 {
    consumed.iter().filter_map(ConsumedCapacity::capacity_units).sum()
}

impl Intercept for TripRecorder {
    fn name(&self) -> &'static str {
        "TripRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        if cfg.load::<Metadata>().is_some_and(|m| m.name() == "TransactWriteItems") {
            let body = context.request().body().bytes().map(stock_items).unwrap_or_default();
            cfg.interceptor_state().store_put(StockItems(body));
        }
        cfg.interceptor_state().store_put(SentAt(Instant::now()));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        cfg.interceptor_state().store_put(Answered(Instant::now()));
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        let Ok(output) = context.output_or_error() else { return Ok(()) };
        let units = if let Some(out) = output.downcast_ref::<TransactWriteItemsOutput>() {
            capacity_units(out.consumed_capacity())
        } else if let Some(out) = output.downcast_ref::<BatchGetItemOutput>() {
            capacity_units(out.consumed_capacity())
        } else if let Some(out) = output.downcast_ref::<GetItemOutput>() {
            out.consumed_capacity().and_then(ConsumedCapacity::capacity_units).unwrap_or_default()
        } else if let Some(out) = output.downcast_ref::<QueryOutput>() {
            out.consumed_capacity().and_then(ConsumedCapacity::capacity_units).unwrap_or_default()
        } else {
            return Ok(());
        };
        cfg.interceptor_state().store_put(Capacity(units));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        // An attempt that never reached DynamoDB is no round trip.
        let (Some(sent), Some(answered)) = (cfg.load::<SentAt>().cloned(), cfg.load::<Answered>().cloned()) else {
            return Ok(());
        };
        let operation = cfg.load::<Metadata>().map_or("?", Metadata::name).to_owned();
        let capacity = cfg.load::<Capacity>().map_or(0.0, |c| c.0);
        let status = context.response().map_or(0, |r| r.status().as_u16());
        let stock_items = cfg.load::<StockItems>().map(|s| s.0.clone()).unwrap_or_default();
        self.0.record(Call { operation, started: sent.0, ended: answered.0, capacity, stock_items, status });
        // The next attempt of this execution starts afresh.
        cfg.interceptor_state().unset::<SentAt>();
        cfg.interceptor_state().unset::<Answered>();
        cfg.interceptor_state().unset::<Capacity>();
        cfg.interceptor_state().unset::<StockItems>();
        Ok(())
    }
}

/// The queue, with each send recorded as a round trip (an SQS SendMessage in production).
struct RecordedQueue {
    inner: Arc<dyn Queue>,
    trips: Trips,
}

#[async_trait]
impl Queue for RecordedQueue {
    async fn send(&self, queue: QueueName, message: &OutgoingMessage, delay: Duration) -> Result<(), QueueError> {
        let started = Instant::now();
        let sent = self.inner.send(queue, message, delay).await;
        let operation = format!("SQS SendMessage ({queue})");
        let status = if sent.is_ok() { 200 } else { 500 };
        let ended = Instant::now();
        self.trips.record(Call { operation, started, ended, capacity: 0.0, stock_items: Vec::new(), status });
        sent
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(queue, max, visibility, wait).await
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(queue, receipt).await
    }

    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(queue, receipt, visibility).await
    }

    async fn dead_letters(&self, queue: QueueName, max: u32) -> Result<Vec<Delivery>, QueueError> {
        self.inner.dead_letters(queue, max).await
    }

    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.inner.dead_letter_count(queue).await
    }
}

/// Calls that overlap in time form one wave; a request's waves are its sequential trips.
fn waves(calls: &[Call]) -> usize {
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.started);
    let mut waves = 0;
    let mut wave_end: Option<Instant> = None;
    for call in sorted {
        if wave_end.is_none_or(|end| call.started >= end) {
            waves += 1;
            wave_end = Some(call.ended);
        } else {
            wave_end = wave_end.max(Some(call.ended));
        }
    }
    waves
}

struct Answer {
    status: StatusCode,
    body: Value,
    calls: Vec<Call>,
}

struct Api {
    app: axum::Router,
    trips: Trips,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, BoxError> {
        let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))?;
        self.trips.take();
        let response = self.app.clone().oneshot(request).await?;
        let calls = self.trips.take();
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), calls })
    }
}

/// What one kind of request cost, over several of them.
struct Cost {
    label: &'static str,
    requests: usize,
    calls: usize,
    waves: usize,
    capacity: f64,
    by_operation: std::collections::BTreeMap<String, usize>,
}

impl Cost {
    fn new(label: &'static str) -> Self {
        Self { label, requests: 0, calls: 0, waves: 0, capacity: 0.0, by_operation: Default::default() }
    }

    fn add(&mut self, calls: &[Call]) {
        self.requests += 1;
        self.calls += calls.len();
        self.waves += waves(calls);
        self.capacity += calls.iter().map(|c| c.capacity).sum::<f64>();
        for call in calls {
            *self.by_operation.entry(call.operation.clone()).or_default() += 1;
        }
    }

    fn print(&self) {
        let n = self.requests.max(1) as f64;
        let operations: Vec<String> =
            self.by_operation.iter().map(|(op, count)| format!("{op} {:.1}", *count as f64 / n)).collect();
        println!(
            "{:<34} {:>5.1} round trips, {:>4.1} sequential, {:>5.1} capacity units  ({})",
            self.label,
            self.calls as f64 / n,
            self.waves as f64 / n,
            self.capacity / n,
            operations.join(", ")
        );
    }
}

pub async fn run(endpoint: &str, orders: usize, rush: usize) -> Result<(), BoxError> {
    let trips = Trips::default();
    let sdk = orderly::aws::emulator_sdk_config(endpoint);
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(TripRecorder(trips.clone())).build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let tables = TableNames::with_prefix(&format!("bench{}-", uuid::Uuid::now_v7().simple()));
    dynamodb::schema::create_tables(&client, &tables).await?;
    // As deployed (NOTICE_RELAY=stream): the orders table's stream carries each new notice to
    // the notification worker, outside the request, so no request sends a notice message.
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(client, tables).with_notices_relayed_by_stream());

    let clock = Arc::new(SystemClock);
    let queue =
        Arc::new(RecordedQueue { inner: Arc::new(SqliteQueue::in_memory(clock.clone(), 5)?), trips: trips.clone() });
    let outbox = std::env::temp_dir().join(format!("orderly-bench-outbox-{}", uuid::Uuid::now_v7()));
    let mailer = Arc::new(EmlOutbox::new(outbox.clone(), "Orderly <orders@example.com>".parse()?)?);
    let auth = AuthConfig::new(&[7u8; 32], None, time::Duration::minutes(15))?
        .with_cost(PasswordCost { memory_kib: 8, iterations: 1 });
    let services = Services::new(
        store,
        clock,
        auth,
        queue,
        Arc::new(SimulatedGateway::default()),
        OrderSettings::default(),
        mailer,
    );
    services.accounts.ensure_admin("admin", orderly::domain::Password::new("bench-admin-password")).await?;
    let api = Api { app: orderly::http::local_app(&services), trips };

    let admin = api
        .call(Method::POST, "/auth/login", None, Some(json!({"username": "admin", "password": "bench-admin-password"})))
        .await?;
    let admin = admin.body["access_token"].as_str().ok_or("admin login failed")?.to_owned();
    let product = json!({"name": "Trips mug", "price_cents": 900, "stock": 1_000_000, "category": "bench"});
    let product = api.call(Method::POST, "/products", Some(&admin), Some(product)).await?;
    let product_id = product.body["id"].as_str().ok_or("no product")?.to_owned();
    let order = json!({"items": [{"product_id": product_id, "quantity": 1}]});
    let lantern = json!({"name": "Trips lantern", "price_cents": 900, "stock": 1_000_000, "category": "bench", "stock_shards": 6});
    let lantern = api.call(Method::POST, "/products", Some(&admin), Some(lantern)).await?;
    let lantern_id = lantern.body["id"].as_str().ok_or("no sharded product")?.to_owned();
    let sharded_order = json!({"items": [{"product_id": lantern_id, "quantity": 1}]});

    let mut costs = [
        Cost::new("POST /orders (session known)"),
        Cost::new("POST /orders (first request)"),
        Cost::new("POST /orders (deferred, next)"),
        Cost::new("POST /orders (Idempotency-Key)"),
        Cost::new("POST /orders (6 stock shards)"),
        Cost::new("GET /products/{id}"),
        Cost::new("GET /products (one sharded)"),
    ];
    for i in 0..orders {
        // A customer whose session this instance has checked already (the common case on a
        // warm Lambda: the session cache), ordering once.
        let warm = sign_up(&api, &format!("trips-warm-{i}@example.com")).await?;
        expect(&api.call(Method::GET, "/orders", Some(&warm), None).await?, StatusCode::OK)?;
        let pending = api.call(Method::POST, "/orders", Some(&warm), Some(order.clone())).await?;
        expect(&pending, StatusCode::CREATED)?;
        costs[0].add(&pending.calls);

        // A customer's first request, then their next orders (deferred by the cooldown).
        let token = sign_up(&api, &format!("trips-{i}@example.com")).await?;
        let first = api.call(Method::POST, "/orders", Some(&token), Some(order.clone())).await?;
        expect(&first, StatusCode::CREATED)?;
        costs[1].add(&first.calls);
        let deferred = api.call(Method::POST, "/orders", Some(&token), Some(order.clone())).await?;
        expect(&deferred, StatusCode::ACCEPTED)?;
        costs[2].add(&deferred.calls);
        let keyed = keyed_order(&api, &token, &order, &format!("key-{i}")).await?;
        costs[3].add(&keyed);
        // A warm customer ordering a product whose stock is spread over shards.
        let sharded = sign_up(&api, &format!("trips-sharded-{i}@example.com")).await?;
        expect(&api.call(Method::GET, "/orders", Some(&sharded), None).await?, StatusCode::OK)?;
        let placed = api.call(Method::POST, "/orders", Some(&sharded), Some(sharded_order.clone())).await?;
        expect(&placed, StatusCode::CREATED)?;
        costs[4].add(&placed.calls);
        let read = api.call(Method::GET, &format!("/products/{product_id}"), None, None).await?;
        expect(&read, StatusCode::OK)?;
        costs[5].add(&read.calls);
        let list = api.call(Method::GET, "/products?limit=20", None, None).await?;
        expect(&list, StatusCode::OK)?;
        costs[6].add(&list.calls);
    }
    println!(
        "round trips per request on DynamoDB Local, mean over {orders} customers (queue sends included; \
         notices relayed by the orders table's stream, as deployed):"
    );
    for cost in &costs {
        cost.print();
    }

    println!("\nflash sale on DynamoDB Local: {rush} customers order one product at once");
    // Six shards: creating the product is one transaction of its item, its name, its category
    // count and every shard, and this DynamoDB Local takes at most 10 actions per transaction
    // (DynamoDB itself, 100).
    for shards in [1, 6] {
        flash_sale(&api, &admin, rush, shards).await?;
    }
    let _ = std::fs::remove_dir_all(outbox);
    Ok(())
}

/// `rush` customers, signed up beforehand, order one unit each of one product at the same
/// moment; the product keeps its stock in `shards` items. Prints the time the rush took, the
/// `TransactWriteItems` attempts DynamoDB cancelled (a conflict on an item another transaction
/// holds; the store retries them with backoff) and checks the books.
async fn flash_sale(api: &Api, admin: &str, rush: usize, shards: u32) -> Result<(), BoxError> {
    const STOCK: i64 = 100_000;
    let name = format!("Flash sale item, {shards} shard(s)");
    let product =
        json!({"name": name, "price_cents": 900, "stock": STOCK, "category": "bench", "stock_shards": shards});
    let product = api.call(Method::POST, "/products", Some(admin), Some(product)).await?;
    expect(&product, StatusCode::CREATED)?;
    let product_id = product.body["id"].as_str().ok_or("no product")?.to_owned();
    let mut tokens = Vec::with_capacity(rush);
    for i in 0..rush {
        tokens.push(sign_up(api, &format!("rush-{shards}-{i}@example.com")).await?);
    }
    let order = json!({"items": [{"product_id": product_id, "quantity": 1}]});
    api.trips.take();
    let started = Instant::now();
    let mut placing = tokio::task::JoinSet::new();
    for token in tokens {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(order.to_string()))?;
        let app = api.app.clone();
        placing.spawn(async move {
            let sent = Instant::now();
            let status = app.oneshot(request).await.map(|r| r.status());
            (status, sent.elapsed())
        });
    }
    let (mut accepted, mut latencies) = (0, Vec::with_capacity(rush));
    for (status, latency) in placing.join_all().await {
        match status? {
            StatusCode::CREATED => accepted += 1,
            other => return Err(format!("flash sale order: {other}").into()),
        }
        latencies.push(latency);
    }
    let elapsed = started.elapsed();
    let calls = api.trips.take();
    let transactions: Vec<&Call> = calls.iter().filter(|c| c.operation == "TransactWriteItems").collect();
    let cancelled = transactions.iter().filter(|c| c.status == 400).count();
    // DynamoDB applies the writes to one item one at a time: the busiest item bounds the sale.
    let mut writes_per_item = std::collections::HashMap::<&str, usize>::new();
    for item in transactions.iter().filter(|c| c.status == 200).flat_map(|c| &c.stock_items) {
        *writes_per_item.entry(item.as_str()).or_default() += 1;
    }
    let busiest = writes_per_item.values().max().copied().unwrap_or(0);
    latencies.sort();
    let read = api.call(Method::GET, &format!("/products/{product_id}"), None, None).await?;
    let remaining = read.body["stock"].as_i64().ok_or("no stock")?;
    let balanced = remaining == STOCK - accepted;
    println!(
        "{shards:>2} shard(s): {accepted} accepted in {:.2} s, p50 {:.0} ms, max {:.0} ms; {} TransactWriteItems \
         attempts, {cancelled} cancelled; stock writes on the busiest item {busiest} of {accepted} ({} items \
         written); books {}",
        elapsed.as_secs_f64(),
        latencies.get(latencies.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        transactions.len(),
        writes_per_item.len(),
        if balanced { "balanced" } else { "NOT BALANCED" }
    );
    if !balanced {
        return Err("the flash sale's books do not balance".into());
    }
    Ok(())
}

/// A new customer, signed up and logged in: their access token.
async fn sign_up(api: &Api, email: &str) -> Result<String, BoxError> {
    let address = json!({"line1": "1 Bench Street", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"});
    let signup = json!({"name": "Bench", "email": email, "password": "bench-password-1", "address": address});
    api.call(Method::POST, "/customers", None, Some(signup)).await?;
    let login = api
        .call(Method::POST, "/auth/login", None, Some(json!({"email": email, "password": "bench-password-1"})))
        .await?;
    Ok(login.body["access_token"].as_str().ok_or("login failed")?.to_owned())
}

/// A third order with an `Idempotency-Key` (deferred too), then its replay; returns the calls of
/// the first.
async fn keyed_order(api: &Api, token: &str, order: &Value, key: &str) -> Result<Vec<Call>, BoxError> {
    let request = |key: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", key)
            .body(Body::from(order.to_string()))
    };
    api.trips.take();
    let first = api.app.clone().oneshot(request(key)?).await?;
    let calls = api.trips.take();
    if first.status() != StatusCode::ACCEPTED {
        return Err(format!("keyed order: {}", first.status()).into());
    }
    let replay = api.app.clone().oneshot(request(key)?).await?;
    if replay.status() != StatusCode::ACCEPTED {
        return Err(format!("replay: {}", replay.status()).into());
    }
    Ok(calls)
}

fn expect(answer: &Answer, status: StatusCode) -> Result<(), BoxError> {
    if answer.status == status {
        Ok(())
    } else {
        Err(format!("expected {status}, got {}: {}", answer.status, answer.body).into())
    }
}
