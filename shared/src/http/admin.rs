//! The `admin` function: the back office's API under `/admin`, and the dashboard page that
//! uses it. Every handler calls the same domain service as the matching route of the other
//! functions (see [`crate::domain::BackOffice`]); only the paths and the views differ.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as JsonResponse, Router};

use super::ApiError;
use super::extract::{Id, IfMatch, Json, Query};
use super::orders::order_with_payments;
use super::products::{created, with_etag};
use super::session::AdminSession;
use crate::domain::{
    AlertQuery, BackOffice, CustomerQuery, InventoryQuery, NewAdjustment, NewProduct, OrderAmendment, OrderQuery,
    PaymentQuery,
};

pub fn routes(office: BackOffice) -> Router {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/assets/{file}", get(asset))
        .route("/admin/metrics", get(metrics))
        .route("/admin/orders", get(orders))
        .route("/admin/orders/{id}", get(order).put(amend_order))
        .route("/admin/inventory", get(inventory).post(create_product))
        .route("/admin/inventory/{id}", get(inventory_item).put(replace_product).delete(delete_product))
        .route("/admin/inventory/{id}/adjustments", get(adjustments).post(adjust))
        .route("/admin/payments", get(payments))
        .route("/admin/customers", get(customers))
        .route("/admin/alerts", get(alerts))
        .route("/admin/alerts/{id}/acknowledge", post(acknowledge))
        .with_state(office)
}

/// The dashboard's files, compiled into the binary: it works offline and from one origin.
const INDEX_HTML: &str = include_str!("../../assets/admin/index.html");
const APP_JS: &str = include_str!("../../assets/admin/app.js");
const APP_CSS: &str = include_str!("../../assets/admin/app.css");

