//! Ways one customer, a burst or a careless client could hurt others: each behaves, on every
//! store.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::http::{Api, Reply, assert_problem};
use orderly::store::Store;
use serde_json::{Value, json};

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
    assert_eq!(api.get(&uri).await.body["price_cents"], 500, "nothing changed");
    let strong = api.send(Method::PATCH, &uri, Some(json!({"price_cents": 1})), &[("if-match", "\"1\"")]).await;
    assert_eq!(strong.status, StatusCode::OK, "{}", strong.body);
}

on_every_store!(control_characters_are_refused_in_free_text, header_details_follow_http);
