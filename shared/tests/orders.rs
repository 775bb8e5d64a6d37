//! Orders through the domain and the HTTP API, on every store: reservation, the cooldown and
//! deferred release, idempotency, cancellation, ownership, the sweep, and oversell under load.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::http::{Api, assert_problem};
use orderly::clock::FakeClock;
use orderly::domain::{
    Caller, CancelRequest, IdempotencyKey, MAX_ORDER_LINES, NewOrder, NewOrderItem, OrderSettings, Release, Services,
    Session,
};
use orderly::model::{Address, OrderStatus, Principal, Role};
use orderly::queue::Consumer;
use orderly::queue::{Queue, QueueName, SqliteQueue};
use orderly::store::Store;
use orderly::workers::OrderWorker;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;
use uuid::Uuid;

/// The service with a fake clock and an embedded queue on that clock.
struct World {
    orderly: Services,
    clock: Arc<FakeClock>,
    queue: Arc<SqliteQueue>,
    store: Arc<dyn Store>,
}

fn settings() -> OrderSettings {
    OrderSettings { cooldown: Duration::seconds(300), max_deferred: 3, ..OrderSettings::default() }
}

fn world(store: Arc<dyn Store>) -> World {
    world_with(store, settings())
}

fn world_with(store: Arc<dyn Store>, settings: OrderSettings) -> World {
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let queue = Arc::new(SqliteQueue::in_memory(clock.clone(), 5).expect("queue"));
    let orderly = common::orderly_with(store.clone(), clock.clone(), common::test_auth())
        .with_order_settings(settings)
        .with_queue(queue.clone())
        .services();
    World { orderly, clock, queue, store }
}

fn customer() -> Session {
    Session {
        principal: Principal { id: Uuid::now_v7(), role: Role::Customer },
        jti: Uuid::now_v7(),
        issued_at: OffsetDateTime::now_utc(),
        expires_at: OffsetDateTime::now_utc() + Duration::hours(1),
    }
}

/// A session the service takes as confirmed (the HTTP tests cover confirming it).
fn confirmed(session: &Session) -> Caller {
    Caller::Confirmed(session.clone())
}

fn order_of(items: &[(Uuid, i64)]) -> NewOrder {
    NewOrder {
        items: items
            .iter()
            .map(|(product_id, quantity)| NewOrderItem { product_id: *product_id, quantity: *quantity })
            .collect(),
        shipping_address: Some(Address {
            line1: "1 Test Street".into(),
            line2: None,
            city: "Leeds".into(),
            postal_code: "LS1 1AA".into(),
            country: "GB".into(),
        }),
    }
}

async fn product(orderly: &Services, name: &str, price_cents: i64, stock: i64) -> Uuid {
    let input =
        serde_json::from_value(json!({"name": name, "price_cents": price_cents, "stock": stock, "category": "test"}))
            .expect("input");
    orderly.catalog.create_product(input).await.expect("product").id
}

async fn stock(orderly: &Services, id: Uuid) -> i64 {
    orderly.catalog.product(id).await.expect("product").stock
}

fn status_of(body: &str) -> (OrderStatus, Value) {
    let value: Value = serde_json::from_str(body).expect("json");
    (serde_json::from_value(value["status"].clone()).expect("status"), value)
}

/// Drives the order queue like the local worker does, at the fake clock's time.
async fn drain_order_queue(w: &World) -> usize {
    let worker = OrderWorker::new(w.orderly.orders.clone());
    let mut handled = 0;
    loop {
        let batch =
            w.queue.receive(QueueName::Orders, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
        if batch.is_empty() {
            return handled;
        }
        for delivery in batch {
            worker.handle(&delivery).await;
            w.queue.delete(QueueName::Orders, &delivery.receipt).await.expect("delete");
            handled += 1;
        }
    }
}

async fn orders_reserve_stock_and_snapshot_prices(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 1299, 10);
    let lamp = product(&w.orderly, "Lamp", 4500, 2);
    let (mug, lamp) = tokio::join!(mug, lamp);
    let placed = w
        .orderly
        .orders
        .place_order(&confirmed(&customer()), order_of(&[(mug, 3), (lamp, 2)]), None, "req-1")
        .await
        .expect("placed");
    assert_eq!(placed.status_code, 201);
    let (status, body) = status_of(&placed.body);
    assert_eq!(status, OrderStatus::Pending);
    assert_eq!(body["total_cents"], 3 * 1299 + 2 * 4500);
    assert_eq!(body["lines"][0]["name"], "Mug");
    assert_eq!(body["lines"][1]["unit_price_cents"], 4500);
    assert_eq!(body["correlation_id"], "req-1");
    assert_eq!((stock(&w.orderly, mug).await, stock(&w.orderly, lamp).await), (7, 0));

    // A later price change does not touch the order's snapshot.
    let patch = serde_json::from_value(json!({"price_cents": 1})).expect("patch");
    w.orderly.catalog.update_product(mug, None, patch).await.expect("reprice");
    let order = w.store.get_order(placed.id).await.expect("get").expect("order");
    assert_eq!(order.lines[0].unit_price_cents, 1299);
}