/// Scripts and styles only from this origin (no inline code), data only from this API, and
/// never framed: whatever a product name or address holds, it cannot run as code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Served with the binary: a new deploy must be picked up at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin", tag = "admin", summary = "The back-office dashboard page", responses((status = 200, description = "HTML", body = String, content_type = "text/html")), security((), ("bearer" = []))))]
async fn dashboard() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/assets/{file}", tag = "admin", summary = "The dashboard's script and style", params(("file" = String, Path, description = "app.js or app.css")), responses((status = 200, description = "JavaScript or CSS", body = String, content_type = "text/javascript"), (status = 404, description = "No such file", content_type = "application/problem+json", body = crate::http::problem::Problem)), security((), ("bearer" = []))))]
async fn asset(file: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    // A segment that is not UTF-8 (`%FF`) names no file either: the same 404, as a problem.
    let Ok(Path(file)) = file else {
        return Err(ApiError::RouteNotFound);
    };
    match file.as_str() {
        "app.js" => Ok(page("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Ok(page("text/css; charset=utf-8", APP_CSS)),
        _ => Err(ApiError::RouteNotFound),
    }
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/metrics", tag = "admin", summary = "The overview", responses((status = 200, description = "Orders by status, revenue, low stock, open alerts, dead letters", body = crate::domain::AdminMetrics), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn metrics(State(office): State<BackOffice>, AdminSession(session): AdminSession) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.metrics(&session).await?).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/orders", tag = "admin", summary = "Orders, filtered: newest first, or by due time when filtered by status alone", params(crate::domain::OrderQuery), responses((status = 200, description = "A page of orders", body = crate::store::Page<crate::model::Order>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn orders(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Query(query): Query<OrderQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.orders.orders(&session, query).await?).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/orders/{id}", tag = "admin", summary = "An order with its payments, shipment and history", params(("id" = Uuid, Path, description = "Order id")), responses((status = 200, description = "The order", body = crate::http::orders::OrderWithPayments, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn order(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Id(id): Id,
) -> Result<Response, ApiError> {
    order_with_payments(&office.orders, &office.payments, &session, id).await
}

#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/admin/orders/{id}", tag = "admin", summary = "Move an order, correct its address, set its internal note", params(("id" = Uuid, Path, description = "Order id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), request_body = crate::domain::OrderAmendment, responses((status = 200, description = "The order", body = crate::http::orders::OrderWithPayments, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "Not along the transition table, or shipped already", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn amend_order(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(amendment): Json<OrderAmendment>,
) -> Result<Response, ApiError> {
    office.orders.amend(&session, id, expected, amendment).await?;
    order_with_payments(&office.orders, &office.payments, &session, id).await
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/inventory", tag = "admin", summary = "Products with stock, threshold and units held", params(crate::domain::InventoryQuery), responses((status = 200, description = "A page of products", body = crate::store::Page<crate::domain::InventoryItem>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn inventory(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Query(query): Query<InventoryQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.inventory.items(query).await?).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/inventory/{id}", tag = "admin", summary = "One product with the units held", params(("id" = Uuid, Path, description = "Product id")), responses((status = 200, description = "The product", body = crate::domain::InventoryItem, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn inventory_item(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let item = office.inventory.item(id).await?;
    let version = item.product.version;
    Ok(super::versioned_json(item, version))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/admin/inventory", tag = "admin", summary = "Create a product", request_body = crate::domain::NewProduct, responses((status = 201, description = "Created", body = crate::model::Product, headers(("ETag" = String, description = "The version, for If-Match"), ("Location" = String, description = "The product's URI"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "A product with this name exists", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn create_product(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Json(input): Json<NewProduct>,
) -> Result<Response, ApiError> {
    Ok(created(office.catalog.create_product(input).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/admin/inventory/{id}", tag = "admin", summary = "Replace a product's fields", params(("id" = Uuid, Path, description = "Product id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), request_body = crate::domain::NewProduct, responses((status = 200, description = "The product as stored", body = crate::model::Product, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "The name is taken, or the stock differs from the current stock (stock moves by adjustments)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn replace_product(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(input): Json<NewProduct>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, office.catalog.replace_product(id, expected, input).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(delete, path = "/admin/inventory/{id}", tag = "admin", summary = "Delete a product", params(("id" = Uuid, Path, description = "Product id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), responses((status = 204, description = "Deleted"), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn delete_product(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
) -> Result<StatusCode, ApiError> {
    office.catalog.delete_product(id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
struct PageQuery {
    limit: Option<u32>,
    next_token: Option<String>,
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/inventory/{id}/adjustments", tag = "admin", summary = "A product's stock adjustments, newest first", params(("id" = Uuid, Path, description = "Product id"), PageQuery), responses((status = 200, description = "A page of adjustments", body = crate::store::Page<crate::model::StockAdjustment>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn adjustments(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Id(id): Id,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.inventory.adjustments(id, query.limit, query.next_token).await?).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/admin/inventory/{id}/adjustments", tag = "admin", summary = "Adjust the stock by a delta, with a reason", params(("id" = Uuid, Path, description = "Product id"), ("Idempotency-Key" = Option<String>, Header, description = "Repeat the request with the same key to get the same adjustment back, never a second stock move (1-255 visible ASCII characters)")), request_body = crate::domain::NewAdjustment, responses((status = 201, description = "The adjustment and the product after it", body = crate::domain::Adjusted), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "It would take the stock below zero", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn adjust(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    headers: HeaderMap,
    Json(input): Json<NewAdjustment>,
) -> Result<Response, ApiError> {
    let key = super::orders::idempotency_key(&headers)?;
    let adjusted = office.inventory.adjust(&session, id, input, key).await?;
    Ok((StatusCode::CREATED, JsonResponse(adjusted)).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/payments", tag = "admin", summary = "Payments by status and order", params(crate::domain::PaymentQuery), responses((status = 200, description = "A page of payments", body = crate::store::Page<crate::model::Payment>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn payments(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Query(query): Query<PaymentQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.payments.payments(&session, query).await?).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/customers", tag = "admin", summary = "Customers in sign-up order", params(crate::domain::CustomerQuery), responses((status = 200, description = "A page of customers", body = crate::store::Page<crate::model::Customer>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn customers(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Query(query): Query<CustomerQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.customers.customers(&session, query).await?).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/admin/alerts", tag = "admin", summary = "Low-stock alerts, newest first", params(crate::domain::AlertQuery), responses((status = 200, description = "A page of alerts", body = crate::store::Page<crate::model::StockAlert>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn alerts(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Query(query): Query<AlertQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.alerts.list(query).await?).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/admin/alerts/{id}/acknowledge", tag = "admin", summary = "Acknowledge an alert (the first acknowledgement stands)", params(("id" = Uuid, Path, description = "Alert id")), responses((status = 200, description = "The alert", body = crate::model::StockAlert), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such alert (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn acknowledge(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Id(id): Id,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.alerts.acknowledge(&session, id).await?).into_response())
}
