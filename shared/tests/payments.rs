//! Payments and fulfillment end to end on every store: the full journey, declines, transient
//! failures into the dead-letter state, duplicate and poisoned messages, refunds, and card
//! data never stored, queued or logged.

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::{Method, StatusCode};
use common::http::{Api, assert_problem};
use orderly::clock::Clock;
use orderly::clock::FakeClock;
use orderly::domain::PaymentMessage;
use orderly::domain::Services;
use orderly::gateway::{
    CardDetails, CardToken, ChargeOutcome, CircuitBreaker, GatewayError, PaymentGateway, SimulatedGateway, simulated,
};
use orderly::model::{CardSummary, NoticeKind, OrderStatus, PaymentStatus};
use orderly::queue::{Delivery, OutgoingMessage, Queue, QueueError, QueueName, SqliteQueue, process_batch};
use orderly::store::{PageRequest, PaymentChange, PaymentFilter, Store, TransitionWrite};
use orderly::workers::{FulfillmentWorker, OrderWorker, PaymentWorker};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const MAX_RECEIVES: u32 = 5;

struct World {
    api: Api,
    orderly: Services,
    clock: Arc<FakeClock>,
    queue: Arc<SqliteQueue>,
    store: Arc<dyn Store>,
    payments: PaymentWorker,
    fulfillment: FulfillmentWorker,
}

async fn world_with(store: Arc<dyn Store>, failure_rate: f64) -> World {
    world_with_latency(store, failure_rate, StdDuration::ZERO).await
}

async fn world_with_latency(store: Arc<dyn Store>, failure_rate: f64, latency: StdDuration) -> World {
    world_with_gateway(store, Arc::new(SimulatedGateway::new(latency, failure_rate))).await
}

async fn world_with_gateway(store: Arc<dyn Store>, gateway: Arc<dyn PaymentGateway>) -> World {
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let queue = Arc::new(SqliteQueue::in_memory(clock.clone(), MAX_RECEIVES).expect("queue"));
    let orderly = common::orderly_with(store.clone(), clock.clone(), common::test_auth())
        .with_queue(queue.clone())
        .with_gateway(gateway)
        .services();
    let api = Api::over(orderly.clone()).await;
    let payments = PaymentWorker::new(orderly.payments.clone(), CircuitBreaker::new(3, StdDuration::from_millis(200)));
    let fulfillment = FulfillmentWorker::new(orderly.fulfillment.clone());
    World { api, orderly, clock, queue, store, payments, fulfillment }
}

async fn world(store: Arc<dyn Store>) -> World {
    world_with(store, 0.0).await
}

impl World {
    /// A customer with a pending order for 2 × 12.50: (bearer header, order id, product id).
    async fn pending_order(&self, email: &str) -> (String, String, String) {
        let product =
            json!({"name": format!("Kettle {email}"), "price_cents": 1250, "stock": 10, "category": "kitchen"});
        let product = self.api.post("/products", product).await.body["id"].as_str().expect("product").to_owned();
        let (_, token) = self.api.customer(email).await;
        let bearer = format!("Bearer {token}");
        let order = json!({"items": [{"product_id": product, "quantity": 2}],
                           "shipping_address": {"line1": "1 Main St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"}});
        let placed = self.api.send(Method::POST, "/orders", Some(order), &[("authorization", &bearer)]).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
        (bearer, placed.body["id"].as_str().expect("order").to_owned(), product)
    }

    /// Logs a customer in again (tokens expire by the fake clock too): the bearer header.
    async fn login(&self, email: &str) -> String {
        let login = json!({"email": email, "password": common::http::CUSTOMER_PASSWORD});
        let reply = self.api.send(Method::POST, "/auth/login", Some(login), &[("authorization", "")]).await;
        format!("Bearer {}", reply.body["access_token"].as_str().expect("token"))
    }

    async fn pay(&self, bearer: &str, order: &str, number: &str) -> common::http::Reply {
        let body = json!({"order_id": order, "method": "card",
                          "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123", "holder": "A Customer"}});
        self.api.send(Method::POST, "/payments", Some(body), &[("authorization", bearer)]).await
    }

    /// A payment accepted (202) whose charge message then dies unhandled: the reply, and the
    /// message as it was received.
    async fn pay_and_lose_the_message(&self, bearer: &str, order: &str) -> (common::http::Reply, Vec<Delivery>) {
        let accepted = self.pay(bearer, order, simulated::SUCCEEDS).await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
        let lost =
            self.queue.receive(QueueName::Payments, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
        self.queue.delete(QueueName::Payments, &lost[0].receipt).await.expect("the message dies");
        (accepted, lost)
    }

    /// The stored payment a POST /payments reply created.
    async fn payment(&self, reply: &common::http::Reply) -> orderly::model::Payment {
        let id = reply.body["id"].as_str().expect("id").parse().expect("uuid");
        self.store.get_payment(id).await.expect("get").expect("payment")
    }

    async fn order(&self, id: &str) -> orderly::model::Order {
        self.store.get_order(id.parse().expect("uuid")).await.expect("get").expect("order")
    }

    async fn run_payments(&self) -> usize {
        common::drain(self.queue.as_ref(), QueueName::Payments, &self.payments).await
    }

    async fn run_fulfillment(&self) -> usize {
        common::drain(self.queue.as_ref(), QueueName::Fulfillment, &self.fulfillment).await
    }
}

