//! The one authentication mechanism every function shares: [`authenticate`] checks any
//! presented bearer token before the handler runs (placing an order leaves the store's part to
//! the order's own read: [`Caller`]), and handlers state what they need with the [`Session`],
//! [`AdminSession`] and [`Caller`] extractors.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::domain::Sessions;
use crate::error::Error;

pub use crate::domain::{Caller, Session};

/// Middleware: a request that carries `Authorization` must carry a valid, unrevoked bearer
/// token for an existing account, on every route (401 otherwise); the session is then
/// available to handlers. Requests without the header go on anonymously. A customer placing
/// an order is the one exception to asking the store here: the order's own read confirms the
/// session ([`Caller`]), so an order costs one read, not two.
pub(super) async fn authenticate(State(sessions): State<Sessions>, mut request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return next.run(request).await;
    };
    let token = value
        .to_str()
        .ok()
        // The scheme is case-insensitive (RFC 9110 11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError::from(Error::Unauthorized("send the access token as Authorization: Bearer <token>"))
            .into_response();
    };
    match sessions.caller(token, confirms_session_itself(&request)).await {
        Ok(caller) => {
            tracing::Span::current().record("subject", tracing::field::display(caller.session().principal.id));
            match caller {
                Caller::Confirmed(session) => {
                    request.extensions_mut().insert(session);
                }
                unconfirmed => {
                    request.extensions_mut().insert(unconfirmed);
                }
            }
        }
        Err(err) => return ApiError::from(err).into_response(),
    }
    next.run(request).await
}

/// The path of `POST /orders` (`orders::place`), whose handler confirms a session with the
/// order's own read (see [`Caller`]; `tests/query_plans.rs` counts that read).
const PLACE_ORDER_PATH: &str = "/orders";

/// Whether the request is for a route that confirms the session itself.
fn confirms_session_itself(request: &Request) -> bool {
    let path = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    request.method() == Method::POST && path == Some(PLACE_ORDER_PATH)
}

/// The caller of a route that confirms sessions itself: [`Caller::Unconfirmed`] when the
/// middleware left it to the route.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None => Session::from_request_parts(parts, state).await.map(Caller::Confirmed),
        }
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
