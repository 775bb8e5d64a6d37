//! The embedded store costs the same at 100,000 customers as at 1,000: every statement a
//! request runs is answered from an index, never by scanning a table that grows with customers,
//! orders or tokens. The statements are the ones a whole journey actually ran (traced), so a
//! new query cannot escape the audit.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use common::http::Api;
use orderly::store::{SqliteStore, Store};
use serde_json::json;

static STATEMENTS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Every statement in the order run, for the count of one request's reads.
static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(sql: &str) {
    STATEMENTS.lock().expect("statements").insert(sql.to_owned());
    RAN.lock().expect("ran").push(sql.to_owned());
}

/// Tables that grow with customers, orders or tokens.
const GROWING: &[&str] = &[
    "customers",
    "admins",
    "orders",
    "payments",
    "login_attempts",
    "revoked_tokens",
    "idempotency",
    "cooldowns",
    "refunds_pending",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_of_a_journey_uses_an_index() {
    let sqlite = Arc::new(SqliteStore::in_memory().expect("store"));
    sqlite.trace_statements(record).await.expect("trace");
    let store: Arc<dyn Store> = sqlite.clone();
    let services = common::orderly(store);
    let api = Api::over(services.clone()).await;

    // A customer's journey and an admin's day, through every route that touches a growing table.
    let mug =
        api.post("/products", json!({"name": "Mug", "price_cents": 900, "stock": 50, "category": "kitchen"})).await;
    let mug_id = mug.body["id"].as_str().expect("id").to_owned();
    let (id, token) = api.customer("ada@example.com").await;
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    api.send(
        Method::POST,
        "/auth/login",
        Some(json!({"email": "ada@example.com", "password": "wrong guess!"})),
        &[("authorization", "")],
    )
    .await;
    api.send(Method::GET, &format!("/customers/{id}"), None, &auth).await;
    api.send(Method::PATCH, &format!("/customers/{id}"), Some(json!({"phone": "+44 20 7946 0000"})), &auth).await;
    api.get("/customers").await;
    let items = json!({"items": [{"product_id": mug_id, "quantity": 1}]});
    let keyed = [("authorization", bearer.as_str()), ("idempotency-key", "k-1")];
    let first = api.send(Method::POST, "/orders", Some(items.clone()), &keyed).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    api.send(Method::POST, "/orders", Some(items.clone()), &keyed).await; // replay
    let deferred = api.send(Method::POST, "/orders", Some(items), &auth).await;
    let order = first.body["id"].as_str().expect("id");
    api.send(Method::GET, "/orders", None, &auth).await;
    api.get("/orders?status=pending").await;
    api.get(&format!("/orders?customer_id={id}")).await;
    api.send(Method::GET, &format!("/orders/{order}"), None, &auth).await;
    api.send(Method::GET, &format!("/orders/{order}/tracking"), None, &auth).await;
    let card = json!({"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    let paid = api
        .send(Method::POST, "/payments", Some(json!({"order_id": order, "method": "card", "card": card})), &auth)
        .await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.body);
    api.get(&format!("/payments?order_id={order}")).await;
    api.get("/payments").await;
    api.send(Method::GET, &format!("/payments/{}", paid.body["id"].as_str().expect("id")), None, &auth).await;
    // A token's first request is an order: the order's read confirms the session (is the token
    // revoked, is the customer there), with no session read of its own.
    let (_, fresh) = api.customer("bea@example.com").await;
    let fresh = format!("Bearer {fresh}");
    let one = json!({"items": [{"product_id": mug_id, "quantity": 1}]});
    RAN.lock().expect("ran").clear();
    let placed = api.send(Method::POST, "/orders", Some(one), &[("authorization", fresh.as_str())]).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let ran = std::mem::take(&mut *RAN.lock().expect("ran"));
    assert_eq!(ran.iter().filter(|sql| sql.contains("FROM revoked_tokens")).count(), 1, "{ran:#?}");
    assert!(!ran.iter().any(|sql| sql.contains("FROM customers WHERE id = ?1)")), "a session read: {ran:#?}");
    // Confirmed by that read, the session is trusted for a while, as after any check.
    api.send(Method::GET, "/orders", None, &[("authorization", fresh.as_str())]).await;
    let ran = std::mem::take(&mut *RAN.lock().expect("ran"));
    assert!(!ran.iter().any(|sql| sql.contains("FROM revoked_tokens")), "checked again: {ran:#?}");

    let cancel = format!("/orders/{}/cancel", deferred.body["id"].as_str().expect("id"));
    api.send(Method::POST, &cancel, None, &auth).await;
    api.get("/orders/metrics").await;
    api.send(Method::POST, "/auth/logout", None, &auth).await;
    services.sweeper.sweep().await.expect("sweep");

    let statements = STATEMENTS.lock().expect("statements").clone();
    assert!(statements.len() > 20, "the journey ran the store: {statements:?}");
    let mut scans = Vec::new();
    for sql in &statements {
        let verb = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        if !["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains(&verb.as_str()) {
            continue;
        }
        let plan = sqlite.query_plan(sql).await.expect("plan");
        // Walking an index in order up to a LIMIT, with nothing to filter or sort, reads at
        // most LIMIT rows (a sweep taking the first page of a queue-like table): not a scan.
        let upper = sql.to_ascii_uppercase();
        let bounded_walk = upper.contains(" LIMIT ")
            && !upper.contains(" WHERE ")
            && !plan.iter().any(|step| step.contains("TEMP B-TREE"));
        let filters = equality_filters(sql);
        for step in plan {
            let scanned = step.strip_prefix("SCAN ").and_then(|rest| rest.split_whitespace().next());
            let walks_an_index = step.contains(" USING ") && step.contains("INDEX");
            let scan = scanned.is_some_and(|table| GROWING.contains(&table)) && !(bounded_walk && walks_an_index);
            // A walk along a range (`id<?`) that also filters by an equality the index does not
            // use reads every row until enough match: for a customer's few orders, all of them.
            let ranged = step.strip_prefix("SEARCH ").and_then(|rest| rest.split_whitespace().next());
            let constraint = step.split_once(" (").map_or("", |(_, c)| c);
            let unused = filters.iter().find(|column| !constraint.contains(&format!("{column}=?")));
            let filtered_walk =
                ranged.is_some_and(|table| GROWING.contains(&table)) && !constraint.contains('=') && unused.is_some();
            if scan || filtered_walk {
                scans.push(format!("{step}  <-  {}", sql.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
        }
    }
    assert!(scans.is_empty(), "statements that scan a growing table:\n{}", scans.join("\n"));
}

/// The columns a statement's `WHERE` compares with a parameter (`column = ?N`), optional
/// filters (`?N IS NULL OR column = ?N`) included.
fn equality_filters(sql: &str) -> Vec<String> {
    let upper = sql.to_ascii_uppercase();
    let Some(start) = upper.find(" WHERE ") else { return Vec::new() };
    let tokens: Vec<&str> = sql[start..].split_whitespace().collect();
    tokens
        .windows(3)
        .filter(|w| w[1] == "=" && w[2].starts_with('?'))
        .map(|w| w[0].trim_start_matches('(').to_owned())
        .filter(|column| column.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}
