//! Ways one customer, a burst or a careless client could hurt others: each behaves, on every
//! store.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::http::{Api, CUSTOMER_PASSWORD, Reply, assert_problem};
use orderly::domain::{Customers, Hasher, LoginLimits, LoginRequest, Services};
use orderly::store::Store;
use serde_json::{Value, json};
use tokio::task::JoinSet;

fn field_errors(reply: &Reply) -> Vec<&str> {
    reply.body["errors"].as_array().map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect()).unwrap_or_default()
}

async fn product(api: &Api, name: &str, stock: i64) -> Value {
    let created =
        api.post("/products", json!({"name": name, "price_cents": 500, "stock": stock, "category": "test"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body
}

/// Control characters are refused in every free-text field with a 422 naming it; newlines only
/// where a field is multi-line (descriptions). Nothing is stored.
async fn control_characters_are_refused_in_free_text(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let address = |line1: &str| json!({"line1": line1, "city": "London", "postal_code": "N1", "country": "GB"});
    for (body, field) in [
        (
            json!({"name": "A", "email": "a@example.com", "password": "long enough pw", "address": address("1 St\u{1b}[2J")}),
            "address.line1",
        ),
        (json!({"name": "A", "email": "a@example.com", "password": "long enough pw", "phone": "+44 20\u{7}"}), "phone"),
        (json!({"name": "A\r\nB", "email": "a@example.com", "password": "long enough pw"}), "name"),
    ] {
        let refused = api.post("/customers", body).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field_errors(&refused), [field], "{}", refused.body);
    }
    assert_eq!(api.get("/customers").await.body["items"], json!([]), "nothing was stored");

    let nul = api
        .post(
            "/products",
            json!({"name": "Mug", "description": "a\u{0}b", "price_cents": 1, "stock": 1, "category": "c"}),
        )
        .await;
    assert_problem(&nul, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&nul), ["description"]);
    let multi = api
        .post(
            "/products",
            json!({"name": "Mug", "description": "line one\r\nline two", "price_cents": 1, "stock": 1, "category": "c"}),
        )
        .await;
    assert_eq!(multi.status, StatusCode::CREATED, "{}", multi.body);
    assert_eq!(multi.body["description"], "line one\nline two");

    let (_, token) = api.customer("buyer@example.com").await;
    let bearer = format!("Bearer {token}");
    let placed = api
        .send(
            Method::POST,
            "/orders",
            Some(json!({"items": [{"product_id": multi.body["id"], "quantity": 1}]})),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let cancel = format!("/orders/{}/cancel", placed.body["id"].as_str().expect("id"));
    let refused =
        api.send(Method::POST, &cancel, Some(json!({"reason": "oops\rmore"})), &[("authorization", &bearer)]).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&refused), ["reason"]);
    assert_eq!(
        api.get(&format!("/orders/{}", placed.body["id"].as_str().expect("id"))).await.body["status"],
        "pending"
    );
}

/// The bearer scheme is case-insensitive; a weak ETag never satisfies If-Match.
async fn header_details_follow_http(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let (id, token) = api.customer("a@example.com").await;
    for scheme in ["BEARER", "bearer", "Bearer", "bEaReR"] {
        let shown = api
            .send(Method::GET, &format!("/customers/{id}"), None, &[("authorization", &format!("{scheme} {token}"))])
            .await;
        assert_eq!(shown.status, StatusCode::OK, "{scheme}: {}", shown.body);
    }
    let refused =
        api.send(Method::GET, &format!("/customers/{id}"), None, &[("authorization", &format!("Basic {token}"))]).await;
    assert_problem(&refused, StatusCode::UNAUTHORIZED);

    let mug = product(&api, "Mug", 5).await;
    let uri = format!("/products/{}", mug["id"].as_str().expect("id"));
    let weak = api.send(Method::PATCH, &uri, Some(json!({"price_cents": 1})), &[("if-match", "W/\"1\"")]).await;
    assert_problem(&weak, StatusCode::PRECONDITION_FAILED);
    assert_eq!(weak.body["current_version"], 1, "{}", weak.body);
    let detail = weak.body["detail"].as_str().expect("detail");
    assert!(detail.contains("weak") && detail.contains("current version is 1"), "the answer says why: {detail}");
    assert_eq!(api.get(&uri).await.body["price_cents"], 500, "nothing changed");
    let strong = api.send(Method::PATCH, &uri, Some(json!({"price_cents": 1})), &[("if-match", "\"1\"")]).await;
    assert_eq!(strong.status, StatusCode::OK, "{}", strong.body);
}

fn login_as(email: &str, password: &str) -> LoginRequest {
    serde_json::from_value(json!({"email": email, "password": password})).expect("login request")
}

