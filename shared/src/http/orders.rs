//! The `orders` function: placing orders (customers), reading them (owner or admin),
//! cancelling, tracking and labels, admin status changes and fulfillment, and metrics.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json as JsonResponse, Router};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::extract::{Id, Json, JsonOrEmpty, Query};
use super::session::{AdminSession, Session};
use super::{ApiError, RequestId};
use crate::domain::{
    CancelRequest, Fulfillment, FulfillmentRequest, IdempotencyKey, NewOrder, OrderQuery, Orders, Payments,
    StatusChange, Tracking,
};
use crate::error::Error;
use crate::model::{Order, OrderStatus, Payment};

/// The services the orders routes call.
#[derive(Clone)]
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
        .with_state(OrdersApi { orders, payments, fulfillment })
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|value| {
            let text = value.to_str().unwrap_or("\u{0}");
            IdempotencyKey::parse(text).map_err(|e| ApiError::Domain(Error::Validation(vec![e])))
        })
        .transpose()
}

/// 201 for a `pending` order, 202 for a deferred (`processing order`) one; a replayed
/// Idempotency-Key gets the first answer again, byte for byte.
async fn place(
    State(api): State<OrdersApi>,
    session: Session,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Json(input): Json<NewOrder>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let placed = api.orders.place_order(&session, input, key, &request_id).await?;
    let status = StatusCode::from_u16(placed.status_code).unwrap_or(StatusCode::CREATED);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], placed.body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{}", placed.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn list(
    State(api): State<OrdersApi>,
    session: Session,
    Query(query): Query<OrderQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(api.orders.orders(&session, query).await?))
}

/// GET /orders/{id}: the order with its payments.
#[derive(Serialize)]
struct OrderWithPayments {
    #[serde(flatten)]
    order: Order,
    payments: Vec<Payment>,
}

async fn show(State(api): State<OrdersApi>, session: Session, Id(id): Id) -> Result<Response, ApiError> {
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
    let etag = HeaderValue::from_str(&format!("\"{}\"", order.version));
    let mut response = JsonResponse(OrderWithPayments { order, payments }).into_response();
    if let Ok(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn tracking(
    State(api): State<OrdersApi>,
    session: Session,
    Id(id): Id,
) -> Result<JsonResponse<Tracking>, ApiError> {
    Ok(JsonResponse(api.fulfillment.tracking(&session, id).await?))
}

/// The shipping label, as ZPL for a thermal printer.
async fn label(State(api): State<OrdersApi>, session: Session, Id(id): Id) -> Result<Response, ApiError> {
    let zpl = api.fulfillment.label(&session, id).await?;
    Ok(([(header::CONTENT_TYPE, "application/zpl; charset=utf-8")], zpl).into_response())
}

async fn fulfill(
    State(api): State<OrdersApi>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    Json(request): Json<FulfillmentRequest>,
) -> Result<JsonResponse<Order>, ApiError> {
    Ok(JsonResponse(api.fulfillment.fulfill(&session, id, request).await?))
}

/// GET /orders/{id}/status: the small answer a client polls.
#[derive(Serialize)]
struct StatusView {
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

async fn status(State(api): State<OrdersApi>, session: Session, Id(id): Id) -> Result<impl IntoResponse, ApiError> {
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

async fn change_status(
    State(api): State<OrdersApi>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    Json(change): Json<StatusChange>,
) -> Result<JsonResponse<Order>, ApiError> {
    Ok(JsonResponse(api.orders.change_status(&session, id, change).await?))
}

async fn cancel(
    State(api): State<OrdersApi>,
    session: Session,
    Id(id): Id,
    JsonOrEmpty(request): JsonOrEmpty<CancelRequest>,
) -> Result<JsonResponse<Order>, ApiError> {
    Ok(JsonResponse(api.orders.cancel_order(&session, id, request).await?))
}

async fn metrics(
    State(api): State<OrdersApi>,
    AdminSession(session): AdminSession,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(api.orders.order_metrics(&session).await?))
}
