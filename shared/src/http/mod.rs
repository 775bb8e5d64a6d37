//! HTTP: one router per Lambda function (`auth`, `customers`, `products`, `orders`, `payments`,
//! `admin`, which also serves [`docs`]; `local_app` merges them all), the extractors that turn
//! requests into domain input, and the single error → problem+json mapping ([`problem`]).
//! [`app`] adds what every function shares: fallbacks, the body limit, request ids, logs.

pub mod admin;
#[cfg(feature = "passwords")]
pub mod auth;
#[cfg(feature = "passwords")]
pub mod customers;
pub mod docs;
mod extract;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod problem;
pub mod products;
pub mod session;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::domain::Sessions;
pub use problem::ApiError;

/// Largest request body accepted; product descriptions are the biggest field (5,000 chars).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest URI, and most headers, a request may carry (414 and 431 problem documents beyond).
pub const MAX_URI_BYTES: usize = 8 * 1024;
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Finishes a function's routes into a servable app: unknown routes and methods answer with
/// problem documents, bodies are capped, bearer tokens are checked, and every request gets
/// an id and a log line.
pub fn app(routes: Router, sessions: Sessions) -> Router {
    routes
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(sessions, session::authenticate))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(middleware::from_fn(trace_request))
}

/// An answer a server gives before the request reaches the app (the local server's 413 and 408
/// while it reads the body): with a request id and a log line, like the app's own answers.
pub fn answered_before_the_app(request: &Request, error: ApiError) -> Response {
    let request_id = request_id(request);
    let mut response = error.into_response();
    tracing::info!(%request_id, method = %request.method(), path = logged_path(request), status = response.status().as_u16(), "request refused before the app");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// 414 for a URI, 431 for headers beyond the limits: as problem documents, before anything
/// but the request id reads the request.
async fn refuse_oversized(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header_bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return ApiError::UriTooLong.into_response();
    }
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge.into_response();
    }
    next.run(request).await
}

/// Every function's routes in one app: what the local server and the HTTP tests serve.
#[cfg(feature = "passwords")]
pub fn local_app(services: &crate::domain::Services) -> Router {
    let routes = auth::routes(services.accounts.clone(), services.sessions.clone())
        .merge(customers::routes(services.customers.clone(), services.notices.clone()))
        .merge(products::routes(services.catalog.clone()))
        .merge(orders::routes(services.orders.clone(), services.payments.clone(), services.fulfillment.clone()))
        .merge(payments::routes(services.payments.clone()))
        .merge(admin::routes(services.back_office()))
        .merge(docs::routes());
    app(routes, services.sessions.clone())
}

/// Sets a resource's version as its strong ETag, the value `If-Match` takes on the next write.
pub(crate) fn with_version(mut response: Response, version: u64) -> Response {
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(axum::http::header::ETAG, etag);
    }
    response
}

/// A JSON answer with the resource's version as its ETag (see [`with_version`]).
pub(crate) fn versioned_json(body: impl serde::Serialize, version: u64) -> Response {
    with_version(axum::Json(body).into_response(), version)
}

/// How long a browser or CDN may reuse a public catalog answer without asking again.
pub(crate) const CATALOG_CACHE_CONTROL: &str = "public, max-age=5";

/// A public read that caches: 200 with the JSON, a weak ETag of its bytes and
/// `Cache-Control`, or 304 with no body when `If-None-Match` already names that ETag.
pub(crate) fn cacheable_json<T: serde::Serialize>(request: &axum::http::HeaderMap, value: &T) -> Response {
    use std::hash::{Hash, Hasher};
    let body = match serde_json::to_vec(value) {
        Ok(body) => body,
        Err(err) => return ApiError::from(crate::Error::Internal(format!("response JSON: {err}"))).into_response(),
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("W/\"{:016x}\"", hasher.finish());
    // Weak comparison (RFC 9110 13.1.2): the W/ prefix does not matter; `*` matches anything.
    let matches =
        request.get_all(axum::http::header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|list| {
            list.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == &etag[2..])
        });
    let mut response = if matches {
        axum::http::StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(axum::http::header::ETAG, etag);
    }
    headers.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static(CATALOG_CACHE_CONTROL));
    response
}

const REQUEST_ID: &str = "x-request-id";

/// The request id: API Gateway's when running in Lambda, else a caller-supplied
/// `x-request-id` (if sane), else a fresh one.
fn request_id(request: &Request) -> String {
    gateway_request_id(request)
        .or_else(|| {
            request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// API Gateway's request id, when running in Lambda behind it.
#[cfg(feature = "lambda-http")]
fn gateway_request_id(request: &Request) -> Option<String> {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
}

#[cfg(not(feature = "lambda-http"))]
fn gateway_request_id(_: &Request) -> Option<String> {
    None
}

/// The request's path for a log line, cut at the longest URI the app serves.
fn logged_path(request: &Request) -> &str {
    let path = request.uri().path();
    let mut end = path.len().min(MAX_URI_BYTES);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// The request's id, for handlers that pass it on (as a queued message's correlation id).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn trace_request(mut request: Request, next: Next) -> Response {
    let request_id = request_id(&request);
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = logged_path(&request),
        subject = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
