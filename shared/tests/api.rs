//! The HTTP API end to end through the routers (no server), on every store.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::http::{Api, Reply, assert_problem};
use orderly::store::Store;
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// The app plus an admin's token, sent with every request unless a test says otherwise.
fn mug() -> Value {
    json!({"name": "Blue Mug", "description": "Holds tea", "price_cents": 1299, "stock": 10, "category": "kitchen"})
}

async fn customers_sign_up_read_update_and_list(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let created = api
        .post(
            "/customers",
            json!({"name": "Ada Lovelace", "email": "Ada@Example.com", "password": "correct horse battery", "phone": "+44 20 7946 0000",
                   "address": {"line1": "1 Analytical St", "city": "London", "postal_code": "N1 1AA", "country": "gb"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.headers[header::LOCATION], format!("/customers/{id}").as_str());
    assert_eq!(created.body["address"]["country"], "GB");
    assert_eq!(created.body["version"], 1);

    let duplicate = api
        .post("/customers", json!({"name": "Imposter", "email": "ada@EXAMPLE.com", "password": "imposter password"}))
        .await;
    assert_problem(&duplicate, StatusCode::CONFLICT);

    let shown = api.get(&format!("/customers/{id}")).await;
    assert_eq!(shown.body, created.body);

    let patched = api.send(Method::PATCH, &format!("/customers/{id}"), Some(json!({"name": "Ada King"})), &[]).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        (patched.body["name"].as_str(), patched.body["email"].as_str()),
        (Some("Ada King"), Some("Ada@Example.com"))
    );
    assert_eq!(patched.body["version"], 2);

    api.post("/customers", json!({"name": "Bob", "email": "bob@example.com", "password": "bob's password"})).await;
    let page = api.get("/customers?limit=1").await;
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(1));
    let token = page.body["next_token"].as_str().expect("token").to_owned();
    let rest = api.get(&format!("/customers?limit=1&next_token={token}")).await;
    assert_eq!(rest.body["items"][0]["email"], "bob@example.com");
    assert_eq!(rest.body["next_token"], Value::Null);

    let missing = api.get(&format!("/customers/{}", uuid::Uuid::now_v7())).await;
    assert_problem(&missing, StatusCode::NOT_FOUND);
}

/// Staff find a customer by the email they write from, in any letter case, on both list
/// routes; an email nobody signs in with finds no one, a malformed one is a 422, and a customer
/// may not search. An email change moves the customer to the new email.
async fn staff_find_a_customer_by_email(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let (ada, ada_token) = api.customer("Ada@Example.com").await;
    api.customer("bob@example.com").await;
    let found = |reply: &common::http::Reply| -> Vec<String> {
        let items = reply.body["items"].as_array().expect("items");
        items.iter().map(|c| c["id"].as_str().expect("id").to_owned()).collect()
    };
    for route in ["/customers", "/admin/customers"] {
        let reply = api.get(&format!("{route}?email=ADA%40example.COM")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(found(&reply), std::slice::from_ref(&ada), "{route}: {}", reply.body);
        assert_eq!(reply.body["next_token"], Value::Null);
        let nobody = api.get(&format!("{route}?email=nobody%40example.com")).await;
        assert_eq!(found(&nobody), Vec::<String>::new(), "{route}: {}", nobody.body);
    }
    let malformed = api.get("/customers?email=admin").await;
    assert_problem(&malformed, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.body["errors"][0]["field"], "email", "{}", malformed.body);
    let by_customer = api
        .send(
            Method::GET,
            "/customers?email=bob%40example.com",
            None,
            &[("authorization", &format!("Bearer {ada_token}"))],
        )
        .await;
    assert_problem(&by_customer, StatusCode::FORBIDDEN);

    let moved =
        api.send(Method::PATCH, &format!("/customers/{ada}"), Some(json!({"email": "ada@new.example"})), &[]).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert_eq!(found(&api.get("/customers?email=ada%40example.com").await), Vec::<String>::new());
    assert_eq!(found(&api.get("/customers?email=Ada%40New.Example").await), [ada]);
}

/// PATCH is a merge patch: `null` removes what may be removed (a customer's phone and address,
/// a product's description) and is refused with a 422 naming the field where nothing may be
/// removed (a name, an email, a price), changing nothing.
async fn null_removes_what_may_be_removed_and_nothing_else(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let signed_up = api
        .post(
            "/customers",
            json!({"name": "Ada", "email": "ada@example.com", "password": "correct horse battery", "phone": "+44 20 7946 0000",
                   "address": {"line1": "1 Analytical St", "city": "London", "postal_code": "N1 1AA", "country": "GB"}}),
        )
        .await;
    let customer = format!("/customers/{}", signed_up.body["id"].as_str().expect("id"));
    for field in ["name", "email"] {
        let refused = api.send(Method::PATCH, &customer, Some(json!({field: null, "phone": null})), &[]).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.body["errors"][0]["field"], field, "{}", refused.body);
    }
    assert_eq!(api.get(&customer).await.body, signed_up.body, "nothing changed");
    let removed = api.send(Method::PATCH, &customer, Some(json!({"phone": null, "address": null})), &[]).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!((&removed.body["phone"], &removed.body["address"]), (&Value::Null, &Value::Null), "{}", removed.body);
    assert_eq!((removed.body["name"].as_str(), removed.body["version"].as_u64()), (Some("Ada"), Some(2)));
    let untouched = api.send(Method::PATCH, &customer, Some(json!({})), &[]).await;
    assert_eq!(untouched.body, removed.body, "an empty patch changes nothing");

    let created = api
        .post(
            "/products",
            json!({"name": "Mug", "description": "Stoneware", "price_cents": 500, "stock": 3, "category": "kitchen"}),
        )
        .await;
    let product = format!("/products/{}", created.body["id"].as_str().expect("id"));
    for field in ["name", "price_cents", "category", "stock", "low_stock_threshold", "stock_shards", "version"] {
        let refused = api.send(Method::PATCH, &product, Some(json!({field: null})), &[]).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.body["errors"][0]["field"], field, "{}", refused.body);
    }
    assert_eq!(api.get(&product).await.body, created.body, "nothing changed");
    let cleared = api.send(Method::PATCH, &product, Some(json!({"description": null})), &[]).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert_eq!((cleared.body["description"].as_str(), cleared.body["name"].as_str()), (Some(""), Some("Mug")));
    let described = api.send(Method::PATCH, &product, Some(json!({"description": "Blue"})), &[]).await;
    assert_eq!(described.body["description"], "Blue", "{}", described.body);
    let replaced = api
        .send(
            Method::PUT,
            &product,
            Some(json!({"name": "Mug", "price_cents": 500, "stock": 3, "category": "kitchen"})),
            &[],
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["description"], "", "a PUT without a description clears it");
}

