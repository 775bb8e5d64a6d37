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

async fn login(
    State(accounts): State<Accounts>,
    SourceAddress(source): SourceAddress,
    Json(request): Json<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let token = accounts.login(request, source).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], JsonResponse(token)))
}

async fn logout(State(sessions): State<Sessions>, session: Session) -> Result<StatusCode, ApiError> {
    sessions.logout(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}
