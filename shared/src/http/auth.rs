//! The `auth` function: logging in (under the failed-login limits) and logging out.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json as JsonResponse, Router};

use super::ApiError;
use super::extract::Json;
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

/// The client's address: API Gateway's `sourceIp` in Lambda, the peer address locally.
fn source_address(parts: &Parts) -> Option<IpAddr> {
    gateway_source_ip(parts)
        .and_then(|ip| ip.parse().ok())
        .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

#[cfg(feature = "lambda-http")]
fn gateway_source_ip(parts: &Parts) -> Option<String> {
    use lambda_http::request::RequestContext;
    match parts.extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    }
}

#[cfg(not(feature = "lambda-http"))]
fn gateway_source_ip(_: &Parts) -> Option<String> {
    None
}

struct SourceAddress(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(SourceAddress(source_address(parts)))
    }
}