async fn sign_up(services: &Services, email: &str) {
    let input = serde_json::from_value(json!({"name": "C", "email": email, "password": CUSTOMER_PASSWORD}))
        .expect("sign-up input");
    services.customers.sign_up(input, None).await.expect("sign-up");
}

/// Only failures count, so correct logins in flight never refuse one another: 30 at once to one
/// account from one address, and 60 customers at once behind one address, all get in.
async fn concurrent_correct_logins_are_never_refused(store: Arc<dyn Store>) {
    let services = common::orderly(store);
    let office: IpAddr = "203.0.113.10".parse().expect("ip");
    for i in 0..60 {
        sign_up(&services, &format!("c{i}@example.com")).await;
    }
    let mut logins = JoinSet::new();
    for i in 0..90 {
        let (services, email) = (services.clone(), format!("c{}@example.com", if i < 30 { 0 } else { i - 30 }));
        logins.spawn(async move { services.accounts.login(login_as(&email, CUSTOMER_PASSWORD), Some(office)).await });
    }
    let refused: Vec<String> =
        logins.join_all().await.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
    assert!(refused.is_empty(), "{} refused: {refused:?}", refused.len());
}

/// Ten wrong passwords from an attacker's address stop that address for that account, not
/// the owner, who logs in from elsewhere; the per-account ceiling is far higher.
async fn a_guesser_cannot_lock_the_owner_out(store: Arc<dyn Store>) {
    let services = common::orderly(store);
    sign_up(&services, "owner@example.com").await;
    let attacker: IpAddr = "198.51.100.66".parse().expect("ip");
    let home: IpAddr = "192.0.2.1".parse().expect("ip");
    let limits = LoginLimits::default();
    let mut answers = Vec::new();
    for _ in 0..limits.per_account_and_address + 3 {
        answers.push(
            match services.accounts.login(login_as("owner@example.com", "wrong guess!"), Some(attacker)).await {
                Err(orderly::Error::Unauthorized(_)) => 401,
                Err(orderly::Error::TooManyRequests { what, .. }) => {
                    assert_eq!(what, "too many failed logins");
                    429
                }
                other => panic!("{other:?}"),
            },
        );
    }
    let expected: Vec<u16> =
        [401].repeat(limits.per_account_and_address as usize).into_iter().chain([429; 3]).collect();
    assert_eq!(answers, expected);
    let right = services.accounts.login(login_as("owner@example.com", CUSTOMER_PASSWORD), Some(attacker)).await;
    assert!(matches!(right, Err(orderly::Error::TooManyRequests { .. })), "the guessing address stays stopped");
    let owner = services.accounts.login(login_as("owner@example.com", CUSTOMER_PASSWORD), Some(home)).await;
    assert!(owner.is_ok(), "the owner gets in from home: {owner:?}");
}

/// An address with several wrong parts names every one of them in one answer (sign-up, and an
/// order's shipping address alongside its other errors); nothing is stored.
async fn every_wrong_part_of_an_address_is_named(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let address = json!({"line1": " ", "line2": "Flat\u{7}2", "city": "", "postal_code": "", "country": "Britain"});
    let refused = api
        .post(
            "/customers",
            json!({"name": "", "email": "a@example.com", "password": "long enough pw", "address": address}),
        )
        .await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_errors(&refused),
        ["name", "address.line1", "address.line2", "address.city", "address.postal_code", "address.country"],
        "{}",
        refused.body
    );
    assert_eq!(api.get("/customers").await.body["items"], json!([]), "nothing was stored");

    let kettle = product(&api, "Kettle", 5).await;
    let (buyer, token) = api.customer("buyer@example.com").await;
    let edit = json!({"address": {"line1": "", "city": "Leeds", "postal_code": "", "country": "G"}});
    let refused = api.send(Method::PATCH, &format!("/customers/{buyer}"), Some(edit), &[]).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&refused), ["address.line1", "address.postal_code", "address.country"], "{}", refused.body);
    let order = json!({
        "items": [{"product_id": kettle["id"], "quantity": 0}],
        "shipping_address": {"line1": "1 High St", "city": "", "postal_code": "", "country": "GB"},
    });
    let refused =
        api.send(Method::POST, "/orders", Some(order), &[("authorization", &format!("Bearer {token}"))]).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_errors(&refused),
        ["items[0].quantity", "shipping_address.city", "shipping_address.postal_code"],
        "{}",
        refused.body
    );
    assert_eq!(api.get(&format!("/products/{}", kettle["id"].as_str().expect("id"))).await.body["stock"], 5);
}