/// Sign up → order → pay → shipped with a tracking number, with no further request → delivered.
async fn the_full_journey(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    let paid = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.body);
    assert_eq!((paid.body["status"].as_str(), paid.body["amount_cents"].as_i64()), (Some("pending"), Some(2500)));
    assert_eq!(
        (paid.body["card"]["brand"].as_str(), paid.body["card"]["last4"].as_str()),
        (Some("visa"), Some("4242"))
    );
    let payment_uri = paid.headers["location"].to_str().expect("location").to_owned();

    assert_eq!(w.run_payments().await, 1);
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid);
    assert_eq!(w.run_fulfillment().await, 1);
    let shipped = w.order(&order).await;
    assert_eq!(shipped.status, OrderStatus::Shipped);

    let tracking =
        w.api.send(Method::GET, &format!("/orders/{order}/tracking"), None, &[("authorization", &bearer)]).await;
    let events: Vec<&str> =
        tracking.body["events"].as_array().expect("events").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events, ["placed", "paid", "label_created", "shipped"]);
    assert!(tracking.body["tracking_number"].as_str().is_some_and(|t| t.starts_with("OP")), "{}", tracking.body);
    let label = w.api.send(Method::GET, &format!("/orders/{order}/label"), None, &[("authorization", &bearer)]).await;
    assert_eq!(label.status, StatusCode::OK);
    let zpl = label.body.as_str().expect("text");
    assert!(
        zpl.starts_with("^XA")
            && zpl.trim_end().ends_with("^XZ")
            && zpl.contains(tracking.body["tracking_number"].as_str().expect("tn"))
    );

    let delivered =
        w.api.send(Method::PUT, &format!("/orders/{order}/fulfillment"), Some(json!({"action": "deliver"})), &[]).await;
    assert_eq!(delivered.body["status"], "delivered", "{}", delivered.body);
    let payment = w.api.send(Method::GET, &payment_uri, None, &[("authorization", &bearer)]).await;
    assert_eq!(payment.body["status"], "succeeded");
    let with_payments = w.api.send(Method::GET, &format!("/orders/{order}"), None, &[("authorization", &bearer)]).await;
    assert_eq!(with_payments.body["payments"][0]["status"], "succeeded");
    let metrics = w.api.get("/orders/metrics").await;
    assert_eq!(metrics.body["by_status"]["delivered"], 1);
}

async fn a_declined_card_leaves_the_order_payable(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    for (card, reason) in
        [(simulated::DECLINED, "card_declined"), (simulated::INSUFFICIENT_FUNDS, "insufficient_funds")]
    {
        let paid = w.pay(&bearer, &order, card).await;
        assert_eq!(paid.status, StatusCode::ACCEPTED);
        // A second payment while one is in flight is refused.
        assert_problem(&w.pay(&bearer, &order, simulated::SUCCEEDS).await, StatusCode::CONFLICT);
        w.run_payments().await;
        let payment = w.payment(&paid).await;
        assert_eq!((payment.status, payment.failure_reason.as_deref()), (PaymentStatus::Failed, Some(reason)));
        assert_eq!(w.order(&order).await.status, OrderStatus::Pending);
    }
    assert_eq!(w.pay(&bearer, &order, simulated::SUCCEEDS).await.status, StatusCode::ACCEPTED, "paying again works");
    w.run_payments().await;
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid);
    assert_problem(&w.pay(&bearer, &order, simulated::SUCCEEDS).await, StatusCode::CONFLICT);
}

