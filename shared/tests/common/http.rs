//! Calling the whole app (every function's routes) through its router, with no server.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use orderly::domain::{Password, Services};
use orderly::http::local_app;
use orderly::store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const CUSTOMER_PASSWORD: &str = "customer-password-1";

#[derive(Clone)]
pub struct Api {
    pub router: Router,
    pub admin_token: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Api {
    pub async fn new(store: Arc<dyn Store>) -> Self {
        Self::over(super::orderly(store)).await
    }

    /// The app over a given service, with an admin `admin` signed in.
    pub async fn over(services: Services) -> Self {
        services.accounts.ensure_admin("admin", Password::new(ADMIN_PASSWORD)).await.expect("admin");
        let router = local_app(&services);
        let mut api = Api { router, admin_token: String::new() };
        let login = api.post("/auth/login", json!({"username": "admin", "password": ADMIN_PASSWORD})).await;
        api.admin_token = login.body["access_token"].as_str().expect("admin token").to_owned();
        api
    }

    /// Signs a customer up (with an address on file, where orders ship by default) and logs
    /// them in: (id, token).
    pub async fn customer(&self, email: &str) -> (String, String) {
        let password = CUSTOMER_PASSWORD;
        let address = json!({"line1": "1 Test Street", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"});
        let created = self
            .post("/customers", json!({"name": "Customer", "email": email, "password": password, "address": address}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let login = self
            .send(
                axum::http::Method::POST,
                "/auth/login",
                Some(json!({"email": email, "password": password})),
                &[("authorization", "")],
            )
            .await;
        let token = login.body["access_token"].as_str().expect("token").to_owned();
        (created.body["id"].as_str().expect("id").to_owned(), token)
    }

    /// Sends `request` as the admin unless it names its own `Authorization` (an empty one
    /// means anonymous).
    pub async fn raw(&self, mut request: Request<Body>) -> Reply {
        match request.headers().get(header::AUTHORIZATION) {
            Some(value) if value.is_empty() => {
                request.headers_mut().remove(header::AUTHORIZATION);
            }
            Some(_) => {}
            None if !self.admin_token.is_empty() => {
                let bearer = format!("Bearer {}", self.admin_token).parse().expect("header");
                request.headers_mut().insert(header::AUTHORIZATION, bearer);
            }
            None => {}
        }
        self.raw_as_is(request).await
    }

    /// Sends `request` exactly as built.
    pub async fn raw_as_is(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        // JSON bodies parsed; anything else (a ZPL label) kept as a string.
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, headers, body }
    }

    pub async fn send(&self, method: Method, uri: &str, body: Option<Value>, extra: &[(&str, &str)]) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        let request = match body {
            Some(json) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(json.to_string())),
            None => builder.body(Body::empty()),
        };
        self.raw(request.expect("request")).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, None, &[]).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.send(Method::POST, uri, Some(body), &[]).await
    }
}

pub fn assert_problem(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    assert_eq!(reply.body["status"], status.as_u16());
    assert!(reply.body["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{}", reply.body);
    assert!(reply.body["title"].is_string() && reply.body["detail"].is_string(), "{}", reply.body);
}