async fn invalid_customers_get_field_errors(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let reply = api
        .post("/customers", json!({"name": " ", "email": "not-an-email", "password": "short", "phone": "call me"}))
        .await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        reply.body["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["name", "email", "password", "phone"]);
    let listed = api.get("/customers").await;
    assert_eq!(listed.body["items"], json!([]), "nothing was written");
}

async fn invalid_products_get_field_errors(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let every_field_wrong = json!({
        "name": " ", "description": "bell\u{7}", "price_cents": -1, "stock": -1, "category": "Not A Slug",
        "low_stock_threshold": -1, "stock_shards": 0
    });
    let all = ["name", "description", "price_cents", "stock", "category", "low_stock_threshold", "stock_shards"];
    let fields = |reply: &Reply| -> Vec<String> {
        let errors = reply.body["errors"].as_array().expect("errors");
        errors.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect()
    };
    let created = api.post("/products", every_field_wrong.clone()).await;
    assert_problem(&created, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&created), all, "POST names every bad field");
    assert_eq!(api.get("/products").await.body["items"], json!([]), "nothing was written");

    let mug = api.post("/products", mug()).await;
    let uri = format!("/products/{}", mug.body["id"].as_str().expect("id"));
    for method in [Method::PUT, Method::PATCH] {
        let reply = api.send(method.clone(), &uri, Some(every_field_wrong.clone()), &[]).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields(&reply), all, "{method} names every bad field");
    }
    assert_eq!(api.get(&uri).await.body, mug.body, "nothing was changed");
}

