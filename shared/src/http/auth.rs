//! The `auth` function: logging in (under the failed-login limits), changing a password or
//! resetting a forgotten one by email, and logging out, on this device or everywhere.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json as JsonResponse, Router};

use super::ApiError;
use super::extract::{Json, SourceAddress};
use super::session::Session;
use crate::domain::{
    Accounts, LoginRequest, PasswordChangeRequest, PasswordResetConfirmation, PasswordResetRequest, Sessions,
};

pub fn routes(accounts: Accounts, sessions: Sessions) -> Router {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/password", post(change_password))
        .route("/auth/password-reset", post(request_password_reset))
        .route("/auth/password-reset/confirm", post(reset_password))
        .with_state(accounts)
        .merge(
            Router::new()
                .route("/auth/logout", post(logout))
                .route("/auth/logout-everywhere", post(logout_everywhere))
                .with_state(sessions),
        )
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/login", tag = "auth", summary = "Log in (a customer by email, an admin by username)", request_body = crate::domain::LoginRequest, responses((status = 200, description = "An access token", body = crate::domain::AccessToken), (status = 401, description = "Wrong credentials", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 429, description = "Too many failed logins; Retry-After says when to try again", content_type = "application/problem+json", body = crate::http::problem::Problem, headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))), security((), ("bearer" = []))))]
async fn login(
    State(accounts): State<Accounts>,
    SourceAddress(source): SourceAddress,
    Json(request): Json<LoginRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let token = accounts.login(request, source).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], JsonResponse(token)))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/password", tag = "auth", summary = "Change your password; every session of the account ends", description = "Checks `current_password` (a wrong one counts as a failed login, under the same limits), stores `new_password` and refuses every token of the account issued before now, this one included, wherever it was issued. The answer is a new token: use it from now on. The failed logins counted against the account, and against it from this address, are forgotten.", request_body = crate::domain::PasswordChangeRequest, responses((status = 200, description = "The password is changed; a new access token", body = crate::domain::AccessToken), (status = 401, description = "No token, or a token invalid, expired or revoked", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "The password or the email changed meanwhile", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 422, description = "The current password is wrong, or the new one too short, too long or the same", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 429, description = "Too many failed logins; Retry-After says when to try again", content_type = "application/problem+json", body = crate::http::problem::Problem, headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))), security(("bearer" = []))))]
async fn change_password(
    State(accounts): State<Accounts>,
    session: Session,
    SourceAddress(source): SourceAddress,
    Json(request): Json<PasswordChangeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let token = accounts.change_password(&session, request, source).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], JsonResponse(token)))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/password-reset", tag = "auth", summary = "Email a code to reset a forgotten password", description = "If a customer signs in with `email`, a reset code is emailed to them: it works once, for 30 minutes. The answer is the same whether or not there is such a customer (admins ask the operator). Limited per email (3 per 15 minutes) and per source address.", request_body = crate::domain::PasswordResetRequest, responses((status = 202, description = "If there is such a customer, the email is on its way"), (status = 422, description = "Not an email address", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 429, description = "Too many resets asked for this email or from this address; Retry-After says when to try again", content_type = "application/problem+json", body = crate::http::problem::Problem, headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))), security((), ("bearer" = []))))]
async fn request_password_reset(
    State(accounts): State<Accounts>,
    SourceAddress(source): SourceAddress,
    Json(request): Json<PasswordResetRequest>,
) -> Result<StatusCode, ApiError> {
    accounts.request_password_reset(request, source).await?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", summary = "Set a new password with an emailed reset code; every session of the account ends", description = "The code works once, until it expires, and only while the account still has the email it was sent to. Every token of the account issued before now is refused; the answer is a new token. The failed logins counted against the account, and against it from this address, are forgotten: an owner who locked themself out can log in at once from this address.", request_body = crate::domain::PasswordResetConfirmation, responses((status = 200, description = "The password is set; a new access token", body = crate::domain::AccessToken), (status = 422, description = "The code is unknown, used or expired, or the new password too short or too long", content_type = "application/problem+json", body = crate::http::problem::Problem)), security((), ("bearer" = []))))]
async fn reset_password(
    State(accounts): State<Accounts>,
    SourceAddress(source): SourceAddress,
    Json(request): Json<PasswordResetConfirmation>,
) -> Result<impl IntoResponse, ApiError> {
    let token = accounts.reset_password(request, source).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], JsonResponse(token)))
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/logout-everywhere", tag = "auth", summary = "Revoke every token of your account", description = "Every token of the account issued until now is refused, this one included, wherever it was issued (a lost phone, a shared computer). Log in again to go on.", responses((status = 204, description = "Every session ended")), security(("bearer" = []))))]
async fn logout_everywhere(State(sessions): State<Sessions>, session: Session) -> Result<StatusCode, ApiError> {
    sessions.logout_everywhere(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/auth/logout", tag = "auth", summary = "Revoke this token", responses((status = 204, description = "Revoked")), security(("bearer" = []))))]
async fn logout(State(sessions): State<Sessions>, session: Session) -> Result<StatusCode, ApiError> {
    sessions.logout(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}
