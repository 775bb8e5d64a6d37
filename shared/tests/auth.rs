//! Authentication and authorization through the HTTP API, on every store: the access matrix,
//! forged/expired/revoked tokens, logout across functions, login rate limits, and secrets
//! kept out of the logs.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::http::{ADMIN_PASSWORD, Api, CUSTOMER_PASSWORD, Reply};
use jsonwebtoken::{EncodingKey, Header};
use orderly::clock::FakeClock;
use orderly::domain::{LoginLimits, LoginRequest, Password, PasswordCost, Services};
use orderly::error::Error;
use orderly::http::{app, auth, customers, products};
use orderly::store::Store;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Who makes a request in the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    CustomerA,
    CustomerB,
    Admin,
    Tampered,
    Expired,
    Revoked,
    AlgNone,
    WrongAlgorithm,
    UnknownAccount,
}

const EVERYONE: [Who; 10] = [
    Who::Anonymous,
    Who::CustomerA,
    Who::CustomerB,
    Who::Admin,
    Who::Tampered,
    Who::Expired,
    Who::Revoked,
    Who::AlgNone,
    Who::WrongAlgorithm,
    Who::UnknownAccount,
];

fn claims(sub: Uuid, role: &str, exp: OffsetDateTime) -> serde_json::Value {
    json!({"sub": sub, "role": role, "jti": Uuid::now_v7(), "iat": OffsetDateTime::now_utc().unix_timestamp(), "exp": exp.unix_timestamp()})
}

fn forge(header: Header, sub: Uuid, role: &str, exp: OffsetDateTime) -> String {
    jsonwebtoken::encode(&header, &claims(sub, role, exp), &EncodingKey::from_secret(common::TEST_SECRET))
        .expect("sign")
}

