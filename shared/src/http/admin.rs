//! The `admin` function: the back office's API under `/admin`, and the dashboard page that
//! uses it. Every handler calls the same domain service as the matching route of the other
//! functions (see [`crate::domain::BackOffice`]); only the paths and the views differ.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
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

async fn dashboard() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Result<Response, ApiError> {
    match file.as_str() {
        "app.js" => Ok(page("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Ok(page("text/css; charset=utf-8", APP_CSS)),
        _ => Err(ApiError::RouteNotFound),
    }
}

async fn metrics(State(office): State<BackOffice>, AdminSession(session): AdminSession) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.metrics(&session).await?).into_response())
}

async fn orders(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Query(query): Query<OrderQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.orders.orders(&session, query).await?).into_response())
}

async fn order(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Id(id): Id,
) -> Result<Response, ApiError> {
    order_with_payments(&office.orders, &office.payments, &session, id).await
}

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

async fn inventory(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Query(query): Query<InventoryQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.inventory.items(query).await?).into_response())
}

async fn inventory_item(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let item = office.inventory.item(id).await?;
    let mut response = JsonResponse(&item).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", item.product.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn create_product(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Json(input): Json<NewProduct>,
) -> Result<Response, ApiError> {
    Ok(created(office.catalog.create_product(input).await?))
}

async fn replace_product(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(input): Json<NewProduct>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, office.catalog.replace_product(id, expected, input).await?))
}

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
struct PageQuery {
    limit: Option<u32>,
    next_token: Option<String>,
}

async fn adjustments(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Id(id): Id,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.inventory.adjustments(id, query.limit, query.next_token).await?).into_response())
}

async fn adjust(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    Json(input): Json<NewAdjustment>,
) -> Result<Response, ApiError> {
    let adjusted = office.inventory.adjust(&session, id, input).await?;
    Ok((StatusCode::CREATED, JsonResponse(adjusted)).into_response())
}

async fn payments(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Query(query): Query<PaymentQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.payments.payments(&session, query).await?).into_response())
}

async fn customers(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Query(query): Query<CustomerQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.customers.customers(&session, query).await?).into_response())
}

async fn alerts(
    State(office): State<BackOffice>,
    AdminSession(_): AdminSession,
    Query(query): Query<AlertQuery>,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.alerts.list(query).await?).into_response())
}

async fn acknowledge(
    State(office): State<BackOffice>,
    AdminSession(session): AdminSession,
    Id(id): Id,
) -> Result<Response, ApiError> {
    Ok(JsonResponse(office.alerts.acknowledge(&session, id).await?).into_response())
}