async fn insufficient_stock_writes_nothing_and_starts_no_cooldown(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 100, 5).await;
    let lamp = product(&w.orderly, "Lamp", 100, 1).await;
    let ada = customer();
    let refused = w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 2), (lamp, 2)]), None, "r").await;
    match refused {
        Err(orderly::Error::Conflict(detail)) => {
            assert!(detail.contains("Lamp") && !detail.contains("Mug"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((stock(&w.orderly, mug).await, stock(&w.orderly, lamp).await), (5, 1), "no line reserved");
    let next = w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "r").await.expect("placed");
    assert_eq!(next.status_code, 201, "no cooldown was started by the refusal");
    let unknown = w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(Uuid::now_v7(), 1)]), None, "r").await;
    assert!(matches!(unknown, Err(orderly::Error::Validation(_))), "{unknown:?}");
}

/// Two orders 10 ms apart: the first pending, the second deferred until the cooldown ends;
/// a third follows one cooldown later, and each is released in order.
async fn the_cooldown_defers_and_releases_in_order(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 100, 50).await;
    let ada = customer();
    let start = w.clock.now_for_test();
    let first = w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "a").await.expect("first");
    w.clock.advance(Duration::milliseconds(10));
    let second =
        w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "b").await.expect("second");
    let third = w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "c").await.expect("third");
    assert_eq!((first.status_code, second.status_code, third.status_code), (201, 202, 202));
    let (s2, b2) = status_of(&second.body);
    assert_eq!(s2, OrderStatus::ProcessingOrder);
    assert_eq!(b2["release_at"], json!(rfc3339(start + Duration::seconds(300))));
    let (_, b3) = status_of(&third.body);
    assert_eq!(b3["release_at"], json!(rfc3339(start + Duration::seconds(600))));
    assert_eq!(stock(&w.orderly, mug).await, 47, "deferred orders reserve stock too");

    // Other customers are not held up.
    let bob =
        w.orderly.orders.place_order(&confirmed(&customer()), order_of(&[(mug, 1)]), None, "d").await.expect("bob");
    assert_eq!(bob.status_code, 201);

    let status = |id| {
        let store = w.store.clone();
        async move { store.get_order(id).await.expect("get").expect("order").status }
    };
    assert_eq!(drain_order_queue(&w).await, 0, "release messages are delayed");
    w.clock.advance(Duration::seconds(300));
    assert_eq!(drain_order_queue(&w).await, 1);
    assert_eq!((status(second.id).await, status(third.id).await), (OrderStatus::Pending, OrderStatus::ProcessingOrder));
    w.clock.advance(Duration::seconds(300));
    drain_order_queue(&w).await;
    assert_eq!(status(third.id).await, OrderStatus::Pending);

    // A duplicate or late release message changes nothing.
    assert_eq!(w.orderly.orders.handle_release(second.id, "dup").await.expect("release"), Release::NotApplicable);
}

