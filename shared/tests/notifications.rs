//! Customers are told, on every store: each change that concerns them records exactly one
//! notice in the same write; the notification worker sends each once (a duplicate or late
//! message sends nothing), retries a failing mail service and dead-letters what keeps failing;
//! the sweep relays a notice whose message was lost; no card number or password is in any
//! message; customers list their own notices.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::http::{Method, StatusCode};
use common::http::{Api, CUSTOMER_PASSWORD, assert_problem};
use common::mail::RecordingMailer;
use orderly::clock::{Clock, FakeClock};
use orderly::domain::{Delivery, LoginLimits, ResetEmail, Services, render};
use orderly::gateway::{CircuitBreaker, simulated};
use orderly::model::NoticeKind;
use orderly::queue::{Queue, QueueName, SqliteQueue};
use orderly::store::sqlite::NoticeFeed;
use orderly::store::{PageRequest, SqliteStore, Store};
use orderly::workers::{
    FulfillmentWorker, NotificationWorker, OrderWorker, PaymentWorker, deliver_fed, run_local_notice_relay,
};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const MAX_RECEIVES: u32 = 3;

struct World {
    api: Api,
    orderly: Services,
    clock: Arc<FakeClock>,
    queue: Arc<SqliteQueue>,
    store: Arc<dyn Store>,
    mailer: Arc<RecordingMailer>,
    payments: PaymentWorker,
    fulfillment: FulfillmentWorker,
    releases: OrderWorker,
    notices: NotificationWorker,
    /// The embedded store relaying its own notices, and its feed (see `relaying_world`).
    relaying: Option<(SqliteStore, tokio::sync::Mutex<NoticeFeed>)>,
}

async fn world(store: Arc<dyn Store>) -> World {
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let queue = Arc::new(SqliteQueue::in_memory(clock.clone(), MAX_RECEIVES).expect("queue"));
    world_with(store, queue, clock).await
}

/// The embedded store and queue in one database, as the local server runs them: the store's
/// notice feed brings each notice, and no message is queued for it.
async fn relaying_world() -> World {
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let (store, queue) = SqliteStore::in_memory_with_queue(clock.clone(), MAX_RECEIVES).expect("store and queue");
    let feed = store.notice_feed(MAX_RECEIVES).await.expect("feed").expect("the store relays notices");
    let mut w = world_with(Arc::new(store.clone()), Arc::new(queue), clock).await;
    w.relaying = Some((store, tokio::sync::Mutex::new(feed)));
    w
}

async fn world_with(store: Arc<dyn Store>, queue: Arc<SqliteQueue>, clock: Arc<FakeClock>) -> World {
    let mailer = Arc::new(RecordingMailer::default());
    let orderly = common::orderly_with(store.clone(), clock.clone(), common::test_auth())
        .with_queue(queue.clone())
        .with_mailer(mailer.clone())
        .services();
    let api = Api::over(orderly.clone()).await;
    World {
        payments: PaymentWorker::new(orderly.payments.clone(), CircuitBreaker::new(3, StdDuration::from_millis(200))),
        fulfillment: FulfillmentWorker::new(orderly.fulfillment.clone()),
        releases: OrderWorker::new(orderly.orders.clone()),
        notices: NotificationWorker::new(orderly.notifier.clone()),
        api,
        orderly,
        clock,
        queue,
        store,
        mailer,
        relaying: None,
    }
}

impl World {
    /// A product of 10 at 12.50 and a signed-up customer: (product id, customer id, bearer).
    async fn customer_and_product(&self, email: &str) -> (String, String, String) {
        let product =
            json!({"name": format!("Kettle {email}"), "price_cents": 1250, "stock": 10, "category": "kitchen"});
        let product = self.api.post("/products", product).await.body["id"].as_str().expect("product").to_owned();
        let (customer, token) = self.api.customer(email).await;
        (product, customer, format!("Bearer {token}"))
    }