async fn payments_are_validated_and_private(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    let (_, other) = w.api.customer("bob@example.com").await;
    let other = format!("Bearer {other}");
    assert_problem(&w.pay(&bearer, &order, "4242424242424241").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(&w.pay(&other, &order, simulated::SUCCEEDS).await, StatusCode::NOT_FOUND);
    let expired = json!({"order_id": order, "method": "card", "card": {"number": simulated::SUCCEEDS, "exp_month": 1, "exp_year": 2020, "cvc": "123"}});
    assert_problem(
        &w.api.send(Method::POST, "/payments", Some(expired), &[("authorization", &bearer)]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let cash = json!({"order_id": order, "method": "cash", "card": {"number": simulated::SUCCEEDS, "exp_month": 1, "exp_year": 2030, "cvc": "123"}});
    assert_problem(
        &w.api.send(Method::POST, "/payments", Some(cash), &[("authorization", &bearer)]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let paid = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    let uri = paid.headers["location"].to_str().expect("location").to_owned();
    assert_problem(&w.api.send(Method::GET, &uri, None, &[("authorization", &other)]).await, StatusCode::NOT_FOUND);
    assert_eq!(w.api.get(&uri).await.status, StatusCode::OK, "admins see every payment");
    assert_eq!(w.api.get("/payments").await.body["items"].as_array().map(Vec::len), Some(1));
    assert_problem(
        &w.api.send(Method::GET, "/payments", None, &[("authorization", &bearer)]).await,
        StatusCode::FORBIDDEN,
    );

    // An Idempotency-Key replays the first answer; the card never reaches the store.
    let body = json!({"order_id": order, "method": "card", "card": {"number": simulated::SUCCEEDS, "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
    let replay = w
        .api
        .send(Method::POST, "/payments", Some(body), &[("authorization", &bearer), ("idempotency-key", "pay-1")])
        .await;
    assert_problem(&replay, StatusCode::CONFLICT);
}

/// The gateway down for good: charges are tried (real failures use deliveries), the breaker
/// postpones the rest, and once the charge window has passed each payment is failed, so its
/// order can be paid again. Nothing is marked paid, nothing is dead-lettered or left in limbo.
async fn a_gateway_down_for_good_fails_payments_after_the_charge_window(store: Arc<dyn Store>) {
    let w = world_with(store, 1.0).await;
    let mut orders = Vec::new();
    for i in 0..3 {
        let (bearer, order, _) = w.pending_order(&format!("c{i}@example.com")).await;
        assert_eq!(w.pay(&bearer, &order, simulated::SUCCEEDS).await.status, StatusCode::ACCEPTED);
        orders.push((bearer, order));
    }
    for _ in 0..8 {
        w.run_payments().await;
        tokio::time::sleep(StdDuration::from_millis(250)).await; // the breaker's cool-down (real time)
        w.clock.advance(Duration::minutes(5)); // retries and postponements (queue time)
    }
    assert!(w.queue.dead_letters(QueueName::Payments, 10).await.expect("dead letters").is_empty());
    for (i, (_, order)) in orders.iter().enumerate() {
        let stored = w.order(order).await;
        assert_eq!((stored.status, stored.payment_id), (OrderStatus::Pending, None), "never paid, payable again");
        let payments = w
            .store
            .list_payments(&PaymentFilter { order: Some(stored.id), status: None }, &PageRequest::first(10))
            .await
            .expect("payments")
            .items;
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].status, PaymentStatus::Failed);
        assert!(payments[0].failure_reason.as_deref().is_some_and(|r| r.contains("in time")), "{payments:?}");
        let bearer = w.login(&format!("c{i}@example.com")).await;
        assert_eq!(w.pay(&bearer, order, simulated::SUCCEEDS).await.status, StatusCode::ACCEPTED, "payable again");
    }
}

/// While the breaker is open a charge is sent again for later instead of using up its
/// deliveries: a good payment waiting through more openings than it has deliveries is still
/// charged once the gateway is back, and never dead-lettered.
async fn a_resting_gateway_costs_a_bystander_no_deliveries(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("bystander@example.com").await;
    assert_eq!(w.pay(&bearer, &order, simulated::SUCCEEDS).await.status, StatusCode::ACCEPTED);
    for _ in 0..(MAX_RECEIVES * 2) {
        for _ in 0..3 {
            w.payments.breaker().record_failure(); // other customers' failing cards
        }
        assert!(w.payments.breaker().is_open());
        assert_eq!(w.run_payments().await, 1, "the charge came round and was postponed");
        w.clock.advance(Duration::seconds(1));
    }
    assert_eq!(w.order(&order).await.status, OrderStatus::Pending);
    tokio::time::sleep(StdDuration::from_millis(250)).await; // the breaker rests, then lets a trial through
    w.clock.advance(Duration::seconds(1));
    w.run_payments().await;
    assert!(w.queue.dead_letters(QueueName::Payments, 10).await.expect("dead letters").is_empty());
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid, "charged once the gateway is back");
}

/// A payment whose message died (dead-lettered, or lost) blocks paying again only for the
/// charge window; then a new payment is accepted, the old one is failed, and a late redrive of
/// the old message charges nothing.
async fn a_dead_payment_does_not_block_paying_again(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    let (first, lost) = w.pay_and_lose_the_message(&bearer, &order).await;
    assert_eq!(w.pay(&bearer, &order, simulated::SUCCEEDS).await.status, StatusCode::CONFLICT, "still in progress");

    w.clock.advance(Duration::minutes(16));
    let bearer = w.login("ada@example.com").await;
    let second = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    assert_eq!(w.payment(&first).await.status, PaymentStatus::Failed);

    assert!(process_batch(&w.payments, &lost).await.is_empty(), "the redriven message is handled");
    assert_eq!(w.payment(&first).await.status, PaymentStatus::Failed, "and charges nothing");
    w.run_payments().await;
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid);
    assert_eq!(w.payment(&second).await.status, PaymentStatus::Succeeded);
}

/// A payment never charged (its message lost) on an order past its deadline: the sweep fails
/// the payment and expires the order in one write, with the stock back, and the customer is
/// told once (the cancellation), not "pay again" and then "cancelled".
async fn a_stale_payment_expires_with_its_order(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, product) = w.pending_order("ada@example.com").await;
    let (first, _) = w.pay_and_lose_the_message(&bearer, &order).await;
    w.clock.advance(Duration::minutes(31)); // past the charge window and the order's deadline
    w.orderly.sweeper.sweep().await.expect("sweep");

    let stored = w.order(&order).await;
    assert_eq!(
        (stored.status, stored.cancel_reason.as_deref()),
        (OrderStatus::Cancelled, Some("payment deadline passed"))
    );
    assert_eq!(stored.history.last().map(|h| h.actor.as_str()), Some("system"), "the sweep expired it");
    assert_eq!(w.payment(&first).await.status, PaymentStatus::Failed);
    let kettle = w.store.get_product(product.parse().expect("uuid")).await.expect("get").expect("product");
    assert_eq!(kettle.stock, 10, "the stock is back");
    let notices = w.store.list_notices(stored.customer_id, &PageRequest::first(10)).await.expect("notices").items;
    let mut kinds: Vec<NoticeKind> = notices.iter().map(|n| n.kind).collect();
    kinds.sort_by_key(|kind| format!("{kind:?}"));
    assert_eq!(kinds, [NoticeKind::OrderAccepted, NoticeKind::OrderCancelled]);
}

/// A payment accepted before the order's deadline keeps the order from expiring until it
/// settles: the sweep waits, and the capture pays the order (no charge-then-refund).
async fn the_deadline_waits_for_a_payment_in_flight(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (_, order, _) = w.pending_order("ada@example.com").await;
    let (_, unpaid, _) = w.pending_order("bob@example.com").await;
    w.clock.advance(Duration::minutes(29));
    let bearer = w.login("ada@example.com").await;
    assert_eq!(w.pay(&bearer, &order, simulated::SUCCEEDS).await.status, StatusCode::ACCEPTED, "just in time");
    w.clock.advance(Duration::minutes(2)); // past both orders' 30-minute deadline
    let report = w.orderly.sweeper.sweep().await.expect("sweep");
    assert_eq!(report.expired, 1, "only the order without a payment");
    assert_eq!(w.order(&unpaid).await.status, OrderStatus::Cancelled);
    assert_eq!(w.order(&order).await.status, OrderStatus::Pending, "the payment in flight settles it");
    w.run_payments().await;
    w.orderly.sweeper.sweep().await.expect("sweep");
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid, "charged once, never refunded");
}

impl World {
    /// Queues a charge the way `POST /payments` does, before its payment is recorded: the id.
    async fn queue_charge_ahead_of_its_payment(&self) -> Uuid {
        let payment_id = Uuid::now_v7();
        let token = CardToken("tok_sim_ok_queued_ahead".into()); // the simulated gateway's form
        let charge = PaymentMessage::Charge { payment_id, token, queued_at: Some(self.clock.now()) };
        let body = serde_json::to_string(&charge).expect("json");
        let message = OutgoingMessage { body, correlation_id: None };
        self.queue.send(QueueName::Payments, &message, Duration::ZERO).await.expect("send");
        payment_id
    }
}

/// The request that queued a charge died before recording its payment (the crash the order of
/// the two steps is for): the worker retries twice, a minute apart, then drops the charge two
/// minutes after it was queued, charging nothing and dead-lettering nothing, and the order is
/// still payable.
async fn a_charge_whose_payment_was_never_recorded_is_dropped(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    let orphan = w.queue_charge_ahead_of_its_payment().await;
    for delivery in 1..=3 {
        assert_eq!(w.run_payments().await, 1, "delivery {delivery}");
        w.clock.advance(Duration::seconds(60));
    }
    assert_eq!(w.run_payments().await, 0, "dropped at the third delivery");
    assert_eq!(w.queue.dead_letter_count(QueueName::Payments).await.expect("count"), 0);
    assert!(w.store.get_payment(orphan).await.expect("get").is_none());

    let paid = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.body);
    w.run_payments().await;
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid);
}