on_every_store!(
    control_characters_are_refused_in_free_text,
    every_wrong_part_of_an_address_is_named,
    header_details_follow_http,
    concurrent_correct_logins_are_never_refused,
    a_guesser_cannot_lock_the_owner_out,
    sign_ups_are_bounded_per_address_and_by_the_hasher,
    catalog_edits_succeed_during_an_order_burst,
);

/// Sign-ups are limited per address; a burst beyond the cores queues for the hasher and is
/// refused with 503 (Retry-After) rather than hashing everything at once.
async fn sign_ups_are_bounded_per_address_and_by_the_hasher(store: Arc<dyn Store>) {
    let services = common::orderly(store.clone());
    let limits = LoginLimits::default();
    let crowd: IpAddr = "203.0.113.99".parse().expect("ip");
    let input = |i: usize| {
        serde_json::from_value(
            json!({"name": "C", "email": format!("s{i}@example.com"), "password": CUSTOMER_PASSWORD}),
        )
        .expect("sign-up input")
    };
    for i in 0..limits.sign_ups_per_address as usize {
        services.customers.sign_up(input(i), Some(crowd)).await.expect("within the limit");
    }
    match services.customers.sign_up(input(100), Some(crowd)).await {
        Err(orderly::Error::TooManyRequests { what, retry_after_secs }) => {
            assert_eq!(what, "too many sign-ups from this address");
            assert!(retry_after_secs >= 1);
        }
        other => panic!("{other:?}"),
    }
    services.customers.sign_up(input(101), Some("192.0.2.7".parse().expect("ip"))).await.expect("another address");

    // One permit: a burst queues and every sign-up gets through, one hash at a time.
    let clock = Arc::new(orderly::clock::SystemClock);
    let cost = common::test_auth().cost;
    let queue = services.queue.clone();
    let one_at_a_time = Customers::new(store.clone(), clock.clone(), Hasher::new(cost, 1), limits, queue.clone());
    let mut burst = JoinSet::new();
    for i in 200..216 {
        let customers = one_at_a_time.clone();
        burst.spawn(async move { customers.sign_up(input(i), None).await.map(|_| ()) });
    }
    assert!(burst.join_all().await.into_iter().all(|r| r.is_ok()), "queued sign-ups all succeed");
    // No permit free within the wait: refused as unavailable (503, Retry-After), nothing stored.
    let saturated = Customers::new(store, clock, Hasher::new(cost, 0), limits, queue);
    assert!(matches!(saturated.sign_up(input(300), None).await, Err(orderly::Error::Unavailable)));
    let login = services.accounts.login(login_as("s300@example.com", CUSTOMER_PASSWORD), None).await;
    assert!(matches!(login, Err(orderly::Error::Unauthorized(_))), "no account was created");
}

/// Orders do not move a product's version, so an admin's edit never contends with a burst of
/// reservations; a restock is an adjustment, a delta, so the reservations still count. A
/// price change still refuses an order priced at the old price (it is read again).
async fn catalog_edits_succeed_during_an_order_burst(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let lamp = product(&api, "Lamp", 1_000).await;
    let (id, uri) = (lamp["id"].clone(), format!("/products/{}", lamp["id"].as_str().expect("id")));
    let mut customers = Vec::new();
    for i in 0..40 {
        customers.push(api.customer(&format!("burst{i}@example.com")).await.1);
    }
    let mut burst = JoinSet::new();
    for token in customers {
        let (api, id) = (api.clone(), id.clone());
        burst.spawn(async move {
            let body = json!({"items": [{"product_id": id, "quantity": 2}]});
            api.send(Method::POST, "/orders", Some(body), &[("authorization", &format!("Bearer {token}"))]).await.status
        });
    }
    let mut edits = Vec::new();
    for i in 0..10 {
        let edit = api.send(Method::PATCH, &uri, Some(json!({"description": format!("edit {i}")})), &[]).await;
        edits.push(edit.status);
    }
    let adjustments = format!("/admin/inventory/{}/adjustments", lamp["id"].as_str().expect("id"));
    let restock = api.post(&adjustments, json!({"delta": 100, "reason": "delivery"})).await;
    let orders = burst.join_all().await;
    assert!(edits.iter().all(|s| *s == StatusCode::OK), "{edits:?}");
    assert_eq!(restock.status, StatusCode::CREATED, "{}", restock.body);
    assert!(orders.iter().all(|s| *s == StatusCode::CREATED), "{orders:?}");
    let after = api.get(&uri).await.body;
    // 1,000 + 100 restocked - 40 × 2 ordered: the restock and every order count, in any order.
    assert_eq!(after["stock"], 1_020);
    assert_eq!(after["version"], 11, "ten descriptions; the restock, like the orders, leaves the version alone");
}
