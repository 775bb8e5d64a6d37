//! The `orders` function: placing orders (customers), reading them (owner or admin),
//! cancelling, tracking and labels, admin status changes and fulfillment, and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json as JsonResponse, Router};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::extract::{Id, IfMatch, Json, JsonOrEmpty, Query};
use super::session::{AdminSession, Caller, Session};
use super::{ApiError, RequestId};
use crate::domain::{
    CancelRequest, Fulfillment, FulfillmentRequest, IdempotencyKey, NewOrder, OrderQuery, Orders, Payments,
    StatusChange, Tracking,
};
use crate::error::{Error, FieldError};
use crate::model::{Order, OrderStatus, Payment};

/// The services the orders routes call, shared behind one `Arc`: axum clones a route's state
/// for every request, and these hold a few dozen `Arc`s between them.
struct OrdersApi {
    orders: Orders,
    payments: Payments,
    fulfillment: Fulfillment,
}

pub fn routes(orders: Orders, payments: Payments, fulfillment: Fulfillment) -> Router {
    Router::new()
        .route("/orders", get(list).post(place))
        .route("/orders/metrics", get(metrics))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/status", get(status).put(change_status))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/orders/{id}/tracking", get(tracking))
        .route("/orders/{id}/label", get(label))
        .route("/orders/{id}/fulfillment", put(fulfill))
        .with_state(Arc::new(OrdersApi { orders, payments, fulfillment }))
}

/// The request's `Idempotency-Key`, if any; two of them are refused (which one would hold?).
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let invalid = |e| ApiError::Domain(Error::Validation(vec![e]));
    let mut keys = headers.get_all("idempotency-key").iter();
    match (keys.next(), keys.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => IdempotencyKey::parse(value.to_str().unwrap_or("\u{0}")).map(Some).map_err(invalid),
        (Some(_), Some(_)) => Err(invalid(FieldError::new("Idempotency-Key", "must be sent once"))),
    }
}

/// 201 for a `pending` order, 202 for a deferred (`processing order`) one; a replayed
/// Idempotency-Key gets the first answer again, byte for byte.
#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/orders", tag = "orders", summary = "Place an order (customers)", params(("Idempotency-Key" = Option<String>, Header, description = "Repeat the request with the same key to get the first answer again, never a second write (1-255 visible ASCII characters)")), request_body = crate::domain::NewOrder, responses((status = 201, description = "Accepted and pending payment", body = crate::model::Order, headers(("Location" = String, description = "The order's URI"))), (status = 202, description = "Accepted during the cooldown: processing order until release_at", body = crate::model::Order, headers(("Location" = String, description = "The order's URI"))), (status = 403, description = "Admins do not place orders", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "Not enough stock, or unpaid holds over the caps", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 429, description = "Too many orders wait for the cooldown; Retry-After", content_type = "application/problem+json", body = crate::http::problem::Problem, headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))), security(("bearer" = []))))]
async fn place(
    State(api): State<Arc<OrdersApi>>,
    caller: Caller,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    body: Result<Json<NewOrder>, ApiError>,
) -> Result<Response, ApiError> {
    let (input, key) = match (body, idempotency_key(&headers)) {
        (Ok(Json(input)), Ok(key)) => (input, key),
        // Refused before the order's read: a bad session is still told first.
        (Err(refused), _) | (_, Err(refused)) => {
            caller.confirm().await?;
            return Err(refused);
        }
    };
    let placed = api.orders.place_order(&caller, input, key, &request_id).await?;
    let status = StatusCode::from_u16(placed.status_code).unwrap_or(StatusCode::CREATED);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], placed.body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{}", placed.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/orders", tag = "orders", summary = "Orders: your own, or (admins) everyone's", params(crate::domain::OrderQuery), responses((status = 200, description = "A page of orders", body = crate::store::Page<crate::model::Order>)), security(("bearer" = []))))]
async fn list(
    State(api): State<Arc<OrdersApi>>,
    session: Session,
    Query(query): Query<OrderQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(api.orders.orders(&session, query).await?))
}

/// GET /orders/{id}: the order with its payments.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct OrderWithPayments {
    #[serde(flatten)]
    order: Order,
    payments: Vec<Payment>,
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/orders/{id}", tag = "orders", summary = "An order with its payments", params(("id" = Uuid, Path, description = "Order id")), responses((status = 200, description = "The order", body = crate::http::orders::OrderWithPayments, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn show(State(api): State<Arc<OrdersApi>>, session: Session, Id(id): Id) -> Result<Response, ApiError> {
    order_with_payments(&api.orders, &api.payments, &session, id).await
}

