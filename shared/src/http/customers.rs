//! The `customers` function: sign-up (anyone), the customer list (admins), and a customer's
//! own record (that customer or an admin; anyone else gets 404).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json as JsonResponse, Router};
use serde::Deserialize;

use super::ApiError;
use super::auth::{AdminSession, Session};
use super::extract::{Id, Json, Query};
use crate::domain::{CustomerPatch, NewCustomer, Orderly, page_request};

pub fn routes() -> Router<Orderly> {
    Router::new().route("/customers", get(list).post(sign_up)).route("/customers/{id}", get(show).patch(update))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    next_token: Option<String>,
}

async fn sign_up(
    State(orderly): State<Orderly>,
    Json(input): Json<NewCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = orderly.sign_up(input).await?;
    let location = format!("/customers/{}", customer.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], JsonResponse(customer)))
}

async fn list(
    State(orderly): State<Orderly>,
    _admin: AdminSession,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let page = page_request(query.limit, query.next_token)?;
    Ok(JsonResponse(orderly.customers(&page).await?))
}

async fn show(State(orderly): State<Orderly>, session: Session, Id(id): Id) -> Result<impl IntoResponse, ApiError> {
    session.require_self_or_admin(id, "customer")?;
    Ok(JsonResponse(orderly.customer(id).await?))
}

async fn update(
    State(orderly): State<Orderly>,
    session: Session,
    Id(id): Id,
    Json(patch): Json<CustomerPatch>,
) -> Result<impl IntoResponse, ApiError> {
    session.require_self_or_admin(id, "customer")?;
    Ok(JsonResponse(orderly.update_customer(id, patch).await?))
}
