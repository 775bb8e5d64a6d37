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
#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/payments", tag = "payments", summary = "Pay an order by card (its customer)", params(("Idempotency-Key" = Option<String>, Header, description = "Repeat the request with the same key to get the first answer again, never a second write (1-255 visible ASCII characters)")), request_body = crate::domain::NewPayment, responses((status = 202, description = "Recorded; the payment worker charges it", body = crate::model::Payment, headers(("Location" = String, description = "The payment's URI"))), (status = 403, description = "Only the order's customer pays for it", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such order (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "Not payable now (paid, cancelled, or a payment in flight)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
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

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/payments/{id}", tag = "payments", summary = "A payment (the payer or an admin)", params(("id" = Uuid, Path, description = "Payment id")), responses((status = 200, description = "The payment", body = crate::model::Payment), (status = 404, description = "No such payment (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn show(
    State(payments): State<Payments>,
    session: Session,
    Id(id): Id,
) -> Result<JsonResponse<Payment>, ApiError> {
    Ok(JsonResponse(payments.payment_for(&session, id).await?))
}

/// GET /payments (admin): every payment, or one order's, or those in one status; newest first.
#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/payments", tag = "payments", summary = "Payments by order and status (admin)", params(crate::domain::PaymentQuery), responses((status = 200, description = "A page of payments", body = crate::store::Page<crate::model::Payment>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn list(
    State(payments): State<Payments>,
    AdminSession(session): AdminSession,
    Query(query): Query<PaymentQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(payments.payments(&session, query).await?))
}