/// An order as the session may see it, with its payments, and its version as the ETag.
pub(super) async fn order_with_payments(
    orders: &Orders,
    payments: &Payments,
    session: &crate::domain::Session,
    id: Uuid,
) -> Result<Response, ApiError> {
    let order = orders.order_for(session, id).await?;
    let payments = payments.payments_of(order.id).await?;
    let version = order.version;
    Ok(super::versioned_json(OrderWithPayments { order, payments }, version))
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/orders/{id}/tracking", tag = "orders", summary = "Tracking: carrier, number, events", params(("id" = Uuid, Path, description = "Order id")), responses((status = 200, description = "Tracking", body = crate::domain::Tracking), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn tracking(
    State(api): State<Arc<OrdersApi>>,
    session: Session,
    Id(id): Id,
) -> Result<JsonResponse<Tracking>, ApiError> {
    Ok(JsonResponse(api.fulfillment.tracking(&session, id).await?))
}

/// The shipping label, as ZPL for a thermal printer.
#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/orders/{id}/label", tag = "orders", summary = "The shipping label (ZPL)", params(("id" = Uuid, Path, description = "Order id")), responses((status = 200, description = "ZPL for a thermal printer", body = String, content_type = "application/zpl"), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "Not shipped yet", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn label(State(api): State<Arc<OrdersApi>>, session: Session, Id(id): Id) -> Result<Response, ApiError> {
    let zpl = api.fulfillment.label(&session, id).await?;
    Ok(([(header::CONTENT_TYPE, "application/zpl; charset=utf-8")], zpl).into_response())
}

#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/orders/{id}/fulfillment", tag = "orders", summary = "Ship or record delivery (admin)", params(("id" = Uuid, Path, description = "Order id")), request_body = crate::domain::FulfillmentRequest, responses((status = 200, description = "The order", body = crate::model::Order), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "Not along the transition table", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn fulfill(
    State(api): State<Arc<OrdersApi>>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    Json(request): Json<FulfillmentRequest>,
) -> Result<JsonResponse<Order>, ApiError> {
    Ok(JsonResponse(api.fulfillment.fulfill(&session, id, request).await?))
}

/// GET /orders/{id}/status: the small answer a client polls.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct StatusView {
    id: Uuid,
    status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    release_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    payment_due_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<String>,
    version: u64,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/orders/{id}/status", tag = "orders", summary = "An order's status, to poll", params(("id" = Uuid, Path, description = "Order id")), responses((status = 200, description = "The status", body = crate::http::orders::StatusView), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn status(
    State(api): State<Arc<OrdersApi>>,
    session: Session,
    Id(id): Id,
) -> Result<impl IntoResponse, ApiError> {
    let order = api.orders.order_for(&session, id).await?;
    Ok(JsonResponse(StatusView {
        id: order.id,
        status: order.status,
        release_at: order.release_at,
        payment_due_at: order.payment_due_at,
        cancel_reason: order.cancel_reason,
        version: order.version,
        updated_at: order.updated_at,
    }))
}

#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/orders/{id}/status", tag = "orders", summary = "Move an order along the transition table (admin)", params(("id" = Uuid, Path, description = "Order id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), request_body = crate::domain::StatusChange, responses((status = 200, description = "The order", body = crate::model::Order, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "Not along the transition table", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn change_status(
    State(api): State<Arc<OrdersApi>>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(change): Json<StatusChange>,
) -> Result<Response, ApiError> {
    Ok(versioned(api.orders.change_status(&session, id, expected, change).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", summary = "Cancel an order (its customer or an admin)", params(("id" = Uuid, Path, description = "Order id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), request_body = crate::domain::CancelRequest, responses((status = 200, description = "The cancelled order", body = crate::model::Order, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "It cannot be cancelled any more", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn cancel(
    State(api): State<Arc<OrdersApi>>,
    session: Session,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    JsonOrEmpty(request): JsonOrEmpty<CancelRequest>,
) -> Result<Response, ApiError> {
    Ok(versioned(api.orders.cancel_order(&session, id, expected, request).await?))
}

/// An order with its version as the ETag, for `If-Match` on the next write.
fn versioned(order: Order) -> Response {
    let version = order.version;
    super::versioned_json(order, version)
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/orders/metrics", tag = "orders", summary = "Order counters (admin)", responses((status = 200, description = "Counts by status, average processing time, revenue", body = crate::domain::OrderMetrics), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn metrics(
    State(api): State<Arc<OrdersApi>>,
    AdminSession(session): AdminSession,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(api.orders.order_metrics(&session).await?))
}
