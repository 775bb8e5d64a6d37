//! The `customers` function: sign-up (anyone), the customer list (admins), and a customer's
//! own record and notices (that customer or an admin; anyone else gets 404).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json as JsonResponse, Router};

use super::ApiError;
use super::extract::{Id, Json, Query, SourceAddress};
use super::session::{AdminSession, Session};
use crate::domain::{CustomerPatch, CustomerQuery, Customers, NewCustomer, NoticeBoard, NoticeQuery};

pub fn routes(customers: Customers, notices: NoticeBoard) -> Router {
    Router::new()
        .route("/customers", get(list).post(sign_up))
        .route("/customers/{id}", get(show).patch(update))
        .with_state(customers)
        .merge(Router::new().route("/customers/{id}/notifications", get(notifications)).with_state(notices))
}

/// GET /customers/{id}/notifications: the notices sent (or on their way) to a customer.
async fn notifications(
    State(notices): State<NoticeBoard>,
    session: Session,
    Id(id): Id,
    Query(query): Query<NoticeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(notices.notices(&session, id, query).await?))
}

async fn sign_up(
    State(customers): State<Customers>,
    SourceAddress(source): SourceAddress,
    Json(input): Json<NewCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = customers.sign_up(input, source).await?;
    let location = format!("/customers/{}", customer.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], JsonResponse(customer)))
}

async fn list(
    State(customers): State<Customers>,
    AdminSession(session): AdminSession,
    Query(query): Query<CustomerQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(customers.directory().customers(&session, query).await?))
}

async fn show(State(customers): State<Customers>, session: Session, Id(id): Id) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(customers.directory().customer(&session, id).await?))
}

async fn update(
    State(customers): State<Customers>,
    session: Session,
    Id(id): Id,
    Json(patch): Json<CustomerPatch>,
) -> Result<impl IntoResponse, ApiError> {
    session.require_self_or_admin(id, "customer")?;
    Ok(JsonResponse(customers.update_customer(id, patch).await?))
}
