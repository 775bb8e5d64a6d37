//! The `payments` function: paying an order by card (its owner) and reading payments (the
//! payer or an admin).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as JsonResponse, Router};

use super::extract::{Id, Json, Query};
use super::orders::idempotency_key;
use super::session::{AdminSession, Session};
use super::{ApiError, RequestId};
use crate::domain::{NewPayment, PaymentQuery, Payments};
use crate::model::Payment;

pub fn routes(payments: Payments) -> Router {
    Router::new().route("/payments", post(pay).get(list)).route("/payments/{id}", get(show)).with_state(payments)
}

/// 202: the payment is `pending` until the payment worker has charged the card.
async fn pay(
    State(payments): State<Payments>,
    session: Session,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    Json(input): Json<NewPayment>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let placed = payments.create_payment(&session, input, key, &request_id).await?;
    let status = StatusCode::from_u16(placed.status_code).unwrap_or(StatusCode::ACCEPTED);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], placed.body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/payments/{}", placed.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn show(
    State(payments): State<Payments>,
    session: Session,
    Id(id): Id,
) -> Result<JsonResponse<Payment>, ApiError> {
    Ok(JsonResponse(payments.payment_for(&session, id).await?))
}

/// GET /payments (admin): every payment, or one order's, or those in one status; newest first.
async fn list(
    State(payments): State<Payments>,
    AdminSession(session): AdminSession,
    Query(query): Query<PaymentQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(payments.payments(&session, query).await?))
}