async fn products_crud_with_etags(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let mut versioned = mug();
    versioned["version"] = json!(3);
    let refused = api.post("/products", versioned).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["errors"][0]["field"], "version", "{}", refused.body);
    let created = api.post("/products", mug()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers[header::ETAG], "\"1\"");
    let id = created.body["id"].as_str().expect("id").to_owned();
    let uri = format!("/products/{id}");

    let patched = api.send(Method::PATCH, &uri, Some(json!({"price_cents": 1499})), &[("if-match", "\"1\"")]).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.headers[header::ETAG], "\"2\"");
    assert_eq!((patched.body["price_cents"].as_i64(), patched.body["stock"].as_i64()), (Some(1499), Some(10)));

    let replaced = api
        .send(
            Method::PUT,
            &uri,
            Some(json!({"name": "Red Mug", "price_cents": 999, "stock": 10, "category": "kitchen", "version": 2})),
            &[],
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["description"], "", "PUT replaces every field");
    assert_eq!((replaced.body["version"].as_i64(), replaced.body["stock"].as_i64()), (Some(3), Some(10)));

    let categories = api.get("/categories").await;
    assert_eq!(categories.body, json!({"items": [{"name": "kitchen", "product_count": 1}]}));

    let stale_delete = api.send(Method::DELETE, &uri, None, &[("if-match", "\"2\"")]).await;
    assert_problem(&stale_delete, StatusCode::PRECONDITION_FAILED);
    let deleted = api.send(Method::DELETE, &uri, None, &[("if-match", "\"3\"")]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_problem(&api.get(&uri).await, StatusCode::NOT_FOUND);
    assert_problem(&api.send(Method::DELETE, &uri, None, &[]).await, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/categories").await.body, json!({"items": []}));
}

async fn a_stale_if_match_is_refused_and_changes_nothing(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let id = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let uri = format!("/products/{id}");
    api.send(Method::PATCH, &uri, Some(json!({"price_cents": 1100})), &[]).await;

    let stale = api.send(Method::PATCH, &uri, Some(json!({"price_cents": 0})), &[("if-match", "\"1\"")]).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["current_version"], 2);
    let stale_body_version = api.send(Method::PATCH, &uri, Some(json!({"price_cents": 0, "version": 1})), &[]).await;
    assert_problem(&stale_body_version, StatusCode::PRECONDITION_FAILED);
    let unchanged = api.get(&uri).await;
    assert_eq!((unchanged.body["price_cents"].as_i64(), unchanged.body["version"].as_i64()), (Some(1100), Some(2)));

    let bad = api.send(Method::PATCH, &uri, Some(json!({"price_cents": 0})), &[("if-match", "yesterday")]).await;
    assert_problem(&bad, StatusCode::BAD_REQUEST);
}

async fn concurrent_patches_at_one_version_let_exactly_one_win(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let id = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let uri = format!("/products/{id}");
    let mut writers = JoinSet::new();
    for price_cents in [1, 2] {
        let (api, uri) = (api.clone(), uri.clone());
        writers.spawn(async move {
            let body = json!({"price_cents": price_cents});
            api.send(Method::PATCH, &uri, Some(body), &[("if-match", "\"1\"")]).await.status
        });
    }
    let mut statuses = writers.join_all().await;
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    assert_eq!(api.get(&uri).await.body["version"], 2);
}

async fn unconditional_concurrent_patches_lose_no_field(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let id = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let uri = format!("/products/{id}");
    let (a, b) = tokio::join!(
        api.send(Method::PATCH, &uri, Some(json!({"description": "Holds coffee"})), &[]),
        api.send(Method::PATCH, &uri, Some(json!({"price_cents": 5})), &[]),
    );
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    let now = api.get(&uri).await.body;
    assert_eq!(
        (now["description"].as_str(), now["price_cents"].as_i64(), now["version"].as_i64()),
        (Some("Holds coffee"), Some(5), Some(3))
    );
}

