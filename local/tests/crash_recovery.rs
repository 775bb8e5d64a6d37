//! The real `orderly-local` binary: an acknowledged write survives `kill -9` and a restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "crash-test-admin-password";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on a free port over `data_dir` and waits for its "listening" log line.
fn start(data_dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orderly-local"))
        .env("ORDERLY_ADDR", "127.0.0.1:0")
        .env("ORDERLY_DATA_DIR", data_dir)
        .env_remove("ORDERLY_STORE")
        .env("RUST_LOG", "info")
        .env("ORDERLY_ADMIN_USERNAME", "admin")
        .env("ORDERLY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start orderly-local");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before listening").expect("log line");
        let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if entry["fields"]["message"] == "orderly-local listening" {
            break entry["fields"]["addr"].as_str().expect("addr").to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, base: format!("http://{addr}") }
}

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