/// The worker got to a charge before its request recorded the payment: the delivery is tried
/// again, and charges the payment once it is there.
async fn a_charge_that_arrives_before_its_payment_waits_for_it(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (_, order, _) = w.pending_order("ada@example.com").await;
    let payment_id = w.queue_charge_ahead_of_its_payment().await;
    assert_eq!(w.run_payments().await, 1);
    assert!(w.store.get_payment(payment_id).await.expect("get").is_none(), "nothing charged or written");

    // Recorded as the request records it: pending, in flight on its order, in one write.
    let placed = w.order(&order).await;
    let now = w.clock.now();
    let payment = orderly::model::Payment {
        id: payment_id,
        order_id: placed.id,
        customer_id: placed.customer_id,
        amount_cents: placed.total_cents,
        status: PaymentStatus::Pending,
        method: "card".into(),
        card: CardSummary { brand: "visa".into(), last4: "4242".into(), exp_month: 12, exp_year: 2031 },
        gateway_reference: None,
        at_gateway_since: None,
        failure_reason: None,
        correlation_id: "test".into(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut in_flight = placed.clone();
    in_flight.payment_id = Some(payment_id);
    in_flight.version += 1;
    let write = TransitionWrite {
        previous: &placed,
        updated: &in_flight,
        restock: false,
        payment: Some(PaymentChange::Insert(&payment)),
        idempotency: None,
        notice: None,
    };
    w.store.transition_order(&write).await.expect("recorded");

    w.clock.advance(Duration::seconds(60));
    assert_eq!(w.run_payments().await, 1);
    let charged = w.store.get_payment(payment_id).await.expect("get").expect("payment");
    assert_eq!(charged.status, PaymentStatus::Succeeded);
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid);
}

/// More orders waiting on a payment in flight than the sweep reads at once: it still reads on
/// past them and expires the newer order nobody paid (it used to read only the 100 oldest).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_waiting_on_their_payment_do_not_hide_newer_ones_from_the_sweep() {
    let w = world(common::sqlite_store()).await;
    let mut waiting = Vec::new();
    for i in 0..101 {
        let email = format!("waiting{i}@example.com");
        let (_, order, _) = w.pending_order(&email).await;
        waiting.push((email, order));
    }
    w.clock.advance(Duration::minutes(1));
    let (_, unpaid, _) = w.pending_order("late@example.com").await;
    w.clock.advance(Duration::minutes(28));
    for (email, order) in &waiting {
        let bearer = w.login(email).await;
        assert_eq!(w.pay(&bearer, order, simulated::SUCCEEDS).await.status, StatusCode::ACCEPTED);
    }
    w.clock.advance(Duration::minutes(3)); // every order is past its deadline; no payment is stale

    let report = w.orderly.sweeper.sweep().await.expect("sweep");
    assert_eq!(report.expired, 1, "only the order nobody paid");
    assert_eq!(w.order(&unpaid).await.status, OrderStatus::Cancelled);
    assert_eq!(w.order(&waiting[0].1).await.status, OrderStatus::Pending, "its payment settles it");
}