async fn deferred_orders_are_capped_with_retry_after(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 100, 50).await;
    let ada = customer();
    for expected in [201, 202, 202, 202] {
        let placed =
            w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "x").await.expect("placed");
        assert_eq!(placed.status_code, expected);
    }
    match w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "x").await {
        Err(orderly::Error::TooManyRequests { what, retry_after_secs }) => {
            assert_eq!(what, "too many orders are waiting for the cooldown");
            assert!((1..=300).contains(&retry_after_secs), "{retry_after_secs}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stock(&w.orderly, mug).await, 46, "the refused order reserved nothing");
    w.clock.advance(Duration::seconds(301));
    let placed = w
        .orderly
        .orders
        .place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "x")
        .await
        .expect("a slot freed up");
    assert_eq!(placed.status_code, 202);
}

/// Cancelling deferred orders gives their slots back: with all three cancelled, the next
/// order waits right behind the pending one (not behind nothing, and not refused).
async fn cancelled_deferred_orders_give_their_slots_back(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 100, 50).await;
    let ada = customer();
    let start = w.clock.now_for_test();
    let mut deferred = Vec::new();
    for expected in [201, 202, 202, 202] {
        let placed =
            w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "x").await.expect("placed");
        assert_eq!(placed.status_code, expected);
        if expected == 202 {
            deferred.push(placed.id);
        }
    }
    for id in deferred {
        w.orderly.orders.cancel_order(&ada, id, None, CancelRequest::default()).await.expect("cancelled");
    }
    let next =
        w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 1)]), None, "y").await.expect("a slot is free");
    assert_eq!(next.status_code, 202, "still behind the pending order");
    let (_, body) = status_of(&next.body);
    assert_eq!(body["release_at"], json!(rfc3339(start + Duration::seconds(300))), "right behind it");
}

/// What one customer may hold unpaid is capped, in units and in value; paying or cancelling
/// frees the hold. A refused order reserves nothing.
async fn unpaid_holds_are_capped(store: Arc<dyn Store>) {
    let w = world_with(
        store,
        OrderSettings { max_unpaid_units: 10, max_unpaid_cents: 5_000, cooldown: Duration::seconds(1), ..settings() },
    );
    let (mug, lamp) = (product(&w.orderly, "Mug", 100, 50).await, product(&w.orderly, "Lamp", 3_000, 50).await);
    let ada = customer();
    let first =
        w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 8)]), None, "a").await.expect("8 units");
    w.clock.advance(Duration::seconds(2));
    let too_many = w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 3)]), None, "b").await;
    assert!(matches!(&too_many, Err(orderly::Error::Conflict(m)) if m.contains("unpaid")), "{too_many:?}");
    w.orderly
        .orders
        .place_order(&confirmed(&ada), order_of(&[(lamp, 1)]), None, "c")
        .await
        .expect("9 units, 3,800 cents");
    w.clock.advance(Duration::seconds(2));
    let too_dear = w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(lamp, 1)]), None, "d").await;
    assert!(matches!(&too_dear, Err(orderly::Error::Conflict(m)) if m.contains("unpaid")), "{too_dear:?}");
    assert_eq!((stock(&w.orderly, mug).await, stock(&w.orderly, lamp).await), (42, 49), "refusals reserve nothing");
    let others = w.orderly.orders.place_order(&confirmed(&customer()), order_of(&[(mug, 8)]), None, "e").await;
    assert!(others.is_ok(), "the cap is per customer");

    w.orderly.orders.cancel_order(&ada, first.id, None, CancelRequest::default()).await.expect("cancelled");
    w.orderly
        .orders
        .place_order(&confirmed(&ada), order_of(&[(mug, 8)]), None, "f")
        .await
        .expect("the hold was given back");
    assert_eq!(OrderSettings::default().payment_deadline, Duration::minutes(30), "a short unpaid hold by default");
}

