//! The `auth` function: logging in (under the failed-login limits) and logging out.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json as JsonResponse, Router};

use super::ApiError;
use super::extract::{Json, SourceAddress};
use super::session::Session;
use crate::domain::{Accounts, LoginRequest, Sessions};

pub fn routes(accounts: Accounts, sessions: Sessions) -> Router {
    Router::new()
        .route("/auth/login", post(login))
        .with_state(accounts)
        .merge(Router::new().route("/auth/logout", post(logout)).with_state(sessions))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/login", tag = "auth", summary = "Log in (a customer by email, an admin by username)", request_body = crate::domain::LoginRequest, responses((status = 200, description = "An access token", body = crate::domain::AccessToken), (status = 401, description = "Wrong credentials", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 429, description = "Too many failed logins; Retry-After says when to try again", content_type = "application/problem+json", body = crate::http::problem::Problem)), security((), ("bearer" = []))))]
async fn login(
    State(accounts): State<Accounts>,
    SourceAddress(source): SourceAddress,
    Json(request): Json<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let token = accounts.login(request, source).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], JsonResponse(token)))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/logout", tag = "auth", summary = "Revoke this token", responses((status = 204, description = "Revoked")), security(("bearer" = []))))]
async fn logout(State(sessions): State<Sessions>, session: Session) -> Result<StatusCode, ApiError> {
    sessions.logout(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}
