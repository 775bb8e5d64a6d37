//! Extractors that fail with [`ApiError`], so every malformed request gets a problem document.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::ApiError;
use crate::error::{Error, FieldError};

/// A JSON body: 415 without a JSON content type, 413 when too large, 400 when not JSON,
/// 422 with the offending field when JSON of the wrong shape.
pub struct Json<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// `missing field `name`` → `name`: serde names the field in the message, not the path.
fn field_named_in(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        // Syntax first, so a body that is not JSON at all is a 400 even if its start would
        // already fail the typed parse below.
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|err| {
                let path = err.path().to_string();
                let inner = err.into_inner();
                if !inner.is_data() {
                    return ApiError::MalformedJson(inner.to_string());
                }
                // Drop serde's " at line 1 column 9": the field path says where.
                let full = inner.to_string();
                let message = full.split(" at line ").next().unwrap_or(&full).to_owned();
                let field = match path.as_str() {
                    "." => field_named_in(&message).unwrap_or_else(|| "body".into()),
                    other => other.to_owned(),
                };
                ApiError::Domain(Error::Validation(vec![FieldError::new(field, message)]))
            })
            .map(Json)
    }
}

/// A query string; 400 naming the parameter when it does not parse.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rejection: QueryRejection| ApiError::InvalidQuery(rejection.body_text()))
    }
}

/// The `{id}` path segment. A segment that is not a UUID names no resource: 404.
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::RouteNotFound)?;
        Uuid::parse_str(&raw).map(Id).map_err(|_| ApiError::Domain(Error::NotFound("resource")))
    }
}

/// `If-Match: "3"` → the version the client expects; absent or `*` → no expectation.
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value.to_str().map_err(|_| ApiError::InvalidIfMatch)?.trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        // If-Match compares strongly (RFC 9110 13.1.1): a weak tag never matches. Version 0
        // is one no resource has, so the write answers 412 with the current version.
        if text.starts_with("W/") {
            return Ok(IfMatch(Some(0)));
        }
        let unquoted = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
        unquoted.parse().map(|v| IfMatch(Some(v))).map_err(|_| ApiError::InvalidIfMatch)
    }
}

/// An optional JSON body: an empty body (and no content type) is `T::default()`.
pub struct JsonOrEmpty<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let declared_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length == Some(0)
            || (declared_length.is_none() && !request.headers().contains_key(header::CONTENT_TYPE))
        {
            return Ok(JsonOrEmpty(T::default()));
        }
        Json::<T>::from_request(request, state).await.map(|Json(value)| JsonOrEmpty(value))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for super::RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<super::RequestId>()
            .cloned()
            .unwrap_or_else(|| super::RequestId(Uuid::now_v7().to_string())))
    }
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

/// The client's address, for per-address limits.
pub(super) struct SourceAddress(pub(super) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(SourceAddress(source_address(parts)))
    }
}