#[tokio::test]
async fn the_breaker_opens_on_repeated_gateway_failures() {
    let w = world_with(common::sqlite_store(), 1.0).await;
    for i in 0..3 {
        let (bearer, order, _) = w.pending_order(&format!("c{i}@example.com")).await;
        w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    }
    w.run_payments().await;
    assert!(w.payments.breaker().is_open(), "three transient failures in a row open it");
}

/// A charge that never reached the gateway (its payment not recorded yet) is no verdict on it:
/// two failures, then such a charge, then a third failure opens the breaker.
#[tokio::test]
async fn a_charge_without_its_payment_does_not_reset_the_breaker() {
    let w = world_with(common::sqlite_store(), 1.0).await;
    for i in 0..2 {
        let (bearer, order, _) = w.pending_order(&format!("c{i}@example.com")).await;
        w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    }
    assert_eq!(w.run_payments().await, 2, "two transient failures");
    w.queue_charge_ahead_of_its_payment().await;
    assert_eq!(w.run_payments().await, 1, "not recorded yet");
    let (bearer, order, _) = w.pending_order("c2@example.com").await;
    w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    assert_eq!(w.run_payments().await, 1);
    assert!(w.payments.breaker().is_open(), "three gateway failures in a row, whatever came between");
}

/// The charge could not be queued: 503, nothing recorded, the order still payable, and a retry
/// with the same key goes through (no saved answer stands in its way).
#[tokio::test]
async fn a_charge_that_cannot_be_queued_records_nothing() {
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let inner = Arc::new(SqliteQueue::in_memory(clock.clone(), MAX_RECEIVES).expect("queue"));
    let queue = Arc::new(SendsFail { inner, failing: std::sync::atomic::AtomicBool::new(true) });
    let store = common::sqlite_store();
    let orderly = common::orderly_with(store.clone(), clock.clone(), common::test_auth())
        .with_queue(queue.clone())
        .with_gateway(Arc::new(SimulatedGateway::default()))
        .services();
    let api = Api::over(orderly.clone()).await;
    let product = json!({"name": "Kettle", "price_cents": 1250, "stock": 10, "category": "kitchen"});
    let product = api.post("/products", product).await.body["id"].as_str().expect("product").to_owned();
    let (_, token) = api.customer("ada@example.com").await;
    let bearer = format!("Bearer {token}");
    let order = json!({"items": [{"product_id": product, "quantity": 1}],
                       "shipping_address": {"line1": "1 Main St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"}});
    let placed = api.send(Method::POST, "/orders", Some(order), &[("authorization", &bearer)]).await;
    let order_id = placed.body["id"].as_str().expect("order").to_owned();
    let body = json!({"order_id": order_id, "method": "card",
                      "card": {"number": simulated::SUCCEEDS, "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
    let headers = [("authorization", bearer.as_str()), ("idempotency-key", "pay-1")];

    let refused = api.send(Method::POST, "/payments", Some(body.clone()), &headers).await;
    assert_problem(&refused, StatusCode::SERVICE_UNAVAILABLE);
    let unpaid = store.get_order(order_id.parse().expect("uuid")).await.expect("get").expect("order");
    assert_eq!((unpaid.payment_id, unpaid.version), (None, 1), "nothing recorded");
    let filter = PaymentFilter { order: Some(unpaid.id), status: None };
    let listed = store.list_payments(&filter, &PageRequest::first(10)).await.expect("payments");
    assert!(listed.items.is_empty());

    queue.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let accepted = api.send(Method::POST, "/payments", Some(body), &headers).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "the same key tries again: {}", accepted.body);
}

/// The embedded queue, whose sends fail while `failing` is set.
struct SendsFail {
    inner: Arc<SqliteQueue>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Queue for SendsFail {
    async fn send(&self, queue: QueueName, message: &OutgoingMessage, delay: Duration) -> Result<(), QueueError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError::Unavailable("the queue is down".into()));
        }
        self.inner.send(queue, message, delay).await
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

/// Every message type delivered twice, and a poisoned message inside a batch.
async fn duplicate_and_poisoned_messages_are_harmless(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, product) = w.pending_order("ada@example.com").await;
    w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    let charge =
        w.queue.receive(QueueName::Payments, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
    assert_eq!(charge.len(), 1);
    let twice = [charge[0].clone(), Delivery { message_id: "copy".into(), ..charge[0].clone() }];
    assert!(process_batch(&w.payments, &twice).await.is_empty());
    w.queue.delete(QueueName::Payments, &charge[0].receipt).await.expect("delete");
    let ships =
        w.queue.receive(QueueName::Fulfillment, 10, Duration::seconds(30), Duration::ZERO).await.expect("receive");
    assert_eq!(ships.len(), 1, "one fulfillment message for one capture");
    let twice = [ships[0].clone(), Delivery { message_id: "copy".into(), ..ships[0].clone() }];
    assert!(process_batch(&w.fulfillment, &twice).await.is_empty());
    let shipped = w.order(&order).await;
    assert_eq!((shipped.status, shipped.history.len()), (OrderStatus::Shipped, 3), "placed, paid, shipped: once each");

    let poison = Delivery {
        message_id: "poison".into(),
        receipt: String::new(),
        body: "{not json".into(),
        correlation_id: None,
        receive_count: 1,
    };
    let unknown = Delivery {
        body: json!({"kind": "ship", "order_id": Uuid::now_v7()}).to_string(),
        message_id: "unknown".into(),
        ..poison.clone()
    };
    let release = Delivery {
        body: json!({"kind": "release", "order_id": order}).to_string(),
        message_id: "release".into(),
        ..poison.clone()
    };
    assert!(process_batch(&w.fulfillment, &[poison.clone(), unknown]).await.is_empty(), "acknowledged, not retried");
    assert!(process_batch(&w.payments, std::slice::from_ref(&poison)).await.is_empty());
    assert!(process_batch(&OrderWorker::new(w.orderly.orders.clone()), &[poison, release]).await.is_empty());
    let product: Value = w.api.get(&format!("/products/{product}")).await.body;
    assert_eq!(product["stock"], 8);
}

async fn cancelling_a_paid_order_refunds_and_restocks(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, product) = w.pending_order("ada@example.com").await;
    w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    w.run_payments().await;
    let cancelled = w
        .api
        .send(
            Method::POST,
            &format!("/orders/{order}/cancel"),
            Some(json!({"reason": "changed my mind"})),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    let payment =
        w.store.get_payment(w.order(&order).await.payment_id.expect("payment")).await.expect("get").expect("payment");
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert_eq!(w.api.get(&format!("/products/{product}")).await.body["stock"], 10);
    // The queued fulfillment finds a cancelled order and does nothing.
    w.run_fulfillment().await;
    assert_eq!(w.order(&order).await.status, OrderStatus::Cancelled);
    // A shipped order cannot be cancelled.
    let (bearer, order, _) = w.pending_order("bob@example.com").await;
    w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    w.run_payments().await;
    w.run_fulfillment().await;
    assert_problem(
        &w.api.send(Method::POST, &format!("/orders/{order}/cancel"), None, &[("authorization", &bearer)]).await,
        StatusCode::CONFLICT,
    );
}

async fn a_payment_for_a_cancelled_order_is_not_charged(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    let paid = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    let cancel =
        w.api.send(Method::POST, &format!("/orders/{order}/cancel"), None, &[("authorization", &bearer)]).await;
    assert_eq!(cancel.body["status"], "cancelled", "{}", cancel.body);
    // Failed with the cancellation, in its write: it never shows pending on a cancelled order,
    // even if its charge never comes (dead-lettered).
    let payment = w.payment(&paid).await;
    assert_eq!((payment.status, payment.failure_reason.as_deref()), (PaymentStatus::Failed, Some("order cancelled")));
    assert_eq!(w.run_payments().await, 1, "the charge comes and finds it settled");
    let payment = w.payment(&paid).await;
    assert_eq!((payment.status, payment.gateway_reference), (PaymentStatus::Failed, None), "never captured");
    assert_eq!(w.run_fulfillment().await, 0, "nothing to ship");
}

/// A customer's payment whose worker died (was dropped) once its charge was out at the
/// gateway, which never answered: the world, the customer's bearer, the order and the payment.
async fn charge_out_with_a_dead_worker(store: Arc<dyn Store>) -> (World, String, String, common::http::Reply) {
    let gateway = Arc::new(FaultyGateway::new(false, true));
    let w = world_with_gateway(store, gateway.clone()).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    let paid = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    // Out at the gateway once the gateway has taken the hanging charge. The mark is written
    // before the charge goes out: a worker dropped between the two (waiting for the mark alone)
    // left the hang armed for the next charge, and the test hung once in CI.
    let out = async {
        while gateway.next_charge_hangs.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = w.run_payments() => panic!("the gateway never answers this charge"),
        () = out => {}
    }
    assert!(w.payment(&paid).await.at_gateway_since.is_some(), "marked before the charge went out");
    (w, bearer, order, paid)
}

/// A worker that dies while its charge is out at the gateway leaves a payment that may have
/// been captured: past the charge window it is still not given up on (paying again is refused
/// as in progress), and the redelivered charge asks the gateway again and settles it.
async fn a_charge_lost_at_the_gateway_is_asked_again_not_given_up(store: Arc<dyn Store>) {
    let (w, _, order, paid) = charge_out_with_a_dead_worker(store).await;
    w.clock.advance(Duration::minutes(16)); // past the charge window; the delivery is visible again
    let bearer = w.login("ada@example.com").await;
    let again = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "maybe charged: not given up on: {}", again.body);
    assert_eq!(w.payment(&paid).await.status, PaymentStatus::Pending);
    w.run_payments().await;
    let settled = w.payment(&paid).await;
    assert_eq!((settled.status, settled.at_gateway_since), (PaymentStatus::Succeeded, None));
    assert_eq!(w.order(&order).await.status, OrderStatus::Paid);
}

/// The order is cancelled while a dead worker's charge is out at the gateway, where it may
/// have been captured: the redelivered charge asks the gateway again and refunds a capture,
/// rather than failing a payment whose money may have been taken.
async fn a_charge_out_at_the_gateway_when_its_order_is_cancelled_is_asked_again(store: Arc<dyn Store>) {
    let (w, bearer, order, paid) = charge_out_with_a_dead_worker(store).await;
    let cancelled =
        w.api.send(Method::POST, &format!("/orders/{order}/cancel"), None, &[("authorization", &bearer)]).await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);

    w.clock.advance(Duration::minutes(1)); // the delivery is visible again
    assert_eq!(w.run_payments().await, 1);
    let settled = w.payment(&paid).await;
    assert_eq!(settled.status, PaymentStatus::Refunded, "{settled:?}");
    assert!(settled.gateway_reference.is_some(), "asked again: captured, then refunded");
    assert!(w.store.pending_refunds(10).await.expect("pending").is_empty(), "the refund is confirmed");
    assert_eq!(w.order(&order).await.status, OrderStatus::Cancelled);
}