    async fn order(&self, bearer: &str, product: &str) -> Value {
        let order = json!({"items": [{"product_id": product, "quantity": 2}]});
        let placed = self.api.send(Method::POST, "/orders", Some(order), &[("authorization", bearer)]).await;
        assert!(placed.status.is_success(), "{}", placed.body);
        placed.body
    }

    async fn pay(&self, bearer: &str, order: &str, number: &str) {
        let body = json!({"order_id": order, "method": "card",
                          "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
        let reply = self.api.send(Method::POST, "/payments", Some(body), &[("authorization", bearer)]).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        common::drain(self.queue.as_ref(), QueueName::Payments, &self.payments).await;
    }

    /// Delivers what the feed brings, as the local server's relay does, then drains the queue;
    /// answers how many deliveries that took.
    async fn deliver_notices(&self) -> usize {
        let mut delivered = 0;
        while let Some(notices) = self.fed().await.filter(|notices| !notices.is_empty()) {
            let not_handed_off = deliver_fed(&self.notices, self.queue.as_ref(), &notices).await;
            assert!(not_handed_off.is_empty(), "the queue takes what cannot be sent now");
            delivered += notices.len();
        }
        delivered + common::drain(self.queue.as_ref(), QueueName::Notifications, &self.notices).await
    }

    /// Asks for a password reset for `email` and answers the code its email carries.
    async fn reset_code(&self, email: &str) -> String {
        let asked = self
            .api
            .send(Method::POST, "/auth/password-reset", Some(json!({"email": email})), &[("authorization", "")])
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
        common::drain(self.queue.as_ref(), QueueName::Notifications, &self.notices).await;
        let sent = self.mailer.sent();
        let reset = sent.iter().rev().find(|email| email.subject == "Reset your Orderly password").expect("the email");
        reset.text.lines().find_map(|line| line.strip_prefix("Your reset code is: ")).expect("the code").to_owned()
    }

    /// The subjects of the emails sent to `address` since the last look, oldest first.
    async fn emails_to(&self, address: &str, since: usize) -> Vec<String> {
        common::drain(self.queue.as_ref(), QueueName::Notifications, &self.notices).await;
        let sent = self.mailer.sent();
        sent[since..].iter().filter(|email| email.to_email == address).map(|email| email.subject.clone()).collect()
    }

    /// The next notices the feed brings, without waiting; `None` without a feed.
    async fn fed(&self) -> Option<Vec<uuid::Uuid>> {
        let (_, feed) = self.relaying.as_ref()?;
        Some(feed.lock().await.next(100, StdDuration::ZERO).await.expect("feed"))
    }

    /// The customer's notices, oldest first, as the API lists them.
    async fn listed(&self, customer: &str, bearer: &str) -> Vec<Value> {
        let reply = self
            .api
            .send(
                Method::GET,
                &format!("/customers/{customer}/notifications?limit=100"),
                None,
                &[("authorization", bearer)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let mut items = reply.body["items"].as_array().expect("items").clone();
        items.reverse();
        items
    }
}

fn kinds(notices: &[Value]) -> Vec<&str> {
    notices.iter().map(|n| n["kind"].as_str().expect("kind")).collect()
}

/// Accepted → receipt → shipped → delivered, each recorded once and sent once; a declined card
/// is one "payment failed"; a deferred order is told its release time, then its release; a
/// cancelled paid order says it was refunded.
async fn every_change_sends_exactly_one_notice(store: Arc<dyn Store>) {
    journey_sends_exactly_one_notice_per_change(world(store).await).await;
}

async fn journey_sends_exactly_one_notice_per_change(w: World) {
    let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
    let order = w.order(&bearer, &product).await;
    let order_id = order["id"].as_str().expect("id").to_owned();
    w.pay(&bearer, &order_id, simulated::DECLINED).await;
    w.pay(&bearer, &order_id, simulated::SUCCEEDS).await;
    common::drain(w.queue.as_ref(), QueueName::Fulfillment, &w.fulfillment).await;
    let delivered = w
        .api
        .send(Method::PUT, &format!("/orders/{order_id}/fulfillment"), Some(json!({"action": "deliver"})), &[])
        .await;
    assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.body);
    assert_eq!(
        kinds(&w.listed(&customer, &bearer).await),
        ["order_accepted", "payment_failed", "payment_succeeded", "order_shipped", "order_delivered"]
    );

    assert_eq!(w.deliver_notices().await, 5);
    // Sent at once, so in any order: each found by its subject.
    let sent = w.mailer.sent();
    let subjects: Vec<&str> = sent.iter().map(|m| m.subject.as_str()).collect();
    let mail = |part: &str| {
        let found: Vec<_> = sent.iter().filter(|m| m.subject.contains(part)).collect();
        assert_eq!(found.len(), 1, "one {part:?} in {subjects:?}");
        found[0]
    };
    assert_eq!(subjects.len(), 5, "{subjects:?}");
    mail("Order confirmed");
    let receipt = mail("Receipt");
    assert!(receipt.text.contains("visa ending in 4242") && receipt.text.contains("25.00"), "{}", receipt.text);
    let declined = mail("Payment failed");
    assert!(declined.text.contains("card declined"), "{}", declined.text);
    let shipped = mail("has shipped");
    assert!(shipped.text.contains("tracking number OP"), "{}", shipped.text);
    assert!(w.listed(&customer, &bearer).await.iter().all(|n| n["sent_at"].is_string()));
    assert_eq!(w.deliver_notices().await, 0, "nothing left to send");

    // During the cooldown: accepted with its release time, then released.
    let deferred = w.order(&bearer, &product).await;
    assert_eq!(deferred["status"], "processing order");
    w.clock.advance(Duration::minutes(6));
    common::drain(w.queue.as_ref(), QueueName::Orders, &w.releases).await;
    let cancelled = w
        .api
        .send(Method::POST, &format!("/orders/{}/cancel", deferred["id"].as_str().expect("id")), Some(json!({})), &[])
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let listed = w.listed(&customer, &bearer).await;
    assert_eq!(kinds(&listed[5..]), ["order_accepted", "order_released", "order_cancelled"]);
    assert!(listed[5]["release_at"].is_string());
    assert_eq!(w.deliver_notices().await, 3);
    // The three are sent at once, so in any order.
    let sent = w.mailer.sent();
    let accepted: Vec<_> = sent[5..].iter().filter(|m| m.subject.starts_with("We have your order")).collect();
    assert_eq!(accepted.len(), 1, "{:?}", sent[5..].iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert!(accepted[0].text.contains("processing order"), "{}", accepted[0].text);

    // A paid order cancelled by an admin: refunded, and told so.
    let (other, other_customer, other_bearer) = w.customer_and_product("bob@example.com").await;
    let paid = w.order(&other_bearer, &other).await;
    let paid_id = paid["id"].as_str().expect("id");
    w.pay(&other_bearer, paid_id, simulated::SUCCEEDS).await;
    let cancelled =
        w.api.post(&format!("/orders/{paid_id}/cancel"), json!({"reason": "out of stock at the warehouse"})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let bobs = w.listed(&other_customer, &other_bearer).await;
    assert_eq!(kinds(&bobs), ["order_accepted", "payment_succeeded", "order_cancelled"]);
    assert_eq!(bobs[2]["refunded"], true);
    assert_eq!(w.deliver_notices().await, 3);
    let sent = w.mailer.sent();
    let cancelled: Vec<_> = sent[8..].iter().filter(|m| m.subject.contains("cancelled")).collect();
    assert_eq!(cancelled.len(), 1, "{:?}", sent[8..].iter().map(|m| &m.subject).collect::<Vec<_>>());
    let told = cancelled[0];
    assert!(
        told.text.contains("We refunded 25.00") && told.text.contains("out of stock at the warehouse"),
        "{}",
        told.text
    );
    assert_eq!(told.to_email, "bob@example.com");
}

/// A duplicate or late message sends nothing twice; a notice another delivery holds waits.
async fn a_notice_is_sent_once_however_often_it_is_asked(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
    w.order(&bearer, &product).await;
    let notice_id = w.listed(&customer, &bearer).await[0]["id"].as_str().expect("id").parse().expect("uuid");
    let (first, second) = tokio::join!(w.orderly.notifier.deliver(notice_id), w.orderly.notifier.deliver(notice_id));
    let outcomes = [first.expect("deliver"), second.expect("deliver")];
    assert_eq!(outcomes.iter().filter(|o| **o == Delivery::Sent).count(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(o, Delivery::Sent | Delivery::Retry | Delivery::NothingToDo)),
        "the other finds it held or sent: {outcomes:?}"
    );
    assert_eq!(w.orderly.notifier.deliver(notice_id).await.expect("again"), Delivery::NothingToDo);
    assert_eq!(w.deliver_notices().await, 1, "the queued message finds it sent");
    assert_eq!(w.mailer.sent().len(), 1);
}

/// A failing mail service: the notice is retried, then dead-lettered after the queue's last
/// receive, and stays unsent (listed without `sent_at`); the sweep relays a notice whose
/// message was lost, but not one a delivery has tried.
async fn failing_mail_is_retried_then_dead_lettered_and_lost_messages_relayed(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
    w.mailer.set_failing(true);
    w.order(&bearer, &product).await;
    for _ in 0..MAX_RECEIVES {
        assert_eq!(w.deliver_notices().await, 1);
        w.clock.advance(Duration::minutes(2));
    }
    assert_eq!(w.deliver_notices().await, 0);
    let dead = w.queue.dead_letters(QueueName::Notifications, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert!(w.listed(&customer, &bearer).await[0].get("sent_at").is_none());
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").notices_relayed, 0, "tried: the DLQ owns it");

    // A notice whose message never made it to the queue: the sweep sends it again.
    w.mailer.set_failing(false);
    w.order(&bearer, &product).await;
    let queued =
        w.queue.receive(QueueName::Notifications, 10, Duration::minutes(60), Duration::ZERO).await.expect("rx");
    assert_eq!(queued.len(), 1, "the message, lost with its worker");
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").notices_relayed, 0, "not due yet");
    w.clock.advance(Duration::minutes(3));
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").notices_relayed, 1);
    assert_eq!(w.orderly.sweeper.sweep().await.expect("sweep").notices_relayed, 0, "put off after a relay");
    assert_eq!(w.deliver_notices().await, 1);
    assert_eq!(w.mailer.sent().len(), 1);
}

/// Customers read their own notices (admins anyone's); no message carries a card number, a
/// CVC or a password, and names are HTML-escaped.
async fn notices_are_private_and_carry_no_secrets(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
    let (_, _, mallory) = w.customer_and_product("mallory@example.com").await;
    let order = w.order(&bearer, &product).await;
    w.pay(&bearer, order["id"].as_str().expect("id"), simulated::SUCCEEDS).await;
    let theirs = w
        .api
        .send(Method::GET, &format!("/customers/{customer}/notifications"), None, &[("authorization", &mallory)])
        .await;
    assert_problem(&theirs, StatusCode::NOT_FOUND);
    let anonymous =
        w.api.send(Method::GET, &format!("/customers/{customer}/notifications"), None, &[("authorization", "")]).await;
    assert_problem(&anonymous, StatusCode::UNAUTHORIZED);
    let as_admin = w.api.get(&format!("/customers/{customer}/notifications")).await;
    assert_eq!(as_admin.body["items"].as_array().expect("items").len(), 2);

    w.deliver_notices().await;
    for mail in w.mailer.sent() {
        for secret in ["4242424242424242", "4242 4242 4242 4242", CUSTOMER_PASSWORD, "cvc"] {
            assert!(!mail.text.contains(secret) && !mail.html.contains(secret), "{secret} in {}", mail.text);
        }
    }
    let notices = w.store.list_notices(customer.parse().expect("uuid"), &PageRequest::first(10)).await.expect("list");
    let mut hostile = notices.items[0].clone();
    hostile.to_name = "<script>alert(1)</script>".into();
    let html = render(&hostile).html;
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
    assert_eq!(hostile.kind, NoticeKind::PaymentSucceeded);
}

/// The local server's store shares the queue's file, and its notice feed relays notices as the
/// orders table's stream does on AWS: the journey above still sends each notice once (no
/// message from the ledger), the feed brings each notice once, a feed started anew brings what
/// was not sent, and what cannot be sent now goes to the queue.
mod store_relaying_its_notices {
    use super::*;

    #[tokio::test]
    async fn every_change_sends_exactly_one_notice() {
        journey_sends_exactly_one_notice_per_change(relaying_world().await).await;
    }

    async fn no_notification_message(w: &World) {
        let queued = w.queue.receive(QueueName::Notifications, 10, Duration::seconds(30), Duration::ZERO).await;
        assert_eq!(queued.expect("receive"), [], "the feed carries notices, not the queue");
    }

    #[tokio::test]
    async fn the_feed_brings_each_saved_notice_once_and_nothing_is_queued() {
        let w = relaying_world().await;
        let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
        let too_many = json!({"items": [{"product_id": product, "quantity": 11}]});
        let refused = w.api.send(Method::POST, "/orders", Some(too_many), &[("authorization", bearer.as_str())]).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert_eq!(w.fed().await, Some(vec![]), "no notice");

        w.order(&bearer, &product).await;
        let notice = w.listed(&customer, &bearer).await[0]["id"].as_str().expect("id").parse().expect("uuid");
        assert_eq!(w.fed().await, Some(vec![notice]));
        assert_eq!(w.fed().await, Some(vec![]), "brought once");
        no_notification_message(&w).await;
    }

    #[tokio::test]
    async fn a_feed_started_anew_brings_the_notices_not_sent_yet() {
        let w = relaying_world().await;
        let mut notices = Vec::new();
        for email in ["ada@example.com", "bob@example.com", "cy@example.com"] {
            let (product, customer, bearer) = w.customer_and_product(email).await;
            w.order(&bearer, &product).await;
            let id: uuid::Uuid =
                w.listed(&customer, &bearer).await[0]["id"].as_str().expect("id").parse().expect("uuid");
            notices.push(id);
        }
        let [sent, unsent, tried] = notices[..] else { panic!("three notices") };
        assert_eq!(w.orderly.notifier.deliver(sent).await.expect("deliver"), Delivery::Sent);
        // The server stops before it delivers the others: a new feed starts where sending stopped.
        let (store, _) = w.relaying.as_ref().expect("relaying");
        let mut restarted = store.notice_feed(MAX_RECEIVES).await.expect("feed").expect("relays");
        assert_eq!(restarted.next(100, StdDuration::ZERO).await.expect("next"), [unsent, tried]);
        assert!(restarted.next(100, StdDuration::ZERO).await.expect("next").is_empty());

        // One tried as often as the queue would have (it dead-lettered it) is left alone, also
        // when the feed starts before it.
        w.mailer.set_failing(true);
        for _ in 0..MAX_RECEIVES {
            assert_eq!(w.orderly.notifier.deliver(tried).await.expect("deliver"), Delivery::Retry);
            w.clock.advance(Duration::minutes(1));
        }
        let mut restarted = store.notice_feed(MAX_RECEIVES).await.expect("feed").expect("relays");
        assert_eq!(restarted.next(100, StdDuration::ZERO).await.expect("next"), [unsent], "the tried one given up on");
    }

    /// The local server's relay, running: an order's notice is emailed without anything
    /// asked of the queue, and the relay stops when told.
    #[tokio::test]
    async fn the_relay_emails_what_the_feed_brings_and_stops_when_told() {
        let w = relaying_world().await;
        let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
        let (store, _) = w.relaying.as_ref().expect("relaying");
        let feed = store.notice_feed(MAX_RECEIVES).await.expect("feed").expect("relays");
        let worker: Arc<dyn orderly::queue::Consumer> = Arc::new(NotificationWorker::new(w.orderly.notifier.clone()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = tokio::spawn(run_local_notice_relay(feed, worker, w.queue.clone(), async {
            let _ = stopped.await;
        }));
        w.order(&bearer, &product).await;
        for _ in 0..200 {
            if !w.mailer.sent().is_empty() {
                break;
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        assert_eq!(w.mailer.sent().len(), 1, "emailed by the relay");
        assert!(w.listed(&customer, &bearer).await[0].get("sent_at").is_some());
        no_notification_message(&w).await;
        let _ = stop.send(());
        tokio::time::timeout(StdDuration::from_secs(5), relay).await.expect("stops when told").expect("relay");
    }

    #[tokio::test]
    async fn a_notice_the_feed_brings_that_cannot_be_sent_now_goes_to_the_queue() {
        let w = relaying_world().await;
        let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
        w.mailer.set_failing(true);
        w.order(&bearer, &product).await;
        assert_eq!(w.deliver_notices().await, 1, "tried once from the feed");
        assert_eq!(w.mailer.sent().len(), 0);
        w.mailer.set_failing(false);
        assert_eq!(w.deliver_notices().await, 0, "the queue holds it back a while");
        w.clock.advance(orderly::workers::HANDED_OFF_RETRY);
        assert_eq!(w.deliver_notices().await, 1, "then delivers it");
        assert_eq!(w.mailer.sent().len(), 1);
        assert!(w.listed(&customer, &bearer).await[0].get("sent_at").is_some());
        assert_eq!(w.deliver_notices().await, 0);
    }
}

/// Deployed, the orders table's stream relays notices (`NOTICE_RELAY=stream`): an order saves
/// its notice and sends no notification message of its own; the notice goes out when the
/// worker gets the stream's record of it.
#[tokio::test]
async fn with_the_stream_relaying_an_order_sends_no_notice_message() {
    let client = common::dynamodb_client().await;
    let tables = orderly::store::dynamodb::TableNames::with_prefix(&format!("s{}-", uuid::Uuid::now_v7().simple()));
    orderly::store::dynamodb::schema::create_tables(&client, &tables).await.expect("tables");
    let w = world(Arc::new(orderly::store::DynamoStore::new(client, tables).with_notices_relayed_by_stream())).await;
    let (product, customer, bearer) = w.customer_and_product("ada@example.com").await;
    w.order(&bearer, &product).await;
    assert_eq!(w.deliver_notices().await, 0, "no message: the stream carries the notice");
    let notice: uuid::Uuid = w.listed(&customer, &bearer).await[0]["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(w.orderly.notifier.deliver(notice).await.expect("deliver"), Delivery::Sent);
    assert_eq!(w.mailer.sent().len(), 1);
}

/// A forgotten password: the reset is asked anonymously (the same answer for an unknown email),
/// its code arrives by email through the notifications queue, and sets a new password once,
/// ending every session; a used, wrong or expired code is refused, and so are too many asks.
async fn a_forgotten_password_is_reset_with_the_emailed_code(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (customer, token) = w.api.customer("reset@example.com").await;
    let anonymous = [("authorization", "")];
    let post = |uri: &'static str, body: Value| {
        let api = &w.api;
        async move { api.send(Method::POST, uri, Some(body), &[("authorization", "")]).await }
    };
    let asked = post("/auth/password-reset", json!({"email": "RESET@example.com"})).await;
    assert_eq!((asked.status, &asked.body), (StatusCode::ACCEPTED, &Value::Null));
    let unknown = post("/auth/password-reset", json!({"email": "nobody@example.com"})).await;
    assert_eq!((unknown.status, &unknown.body), (StatusCode::ACCEPTED, &Value::Null), "the same answer");
    assert_problem(
        &post("/auth/password-reset", json!({"email": "not an email"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(common::drain(w.queue.as_ref(), QueueName::Notifications, &w.notices).await, 1, "one email");
    let sent = w.mailer.sent();
    let email = sent.last().expect("the reset email");
    assert_eq!((email.to_email.as_str(), email.subject.as_str()), ("reset@example.com", "Reset your Orderly password"));
    let code =
        email.text.lines().find_map(|line| line.strip_prefix("Your reset code is: ")).expect("the code").to_owned();
    assert!(email.html.contains(&code));
    let me = format!("/customers/{customer}");
    let notices = w.api.get(&format!("{me}/notifications")).await;
    assert_eq!(notices.body["items"], json!([]), "a reset is not a notice: its code is kept nowhere readable");
    w.clock.advance(Duration::seconds(1));

    let confirm = |code: &str, password: &str| json!({"code": code, "new_password": password});
    let wrong = post("/auth/password-reset/confirm", confirm("not-the-code", "a brand new password")).await;
    assert_problem(&wrong, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.body["errors"][0]["field"], "code");
    let short = post("/auth/password-reset/confirm", confirm(&code, "short")).await;
    assert_eq!(short.body["errors"][0]["field"], "new_password", "{}", short.body);
    let before = w.mailer.sent().len();
    let reset = post("/auth/password-reset/confirm", confirm(&code, "a brand new password")).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    assert_eq!(w.emails_to("reset@example.com", before).await, ["Your Orderly password was reset"], "told");
    let fresh = format!("Bearer {}", reset.body["access_token"].as_str().expect("a new token"));
    let bearer = format!("Bearer {token}");
    assert_eq!(
        w.api.send(Method::GET, &me, None, &[("authorization", &bearer)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(w.api.send(Method::GET, &me, None, &[("authorization", &fresh)]).await.status, StatusCode::OK);
    let login = |password: &str| json!({"email": "reset@example.com", "password": password});
    assert_eq!(
        w.api.send(Method::POST, "/auth/login", Some(login(CUSTOMER_PASSWORD)), &anonymous).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        w.api.send(Method::POST, "/auth/login", Some(login("a brand new password")), &anonymous).await.status,
        StatusCode::OK
    );
    let again = post("/auth/password-reset/confirm", confirm(&code, "yet another password")).await;
    assert_eq!(
        (again.status, &again.body["errors"][0]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("code")),
        "once only"
    );

    // A code works for 30 minutes.
    let late = w.reset_code("reset@example.com").await;
    assert_ne!(late, code);
    w.clock.advance(Duration::minutes(31));
    let expired = post("/auth/password-reset/confirm", confirm(&late, "yet another password")).await;
    assert_eq!(expired.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", expired.body);

    // A reset or a change ends every other code: whoever saw an older email cannot use it
    // once the owner has secured the account (the clock is now in the next login window).
    let (first, second) = (w.reset_code("reset@example.com").await, w.reset_code("reset@example.com").await);
    let used = post("/auth/password-reset/confirm", confirm(&second, "the second code's password")).await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    let other = post("/auth/password-reset/confirm", confirm(&first, "the first code's password")).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "another code, after a reset: {}", other.body);
    let third = w.reset_code("reset@example.com").await;
    w.clock.advance(Duration::seconds(1));
    let owner = format!("Bearer {}", used.body["access_token"].as_str().expect("token"));
    let change = json!({"current_password": "the second code's password", "new_password": "the owner's own password"});
    let before = w.mailer.sent().len();
    let changed = w.api.send(Method::POST, "/auth/password", Some(change), &[("authorization", &owner)]).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(w.emails_to("reset@example.com", before).await, ["Your Orderly password was changed"], "told");
    let after_change = post("/auth/password-reset/confirm", confirm(&third, "a taker's password")).await;
    assert_eq!(after_change.status, StatusCode::UNPROCESSABLE_ENTITY, "a code, after a change: {}", after_change.body);
    assert_eq!(
        w.api.send(Method::POST, "/auth/login", Some(login("the owner's own password")), &anonymous).await.status,
        StatusCode::OK
    );

    // Three asks per email in a login window: those three were all.
    let flood = post("/auth/password-reset", json!({"email": "reset@example.com"})).await;
    assert_problem(&flood, StatusCode::TOO_MANY_REQUESTS);

    // A reset's message retried past its code's expiry is dropped unsent.
    let sent = w.mailer.sent().len();
    let stale = ResetEmail {
        reset_id: uuid::Uuid::now_v7(),
        to_name: "Customer",
        to_email: "reset@example.com",
        code: "an expired code",
        expires_at: w.clock.now() - Duration::seconds(1),
    };
    assert_eq!(w.orderly.notifier.send_password_reset(stale).await, Delivery::NothingToDo);
    assert_eq!(w.mailer.sent().len(), sent, "nothing sent");
}

/// An email change is told to the address it leaves (whoever made it: the customer, with their
/// password, or an admin), so a customer learns of a change they did not make.
async fn an_email_change_is_told_to_the_address_it_leaves(store: Arc<dyn Store>) {
    let w = world(store).await;
    let (customer, token) = w.api.customer("old@example.com").await;
    let me = format!("/customers/{customer}");
    let before = w.mailer.sent().len();
    let by_owner = json!({"email": "new@example.com", "current_password": CUSTOMER_PASSWORD});
    let moved = w.api.send(Method::PATCH, &me, Some(by_owner), &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(w.emails_to("old@example.com", before).await, ["The email of your Orderly account was changed"]);
    let sent = w.mailer.sent();
    let told = sent.last().expect("the email");
    assert!(told.text.contains("new@example.com"), "it names the new address: {}", told.text);
    assert_eq!(w.emails_to("new@example.com", before).await, Vec::<String>::new(), "nothing to the new one");

    let before = w.mailer.sent().len();
    let by_admin = w.api.send(Method::PATCH, &me, Some(json!({"email": "third@example.com"})), &[]).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.body);
    assert_eq!(w.emails_to("new@example.com", before).await, ["The email of your Orderly account was changed"]);
    let phone = w.api.send(Method::PATCH, &me, Some(json!({"phone": "+44 20 7946 0000"})), &[]).await;
    assert_eq!(phone.status, StatusCode::OK);
    let before = w.mailer.sent().len();
    assert_eq!(w.emails_to("third@example.com", before).await, Vec::<String>::new(), "other edits tell nobody");
}

/// A new password lifts the lockout its owner's failed logins caused: the account's counter and
/// its pair with the address the reset came from are emptied, so the owner gets in at once;
/// another address that guessed stays stopped until its window ends.
async fn a_reset_lifts_the_owners_failed_login_lockout(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.api.customer("locked@example.com").await;
    let home: IpAddr = "192.0.2.1".parse().expect("ip");
    let guesser: IpAddr = "198.51.100.66".parse().expect("ip");
    let login = |password: &str, source: IpAddr| {
        let request = serde_json::from_value(json!({"email": "locked@example.com", "password": password}));
        let accounts = w.orderly.accounts.clone();
        async move { accounts.login(request.expect("login request"), Some(source)).await }
    };
    for source in [home, guesser] {
        for _ in 0..LoginLimits::default().per_account_and_address {
            assert!(matches!(login("a wrong guess", source).await, Err(orderly::Error::Unauthorized(_))));
        }
    }
    for source in [home, guesser] {
        let refused = login(CUSTOMER_PASSWORD, source).await;
        assert!(matches!(refused, Err(orderly::Error::TooManyRequests { .. })), "locked out: {refused:?}");
    }

    let code = w.reset_code("locked@example.com").await;
    let confirmation = serde_json::from_value(json!({"code": code, "new_password": "a new password at last"}));
    w.orderly.accounts.reset_password(confirmation.expect("confirmation"), Some(home)).await.expect("reset");
    let owner = login("a new password at last", home).await;
    assert!(owner.is_ok(), "the owner gets in at once: {owner:?}");
    let stopped = login("a new password at last", guesser).await;
    assert!(matches!(stopped, Err(orderly::Error::TooManyRequests { .. })), "the guesser stays stopped: {stopped:?}");
}

on_every_store!(
    every_change_sends_exactly_one_notice,
    a_reset_lifts_the_owners_failed_login_lockout,
    an_email_change_is_told_to_the_address_it_leaves,
    a_forgotten_password_is_reset_with_the_emailed_code,
    a_notice_is_sent_once_however_often_it_is_asked,
    failing_mail_is_retried_then_dead_lettered_and_lost_messages_relayed,
    notices_are_private_and_carry_no_secrets,
);
