//! The real `orderly-local` binary: an acknowledged write survives `kill -9` and a restart.

mod common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, start};
use serde_json::{Value, json};

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = std::env::temp_dir().join(format!("orderly-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");

    let server = start(&dir);
    let login: Value = client
        .post(format!("{}/auth/login", server.base))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let mut acknowledged = Vec::new();
    for i in 0..25 {
        let reply = client
            .post(format!("{}/products", server.base))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Durable {i}"), "price_cents": 100 + i, "stock": i, "category": "durable"}))
            .send()
            .await
            .expect("POST");
        assert_eq!(reply.status(), 201);
        let body: Value = reply.json().await.expect("json");
        acknowledged.push(body);
    }
    let customer = client
        .post(format!("{}/customers", server.base))
        .json(&json!({"name": "Kill Nine", "email": "kill9@example.com", "password": "kill-nine-password"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(customer.status(), 201);
    let customer: Value = customer.json().await.expect("json");
    drop(server); // SIGKILL: no graceful shutdown, no flush

    let server = start(&dir);
    for product in &acknowledged {
        let id = product["id"].as_str().expect("id");
        let reply = client.get(format!("{}/products/{id}", server.base)).send().await.expect("GET");
        assert_eq!(reply.status(), 200, "product {id} lost");
        assert_eq!(&reply.json::<Value>().await.expect("json"), product);
    }
    let id = customer["id"].as_str().expect("id");
    // The token issued before the crash still works: the development secret is kept on disk.
    let reply = client.get(format!("{}/customers/{id}", server.base)).bearer_auth(&token).send().await.expect("GET");
    assert_eq!(reply.json::<Value>().await.expect("json"), customer);
    let duplicate = client
        .post(format!("{}/products", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "durable 3", "price_cents": 1, "stock": 1, "category": "durable"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(duplicate.status(), 409, "unique index survived too");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