async fn an_idempotency_key_replays_the_first_answer(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 100, 10).await;
    let ada = customer();
    let key = IdempotencyKey::parse("order-2026-0001").expect("key");
    let first = w
        .orderly
        .orders
        .place_order(&confirmed(&ada), order_of(&[(mug, 2)]), Some(key.clone()), "a")
        .await
        .expect("first");
    let again = w
        .orderly
        .orders
        .place_order(&confirmed(&ada), order_of(&[(mug, 2)]), Some(key.clone()), "b")
        .await
        .expect("replay");
    assert_eq!(again, first);
    assert_eq!(stock(&w.orderly, mug).await, 8, "one reservation");
    let other_body =
        w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 3)]), Some(key.clone()), "c").await;
    assert!(matches!(other_body, Err(orderly::Error::Validation(_))), "{other_body:?}");
    // Keys are per customer.
    let bob = w
        .orderly
        .orders
        .place_order(&confirmed(&customer()), order_of(&[(mug, 2)]), Some(key), "d")
        .await
        .expect("bob");
    assert_ne!(bob.id, first.id);

    // Replays racing each other still make one order.
    let key = IdempotencyKey::parse("race").expect("key");
    let racer = customer();
    let mut racers = JoinSet::new();
    for _ in 0..8 {
        let (orderly, racer, key) = (w.orderly.clone(), racer.clone(), key.clone());
        racers.spawn(async move {
            orderly
                .orders
                .place_order(&confirmed(&racer), order_of(&[(mug, 1)]), Some(key), "r")
                .await
                .expect("placed")
                .id
        });
    }
    let ids = racers.join_all().await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");

    // Racing replays for the last unit: the losers get the first answer, not "out of stock".
    let last = product(&w.orderly, "Last One", 100, 1).await;
    let key = IdempotencyKey::parse("last-one").expect("key");
    let buyer = customer();
    let mut racers = JoinSet::new();
    for _ in 0..6 {
        let (orderly, buyer, key) = (w.orderly.clone(), buyer.clone(), key.clone());
        racers.spawn(async move {
            orderly.orders.place_order(&confirmed(&buyer), order_of(&[(last, 1)]), Some(key), "r").await.map(|p| p.id)
        });
    }
    let answers: Vec<_> = racers.join_all().await;
    let first = answers[0].as_ref().expect("placed");
    assert!(answers.iter().all(|a| a.as_ref().ok() == Some(first)), "{answers:?}");
    assert_eq!(stock(&w.orderly, mug).await, 5, "10 - 2 (ada) - 2 (bob) - 1 (the racers, once)");
}

async fn cancelling_returns_stock_exactly_once(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 100, 10).await;
    let ada = customer();
    let placed =
        w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 4)]), None, "a").await.expect("placed");
    assert_eq!(stock(&w.orderly, mug).await, 6);
    let mut cancels = JoinSet::new();
    for _ in 0..5 {
        let (orderly, ada) = (w.orderly.clone(), ada.clone());
        let id = placed.id;
        cancels.spawn(async move { orderly.orders.cancel_order(&ada, id, None, Default::default()).await.is_ok() });
    }
    let succeeded = cancels.join_all().await.into_iter().filter(|ok| *ok).count();
    assert_eq!(succeeded, 1);
    assert_eq!(stock(&w.orderly, mug).await, 10, "returned once");
    let order = w.store.get_order(placed.id).await.expect("get").expect("order");
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.history.len(), 2, "placement and cancellation in the audit trail");
    assert!(w.orderly.orders.cancel_order(&customer(), placed.id, None, Default::default()).await.is_err());
}

async fn the_sweep_expires_unpaid_orders_and_releases_lost_ones(store: Arc<dyn Store>) {
    let w = world(store);
    let mug = product(&w.orderly, "Mug", 100, 10).await;
    let ada = customer();
    let pending =
        w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 2)]), None, "a").await.expect("pending");
    let deferred =
        w.orderly.orders.place_order(&confirmed(&ada), order_of(&[(mug, 3)]), None, "b").await.expect("deferred");
    assert_eq!(deferred.status_code, 202);
    // The release message is lost: only the sweep can release the order.
    w.queue.receive(QueueName::Orders, 10, Duration::days(2), Duration::ZERO).await.expect("swallow");

    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep"), Default::default(), "nothing due yet");
    w.clock.advance(Duration::seconds(301));
    let report = w.orderly.sweeper.sweep().await.expect("sweep");
    assert_eq!((report.released, report.expired), (1, 0));
    assert_eq!(w.store.get_order(deferred.id).await.expect("get").expect("order").status, OrderStatus::Pending);

    // Just past the first order's deadline; the released one became pending 301 s later.
    w.clock.advance(settings().payment_deadline - Duration::seconds(300));
    let report = w.orderly.sweeper.sweep().await.expect("sweep");
    assert_eq!(report.expired, 1, "the first order's deadline passed; the released one has a day more");
    let expired = w.store.get_order(pending.id).await.expect("get").expect("order");
    assert_eq!(
        (expired.status, expired.cancel_reason.as_deref()),
        (OrderStatus::Cancelled, Some("payment deadline passed"))
    );
    assert_eq!(stock(&w.orderly, mug).await, 7, "its 2 units are back, the other order's 3 still reserved");
    w.clock.advance(Duration::seconds(301));
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").expired, 1);
    assert_eq!(stock(&w.orderly, mug).await, 10);
}