/// Orders do not move the version, so If-Match cannot catch a stale stock figure: an edit whose
/// `stock` is not the current stock is refused (409 naming it) and writes nothing, or it would
/// give back units orders still hold. The current stock is accepted (no change), and stock
/// moves by adjustments.
async fn an_edit_never_undoes_the_stock_orders_took_since_its_read(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let id = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let uri = format!("/products/{id}");
    let read = api.get(&uri).await;
    assert_eq!((read.body["stock"].as_i64(), read.body["version"].as_i64()), (Some(10), Some(1)));
    let version = read.headers[header::ETAG].to_str().expect("etag").to_owned();

    let (_, token) = api.customer("ada@example.com").await;
    let order = json!({"items": [{"product_id": id, "quantity": 2}]});
    let placed = api.send(Method::POST, "/orders", Some(order), &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);

    // The dashboard's rename: every field as read, stock 10 included, at the version read.
    let renamed = json!({"name": "Green Mug", "description": "Holds tea", "price_cents": 1299, "stock": 10, "category": "kitchen"});
    let stale_stock = [
        api.send(Method::PUT, &uri, Some(renamed.clone()), &[("if-match", &version)]).await,
        api.send(Method::PUT, &format!("/admin/inventory/{id}"), Some(renamed), &[("if-match", &version)]).await,
        api.send(Method::PATCH, &uri, Some(json!({"stock": 10})), &[("if-match", &version)]).await,
        api.send(Method::PATCH, &uri, Some(json!({"name": "Green Mug", "stock": 10})), &[]).await,
    ];
    for reply in &stale_stock {
        assert_problem(reply, StatusCode::CONFLICT);
        let detail = reply.body["detail"].as_str().expect("detail");
        assert!(detail.contains("the stock is 8 now, not 10") && detail.contains("/adjustments"), "{detail}");
    }
    let after = api.get(&uri).await.body;
    assert_eq!(
        (after["stock"].as_i64(), after["version"].as_i64(), after["name"].as_str()),
        (Some(8), Some(1), Some("Blue Mug")),
        "the order's 2 units still count and nothing was written"
    );

    // The stock as it is now is no change: the rest of the edit applies.
    let patched =
        api.send(Method::PATCH, &uri, Some(json!({"price_cents": 1499, "stock": 8})), &[("if-match", &version)]).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        (patched.body["price_cents"].as_i64(), patched.body["stock"].as_i64(), patched.body["version"].as_i64()),
        (Some(1499), Some(8), Some(2))
    );
    // A stale version is still 412 first, whatever the stock.
    let stale = api.send(Method::PATCH, &uri, Some(json!({"stock": 10})), &[("if-match", &version)]).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);

    let restocked =
        api.post(&format!("/admin/inventory/{id}/adjustments"), json!({"delta": 2, "reason": "found two"})).await;
    assert_eq!(restocked.status, StatusCode::CREATED, "{}", restocked.body);
    let now = api.get(&uri).await.body;
    assert_eq!((now["stock"].as_i64(), now["version"].as_i64()), (Some(10), Some(2)));
}

