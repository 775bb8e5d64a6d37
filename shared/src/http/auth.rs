//! The `auth` function (login, logout) and the one authentication mechanism every function
//! shares: [`authenticate`] checks any presented bearer token before routing, and handlers
//! state what they need with the [`Session`] and [`AdminSession`] extractors.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json as JsonResponse, Router};
use lambda_http::request::RequestContext;

use super::ApiError;
use super::extract::Json;
use crate::domain::{Accounts, LoginRequest, Sessions};
use crate::error::Error;

pub use crate::domain::Session;

pub fn routes(accounts: Accounts, sessions: Sessions) -> Router {
    Router::new()
        .route("/auth/login", post(login))
        .with_state(accounts)
        .merge(Router::new().route("/auth/logout", post(logout)).with_state(sessions))
}

/// Middleware: a request that carries `Authorization` must carry a valid, unrevoked bearer
/// token for an existing account, on every route (401 otherwise); the session is then
/// available to handlers. Requests without the header go on anonymously.
pub(super) async fn authenticate(State(sessions): State<Sessions>, mut request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return next.run(request).await;
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError::from(Error::Unauthorized("send the access token as Authorization: Bearer <token>"))
            .into_response();
    };
    match sessions.authenticate(token).await {
        Ok(session) => {
            tracing::Span::current().record("subject", tracing::field::display(session.principal.id));
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(ApiError::Domain(Error::Unauthorized("sign in first: POST /auth/login")))
    }
}

/// A signed-in admin: 401 when anonymous, 403 for a customer.
pub struct AdminSession(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for AdminSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let session = Session::from_request_parts(parts, state).await?;
        session.require_admin()?;
        Ok(AdminSession(session))
    }
}

/// The client's address: API Gateway's `sourceIp` in Lambda, the peer address locally.
fn source_address(parts: &Parts) -> Option<IpAddr> {
    let from_gateway = match parts.extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        _ => None,
    };
    from_gateway
        .and_then(|ip| ip.parse().ok())
        .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

struct SourceAddress(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(SourceAddress(source_address(parts)))
    }
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
