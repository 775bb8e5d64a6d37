//! The back office's `/admin` API on every store: who may call it, orders (filters, address
//! corrections, internal notes, moves along the table), inventory (held units, low stock,
//! adjustments), payments, customers, low-stock alerts and metrics.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use common::http::{Api, Reply, assert_problem};
use orderly::alerts::AlertPublisher;
use orderly::clock::SystemClock;
use orderly::domain::Alerts;
use orderly::model::StockAlert;
use orderly::store::Store;
use serde_json::{Value, json};

/// Creates a product through `/admin/inventory`: its id.
async fn product(api: &Api, name: &str, stock: i64, threshold: i64) -> String {
    let created = api
        .post(
            "/admin/inventory",
            json!({"name": name, "price_cents": 1000, "stock": stock, "category": "kitchen", "low_stock_threshold": threshold}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"].as_str().expect("id").to_owned()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn order(api: &Api, token: &str, product: &str, quantity: i64) -> Reply {
    let body = json!({"items": [{"product_id": product, "quantity": quantity}]});
    api.send(Method::POST, "/orders", Some(body), &[("authorization", &bearer(token))]).await
}

/// A customer who places one order of `quantity` units: (customer id, order id).
async fn customer_orders(api: &Api, email: &str, product: &str, quantity: i64) -> (String, String) {
    let (customer, token) = api.customer(email).await;
    let placed = order(api, &token, product, quantity).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    (customer, placed.body["id"].as_str().expect("id").to_owned())
}

async fn alerts(api: &Api, query: &str) -> Vec<Value> {
    let listed = api.get(&format!("/admin/alerts{query}")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    listed.body["items"].as_array().expect("items").clone()
}

/// Every `/admin` API route: 401 without a token, 403 for a customer, 2xx for an admin. The
/// page and its assets are public (the page logs in itself) and carry a strict CSP.
async fn admin_routes_are_for_admins_only(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api, "Kettle", 6, 5).await;
    let (customer, token) = api.customer("ada@example.com").await;
    let placed = order(&api, &token, &kettle, 2).await;
    let order_id = placed.body["id"].as_str().expect("id").to_owned();
    let alert = alerts(&api, "").await[0]["id"].as_str().expect("alert").to_owned();
    let mug = product(&api, "Mug", 3, 1).await;

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/admin/metrics".into(), None),
        (Method::GET, format!("/admin/orders?customer_id={customer}&status=pending"), None),
        (Method::GET, format!("/admin/orders/{order_id}"), None),
        (Method::PUT, format!("/admin/orders/{order_id}"), Some(json!({"note": "gift wrap"}))),
        (Method::GET, "/admin/inventory?low_stock=true".into(), None),
        (Method::GET, format!("/admin/inventory/{kettle}"), None),
        (Method::GET, format!("/admin/inventory/{kettle}/adjustments"), None),
        (
            Method::POST,
            format!("/admin/inventory/{kettle}/adjustments"),
            Some(json!({"delta": 1, "reason": "found one"})),
        ),
        (
            Method::POST,
            "/admin/inventory".into(),
            Some(json!({"name": "Pan", "price_cents": 1, "stock": 1, "category": "kitchen"})),
        ),
        (
            Method::PUT,
            format!("/admin/inventory/{mug}"),
            Some(json!({"name": "Mug", "price_cents": 2, "stock": 3, "category": "kitchen"})),
        ),
        (Method::DELETE, format!("/admin/inventory/{mug}"), None),
        (Method::GET, "/admin/payments?status=succeeded".into(), None),
        (Method::GET, "/admin/customers".into(), None),
        (Method::GET, "/admin/alerts?acknowledged=false".into(), None),
        (Method::POST, format!("/admin/alerts/{alert}/acknowledge"), None),
    ];
    for (method, path, body) in &routes {
        let anonymous = api.send(method.clone(), path, body.clone(), &[("authorization", "")]).await;
        assert_problem(&anonymous, StatusCode::UNAUTHORIZED);
        let as_customer = api.send(method.clone(), path, body.clone(), &[("authorization", &bearer(&token))]).await;
        assert_problem(&as_customer, StatusCode::FORBIDDEN);
    }
    // Refused calls changed nothing: the admin's calls below are the first to land.
    assert_eq!(api.get(&format!("/admin/inventory/{kettle}")).await.body["stock"], 4);
    for (method, path, body) in &routes {
        let reply = api.send(method.clone(), path, body.clone(), &[]).await;
        assert!(reply.status.is_success(), "{method} {path}: {} {}", reply.status, reply.body);
    }

    let page = api.send(Method::GET, "/admin", None, &[("authorization", "")]).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    for asset in ["/admin/assets/app.js", "/admin/assets/app.css"] {
        assert_eq!(api.send(Method::GET, asset, None, &[("authorization", "")]).await.status, StatusCode::OK);
    }
    assert_problem(&api.get("/admin/assets/secrets.txt").await, StatusCode::NOT_FOUND);
}

/// One alert per crossing, not per order: the order that takes the stock from at or above the
/// threshold to below it records it (with the stock it left), later orders below it do not,
/// and after a restock the next crossing records another. Acknowledging takes it off the open
/// list, once.
async fn one_alert_per_threshold_crossing(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api, "Kettle", 10, 5).await;
    for (i, expected_alerts) in [(0, 0), (1, 0), (2, 1), (3, 1)] {
        customer_orders(&api, &format!("c{i}@example.com"), &kettle, 2).await;
        assert_eq!(alerts(&api, "").await.len(), expected_alerts, "after order {i}");
    }
    let raised = alerts(&api, "").await;
    assert_eq!(
        (&raised[0]["product_id"], &raised[0]["stock"], &raised[0]["threshold"], &raised[0]["cause"]),
        (&json!(kettle), &json!(4), &json!(5), &json!("order"))
    );
    assert_eq!(raised[0]["product_name"], "Kettle");

    let restock =
        api.post(&format!("/admin/inventory/{kettle}/adjustments"), json!({"delta": 8, "reason": "delivery"})).await;
    assert_eq!((restock.status, &restock.body["product"]["stock"]), (StatusCode::CREATED, &json!(10)));
    assert_eq!(alerts(&api, "").await.len(), 1, "going up crosses nothing");
    let shrink =
        api.post(&format!("/admin/inventory/{kettle}/adjustments"), json!({"delta": -6, "reason": "damaged"})).await;
    assert_eq!(shrink.status, StatusCode::CREATED, "{}", shrink.body);
    let all = alerts(&api, "").await;
    assert_eq!((all.len(), &all[0]["cause"], &all[0]["stock"]), (2, &json!("adjustment"), &json!(4)));

    // An edit that raises the threshold above the stock is a crossing too.
    let edit =
        api.send(Method::PATCH, &format!("/products/{kettle}"), Some(json!({"low_stock_threshold": 3})), &[]).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    assert_eq!(alerts(&api, "").await.len(), 2, "4 is not below 3");
    let edit =
        api.send(Method::PATCH, &format!("/products/{kettle}"), Some(json!({"low_stock_threshold": 8})), &[]).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    let all = alerts(&api, "").await;
    assert_eq!((all.len(), &all[0]["cause"], &all[0]["threshold"]), (3, &json!("edit"), &json!(8)));

    let id = all[2]["id"].as_str().expect("id");
    let acknowledged = api.post(&format!("/admin/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(acknowledged.status, StatusCode::OK, "{}", acknowledged.body);
    let first_at = acknowledged.body["acknowledged_at"].clone();
    assert!(
        first_at.is_string() && acknowledged.body["acknowledged_by"].as_str().is_some_and(|b| b.starts_with("admin:"))
    );
    let again = api.post(&format!("/admin/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(again.body["acknowledged_at"], first_at, "the first acknowledgement stands");
    assert_eq!(alerts(&api, "?acknowledged=false").await.len(), 2);
    assert_eq!(alerts(&api, "?acknowledged=true").await.len(), 1);
    assert_eq!(api.get("/admin/metrics").await.body["open_alerts"], 2);
    let unknown = api.post(&format!("/admin/alerts/{}/acknowledge", uuid::Uuid::now_v7()), json!({})).await;
    assert_problem(&unknown, StatusCode::NOT_FOUND);
}

/// Twenty customers buying the last units above and across the line at once: every order is
/// accepted, the stock is exact, and exactly one alert names the stock the crossing left.
async fn concurrent_orders_cross_once(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api, "Kettle", 20, 10).await;
    let mut customers = Vec::new();
    for i in 0..20 {
        customers.push(api.customer(&format!("rush{i}@example.com")).await.1);
    }
    let placing = customers.iter().map(|token| {
        let (api, kettle, token) = (api.clone(), kettle.clone(), token.clone());
        tokio::spawn(async move { order(&api, &token, &kettle, 1).await.status })
    });
    for status in futures_join(placing).await {
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(api.get(&format!("/admin/inventory/{kettle}")).await.body["stock"], 0);
    let raised = alerts(&api, "").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["stock"], 9);
}

/// A flash-sale product: its stock spread over shards, sold to a rush of customers without
/// overselling, its low-stock line crossed once per crossing as for any product.
async fn a_flash_sale_product_spreads_its_stock_over_shards(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let sale = json!({"name": "Lantern", "price_cents": 900, "stock": 20, "category": "kitchen",
        "stock_shards": 4, "low_stock_threshold": 10});
    let created = api.post("/admin/inventory", sale.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!((&created.body["stock_shards"], &created.body["stock"]), (&json!(4), &json!(20)));
    let lantern = created.body["id"].as_str().expect("id").to_owned();
    for value in [json!(0), json!(17)] {
        let mut refused = sale.clone();
        refused["name"] = json!("Other lantern");
        refused["stock_shards"] = value;
        let reply = api.post("/admin/inventory", refused).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(reply.body.to_string().contains("stock_shards"), "{}", reply.body);
    }
    let kettle = product(&api, "Kettle", 6, 5).await;
    let sharded = api.send(Method::PATCH, &format!("/products/{kettle}"), Some(json!({"stock_shards": 8})), &[]).await;
    assert_eq!(
        (sharded.status, &sharded.body["stock"], &sharded.body["stock_shards"], &sharded.body["low_stock_threshold"]),
        (StatusCode::OK, &json!(6), &json!(8), &json!(5))
    );

    // 24 customers rush 20 units: 20 placed, 4 refused, and the line at 10 crossed once.
    let rush = |from: usize, to: usize| {
        let (api, lantern) = (api.clone(), lantern.clone());
        async move {
            let mut customers = Vec::new();
            for i in from..to {
                customers.push(api.customer(&format!("sale{i}@example.com")).await.1);
            }
            let placing = customers.iter().map(|token| {
                let (api, lantern, token) = (api.clone(), lantern.clone(), token.clone());
                tokio::spawn(async move { order(&api, &token, &lantern, 1).await.status })
            });
            let statuses = futures_join(placing).await;
            let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
            (created, statuses.len() - created)
        }
    };
    assert_eq!(rush(0, 24).await, (20, 4));
    assert_eq!(api.get(&format!("/admin/inventory/{lantern}")).await.body["stock"], 0);
    assert_eq!(api.get(&format!("/products/{lantern}")).await.body["stock"], 0);
    let raised = alerts(&api, "").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!((&raised[0]["stock"], &raised[0]["product_id"]), (&json!(9), &json!(lantern)));

    // Refilled above the line, then sold below it again: a second crossing, a second alert.
    let refill =
        api.post(&format!("/admin/inventory/{lantern}/adjustments"), json!({"delta": 15, "reason": "delivery"})).await;
    assert_eq!(refill.status, StatusCode::CREATED, "{}", refill.body);
    assert_eq!(rush(24, 30).await, (6, 0));
    assert_eq!(api.get(&format!("/products/{lantern}")).await.body["stock"], 9);
    let raised = alerts(&api, "").await;
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert!(raised.iter().all(|alert| alert["stock"] == 9), "{raised:?}");

    // Below the line, an order and a refill to 10; the order's cancellation brings its unit
    // back above the line (11); an order of 2 crosses again (9): a third alert.
    let (_, held) = customer_orders(&api, "keeper@example.com", &lantern, 1).await;
    let refill =
        api.post(&format!("/admin/inventory/{lantern}/adjustments"), json!({"delta": 2, "reason": "found"})).await;
    assert_eq!(refill.status, StatusCode::CREATED, "{}", refill.body);
    let cancelled = api.post(&format!("/orders/{held}/cancel"), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(api.get(&format!("/products/{lantern}")).await.body["stock"], 11);
    customer_orders(&api, "last@example.com", &lantern, 2).await;
    let raised = alerts(&api, "").await;
    assert_eq!(raised.len(), 3, "{raised:?}");
    assert!(raised.iter().all(|alert| alert["stock"] == 9), "{raised:?}");
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("task"));
    }
    results
}

/// Orders as the back office works them: filtered lists, the order with its payments and an
/// ETag, an address correction and an internal note under If-Match (412 when stale), moves
/// along the table to delivered, and no address change once shipped. The customer never sees
/// the note.
async fn admins_work_orders(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api, "Kettle", 10, 0).await;
    let (ada, ada_token) = api.customer("ada@example.com").await;
    let placed = order(&api, &ada_token, &kettle, 2).await;
    let id = placed.body["id"].as_str().expect("id").to_owned();
    let (_, other) = customer_orders(&api, "bob@example.com", &kettle, 1).await;

    let mine = api.get(&format!("/admin/orders?customer_id={ada}")).await;
    let ids: Vec<&Value> = mine.body["items"].as_array().expect("items").iter().map(|o| &o["id"]).collect();
    assert_eq!(ids, [&json!(id)]);
    let all = api.get("/admin/orders?status=pending&limit=1").await;
    assert_eq!(all.body["items"].as_array().expect("items").len(), 1);
    assert!(all.body["next_token"].is_string());
    let future = api.get("/admin/orders?created_from=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["items"], json!([]));
    let past = api.get("/admin/orders?created_to=2000-01-01T00:00:00Z").await;
    assert_eq!(past.body["items"], json!([]));
    let window = api.get("/admin/orders?created_from=2000-01-01T00:00:00Z&created_to=2999-01-01T00:00:00Z").await;
    assert_eq!(window.body["items"].as_array().expect("items").len(), 2);
    let newest_first: Vec<&Value> = window.body["items"].as_array().expect("items").iter().map(|o| &o["id"]).collect();
    assert_eq!(newest_first, [&json!(other), &json!(id)]);
    assert_problem(&api.get("/admin/orders?created_from=yesterday").await, StatusCode::BAD_REQUEST);
    assert_problem(
        &api.get("/admin/orders?created_from=2030-01-01T00:00:00Z&created_to=2020-01-01T00:00:00Z").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    let shown = api.get(&format!("/admin/orders/{id}")).await;
    assert_eq!(shown.headers.get(header::ETAG).and_then(|v| v.to_str().ok()), Some("\"1\""));
    assert_eq!(shown.body["payments"], json!([]));

    let corrected = json!({"line1": "2 New Road", "city": "York", "postal_code": "YO1 7HH", "country": "GB"});
    let stale = api
        .send(
            Method::PUT,
            &format!("/admin/orders/{id}"),
            Some(json!({"shipping_address": corrected})),
            &[("if-match", "\"7\"")],
        )
        .await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["current_version"], 1);
    let bad = api
        .send(Method::PUT, &format!("/admin/orders/{id}"), Some(json!({"shipping_address": {"city": ""}})), &[])
        .await;
    assert!(bad.status.is_client_error(), "{}", bad.body);
    let amended = api
        .send(
            Method::PUT,
            &format!("/admin/orders/{id}"),
            Some(json!({"shipping_address": corrected, "note": "customer called about the door code"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(amended.status, StatusCode::OK, "{}", amended.body);
    assert_eq!(amended.body["shipping_address"]["line1"], "2 New Road");
    assert_eq!(amended.body["admin_note"], "customer called about the door code");
    let changes: Vec<&Value> =
        amended.body["history"].as_array().expect("history").iter().filter_map(|h| h.get("change")).collect();
    assert_eq!(changes, [&json!("shipping address corrected"), &json!("internal note changed")]);
    let seen = api.send(Method::GET, &format!("/orders/{id}"), None, &[("authorization", &bearer(&ada_token))]).await;
    assert_eq!(seen.body["shipping_address"]["line1"], "2 New Road");
    assert!(seen.body.get("admin_note").is_none(), "{}", seen.body);
    assert!(!seen.body.to_string().contains("internal note"), "{}", seen.body);
    let tracking =
        api.send(Method::GET, &format!("/orders/{id}/tracking"), None, &[("authorization", &bearer(&ada_token))]).await;
    let events: Vec<&str> =
        tracking.body["events"].as_array().expect("events").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events, ["placed"], "an amendment is no tracking event: {}", tracking.body);

    // A refused status change (an illegal move, a bad reason) refuses the whole amendment:
    // the address and note it carried are not written either.
    let version = amended.body["version"].clone();
    let moved_address = json!({"line1": "9 Wrong Way", "city": "York", "postal_code": "YO1 7HH", "country": "GB"});
    for (status, reason, expected) in
        [("delivered", "ok", StatusCode::CONFLICT), ("cancelled", "bad\u{7}reason", StatusCode::UNPROCESSABLE_ENTITY)]
    {
        let body = json!({"shipping_address": moved_address, "note": "x", "status": status, "reason": reason});
        let refused = api.send(Method::PUT, &format!("/admin/orders/{id}"), Some(body), &[]).await;
        assert_problem(&refused, expected);
        let unchanged = api.get(&format!("/admin/orders/{id}")).await.body;
        assert_eq!(
            (&unchanged["version"], &unchanged["shipping_address"]["line1"], &unchanged["status"]),
            (&version, &json!("2 New Road"), &json!("pending")),
            "{unchanged}"
        );
    }
    // An address and a status change land together, as one version, under If-Match.
    let both = api
        .send(
            Method::PUT,
            &format!("/admin/orders/{id}"),
            Some(json!({"shipping_address": corrected, "note": "paid by phone", "status": "paid"})),
            &[("if-match", &format!("\"{version}\""))],
        )
        .await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.body);
    assert_eq!((&both.body["status"], &both.body["admin_note"]), (&json!("paid"), &json!("paid by phone")));
    assert_eq!(both.body["version"], version.as_u64().expect("version") + 1);
    assert_problem(&api.get(&format!("/orders/{id}/label")).await, StatusCode::CONFLICT);
    // Shipping with a last correction: one write (one version), the label printed from it.
    let last = json!({"line1": "3 Final Road", "city": "York", "postal_code": "YO1 7HH", "country": "GB"});
    let shipped = api
        .send(
            Method::PUT,
            &format!("/admin/orders/{id}"),
            Some(json!({"status": "shipped", "shipping_address": last})),
            &[("if-match", &format!("\"{}\"", both.body["version"]))],
        )
        .await;
    assert_eq!((shipped.status, &shipped.body["status"]), (StatusCode::OK, &json!("shipped")), "{}", shipped.body);
    assert_eq!(shipped.body["version"], both.body["version"].as_u64().expect("version") + 1);
    let label = api.get(&format!("/orders/{id}/label")).await;
    assert!(label.body.as_str().is_some_and(|zpl| zpl.contains("3 Final Road")), "{}", label.body);
    let late =
        api.send(Method::PUT, &format!("/admin/orders/{id}"), Some(json!({"shipping_address": corrected})), &[]).await;
    assert_problem(&late, StatusCode::CONFLICT);
    let delivered =
        api.send(Method::PUT, &format!("/admin/orders/{id}"), Some(json!({"status": "delivered"})), &[]).await;
    assert_eq!(delivered.body["status"], "delivered");
    let illegal = api.send(Method::PUT, &format!("/admin/orders/{id}"), Some(json!({"status": "paid"})), &[]).await;
    assert_problem(&illegal, StatusCode::CONFLICT);

    let metrics = api.get("/admin/metrics").await.body;
    assert_eq!(metrics["by_status"]["delivered"], 1);
    assert_eq!(metrics["by_status"]["pending"], 1);
    assert_eq!(metrics["revenue_cents"], 2000);
    assert!(metrics["average_processing_seconds"].is_number());
    let queues: Vec<&Value> =
        metrics["dead_letters"].as_array().expect("dead letters").iter().map(|d| &d["queue"]).collect();
    assert_eq!(queues, [&json!("orders"), &json!("payments"), &json!("fulfillment"), &json!("notifications")]);
}

/// Inventory: units held by unpaid orders, the low-stock filter, adjustments as deltas with a
/// reason (listed as an audit trail; never below zero; a zero or unexplained delta refused),
/// and edits and deletes under If-Match.
async fn admins_keep_inventory(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api, "Kettle", 10, 5).await;
    let mug = product(&api, "Mug", 3, 5).await;
    let (_, pending) = customer_orders(&api, "ada@example.com", &kettle, 3).await;
    customer_orders(&api, "bob@example.com", &kettle, 1).await;

    let item = api.get(&format!("/admin/inventory/{kettle}")).await;
    assert_eq!(
        (&item.body["stock"], &item.body["held"], &item.body["low_stock"]),
        (&json!(6), &json!(4), &json!(false))
    );
    let cancelled = api.post(&format!("/orders/{pending}/cancel"), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let item = api.get(&format!("/admin/inventory/{kettle}")).await;
    assert_eq!((&item.body["stock"], &item.body["held"]), (&json!(9), &json!(1)));

    let low = api.get("/admin/inventory?low_stock=true").await;
    let names: Vec<&Value> = low.body["items"].as_array().expect("items").iter().map(|p| &p["name"]).collect();
    assert_eq!(names, [&json!("Mug")]);
    assert_eq!(api.get("/admin/metrics").await.body["low_stock_count"], 1);

    let adjustments = format!("/admin/inventory/{kettle}/adjustments");
    let adjusted = api.post(&adjustments, json!({"delta": -2, "reason": "two dented in storage"})).await;
    assert_eq!(adjusted.status, StatusCode::CREATED, "{}", adjusted.body);
    assert_eq!(adjusted.body["product"]["stock"], 7);
    assert!(adjusted.body["adjustment"]["actor"].as_str().is_some_and(|a| a.starts_with("admin:")));
    api.post(&adjustments, json!({"delta": 5, "reason": "delivery"})).await;
    let trail = api.get(&adjustments).await.body;
    let deltas: Vec<&Value> = trail["items"].as_array().expect("items").iter().map(|a| &a["delta"]).collect();
    assert_eq!(deltas, [&json!(5), &json!(-2)]);

    let too_many = api.post(&adjustments, json!({"delta": -13, "reason": "stocktake"})).await;
    assert_problem(&too_many, StatusCode::CONFLICT);
    assert_problem(
        &api.post(&adjustments, json!({"delta": 0, "reason": "nothing"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_problem(&api.post(&adjustments, json!({"delta": 1, "reason": " "})).await, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = format!("/admin/inventory/{}/adjustments", uuid::Uuid::now_v7());
    assert_problem(&api.post(&unknown, json!({"delta": 1, "reason": "x"})).await, StatusCode::NOT_FOUND);
    assert_eq!(api.get(&format!("/admin/inventory/{kettle}")).await.body["stock"], 12, "refusals changed nothing");
    let full = product(&api, "Pallet", 1_000_000_000, 0).await;
    let over = api.post(&format!("/admin/inventory/{full}/adjustments"), json!({"delta": 1, "reason": "found"})).await;
    assert_problem(&over, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(over.body["errors"][0]["field"], "delta", "{}", over.body);
    assert_eq!(api.get(&format!("/admin/inventory/{full}")).await.body["stock"], 1_000_000_000);

    let version = api.get(&format!("/admin/inventory/{mug}")).await.headers[header::ETAG].clone();
    let body = json!({"name": "Mug", "price_cents": 1200, "stock": 3, "category": "kitchen"});
    let stale =
        api.send(Method::PUT, &format!("/admin/inventory/{mug}"), Some(body.clone()), &[("if-match", "\"9\"")]).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    let version = version.to_str().expect("etag");
    let edited = api.send(Method::PUT, &format!("/admin/inventory/{mug}"), Some(body), &[("if-match", version)]).await;
    assert_eq!((edited.status, &edited.body["price_cents"]), (StatusCode::OK, &json!(1200)));
    let gone = api.send(Method::DELETE, &format!("/admin/inventory/{mug}"), None, &[("if-match", version)]).await;
    assert_problem(&gone, StatusCode::PRECONDITION_FAILED);
    let deleted = api.send(Method::DELETE, &format!("/admin/inventory/{mug}"), None, &[("if-match", "\"2\"")]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_problem(&api.get(&format!("/admin/inventory/{mug}")).await, StatusCode::NOT_FOUND);
}

/// Payments by status and order, and customers, as the back office lists them.
async fn admins_list_payments_and_customers(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api, "Kettle", 10, 0).await;
    let (ada, token) = api.customer("ada@example.com").await;
    let placed = order(&api, &token, &kettle, 1).await;
    let order_id = placed.body["id"].as_str().expect("id");
    let card = json!({"number": "4000000000000002", "exp_month": 12, "exp_year": 2030, "cvc": "123"});
    let paid = api
        .send(
            Method::POST,
            "/payments",
            Some(json!({"order_id": order_id, "method": "card", "card": card})),
            &[("authorization", &bearer(&token))],
        )
        .await;
    assert_eq!(paid.status, StatusCode::ACCEPTED, "{}", paid.body);

    let pending = api.get("/admin/payments?status=pending").await.body;
    assert_eq!(pending["items"].as_array().expect("items").len(), 1);
    assert_eq!(pending["items"][0]["order_id"], json!(order_id));
    assert_eq!(api.get("/admin/payments?status=succeeded").await.body["items"], json!([]));
    let of_order = api.get(&format!("/admin/payments?order_id={order_id}")).await.body;
    assert_eq!(of_order["items"].as_array().expect("items").len(), 1);
    assert_problem(&api.get("/admin/payments?status=lost").await, StatusCode::UNPROCESSABLE_ENTITY);

    let customers = api.get("/admin/customers?limit=10").await.body;
    assert_eq!(customers["items"][0]["id"], json!(ada));
    assert!(!customers.to_string().contains("password"));
}

/// Publishes nothing while `failing`, then records what it published.
#[derive(Default)]
struct FlakyTopic {
    failing: std::sync::atomic::AtomicBool,
    published: std::sync::Mutex<Vec<uuid::Uuid>>,
}

#[async_trait::async_trait]
impl AlertPublisher for FlakyTopic {
    async fn publish(&self, alert: &StockAlert) -> Result<(), String> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("topic unavailable".into());
        }
        self.published.lock().expect("lock").push(alert.id);
        Ok(())
    }
}

/// The outbox: an alert the topic refuses stays for the next sweep, and one published is
/// never published again.
async fn alerts_are_published_from_the_outbox_until_delivered(store: Arc<dyn Store>) {
    let api = Api::new(store.clone()).await;
    let kettle = product(&api, "Kettle", 6, 5).await;
    customer_orders(&api, "ada@example.com", &kettle, 2).await;
    let raised = alerts(&api, "").await[0]["id"].as_str().expect("id").parse::<uuid::Uuid>().expect("uuid");

    let topic = Arc::new(FlakyTopic::default());
    topic.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let outbox = Alerts::new(store.clone(), topic.clone(), Arc::new(SystemClock));
    assert_eq!(outbox.publish_pending().await.expect("sweep"), 0);
    assert_eq!(store.unpublished_alerts(10).await.expect("outbox").len(), 1, "kept for the next sweep");
    topic.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(outbox.publish_pending().await.expect("sweep"), 1);
    assert_eq!(outbox.publish_pending().await.expect("sweep"), 0);
    assert_eq!(*topic.published.lock().expect("lock"), [raised]);
    assert!(alerts(&api, "").await[0]["published_at"].is_string());
}

/// An adjustment sent again with its `Idempotency-Key` (a client retrying after a lost
/// response) gets the same adjustment back and moves the stock once, on a product with stock
/// shards as on one without; the key with another body is refused and changes nothing.
async fn a_retried_adjustment_moves_the_stock_once(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api, "Kettle", 10, 0).await;
    let sharded =
        json!({"name": "Lantern", "price_cents": 1000, "stock": 20, "category": "outdoor", "stock_shards": 4});
    let lantern = api.post("/admin/inventory", sharded).await.body["id"].as_str().expect("id").to_owned();
    for (id, stock) in [(&kettle, 10), (&lantern, 20)] {
        let path = format!("/admin/inventory/{id}/adjustments");
        let delivery = json!({"delta": 5, "reason": "delivery 118"});
        // Keys are the admin's: one per request, whatever the product.
        let key = format!("delivery-118-{id}");
        let key = [("idempotency-key", key.as_str())];
        let first = api.send(Method::POST, &path, Some(delivery.clone()), &key).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
        let again = api.send(Method::POST, &path, Some(delivery), &key).await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
        assert_eq!(again.body["adjustment"], first.body["adjustment"], "the same adjustment");
        assert_eq!(again.body["product"]["stock"], stock + 5);
        let other = api.send(Method::POST, &path, Some(json!({"delta": 50, "reason": "delivery 119"})), &key).await;
        assert_problem(&other, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(api.get(&format!("/admin/inventory/{id}")).await.body["stock"], stock + 5, "moved once");
        let trail = api.get(&path).await.body;
        assert_eq!(trail["items"].as_array().expect("items").len(), 1, "one audit row: {trail}");
    }
}

on_every_store!(
    alerts_are_published_from_the_outbox_until_delivered,
    a_retried_adjustment_moves_the_stock_once,
    admin_routes_are_for_admins_only,
    one_alert_per_threshold_crossing,
    concurrent_orders_cross_once,
    a_flash_sale_product_spreads_its_stock_over_shards,
    admins_work_orders,
    admins_keep_inventory,
    admins_list_payments_and_customers,
);