/// The order is cancelled while the gateway is capturing: the capture is refunded.
async fn a_payment_that_succeeds_after_cancellation_is_refunded(store: Arc<dyn Store>) {
    let w = world_with_latency(store, 0.0, StdDuration::from_millis(400)).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    let paid = w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    let (charged, cancel) = tokio::join!(w.run_payments(), async {
        tokio::time::sleep(StdDuration::from_millis(150)).await;
        w.api.send(Method::POST, &format!("/orders/{order}/cancel"), None, &[("authorization", &bearer)]).await
    });
    assert_eq!((charged, cancel.body["status"].as_str()), (1, Some("cancelled")), "{}", cancel.body);
    let payment = w.payment(&paid).await;
    assert_eq!(payment.status, PaymentStatus::Refunded);
    assert!(payment.gateway_reference.is_some(), "it was captured, then refunded");
    assert_eq!(w.order(&order).await.status, OrderStatus::Cancelled);
    assert_eq!(w.run_fulfillment().await, 0, "nothing to ship");
}

/// Admin status changes keep the side effects: shipping creates the shipment; marking an order
/// paid by hand is refused while a payment is in flight.
async fn admin_status_changes_keep_their_side_effects(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    let status = |s: &str| json!({"status": s});
    assert_problem(
        &w.api.send(Method::PUT, &format!("/orders/{order}/status"), Some(status("paid")), &[]).await,
        StatusCode::CONFLICT,
    );
    w.run_payments().await;
    let shipped = w.api.send(Method::PUT, &format!("/orders/{order}/status"), Some(status("shipped")), &[]).await;
    assert_eq!(shipped.body["status"], "shipped", "{}", shipped.body);
    assert!(shipped.body["shipment"]["tracking_number"].is_string(), "{}", shipped.body);
    let too_long = json!({"status": "delivered", "reason": "x".repeat(501)});
    assert_problem(
        &w.api.send(Method::PUT, &format!("/orders/{order}/status"), Some(too_long), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_problem(&w.pay(&bearer, &order, simulated::SUCCEEDS).await, StatusCode::CONFLICT);
    let admin = format!("Bearer {}", w.api.admin_token);
    let admin_pays = w.pay(&admin, &order, simulated::SUCCEEDS).await;
    assert_problem(&admin_pays, StatusCode::FORBIDDEN);
}

/// The simulated gateway, except that refunds fail while `refunds_down` is set, and the next
/// charge never answers while `next_charge_hangs` is set (a worker dying mid-charge).
struct FaultyGateway {
    inner: SimulatedGateway,
    refunds_down: std::sync::atomic::AtomicBool,
    next_charge_hangs: std::sync::atomic::AtomicBool,
}

impl FaultyGateway {
    fn new(refunds_down: bool, next_charge_hangs: bool) -> Self {
        Self {
            inner: SimulatedGateway::default(),
            refunds_down: refunds_down.into(),
            next_charge_hangs: next_charge_hangs.into(),
        }
    }
}

#[async_trait::async_trait]
impl PaymentGateway for FaultyGateway {
    async fn tokenize(&self, card: &CardDetails) -> Result<CardToken, GatewayError> {
        self.inner.tokenize(card).await
    }
    async fn charge(&self, token: &CardToken, amount: i64, key: &str) -> Result<ChargeOutcome, GatewayError> {
        if self.next_charge_hangs.swap(false, std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.charge(token, amount, key).await
    }
    async fn refund(&self, reference: &str, amount: i64) -> Result<(), GatewayError> {
        if self.refunds_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GatewayError::Transient("refunds are down".into()));
        }
        self.inner.refund(reference, amount).await
    }
}

/// A refund the gateway does not confirm stays recorded (written with the cancellation) and
/// the sweep retries it until it is confirmed, behind the refunds not tried since.
async fn unconfirmed_refunds_are_retried_by_the_sweep(store: Arc<dyn Store>) {
    let gateway = Arc::new(FaultyGateway::new(true, false));
    let w = world_with_gateway(store, gateway.clone()).await;
    let (bearer, order, _) = w.pending_order("ada@example.com").await;
    w.pay(&bearer, &order, simulated::SUCCEEDS).await;
    w.run_payments().await;
    let cancelled =
        w.api.send(Method::POST, &format!("/orders/{order}/cancel"), None, &[("authorization", &bearer)]).await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    let payment = w.order(&order).await.payment_id.expect("payment");
    assert_eq!(w.store.pending_refunds(10).await.expect("pending"), [payment]);
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").refunds_confirmed, 0, "the gateway is still down");
    // Tried and not confirmed: it waits behind a refund not tried since.
    let (bob, second, _) = w.pending_order("bob@example.com").await;
    w.pay(&bob, &second, simulated::SUCCEEDS).await;
    w.run_payments().await;
    w.api.send(Method::POST, &format!("/orders/{second}/cancel"), None, &[("authorization", &bob)]).await;
    let second = w.order(&second).await.payment_id.expect("payment");
    assert_eq!(w.store.pending_refunds(10).await.expect("pending"), [second, payment]);
    gateway.refunds_down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").refunds_confirmed, 2);
    assert!(w.store.pending_refunds(10).await.expect("pending").is_empty());
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").refunds_confirmed, 0, "confirmed once");
}

on_every_store!(
    the_full_journey,
    a_declined_card_leaves_the_order_payable,
    payments_are_validated_and_private,
    a_gateway_down_for_good_fails_payments_after_the_charge_window,
    a_resting_gateway_costs_a_bystander_no_deliveries,
    a_dead_payment_does_not_block_paying_again,
    the_deadline_waits_for_a_payment_in_flight,
    a_stale_payment_expires_with_its_order,
    a_charge_lost_at_the_gateway_is_asked_again_not_given_up,
    a_charge_out_at_the_gateway_when_its_order_is_cancelled_is_asked_again,
    duplicate_and_poisoned_messages_are_harmless,
    cancelling_a_paid_order_refunds_and_restocks,
    a_payment_for_a_cancelled_order_is_not_charged,
    a_payment_that_succeeds_after_cancellation_is_refunded,
    admin_status_changes_keep_their_side_effects,
    unconfirmed_refunds_are_retried_by_the_sweep,
    a_charge_whose_payment_was_never_recorded_is_dropped,
    a_charge_that_arrives_before_its_payment_waits_for_it,
);

/// After a journey with every test card, no card number or CVC is in the store, the queue or
/// the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_data_is_never_stored_queued_or_logged() {
    let logs = common::logs::captured();
    let dir = std::env::temp_dir().join(format!("orderly-cards-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let store: Arc<dyn Store> = Arc::new(orderly::store::SqliteStore::open(&dir.join("store.sqlite3")).expect("store"));
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let queue = Arc::new(SqliteQueue::open(&dir.join("queues.sqlite3"), clock.clone(), MAX_RECEIVES).expect("queue"));
    let orderly = common::orderly_with(store.clone(), clock.clone(), common::test_auth())
        .with_queue(queue.clone())
        .with_gateway(Arc::new(SimulatedGateway::default()))
        .services();
    let w = World {
        api: Api::over(orderly.clone()).await,
        payments: PaymentWorker::new(orderly.payments.clone(), CircuitBreaker::new(3, StdDuration::from_millis(10))),
        fulfillment: FulfillmentWorker::new(orderly.fulfillment.clone()),
        orderly,
        clock,
        queue,
        store,
    };
    let cards = [simulated::DECLINED, simulated::INSUFFICIENT_FUNDS, simulated::PROCESSING_ERROR, simulated::SUCCEEDS];
    for (i, card) in cards.iter().enumerate() {
        let (bearer, order, _) = w.pending_order(&format!("c{i}@example.com")).await;
        let body = json!({"order_id": order, "method": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2031, "cvc": "987"}});
        w.api.send(Method::POST, "/payments", Some(body), &[("authorization", &bearer)]).await;
    }
    w.run_payments().await;
    w.run_fulfillment().await;
    drop(w);
    let mut haystack = logs.text();
    for file in std::fs::read_dir(&dir).expect("dir") {
        haystack.push_str(&String::from_utf8_lossy(&std::fs::read(file.expect("entry").path()).expect("read")));
    }
    for card in cards {
        assert!(!haystack.contains(card), "a card number was kept");
        // A kept prefix starts a run of digits; one inside a longer number (a timestamp in
        // another test's log line) is not a card.
        let prefix = &card[..12];
        let kept = haystack
            .match_indices(prefix)
            .any(|(at, _)| !haystack[..at].chars().next_back().is_some_and(|c| c.is_ascii_digit()));
        assert!(!kept, "a card number prefix was kept");
    }
    assert!(!haystack.contains("\"987\"") && !haystack.contains("cvc"), "a CVC was kept");
    assert!(haystack.contains("payment accepted"), "the logs were captured");
    let _ = std::fs::remove_dir_all(&dir);
}
