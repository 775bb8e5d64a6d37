//! The one place errors become HTTP responses: RFC 9457 problem documents
//! (`application/problem+json`) with a stable `type` per kind of failure.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, FieldError};

/// Everything a handler can fail with: the domain's errors plus what only HTTP can get wrong.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] Error),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than {} bytes", super::MAX_BODY_BYTES)]
    PayloadTooLarge,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("If-Match must be a version ETag such as \"3\"")]
    InvalidIfMatch,
    #[error("the URI is longer than {} bytes", super::MAX_URI_BYTES)]
    UriTooLong,
    #[error("the request has more than {} headers or {} bytes of them", super::MAX_HEADERS, super::MAX_HEADER_BYTES)]
    HeadersTooLarge,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("this route does not support the method")]
    MethodNotAllowed,
}

/// An RFC 9457 problem document: every error answer.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct Problem<'a> {
    /// `/problems/<slug>`: `validation-error`, `not-found`, `conflict`, `precondition-failed`, …
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
}

impl ApiError {
    /// Status, problem type slug and title.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Domain(err) => match err {
                Error::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation-error", "Invalid request"),
                Error::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
                Error::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
                Error::PreconditionFailed { .. } => {
                    (StatusCode::PRECONDITION_FAILED, "precondition-failed", "Precondition failed")
                }
                Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
                Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
                Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
                Error::TooManyRequests { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests")
                }
                Error::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
                Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "Internal error"),
            },
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            ApiError::UriTooLong => (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long"),
            ApiError::HeadersTooLarge => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large", "Request header fields too large")
            }
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request-timeout", "Request timeout"),
            ApiError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid-query", "Invalid query string"),
            ApiError::InvalidIfMatch => (StatusCode::BAD_REQUEST, "invalid-if-match", "Invalid If-Match header"),
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.classify();
        let detail = match &self {
            // Internal details go to the log, never to the client.
            ApiError::Domain(Error::Internal(detail)) => {
                tracing::error!(error = %detail, "internal error");
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let (errors, current_version) = match &self {
            ApiError::Domain(Error::Validation(errors)) => (errors.as_slice(), None),
            ApiError::Domain(Error::PreconditionFailed { current_version }) => (&[][..], Some(*current_version)),
            _ => (&[][..], None),
        };
        let problem = Problem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
            current_version,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match &self {
            ApiError::Domain(Error::Unavailable) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Domain(Error::TooManyRequests { retry_after_secs, .. }) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Domain(Error::Unauthorized(_)) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        match current_version {
            Some(version) => super::with_version(response, version),
            None => response,
        }
    }
}
