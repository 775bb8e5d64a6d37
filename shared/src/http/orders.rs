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

use super::auth::{AdminSession, Session};
use super::extract::{Id, Json, JsonOrEmpty, Query};
use super::{ApiError, RequestId};
use crate::domain::{
    CancelRequest, FulfillmentRequest, IdempotencyKey, NewOrder, OrderQuery, Orderly, StatusChange, Tracking,
};
use crate::error::Error;
use crate::model::{Order, OrderStatus, Payment};

pub fn routes() -> Router<Orderly> {
    Router::new()
        .route("/orders", get(list).post(place))
        .route("/orders/metrics", get(metrics))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/status", get(status).put(change_status))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/orders/{id}/tracking", get(tracking))
        .route("/orders/{id}/label", get(label))
        .route("/orders/{id}/fulfillment", put(fulfill))
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
    State(orderly): State<Orderly>,
    session: Session,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Json(input): Json<NewOrder>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let placed = orderly.place_order(&session, input, key, &request_id).await?;
    let status = StatusCode::from_u16(placed.status_code).unwrap_or(StatusCode::CREATED);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], placed.body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{}", placed.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn list(
    State(orderly): State<Orderly>,
    session: Session,
    Query(query): Query<OrderQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(orderly.orders(&session, query).await?))
}

/// GET /orders/{id}: the order with its payments.
#[derive(Serialize)]
struct OrderWithPayments {
    #[serde(flatten)]
    order: Order,
    payments: Vec<Payment>,
}

async fn show(State(orderly): State<Orderly>, session: Session, Id(id): Id) -> Result<impl IntoResponse, ApiError> {
    let order = orderly.order_for(&session, id).await?;
    let payments = orderly.payments_of(order.id).await?;
    Ok(JsonResponse(OrderWithPayments { order, payments }))
}

async fn tracking(
    State(orderly): State<Orderly>,
    session: Session,
    Id(id): Id,
) -> Result<JsonResponse<Tracking>, ApiError> {
    Ok(JsonResponse(orderly.tracking(&session, id).await?))
}

/// The shipping label, as ZPL for a thermal printer.
async fn label(State(orderly): State<Orderly>, session: Session, Id(id): Id) -> Result<Response, ApiError> {
    let zpl = orderly.label(&session, id).await?;
    Ok(([(header::CONTENT_TYPE, "application/zpl; charset=utf-8")], zpl).into_response())
}

async fn fulfill(
    State(orderly): State<Orderly>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    Json(request): Json<FulfillmentRequest>,
) -> Result<JsonResponse<Order>, ApiError> {
    Ok(JsonResponse(orderly.fulfill(&session, id, request).await?))
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

async fn status(State(orderly): State<Orderly>, session: Session, Id(id): Id) -> Result<impl IntoResponse, ApiError> {
    let order = orderly.order_for(&session, id).await?;
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
    State(orderly): State<Orderly>,
    AdminSession(session): AdminSession,
    Id(id): Id,
    Json(change): Json<StatusChange>,
) -> Result<JsonResponse<Order>, ApiError> {
    Ok(JsonResponse(orderly.change_status(&session, id, change).await?))
}

async fn cancel(
    State(orderly): State<Orderly>,
    session: Session,
    Id(id): Id,
    JsonOrEmpty(request): JsonOrEmpty<CancelRequest>,
) -> Result<JsonResponse<Order>, ApiError> {
    Ok(JsonResponse(orderly.cancel_order(&session, id, request).await?))
}

async fn metrics(
    State(orderly): State<Orderly>,
    AdminSession(session): AdminSession,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(orderly.order_metrics(&session).await?))
}
