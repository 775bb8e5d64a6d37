//! Orders carry who and where they ship to, and the label prints it safely, on every store.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::http::{Api, CUSTOMER_PASSWORD, assert_problem};
use orderly::store::Store;
use serde_json::{Value, json};

async fn product(api: &Api) -> Value {
    let created =
        api.post("/products", json!({"name": "Kettle", "price_cents": 2500, "stock": 10, "category": "kitchen"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"].clone()
}

/// Signs up a customer with `extra` fields and logs them in: the bearer header.
async fn customer(api: &Api, email: &str, extra: Value) -> String {
    let mut body = json!({"name": "Ada ^XZ Lovelace", "email": email, "password": CUSTOMER_PASSWORD});
    body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
    assert_eq!(api.post("/customers", body).await.status, StatusCode::CREATED);
    let login = api
        .send(
            Method::POST,
            "/auth/login",
            Some(json!({"email": email, "password": CUSTOMER_PASSWORD})),
            &[("authorization", "")],
        )
        .await;
    format!("Bearer {}", login.body["access_token"].as_str().expect("token"))
}

async fn order(api: &Api, bearer: &str, body: Value) -> common::http::Reply {
    api.send(Method::POST, "/orders", Some(body), &[("authorization", bearer)]).await
}

/// The request's address wins, else the one on file; with neither the order is refused (422
/// naming `shipping_address`) and nothing is reserved. The order keeps the customer's name and
/// contact as they were, and the shipped order's label prints them, escaped.
async fn orders_carry_who_and_where(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let kettle = product(&api).await;
    let items = json!([{"product_id": kettle, "quantity": 1}]);

    let nowhere = customer(&api, "nowhere@example.com", json!({})).await;
    let refused = order(&api, &nowhere, json!({"items": items})).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["errors"][0]["field"], "shipping_address");
    assert_eq!(api.get(&format!("/products/{}", kettle.as_str().expect("id"))).await.body["stock"], 10);

    let given = json!({"line1": "1 Given Road", "city": "York", "postal_code": "YO1 7HH", "country": "GB"});
    let placed = order(&api, &nowhere, json!({"items": items, "shipping_address": given})).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.body["shipping_address"]["line1"], "1 Given Road");

    let on_file = json!({"line1": "12 Harbour St", "line2": "Flat ~3", "city": "Bristol", "postal_code": "BS1 4QA", "country": "GB"});
    let ada = customer(&api, "ada@example.com", json!({"phone": "+44 20 7946 0000", "address": on_file})).await;
    let placed = order(&api, &ada, json!({"items": items})).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.body["shipping_address"]["city"], "Bristol");
    assert_eq!(
        placed.body["recipient"],
        json!({"name": "Ada ^XZ Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000"})
    );
    let id = placed.body["id"].as_str().expect("id");

    let paid = api.send(Method::PUT, &format!("/orders/{id}/status"), Some(json!({"status": "paid"})), &[]).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let shipped =
        api.send(Method::PUT, &format!("/orders/{id}/fulfillment"), Some(json!({"action": "ship"})), &[]).await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.body);
    let label = api.send(Method::GET, &format!("/orders/{id}/label"), None, &[("authorization", &ada)]).await;
    let label = label.body.as_str().expect("ZPL").to_owned();
    assert!(label.contains("^FH^FDAda _5EXZ Lovelace^FS"), "{label}");
    assert!(label.contains("^FH^FD12 Harbour St^FS") && label.contains("^FH^FDFlat _7E3^FS"), "{label}");
    assert!(label.contains("^FH^FDBS1 4QA Bristol^FS"), "{label}");
    assert_eq!(label.matches("^XZ").count(), 1, "the name cannot end the label early");
    let tracking = api.send(Method::GET, &format!("/orders/{id}/tracking"), None, &[("authorization", &ada)]).await;
    assert_eq!(tracking.body["recipient"], "Ada ^XZ Lovelace");
    assert_eq!(tracking.body["shipping_address"]["line1"], "12 Harbour St");
}

on_every_store!(orders_carry_who_and_where);
