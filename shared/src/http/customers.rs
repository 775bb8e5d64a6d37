//! The `customers` function: sign-up (anyone), the customer list (admins), and a customer's
//! own record and notices (that customer or an admin; anyone else gets 404).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json as JsonResponse, Router};

use super::ApiError;
use super::extract::{Id, IfMatch, Json, Query, SourceAddress};
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
#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/customers/{id}/notifications", tag = "customers", summary = "A customer's notices, newest first (themselves or an admin)", params(("id" = Uuid, Path, description = "Customer id"), crate::domain::NoticeQuery), responses((status = 200, description = "A page of notices", body = crate::store::Page<crate::model::Notice>), (status = 404, description = "No such customer (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn notifications(
    State(notices): State<NoticeBoard>,
    session: Session,
    Id(id): Id,
    Query(query): Query<NoticeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(notices.notices(&session, id, query).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/customers", tag = "customers", summary = "Sign up", request_body = crate::domain::NewCustomer, responses((status = 201, description = "The new customer", body = crate::model::Customer, headers(("Location" = String, description = "The customer's URI"))), (status = 409, description = "A customer with this email exists", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 429, description = "Too many sign-ups from this address", content_type = "application/problem+json", body = crate::http::problem::Problem, headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))), security((), ("bearer" = []))))]
async fn sign_up(
    State(customers): State<Customers>,
    SourceAddress(source): SourceAddress,
    Json(input): Json<NewCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = customers.sign_up(input, source).await?;
    let location = format!("/customers/{}", customer.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], JsonResponse(customer)))
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/customers", tag = "customers", summary = "List customers in sign-up order (admin)", params(crate::domain::CustomerQuery), responses((status = 200, description = "A page of customers", body = crate::store::Page<crate::model::Customer>), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn list(
    State(customers): State<Customers>,
    AdminSession(session): AdminSession,
    Query(query): Query<CustomerQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(customers.directory().customers(&session, query).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/customers/{id}", tag = "customers", summary = "Read a customer (themselves or an admin)", params(("id" = Uuid, Path, description = "Customer id")), responses((status = 200, description = "The customer", body = crate::model::Customer, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 404, description = "No such customer (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn show(State(customers): State<Customers>, session: Session, Id(id): Id) -> Result<Response, ApiError> {
    let customer = customers.directory().customer(&session, id).await?;
    let version = customer.version;
    Ok(super::versioned_json(customer, version))
}

#[cfg_attr(feature = "openapi", utoipa::path(patch, path = "/customers/{id}", tag = "customers", summary = "Change a customer's record (themselves or an admin)", description = "A customer changing their own email also gives `current_password` (a password reset goes to the email, so a token alone must not move it); a wrong one counts as a failed login. An admin needs none.", params(("id" = Uuid, Path, description = "Customer id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), request_body = crate::domain::CustomerPatch, responses((status = 200, description = "The customer as stored", body = crate::model::Customer, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 404, description = "No such customer (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "The email is taken, or the account's email changed while this change was checked: read it again and retry", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 429, description = "Too many failed logins (a wrong current_password counts); Retry-After says when to try again", content_type = "application/problem+json", body = crate::http::problem::Problem, headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))), security(("bearer" = []))))]
async fn update(
    State(customers): State<Customers>,
    session: Session,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    SourceAddress(source): SourceAddress,
    Json(patch): Json<CustomerPatch>,
) -> Result<Response, ApiError> {
    let customer = customers.update_customer(&session, id, expected, patch, source).await?;
    let version = customer.version;
    Ok(super::versioned_json(customer, version))
}