/// 200 concurrent POSTs of one name (and of one email): exactly one 201, every other 409.
async fn two_hundred_concurrent_creates_admit_exactly_one(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let mut racers = JoinSet::new();
    for i in 0..200 {
        let api = api.clone();
        racers.spawn(async move {
            let product = api.post(
                "/products",
                json!({"name": "Last Widget", "price_cents": 100 + i, "stock": 1, "category": "widgets"}),
            );
            let customer = api.post(
                "/customers",
                json!({"name": format!("Racer {i}"), "email": "racer@example.com", "password": "racing password"}),
            );
            let (p, c) = tokio::join!(product, customer);
            (p.status, c.status)
        });
    }
    let results = racers.join_all().await;
    for (label, statuses) in [
        ("products", results.iter().map(|r| r.0).collect::<Vec<_>>()),
        ("customers", results.iter().map(|r| r.1).collect()),
    ] {
        let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
        let conflicts = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
        assert_eq!((created, conflicts), (1, 199), "{label}: {statuses:?}");
    }
    assert_eq!(api.get("/products").await.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(api.get("/customers").await.body["items"].as_array().map(Vec::len), Some(1));
}

async fn product_filters_over_http(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    for (name, category, price, stock) in
        [("Axe", "garden", 4500, 0), ("Apron", "kitchen", 1500, 3), ("Anvil", "garden", 9000, 1)]
    {
        let reply = api
            .post("/products", json!({"name": name, "price_cents": price, "stock": stock, "category": category}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let names = |reply: Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(api.get("/products?category=garden&in_stock=true").await), ["Anvil"]);
    assert_eq!(names(api.get("/products?q=AP").await), ["Apron"]);
    assert_eq!(names(api.get("/products?min_price=2000&max_price=5000").await), ["Axe"]);
    assert_problem(&api.get("/products?min_price=10&max_price=5").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(&api.get("/products?category=Not%20A%20Slug").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(&api.get("/products?limit=0").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(&api.get("/products?limit=1000").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(&api.get("/products?next_token=forged").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_problem(&api.get("/products?in_stock=maybe").await, StatusCode::BAD_REQUEST);
    assert_problem(&api.get("/products?colour=red").await, StatusCode::BAD_REQUEST);
}

/// Malformed requests of every kind: a 4xx problem document each, nothing written.
async fn malformed_requests_get_problem_documents(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let id = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let raw = |method: Method, uri: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder.body(Body::from(body)).expect("request")
    };
    let json = Some("application/json");
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (raw(Method::POST, "/products", json, b"{\"name\": ".to_vec()), StatusCode::BAD_REQUEST),
        (raw(Method::POST, "/products", json, b"[1, 2]".to_vec()), StatusCode::UNPROCESSABLE_ENTITY),
        (raw(Method::POST, "/products", json, b"{} trailing".to_vec()), StatusCode::BAD_REQUEST),
        (raw(Method::POST, "/products", json, vec![0xff, 0xfe]), StatusCode::BAD_REQUEST),
        (raw(Method::POST, "/products", json, Vec::new()), StatusCode::BAD_REQUEST),
        (raw(Method::POST, "/products", None, mug().to_string().into_bytes()), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            raw(Method::POST, "/products", Some("text/plain"), mug().to_string().into_bytes()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            raw(
                Method::POST,
                "/products",
                json,
                json!({"name": "x", "price_cents": "12.99", "stock": 1, "category": "a"}).to_string().into_bytes(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/products",
                json,
                json!({"name": "x", "price_cents": 1.5, "stock": 1, "category": "a"}).to_string().into_bytes(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/products",
                json,
                json!({"name": "x", "price_cents": 1e30, "stock": 1, "category": "a"}).to_string().into_bytes(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/products",
                json,
                json!({"name": "x", "price_cents": 1, "stock": -1, "category": "a"}).to_string().into_bytes(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(
                Method::POST,
                "/products",
                json,
                json!({"name": "x", "price": 1, "stock": 1, "category": "a"}).to_string().into_bytes(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            raw(Method::POST, "/products", json, vec![b' '; orderly::http::MAX_BODY_BYTES + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (raw(Method::PATCH, &format!("/products/{id}"), json, b"null".to_vec()), StatusCode::UNPROCESSABLE_ENTITY),
        (raw(Method::GET, "/products/not-a-uuid", None, Vec::new()), StatusCode::NOT_FOUND),
        (raw(Method::GET, "/nowhere", None, Vec::new()), StatusCode::NOT_FOUND),
        (raw(Method::DELETE, "/products", None, Vec::new()), StatusCode::METHOD_NOT_ALLOWED),
        (raw(Method::POST, "/categories", json, b"{}".to_vec()), StatusCode::METHOD_NOT_ALLOWED),
        (
            raw(
                Method::POST,
                "/customers",
                json,
                json!({"name": "A", "email": "a@example.com", "password": "0123456789", "role": "admin"})
                    .to_string()
                    .into_bytes(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (request, expected) in cases {
        let label = format!("{} {}", request.method(), request.uri());
        let reply = api.raw(request).await;
        assert_eq!(reply.status, expected, "{label}: {}", reply.body);
        assert_problem(&reply, expected);
    }
    let products = api.get("/products").await.body;
    assert_eq!(products["items"].as_array().map(Vec::len), Some(1), "only the first product exists");
    assert_eq!(products["items"][0]["version"], 1, "and it is unchanged");
    assert_eq!(api.get("/customers").await.body["items"], json!([]));
}

/// Public catalog reads carry a validator and a short public lifetime: the same page again is
/// 304 with no body, and a page whose stock an order moved is sent afresh.
async fn public_catalog_reads_revalidate_with_etags(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let created = api.post("/products", mug()).await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    for uri in ["/products", "/categories"] {
        let first = api.send(Method::GET, uri, None, &[("authorization", "")]).await;
        assert_eq!(first.status, StatusCode::OK, "{uri}");
        assert_eq!(first.headers[header::CACHE_CONTROL], "public, max-age=5", "{uri}");
        let etag = first.headers[header::ETAG].to_str().expect("etag").to_owned();
        assert!(etag.starts_with("W/\""), "{uri}: {etag}");
        let again = api.send(Method::GET, uri, None, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert_eq!(again.body, serde_json::Value::Null, "{uri}: a 304 has no body");
        assert_eq!(again.headers[header::ETAG], etag.as_str());
        let other = api.send(Method::GET, uri, None, &[("if-none-match", "W/\"0000000000000000\", \"7\"")]).await;
        assert_eq!(other.status, StatusCode::OK, "{uri}: another validator gets the page");
    }
    let page = api.get("/products").await.headers[header::ETAG].to_str().expect("etag").to_owned();
    let (_, token) = api.customer("ada@example.com").await;
    let bearer = format!("Bearer {token}");
    let order = json!({"items": [{"product_id": id, "quantity": 1}]});
    let placed = api.send(Method::POST, "/orders", Some(order), &[("authorization", &bearer)]).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let after = api.send(Method::GET, "/products", None, &[("if-none-match", &page)]).await;
    assert_eq!(after.status, StatusCode::OK, "the stock moved: the old page is stale");
    assert_eq!(after.body["items"][0]["stock"], 9);
    let product = api.get(&format!("/products/{id}")).await;
    assert_eq!(product.headers[header::CACHE_CONTROL], "public, max-age=5");
}

/// A missing field is named by its full path (`items[0].quantity`, `card.cvc`), not by the
/// object that lacks it; one missing at the top is named alone. Nothing is written.
async fn missing_fields_are_named_by_their_full_path(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let product = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let (_, token) = api.customer("ada@example.com").await;
    let bearer = format!("Bearer {token}");
    let order_id = uuid::Uuid::now_v7();
    let card = |cvc: Option<&str>| {
        let mut card = json!({"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2031});
        if let Some(cvc) = cvc {
            card["cvc"] = json!(cvc);
        }
        card
    };
    let cases = [
        ("/orders", json!({"items": [{"product_id": product}]}), "items[0].quantity"),
        ("/orders", json!({"items": [{"product_id": product, "quantity": 1}, {"quantity": 1}]}), "items[1].product_id"),
        ("/orders", json!({"shipping_address": null}), "items"),
        ("/payments", json!({"order_id": order_id, "method": "card", "card": card(None)}), "card.cvc"),
        ("/payments", json!({"order_id": order_id, "card": card(Some("123"))}), "method"),
    ];
    for (uri, body, field) in cases {
        let reply = api.send(Method::POST, uri, Some(body.clone()), &[("authorization", &bearer)]).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.body["errors"], json!([{"field": field, "message": "is required"}]), "{uri} {body}");
    }
    assert_eq!(api.get("/orders").await.body["items"], json!([]), "no order was placed");
    assert_eq!(api.get(&format!("/products/{product}")).await.body["stock"], 10, "no stock was held");
}

/// An asset name that is not UTF-8 names no asset: the same problem document as an unknown one.
async fn an_asset_name_that_is_not_utf8_is_a_problem_404(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    for uri in ["/admin/assets/%FF", "/admin/assets/app%FF.js", "/admin/assets/%C3%28", "/admin/assets/nope.js"] {
        let reply = api.send(Method::GET, uri, None, &[("authorization", "")]).await;
        assert_problem(&reply, StatusCode::NOT_FOUND);
    }
    let script = api.send(Method::GET, "/admin/assets/app.js", None, &[("authorization", "")]).await;
    assert_eq!(script.status, StatusCode::OK);
}

/// A chunked cancel declares no length: its body is still read, and one that is not JSON (or
/// not declared as JSON) is refused and cancels nothing. An empty one is no body at all.
async fn a_cancel_body_of_unknown_length_is_checked_like_any_other(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let product = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let (_, token) = api.customer("ada@example.com").await;
    let bearer = format!("Bearer {token}");
    let order = json!({"items": [{"product_id": product, "quantity": 1}]});
    let placed = api.send(Method::POST, "/orders", Some(order), &[("authorization", &bearer)]).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let uri = format!("/orders/{}", placed.body["id"].as_str().expect("id"));
    let cancel = format!("{uri}/cancel");
    // No Content-Length and no size hint, as hyper hands over a chunked body.
    let chunked = |content_type: Option<&str>, body: &'static [u8]| {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(&cancel)
            .header(header::AUTHORIZATION, &bearer)
            .header(header::TRANSFER_ENCODING, "chunked");
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(Body::from_stream(Body::from(body).into_data_stream())).expect("request")
    };
    let cases: [(Option<&str>, &'static [u8], StatusCode); 5] = [
        (None, b"junk \xff\xfe bytes", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (None, br#"{"reason": "undeclared JSON"}"#, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("text/plain"), b"junk", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("application/json"), b"junk", StatusCode::BAD_REQUEST),
        (Some("application/json"), br#"{"reason": 7}"#, StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (content_type, body, expected) in cases {
        let reply = api.raw(chunked(content_type, body)).await;
        assert_problem(&reply, expected);
    }
    let unchanged = api.get(&uri).await;
    assert_eq!(unchanged.body["status"], "pending", "{}", unchanged.body);
    assert_eq!(api.get(&format!("/products/{product}")).await.body["stock"], 9, "the unit is still held");

    let cancelled = api.raw(chunked(None, b"")).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(api.get(&format!("/products/{product}")).await.body["stock"], 10);
}

/// A customer's record and an order carry their version as an ETag, and the writes on them
/// honour If-Match: a stale one answers 412 and changes nothing.
async fn customer_and_order_writes_honour_if_match(store: Arc<dyn Store>) {
    let api = Api::new(store).await;
    let (customer, token) = api.customer("ada@example.com").await;
    let bearer = format!("Bearer {token}");
    let auth = |if_match: &'static str| [("authorization", bearer.as_str()), ("if-match", if_match)];
    let uri = format!("/customers/{customer}");
    let read = api.send(Method::GET, &uri, None, &[("authorization", &bearer)]).await;
    assert_eq!(read.headers[header::ETAG], "\"1\"");
    let rename = json!({"name": "Ada Lovelace"});
    let stale = api.send(Method::PATCH, &uri, Some(rename.clone()), &auth("\"9\"")).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["current_version"], 1, "{}", stale.body);
    let unchanged = api.send(Method::GET, &uri, None, &[("authorization", &bearer)]).await;
    assert_eq!((unchanged.body["name"].as_str(), unchanged.body["version"].as_u64()), (Some("Customer"), Some(1)));
    let renamed = api.send(Method::PATCH, &uri, Some(rename), &auth("\"1\"")).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!(renamed.headers[header::ETAG], "\"2\"");

    let product = api.post("/products", mug()).await.body["id"].as_str().expect("id").to_owned();
    let order = json!({"items": [{"product_id": product, "quantity": 1}]});
    let placed = api.send(Method::POST, "/orders", Some(order), &[("authorization", &bearer)]).await;
    let order_uri = format!("/orders/{}", placed.body["id"].as_str().expect("id"));
    let moved = api
        .send(Method::PUT, &format!("{order_uri}/status"), Some(json!({"status": "paid"})), &[("if-match", "\"4\"")])
        .await;
    assert_problem(&moved, StatusCode::PRECONDITION_FAILED);
    let cancel = api.send(Method::POST, &format!("{order_uri}/cancel"), None, &auth("\"2\"")).await;
    assert_problem(&cancel, StatusCode::PRECONDITION_FAILED);
    assert_eq!(cancel.body["current_version"], 1, "{}", cancel.body);
    let still = api.send(Method::GET, &order_uri, None, &[("authorization", &bearer)]).await;
    assert_eq!(
        (still.body["status"].as_str(), still.headers[header::ETAG].to_str().ok()),
        (Some("pending"), Some("\"1\""))
    );
    let cancelled = api.send(Method::POST, &format!("{order_uri}/cancel"), None, &auth("\"1\"")).await;
    assert_eq!(
        (cancelled.status, cancelled.body["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{}",
        cancelled.body
    );
    assert_eq!(cancelled.headers[header::ETAG], "\"2\"");
}

on_every_store!(
    public_catalog_reads_revalidate_with_etags,
    customers_sign_up_read_update_and_list,
    invalid_customers_get_field_errors,
    staff_find_a_customer_by_email,
    null_removes_what_may_be_removed_and_nothing_else,
    invalid_products_get_field_errors,
    products_crud_with_etags,
    a_stale_if_match_is_refused_and_changes_nothing,
    concurrent_patches_at_one_version_let_exactly_one_win,
    unconditional_concurrent_patches_lose_no_field,
    an_edit_never_undoes_the_stock_orders_took_since_its_read,
    two_hundred_concurrent_creates_admit_exactly_one,
    product_filters_over_http,
    malformed_requests_get_problem_documents,
    missing_fields_are_named_by_their_full_path,
    an_asset_name_that_is_not_utf8_is_a_problem_404,
    a_cancel_body_of_unknown_length_is_checked_like_any_other,
    customer_and_order_writes_honour_if_match,
);