/// A well-signed HS512 token (with the right secret): put together by hand, since jsonwebtoken
/// in this process signs HS256 only (the service's own provider).
fn forge_hs512(sub: Uuid, role: &str, exp: OffsetDateTime) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let message =
        format!("{}.{}", b64(br#"{"alg":"HS512","typ":"JWT"}"#), b64(claims(sub, role, exp).to_string().as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, common::TEST_SECRET);
    format!("{message}.{}", b64(ring::hmac::sign(&key, message.as_bytes()).as_ref()))
}

struct Fixture {
    api: Api,
    a_id: String,
    b_id: String,
}

impl Fixture {
    async fn new(store: Arc<dyn Store>) -> Self {
        let api = Api::new(store).await;
        let (a_id, _) = api.customer("a@example.com").await;
        let (b_id, _) = api.customer("b@example.com").await;
        Fixture { api, a_id, b_id }
    }

    async fn login(&self, body: Value) -> String {
        let reply = self.api.send(Method::POST, "/auth/login", Some(body), &[("authorization", "")]).await;
        reply.body["access_token"].as_str().unwrap_or_else(|| panic!("login failed: {}", reply.body)).to_owned()
    }

    /// A fresh token per request, so a logout in one cell cannot affect another.
    async fn token(&self, who: Who) -> Option<String> {
        let customer = |email: &str| json!({"email": email, "password": CUSTOMER_PASSWORD});
        let in_15_min = OffsetDateTime::now_utc() + Duration::minutes(15);
        Some(match who {
            Who::Anonymous => return None,
            Who::CustomerA => self.login(customer("a@example.com")).await,
            Who::CustomerB => self.login(customer("b@example.com")).await,
            Who::Admin => self.login(json!({"username": "admin", "password": ADMIN_PASSWORD})).await,
            Who::Tampered => {
                // Same signature, payload claiming the admin role.
                let token = self.login(customer("a@example.com")).await;
                let parts: Vec<&str> = token.split('.').collect();
                let mut claims: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
                claims["role"] = json!("admin");
                format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2])
            }
            Who::Expired => forge(
                Header::default(),
                self.a_id.parse().expect("uuid"),
                "customer",
                OffsetDateTime::now_utc() - Duration::seconds(1),
            ),
            Who::Revoked => {
                let token = self.login(customer("a@example.com")).await;
                let bearer = format!("Bearer {token}");
                let out = self.api.send(Method::POST, "/auth/logout", None, &[("authorization", &bearer)]).await;
                assert_eq!(out.status, StatusCode::NO_CONTENT);
                token
            }
            Who::AlgNone => {
                let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
                let claims = json!({"sub": self.a_id, "role": "admin", "jti": Uuid::now_v7(), "iat": 0, "exp": in_15_min.unix_timestamp()});
                format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
            }
            Who::WrongAlgorithm => forge_hs512(self.a_id.parse().expect("uuid"), "admin", in_15_min),
            Who::UnknownAccount => forge(Header::default(), Uuid::now_v7(), "admin", in_15_min),
        })
    }

    async fn product(&self) -> String {
        let name = format!("Matrix {}", Uuid::now_v7());
        let reply = self
            .api
            .post("/products", json!({"name": name, "price_cents": 100, "stock": 5, "category": "matrix"}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().expect("id").to_owned()
    }

    async fn call(&self, who: Who, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let auth = match self.token(who).await {
            Some(token) => format!("Bearer {token}"),
            None => String::new(),
        };
        let mut request = Request::builder().method(method).uri(uri);
        // An empty header value stands for "no header": `Api` adds the admin's otherwise.
        request = if auth.is_empty() {
            request.header("x-anonymous", "1")
        } else {
            request.header(header::AUTHORIZATION, auth)
        };
        let request = match body {
            Some(json) => request.header(header::CONTENT_TYPE, "application/json").body(Body::from(json.to_string())),
            None => request.body(Body::empty()),
        };
        self.api.raw_as_is(request.expect("request")).await
    }
}

/// Expected status per identity for a route whose legitimate users get `ok`.
fn expect(who: Who, anonymous: u16, a: u16, b: u16, admin: u16) -> u16 {
    match who {
        Who::Anonymous => anonymous,
        Who::CustomerA => a,
        Who::CustomerB => b,
        Who::Admin => admin,
        _ => 401,
    }
}

/// Every route × every identity, with the status the access rules (docs/invariants.md, 22) give.
async fn authorization_matrix(store: Arc<dyn Store>) {
    let f = Fixture::new(store).await;
    let product = f.product().await;
    let (a, b) = (f.a_id.clone(), f.b_id.clone());
    let mut failures = Vec::new();
    for who in EVERYONE {
        let fresh_product = f.product().await;
        let unique = Uuid::now_v7().simple().to_string();
        let cases: Vec<(Method, String, Option<Value>, u16)> = vec![
            (Method::GET, "/products".into(), None, expect(who, 200, 200, 200, 200)),
            (Method::GET, format!("/products/{product}"), None, expect(who, 200, 200, 200, 200)),
            (Method::GET, "/categories".into(), None, expect(who, 200, 200, 200, 200)),
            (
                Method::POST,
                "/products".into(),
                Some(json!({"name": format!("New {unique}"), "price_cents": 1, "stock": 1, "category": "matrix"})),
                expect(who, 401, 403, 403, 201),
            ),
            (
                Method::PATCH,
                format!("/products/{product}"),
                Some(json!({"price_cents": 9})),
                expect(who, 401, 403, 403, 200),
            ),
            (
                Method::PUT,
                format!("/products/{product}"),
                // The stock as created: an edit may not move it (adjustments do).
                Some(json!({"name": format!("Replaced {unique}"), "price_cents": 2, "stock": 5, "category": "matrix"})),
                expect(who, 401, 403, 403, 200),
            ),
            (Method::DELETE, format!("/products/{fresh_product}"), None, expect(who, 401, 403, 403, 204)),
            (
                Method::POST,
                "/customers".into(),
                Some(json!({"name": "New", "email": format!("{unique}@example.com"), "password": CUSTOMER_PASSWORD})),
                expect(who, 201, 201, 201, 201),
            ),
            (Method::GET, "/customers".into(), None, expect(who, 401, 403, 403, 200)),
            (Method::GET, format!("/customers/{a}"), None, expect(who, 401, 200, 404, 200)),
            (
                Method::PATCH,
                format!("/customers/{a}"),
                Some(json!({"phone": "+1 555 0100"})),
                expect(who, 401, 200, 404, 200),
            ),
            (Method::GET, format!("/customers/{b}"), None, expect(who, 401, 404, 200, 200)),
            (
                Method::POST,
                "/auth/login".into(),
                Some(json!({"email": "b@example.com", "password": CUSTOMER_PASSWORD})),
                expect(who, 200, 200, 200, 200),
            ),
            (Method::POST, "/auth/logout".into(), None, expect(who, 401, 204, 204, 204)),
        ];
        for (method, uri, body, expected) in cases {
            let label = format!("{who:?} {method} {uri}");
            let reply = f.call(who, method, &uri, body).await;
            if reply.status.as_u16() != expected {
                failures.push(format!("{label}: expected {expected}, got {} {}", reply.status, reply.body));
            } else if expected >= 400 {
                common::http::assert_problem(&reply, reply.status);
            }
            if expected == 401 {
                assert_eq!(
                    reply.headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
                    Some(&b"Bearer"[..]),
                    "{label}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{} cells wrong:\n{}", failures.len(), failures.join("\n"));
}

/// Unknown accounts and wrong passwords are indistinguishable to the caller.
async fn wrong_password_and_unknown_user_get_the_same_answer(store: Arc<dyn Store>) {
    let f = Fixture::new(store).await;
    let wrong = f.api.post("/auth/login", json!({"email": "a@example.com", "password": "not the password"})).await;
    let unknown =
        f.api.post("/auth/login", json!({"email": "nobody@example.com", "password": "not the password"})).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    let huge =
        f.api.post("/auth/login", json!({"email": format!("{}@example.com", "a".repeat(5000)), "password": "x"})).await;
    assert_eq!((huge.status, &huge.body), (wrong.status, &wrong.body), "an absurd login name is just wrong");
    let neither = f.api.post("/auth/login", json!({"password": "x"})).await;
    assert_eq!(neither.status, StatusCode::UNPROCESSABLE_ENTITY);

    let ok = f.api.post("/auth/login", json!({"email": "A@EXAMPLE.COM", "password": CUSTOMER_PASSWORD})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        (ok.body["token_type"].as_str(), ok.body["role"].as_str(), ok.body["expires_in"].as_i64()),
        (Some("Bearer"), Some("customer"), Some(900))
    );
    assert_eq!(ok.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()), Some(&b"no-store"[..]));
}

fn clocked(store: Arc<dyn Store>) -> (Services, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let limits =
        LoginLimits { per_account: 5, per_address: 100, window: Duration::minutes(15), ..LoginLimits::default() };
    let orderly = common::orderly_with(store, clock.clone(), common::test_auth().with_limits(limits)).services();
    (orderly, clock)
}

/// 20 wrong passwords in a row: the limit's worth get 401, the rest 429 with Retry-After,
/// the right password too; after the window the right password works again.
async fn failed_logins_are_rate_limited_per_account(store: Arc<dyn Store>) {
    let (orderly, clock) = clocked(store);
    let api = Api::over(orderly).await;
    api.customer("a@example.com").await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..20 {
        let reply = api.post("/auth/login", json!({"email": "a@example.com", "password": "guess guess guess"})).await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            retry_after = reply.headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()?.parse::<i64>().ok());
        }
    }
    assert_eq!(statuses, [[401; 5].as_slice(), [429; 15].as_slice()].concat());
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=900).contains(&retry_after), "{retry_after}");

    let right = json!({"email": "a@example.com", "password": CUSTOMER_PASSWORD});
    assert_eq!(api.post("/auth/login", right.clone()).await.status, StatusCode::TOO_MANY_REQUESTS);
    let other = api.customer("b@example.com").await;
    assert!(!other.1.is_empty(), "other accounts are unaffected");

    clock.advance(Duration::seconds(retry_after));
    assert_eq!(api.post("/auth/login", right.clone()).await.status, StatusCode::OK, "works after the window");
    // Successful logins never use up the allowance.
    for _ in 0..10 {
        assert_eq!(api.post("/auth/login", right.clone()).await.status, StatusCode::OK);
    }
}