/// 1,000 customers at once for the last 100 units: exactly 100 orders, stock 0, never below.
async fn a_thousand_customers_never_oversell(store: Arc<dyn Store>) {
    let w = world(store);
    let hot = product(&w.orderly, "Last Units", 999, 100).await;
    let mut buyers = JoinSet::new();
    for _ in 0..1000 {
        let orderly = w.orderly.clone();
        buyers.spawn(async move {
            orderly.orders.place_order(&confirmed(&customer()), order_of(&[(hot, 1)]), None, "load").await
        });
    }
    let (mut accepted, mut refused) = (0, 0);
    for result in buyers.join_all().await {
        match result {
            Ok(placed) => {
                assert_eq!(placed.status_code, 201);
                accepted += 1;
            }
            Err(orderly::Error::Conflict(_)) => refused += 1,
            Err(other) => panic!("neither accepted nor refused for stock: {other:?}"),
        }
    }
    assert_eq!((accepted, refused), (100, 900));
    assert_eq!(stock(&w.orderly, hot).await, 0);
    let counters = w.store.order_counters().await.expect("counters");
    assert_eq!((counters.placed, counters.by_status.get(&OrderStatus::Pending).copied()), (100, Some(100)));
}

/// The HTTP routes: status codes, ownership (404 for others), admin status changes, metrics.
async fn orders_over_http(store: Arc<dyn Store>) {
    let w = world(store);
    let api = Api::over(w.orderly.clone()).await;
    let mug = product(&w.orderly, "Mug", 250, 10).await;
    let (_, ada) = api.customer("ada@example.com").await;
    let (_, bob) = api.customer("bob@example.com").await;
    let (ada, bob) = (format!("Bearer {ada}"), format!("Bearer {bob}"));
    let body = json!({"items": [{"product_id": mug, "quantity": 2}]});

    let placed = api
        .send(Method::POST, "/orders", Some(body.clone()), &[("authorization", &ada), ("idempotency-key", "k-1")])
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let id = placed.body["id"].as_str().expect("id").to_owned();
    assert_eq!(placed.headers["location"], format!("/orders/{id}").as_str());
    let replay = api
        .send(Method::POST, "/orders", Some(body.clone()), &[("authorization", &ada), ("idempotency-key", "k-1")])
        .await;
    assert_eq!((replay.status, &replay.body), (StatusCode::CREATED, &placed.body));
    let deferred = api.send(Method::POST, "/orders", Some(body.clone()), &[("authorization", &ada)]).await;
    assert_eq!(deferred.status, StatusCode::ACCEPTED);
    assert_eq!(deferred.body["status"], "processing order");

    let uri = format!("/orders/{id}");
    assert_eq!(api.send(Method::GET, &uri, None, &[("authorization", &ada)]).await.status, StatusCode::OK);
    assert_problem(&api.send(Method::GET, &uri, None, &[("authorization", &bob)]).await, StatusCode::NOT_FOUND);
    assert_problem(
        &api.send(Method::POST, &format!("{uri}/cancel"), None, &[("authorization", &bob)]).await,
        StatusCode::NOT_FOUND,
    );
    let status = api.send(Method::GET, &format!("{uri}/status"), None, &[("authorization", &ada)]).await;
    assert_eq!((status.body["status"].as_str(), status.body["version"].as_i64()), (Some("pending"), Some(1)));

    let mine = api.send(Method::GET, "/orders", None, &[("authorization", &ada)]).await;
    let ids: Vec<&str> =
        mine.body["items"].as_array().expect("items").iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(ids, [deferred.body["id"].as_str().expect("id"), id.as_str()], "own orders, newest first");
    let theirs = api.send(Method::GET, "/orders", None, &[("authorization", &bob)]).await;
    assert_eq!(theirs.body["items"], json!([]));
    let deferred_only =
        api.send(Method::GET, "/orders?status=processing%20order", None, &[("authorization", &ada)]).await;
    assert_eq!(deferred_only.body["items"].as_array().map(Vec::len), Some(1));
    assert_problem(
        &api.send(Method::GET, "/orders?status=lost", None, &[("authorization", &ada)]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    // Admin: every order, legal status changes only, metrics; customers cannot.
    assert_eq!(api.get("/orders").await.body["items"].as_array().map(Vec::len), Some(2));
    let to = |status: &str| json!({"status": status});
    assert_problem(
        &api.send(Method::PUT, &format!("{uri}/status"), Some(to("shipped")), &[]).await,
        StatusCode::CONFLICT,
    );
    assert_problem(
        &api.send(Method::PUT, &format!("{uri}/status"), Some(to("paid")), &[("authorization", &ada)]).await,
        StatusCode::FORBIDDEN,
    );
    assert_problem(
        &api.send(Method::PUT, &format!("{uri}/status"), Some(to("lost")), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    for next in ["paid", "shipped", "delivered"] {
        let changed = api.send(Method::PUT, &format!("{uri}/status"), Some(to(next)), &[]).await;
        assert_eq!((changed.status, changed.body["status"].as_str()), (StatusCode::OK, Some(next)), "{}", changed.body);
    }
    assert_problem(
        &api.send(Method::POST, &format!("{uri}/cancel"), None, &[("authorization", &ada)]).await,
        StatusCode::CONFLICT,
    );
    let metrics = api.get("/orders/metrics").await;
    assert_eq!(metrics.body["total_orders"], 2);
    assert_eq!(metrics.body["by_status"]["delivered"], 1);
    assert_eq!(metrics.body["by_status"]["processing order"], 1);
    assert!(metrics.body["average_processing_seconds"].is_number());
    assert_problem(
        &api.send(Method::GET, "/orders/metrics", None, &[("authorization", &ada)]).await,
        StatusCode::FORBIDDEN,
    );

    // Bad input: problem documents, nothing written.
    for (bad, expected) in [
        (json!({"items": []}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"items": [{"product_id": mug, "quantity": 0}]}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"items": [{"product_id": mug, "quantity": 1}, {"product_id": mug, "quantity": 1}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"items": [{"product_id": "not-a-uuid", "quantity": 1}]}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"items": [{"product_id": Uuid::now_v7(), "quantity": 1}]}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"items": [{"product_id": mug, "quantity": 11}]}), StatusCode::CONFLICT),
    ] {
        let reply = api.send(Method::POST, "/orders", Some(bad.clone()), &[("authorization", &bob)]).await;
        assert_problem(&reply, expected);
    }
    let too_many: Vec<Value> =
        (0..MAX_ORDER_LINES + 1).map(|_| json!({"product_id": Uuid::now_v7(), "quantity": 1})).collect();
    let reply = api.send(Method::POST, "/orders", Some(json!({"items": too_many})), &[("authorization", &bob)]).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = api
        .send(
            Method::POST,
            "/orders",
            Some(body),
            &[("authorization", &bob), ("idempotency-key", "bad key with spaces")],
        )
        .await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let two_keys = [("authorization", bob.as_str()), ("idempotency-key", "k-a"), ("idempotency-key", "k-b")];
    let one_line = json!({"items": [{"product_id": mug, "quantity": 1}]});
    let reply = api.send(Method::POST, "/orders", Some(one_line), &two_keys).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["errors"][0]["field"], "Idempotency-Key", "{}", reply.body);
    assert_problem(
        &api.send(Method::POST, "/orders", Some(json!({"items": [{"product_id": mug, "quantity": 1}]})), &[]).await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(stock(&w.orderly, mug).await, 6, "only ada's two orders hold stock");
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("format")
}

trait NowForTest {
    fn now_for_test(&self) -> OffsetDateTime;
}

impl NowForTest for FakeClock {
    fn now_for_test(&self) -> OffsetDateTime {
        orderly::clock::Clock::now(self)
    }
}

on_every_store!(
    orders_reserve_stock_and_snapshot_prices,
    insufficient_stock_writes_nothing_and_starts_no_cooldown,
    the_cooldown_defers_and_releases_in_order,
    deferred_orders_are_capped_with_retry_after,
    cancelled_deferred_orders_give_their_slots_back,
    unpaid_holds_are_capped,
    an_idempotency_key_replays_the_first_answer,
    cancelling_returns_stock_exactly_once,
    the_sweep_expires_unpaid_orders_and_releases_lost_ones,
    a_thousand_customers_never_oversell,
    orders_over_http,
);