/// Failed logins from one address are limited across accounts (credential stuffing).
async fn failed_logins_are_rate_limited_per_address(store: Arc<dyn Store>) {
    let clock = Arc::new(FakeClock::new(OffsetDateTime::now_utc()));
    let limits =
        LoginLimits { per_account: 100, per_address: 4, window: Duration::minutes(15), ..LoginLimits::default() };
    let orderly = common::orderly_with(store, clock.clone(), common::test_auth().with_limits(limits)).services();
    let attacker: std::net::IpAddr = "203.0.113.7".parse().expect("ip");
    let guess = |email: &str| -> LoginRequest {
        serde_json::from_value(json!({"email": email, "password": "guess guess guess"})).expect("request")
    };
    let mut answers = Vec::new();
    for i in 0..6 {
        let outcome = orderly.accounts.login(guess(&format!("victim{i}@example.com")), Some(attacker)).await;
        answers.push(match outcome {
            Err(orderly::Error::Unauthorized(_)) => 401,
            Err(orderly::Error::TooManyRequests { .. }) => 429,
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(answers, [401, 401, 401, 401, 429, 429]);
    let elsewhere =
        orderly.accounts.login(guess("victim0@example.com"), Some("198.51.100.1".parse().expect("ip"))).await;
    assert!(matches!(elsewhere, Err(orderly::Error::Unauthorized(_))), "other addresses are unaffected");
}

async fn tokens_expire_by_the_service_clock(store: Arc<dyn Store>) {
    let (orderly, clock) = clocked(store);
    let api = Api::over(orderly).await;
    let (id, token) = api.customer("a@example.com").await;
    let bearer = format!("Bearer {token}");
    let uri = format!("/customers/{id}");
    assert_eq!(api.send(Method::GET, &uri, None, &[("authorization", &bearer)]).await.status, StatusCode::OK);
    clock.advance(Duration::minutes(15));
    assert_eq!(api.send(Method::GET, &uri, None, &[("authorization", &bearer)]).await.status, StatusCode::UNAUTHORIZED);
}

/// Each function is its own app (as in Lambda) over one store: a logout through the auth
/// function is refused at once by the others.
async fn logout_takes_effect_on_every_function(store: Arc<dyn Store>) {
    let services = common::orderly(store);
    let function = |routes| Api { router: app(routes, services.sessions.clone()), admin_token: String::new() };
    let auth_fn = function(auth::routes(services.accounts.clone(), services.sessions.clone()));
    let customers_fn = function(customers::routes(services.customers.clone(), services.notices.clone()));
    let products_fn = function(products::routes(services.catalog.clone()));
    let signed_up = customers_fn
        .post("/customers", json!({"name": "A", "email": "a@example.com", "password": common::http::CUSTOMER_PASSWORD}))
        .await;
    let id = signed_up.body["id"].as_str().expect("id").to_owned();
    let login = auth_fn
        .post("/auth/login", json!({"email": "a@example.com", "password": common::http::CUSTOMER_PASSWORD}))
        .await;
    let token = login.body["access_token"].as_str().expect("token").to_owned();
    let bearer = format!("Bearer {token}");
    let me = format!("/customers/{id}");
    assert_eq!(customers_fn.send(Method::GET, &me, None, &[("authorization", &bearer)]).await.status, StatusCode::OK);

    let out = auth_fn.send(Method::POST, "/auth/logout", None, &[("authorization", &bearer)]).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        customers_fn.send(Method::GET, &me, None, &[("authorization", &bearer)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        products_fn.send(Method::GET, "/products", None, &[("authorization", &bearer)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        auth_fn.send(Method::POST, "/auth/logout", None, &[("authorization", &bearer)]).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// An order confirms a token the instance has not confirmed lately in the order's own read:
/// a revoked token is refused there (401) as on every route, with a good body or a bad one,
/// and places nothing; another token of the same customer orders.
async fn an_order_with_a_revoked_token_is_refused_and_places_nothing(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let mug =
        api.post("/products", json!({"name": "Mug", "price_cents": 900, "stock": 5, "category": "kitchen"})).await;
    let items = json!({"items": [{"product_id": mug.body["id"], "quantity": 1}]});
    let (id, token) = api.customer("a@example.com").await;
    let bearer = format!("Bearer {token}");
    let out = api.send(Method::POST, "/auth/logout", None, &[("authorization", &bearer)]).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    for body in [items.clone(), json!({"items": []}), json!("not an order")] {
        let refused = api.send(Method::POST, "/orders", Some(body.clone()), &[("authorization", &bearer)]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{body}: {}", refused.body);
    }
    let too_long = "k".repeat(256);
    let keyed = [("authorization", bearer.as_str()), ("idempotency-key", too_long.as_str())];
    assert_eq!(api.send(Method::POST, "/orders", Some(items.clone()), &keyed).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get(&format!("/orders?customer_id={id}")).await.body["items"], json!([]), "nothing placed");

    let login = api
        .send(
            Method::POST,
            "/auth/login",
            Some(json!({"email": "a@example.com", "password": CUSTOMER_PASSWORD})),
            &[("authorization", "")],
        )
        .await;
    let again = format!("Bearer {}", login.body["access_token"].as_str().expect("token"));
    let placed = api.send(Method::POST, "/orders", Some(items), &[("authorization", &again)]).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
}

/// A password change checks the current password, ends every session of the account (this
/// one, another device's, one this process had just confirmed, one confirmed by an order's own
/// read) and answers a token that works; the old password no longer logs in.
async fn a_password_change_ends_every_session_and_answers_a_new_token(store: Arc<dyn Store>) {
    let (orderly, clock) = clocked(store);
    let api = Api::over(orderly).await;
    let mug =
        api.post("/products", json!({"name": "Mug", "price_cents": 900, "stock": 5, "category": "kitchen"})).await;
    let order = json!({"items": [{"product_id": mug.body["id"], "quantity": 1}]});
    let (id, phone) = api.customer("a@example.com").await;
    let laptop = login_as(&api, "a@example.com", CUSTOMER_PASSWORD).await;
    let (_, other_customer) = api.customer("b@example.com").await;
    let me = format!("/customers/{id}");
    let bearer = |token: &str| format!("Bearer {token}");
    let get_me = |token: String| {
        let (api, me) = (&api, me.clone());
        async move { api.send(Method::GET, &me, None, &[("authorization", &format!("Bearer {token}"))]).await.status }
    };
    assert_eq!(get_me(laptop.clone()).await, StatusCode::OK, "confirmed, so trusted for a while in this process");
    clock.advance(Duration::seconds(1));

    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let phone_bearer = bearer(&phone);
    let headers = [("authorization", phone_bearer.as_str())];
    let wrong =
        api.send(Method::POST, "/auth/password", Some(change("not my password", "brand new password")), &headers).await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong.body);
    common::http::assert_problem(&wrong, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.body["errors"][0]["field"], "current_password", "{}", wrong.body);
    let short = api.send(Method::POST, "/auth/password", Some(change(CUSTOMER_PASSWORD, "short")), &headers).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(short.body["errors"][0]["field"], "new_password", "{}", short.body);
    let same =
        api.send(Method::POST, "/auth/password", Some(change(CUSTOMER_PASSWORD, CUSTOMER_PASSWORD)), &headers).await;
    assert_eq!(same.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(same.body["errors"][0]["field"], "new_password", "{}", same.body);
    let extra = json!({"current_password": CUSTOMER_PASSWORD, "new_password": "brand new password", "x": 1});
    assert_eq!(
        api.send(Method::POST, "/auth/password", Some(extra), &headers).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(get_me(phone.clone()).await, StatusCode::OK, "refused changes end nothing");
    assert_eq!(login(&api, "a@example.com", CUSTOMER_PASSWORD).await, StatusCode::OK, "nor change the password");

    let changed =
        api.send(Method::POST, "/auth/password", Some(change(CUSTOMER_PASSWORD, "brand new password")), &headers).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()), Some(&b"no-store"[..]));
    let fresh = changed.body["access_token"].as_str().expect("a new token").to_owned();
    assert_eq!(get_me(fresh.clone()).await, StatusCode::OK, "the new token works");
    assert_eq!(get_me(phone.clone()).await, StatusCode::UNAUTHORIZED, "the token used is refused");
    assert_eq!(get_me(laptop.clone()).await, StatusCode::UNAUTHORIZED, "another device's, though just confirmed here");
    let placed = api.send(Method::POST, "/orders", Some(order.clone()), &[("authorization", &bearer(&laptop))]).await;
    assert_eq!(placed.status, StatusCode::UNAUTHORIZED, "an order confirms in its own read: refused there too");
    assert_eq!(login(&api, "a@example.com", CUSTOMER_PASSWORD).await, StatusCode::UNAUTHORIZED, "the old password");
    assert_eq!(login(&api, "a@example.com", "brand new password").await, StatusCode::OK, "the new one");
    let other = api.send(Method::GET, "/products", None, &[("authorization", &bearer(&other_customer))]).await;
    assert_eq!(other.status, StatusCode::OK, "other accounts' sessions go on");
    let placed = api.send(Method::POST, "/orders", Some(order), &[("authorization", &bearer(&fresh))]).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);

    // A wrong current password is a failed login, under the same limit (5 here). The new
    // password forgot the wrong current password given before it, so one is used (the old
    // password's login): four more guesses are answered and then even the right password waits
    // for the window. A stolen token is no way round the limits.
    let fresh_bearer = bearer(&fresh);
    let fresh_headers = [("authorization", fresh_bearer.as_str())];
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let guess = change("guess guess guess", "another new password");
        statuses.push(api.send(Method::POST, "/auth/password", Some(guess), &fresh_headers).await.status.as_u16());
    }
    assert_eq!(statuses, [422, 422, 422, 422, 429]);
    let right = change("brand new password", "another new password");
    assert_eq!(
        api.send(Method::POST, "/auth/password", Some(right), &fresh_headers).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&api, "a@example.com", "brand new password").await,
        StatusCode::TOO_MANY_REQUESTS,
        "shared with logins"
    );
}

/// An admin changes their own password the same way.
async fn an_admin_changes_their_password(store: Arc<dyn Store>) {
    let (orderly, clock) = clocked(store);
    let api = Api::over(orderly).await;
    clock.advance(Duration::seconds(1));
    let change = json!({"current_password": ADMIN_PASSWORD, "new_password": "a new admin password"});
    let changed = api.post("/auth/password", change).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["role"], "admin");
    assert_eq!(api.get("/admin/metrics").await.status, StatusCode::UNAUTHORIZED, "the old token is refused");
    let fresh = format!("Bearer {}", changed.body["access_token"].as_str().expect("token"));
    let metrics = api.send(Method::GET, "/admin/metrics", None, &[("authorization", &fresh)]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let new_login = json!({"username": "admin", "password": "a new admin password"});
    assert_eq!(
        api.send(Method::POST, "/auth/login", Some(new_login), &[("authorization", "")]).await.status,
        StatusCode::OK
    );
}

/// A customer's own email change needs their password (a reset goes to the email, so a stolen
/// token must not move it), checked as a login is; an admin's does not, nor does any other edit.
async fn a_customer_changing_their_email_confirms_it_with_their_password(store: Arc<dyn Store>) {
    let (orderly, _) = clocked(store);
    let api = Api::over(orderly).await;
    let (id, token) = api.customer("a@example.com").await;
    let me = format!("/customers/{id}");
    let bearer = format!("Bearer {token}");
    let patch = |body: Value| {
        let (api, me, bearer) = (&api, me.clone(), bearer.clone());
        async move { api.send(Method::PATCH, &me, Some(body), &[("authorization", &bearer)]).await }
    };
    let bare = patch(json!({"email": "taker@example.com"})).await;
    common::http::assert_problem(&bare, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bare.body["errors"][0]["field"], "current_password", "{}", bare.body);
    let wrong = patch(json!({"email": "taker@example.com", "current_password": "not my password"})).await;
    assert_eq!(wrong.body["errors"][0]["field"], "current_password", "{}", wrong.body);
    assert_eq!(api.get(&me).await.body["email"], "a@example.com", "nothing changed");
    assert_eq!(patch(json!({"phone": "+44 20 7946 0000"})).await.status, StatusCode::OK, "other edits need none");
    let same = patch(json!({"email": "A@Example.com"})).await;
    assert_eq!(
        (same.status, &same.body["email"]),
        (StatusCode::OK, &json!("A@Example.com")),
        "the same email, in capitals"
    );

    let moved = patch(json!({"email": "ada@new.example", "current_password": CUSTOMER_PASSWORD})).await;
    assert_eq!((moved.status, &moved.body["email"]), (StatusCode::OK, &json!("ada@new.example")), "{}", moved.body);
    assert_eq!(login(&api, "ada@new.example", CUSTOMER_PASSWORD).await, StatusCode::OK);
    let by_admin = api.send(Method::PATCH, &me, Some(json!({"email": "ada@office.example"})), &[]).await;
    assert_eq!(by_admin.status, StatusCode::OK, "an admin needs no password: {}", by_admin.body);

    // Wrong passwords are failed logins of the account's login name (5 allowed here; the one
    // above counted against the email it had then).
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let guess = json!({"email": "taker@example.com", "current_password": "guess guess guess"});
        statuses.push(patch(guess).await.status.as_u16());
    }
    assert_eq!(statuses, [422, 422, 422, 422, 422, 429]);
}

/// The operator sets a forgotten admin password (`orderly-local reset-admin-password`): the old
/// password and every session of that admin end; nobody else's.
async fn the_operator_resets_an_admins_password(store: Arc<dyn Store>) {
    let (orderly, clock) = clocked(store);
    let api = Api::over(orderly.clone()).await;
    let (_, customer) = api.customer("a@example.com").await;
    clock.advance(Duration::seconds(1));
    let accounts = &orderly.accounts;
    accounts.reset_admin_password("admin", Password::new("a forgotten one, replaced")).await.expect("reset");
    assert_eq!(api.get("/admin/metrics").await.status, StatusCode::UNAUTHORIZED, "the admin's session ended");
    let login = |password: &str| json!({"username": "admin", "password": password});
    let anonymous = [("authorization", "")];
    let old = api.send(Method::POST, "/auth/login", Some(login(ADMIN_PASSWORD)), &anonymous).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = api.send(Method::POST, "/auth/login", Some(login("a forgotten one, replaced")), &anonymous).await;
    assert_eq!(new.status, StatusCode::OK);
    let other = api.send(Method::GET, "/products", None, &[("authorization", &format!("Bearer {customer}"))]).await;
    assert_eq!(other.status, StatusCode::OK, "a customer's session goes on");

    let unknown = accounts.reset_admin_password("nobody", Password::new("a long enough password")).await;
    assert!(matches!(unknown, Err(Error::NotFound("admin"))), "{unknown:?}");
    let customer_login = accounts.reset_admin_password("a@example.com", Password::new("a long enough password")).await;
    assert!(matches!(customer_login, Err(Error::Validation(_))), "a customer is no admin: {customer_login:?}");
    let short = accounts.reset_admin_password("admin", Password::new("short")).await;
    assert!(matches!(short, Err(Error::Validation(_))), "{short:?}");
}

/// Logging out everywhere refuses every token of the account issued until then, wherever it was
/// issued; a later login works.
async fn logging_out_everywhere_refuses_every_earlier_token(store: Arc<dyn Store>) {
    let (orderly, clock) = clocked(store);
    let api = Api::over(orderly).await;
    let (id, phone) = api.customer("a@example.com").await;
    let laptop = login_as(&api, "a@example.com", CUSTOMER_PASSWORD).await;
    let (_, other_customer) = api.customer("b@example.com").await;
    clock.advance(Duration::seconds(1));
    let me = format!("/customers/{id}");
    let status = |token: &str, method: Method, uri: &str| {
        let (api, bearer, uri) = (&api, format!("Bearer {token}"), uri.to_owned());
        async move { api.send(method, &uri, None, &[("authorization", &bearer)]).await.status }
    };
    assert_eq!(status(&laptop, Method::GET, &me).await, StatusCode::OK);
    assert_eq!(status(&phone, Method::POST, "/auth/logout-everywhere").await, StatusCode::NO_CONTENT);
    assert_eq!(status(&phone, Method::GET, &me).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&laptop, Method::GET, &me).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&laptop, Method::POST, "/auth/logout-everywhere").await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&other_customer, Method::GET, "/products").await, StatusCode::OK, "other accounts go on");
    let again = login_as(&api, "a@example.com", CUSTOMER_PASSWORD).await;
    assert_eq!(status(&again, Method::GET, &me).await, StatusCode::OK, "a later login works");
}

async fn login(api: &Api, email: &str, password: &str) -> StatusCode {
    let body = json!({"email": email, "password": password});
    api.send(Method::POST, "/auth/login", Some(body), &[("authorization", "")]).await.status
}

async fn login_as(api: &Api, email: &str, password: &str) -> String {
    let body = json!({"email": email, "password": password});
    let reply = api.send(Method::POST, "/auth/login", Some(body), &[("authorization", "")]).await;
    reply.body["access_token"].as_str().unwrap_or_else(|| panic!("login failed: {}", reply.body)).to_owned()
}

/// The production argon2 cost works end to end (the other tests use a cheaper one).
async fn production_password_cost_signs_up_and_logs_in(store: Arc<dyn Store>) {
    let auth = common::test_auth().with_cost(PasswordCost::default());
    let api = Api::over(common::orderly_with(store, Arc::new(orderly::clock::SystemClock), auth).services()).await;
    let (_, token) = api.customer("a@example.com").await;
    assert_eq!(token.split('.').count(), 3);
}

on_every_store!(
    authorization_matrix,
    wrong_password_and_unknown_user_get_the_same_answer,
    failed_logins_are_rate_limited_per_account,
    failed_logins_are_rate_limited_per_address,
    tokens_expire_by_the_service_clock,
    logout_takes_effect_on_every_function,
    an_order_with_a_revoked_token_is_refused_and_places_nothing,
    a_password_change_ends_every_session_and_answers_a_new_token,
    an_admin_changes_their_password,
    a_customer_changing_their_email_confirms_it_with_their_password,
    the_operator_resets_an_admins_password,
    logging_out_everywhere_refuses_every_earlier_token,
    production_password_cost_signs_up_and_logs_in,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_hash_or_token_is_logged() {
    let logs = common::logs::captured();
    let store = common::sqlite_store();
    let api = Api::new(store.clone()).await;
    let password = "a-very-distinctive-password-4711";
    let created =
        api.post("/customers", json!({"name": "Quiet", "email": "quiet@example.com", "password": password})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let login = api.post("/auth/login", json!({"email": "quiet@example.com", "password": password})).await;
    let token = login.body["access_token"].as_str().expect("token").to_owned();
    let bearer = format!("Bearer {token}");
    api.send(Method::GET, "/customers", None, &[("authorization", &bearer)]).await;
    api.post("/auth/login", json!({"email": "quiet@example.com", "password": "wrong-distinctive-guess-0815"})).await;
    api.send(Method::POST, "/auth/logout", None, &[("authorization", &bearer)]).await;
    let hash = store.find_login("quiet@example.com").await.expect("find").expect("login").password_hash;

    let text = logs.text();
    assert!(text.contains("login succeeded") && text.contains("request completed"), "the app did log");
    for secret in [password, "wrong-distinctive-guess-0815", &token, &hash, token.split('.').nth(2).unwrap_or("-")] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
}

/// Functions that are separate processes (as Lambda functions are) trust a token they found
/// valid for at most the session cache's bound: a logout through one takes effect in another
/// within it, and at once in the function that handled it.
#[tokio::test]
async fn a_logout_reaches_other_processes_within_the_session_cache_bound() {
    let store = common::sqlite_store();
    // Long enough that the checks below run well within it even on a loaded machine.
    let bound = std::time::Duration::from_secs(2);
    let process = || {
        let auth = common::test_auth().with_session_cache(bound);
        common::orderly_with(store.clone(), Arc::new(orderly::clock::SystemClock), auth).services()
    };
    let (auth_fn, orders_fn) = (process(), process());
    let api = Api::over(auth_fn.clone()).await;
    let (_, token) = api.customer("a@example.com").await;
    let session = orders_fn.sessions.authenticate(&token).await.expect("valid, and now trusted for a while");
    auth_fn.sessions.logout(&session).await.expect("logout");
    assert!(auth_fn.sessions.authenticate(&token).await.is_err(), "refused at once where it was revoked");
    assert!(orders_fn.sessions.authenticate(&token).await.is_ok(), "still trusted elsewhere, within the bound");
    tokio::time::sleep(bound + std::time::Duration::from_millis(200)).await;
    assert!(orders_fn.sessions.authenticate(&token).await.is_err(), "refused everywhere after the bound");
}
