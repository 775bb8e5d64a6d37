//! Extractors that fail with [`ApiError`], so every malformed request gets a problem document.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
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

/// What a value must be, in the API's words: JSON types and the documented shapes, never
/// Rust's (`i64`, `struct Address`).
fn expected_in_api_terms(expected: &str) -> String {
    let expected = expected.trim();
    match expected {
        "i64" | "i32" | "i16" | "i8" | "isize" => "an integer".into(),
        "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number, 0 or more".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" => "a string".into(),
        "a sequence" => "an array".into(),
        "struct Address" => "an object with line1, city, postal_code and country (line2 optional)".into(),
        "struct CardInput" => "an object with number, exp_month, exp_year and cvc (holder optional)".into(),
        "struct NewOrderItem" => "an object with product_id and quantity".into(),
        other if other.starts_with("struct ") || other == "a map" => "an object".into(),
        other if other.starts_with("one of ") => format!("one of {}", other["one of ".len()..].replace('`', "")),
        other if other.starts_with("RFC3339") || other.contains("rfc3339") => {
            "an RFC 3339 timestamp such as 2026-01-31T12:00:00Z".into()
        }
        other => other.replace('`', ""),
    }
}

/// serde's message for a field (`invalid type: string "x", expected i64`) in the API's words
/// (`must be an integer, not a string`).
fn in_api_terms(message: &str) -> String {
    if message.starts_with("missing field") {
        return "is required".into();
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e.replace('`', "")).unwrap_or_default();
        return if expected.is_empty() {
            "is not a field here".into()
        } else {
            format!("is not a field here; the fields are {}", expected.trim_start_matches("one of "))
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        return format!("must be {}", expected_in_api_terms(expected));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.split_once(", expected ")
    {
        // An integer too large for any integer type arrives as a float: say so, not "decimal".
        let value = got.split('`').nth(1).and_then(|v| v.parse::<f64>().ok());
        if got.starts_with("floating") && value.is_some_and(|v| v.fract() == 0.0 && v.abs() >= 9.2e18) {
            return format!("is too large: must be {}", expected_in_api_terms(expected));
        }
        let got = got.split([' ', '`']).next().unwrap_or(got);
        let got = match got {
            "map" => "an object",
            "sequence" => "an array",
            "string" => "a string",
            "integer" => "an integer",
            "floating" => "a decimal number",
            "boolean" => "true or false",
            "null" => "null",
            other => other,
        };
        return format!("must be {}, not {got}", expected_in_api_terms(expected));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((_, expected)) = rest.split_once(", expected ")
    {
        return format!("must be {}", expected_in_api_terms(expected));
    }
    if message.starts_with("UUID parsing failed") || message.contains("invalid character") && message.contains("UUID") {
        return "must be a UUID".into();
    }
    if message.contains("invalid digit")
        || message.contains("number too large")
        || message.contains("cannot parse integer")
    {
        return "must be a whole number".into();
    }
    if message.contains("was not true or false") || message.contains("was not `true` or `false`") {
        return "must be true or false".into();
    }
    // serde reads an object from an array too, and then complains about its length.
    if message.starts_with("invalid length") && message.contains("expected struct") {
        return "must be an object, not an array".into();
    }
    if message.starts_with("invalid length") {
        return format!("has the wrong length: {}", message.replace('`', ""));
    }
    message.replace('`', "")
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// The whole body, within the body limit: 413 past it.
async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })
}

/// A JSON body already read: 400 when not JSON, 422 naming the field when of the wrong shape.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, so a body that is not JSON at all is a 400 even if its start would
    // already fail the typed parse below.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
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
            other if message.starts_with("unknown field") => {
                let parent = other.rsplit_once('.').map_or("", |(parent, _)| parent);
                let name = field_named_in(&message).unwrap_or_default();
                if parent.is_empty() { name } else { format!("{parent}.{name}") }
            }
            // serde reports a missing field at the path of the object that lacks it.
            other if message.starts_with("missing field") => match field_named_in(&message) {
                Some(name) => format!("{other}.{name}"),
                None => other.to_owned(),
            },
            other => other.to_owned(),
        };
        ApiError::Domain(Error::Validation(vec![FieldError::new(field, in_api_terms(&message))]))
    })
}

/// A query string; 400 naming the parameter when it does not parse.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| Query(q.0)).map_err(
            |rejection: QueryRejection| {
                // "Failed to deserialize query string: limit: invalid digit found in string"
                let text = rejection.body_text();
                let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
                ApiError::InvalidQuery(match detail.split_once(": ") {
                    Some((parameter, message)) if !parameter.contains(' ') => {
                        format!("query parameter {parameter}: {}", in_api_terms(message))
                    }
                    _ => format!("query string: {}", in_api_terms(detail)),
                })
            },
        )
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

/// An optional JSON body: an empty body is `T::default()`; any other body is held to
/// [`Json`]'s rules (415 without a JSON content type, 413, 400, 422), however it was framed
/// (a chunked body declares no length).
pub struct JsonOrEmpty<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(request.headers());
        let bytes = body_bytes(request, state).await?;
        if bytes.is_empty() {
            return Ok(JsonOrEmpty(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(JsonOrEmpty)
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

/// Who is asking, for the per-address limits of sign-up and login.
#[cfg(feature = "passwords")]
mod client_address {
    use std::net::{IpAddr, SocketAddr};

    use axum::extract::{ConnectInfo, FromRequestParts};
    use axum::http::request::Parts;

    use super::ApiError;

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

    /// The client's address, for per-address limits (sign-up and login).
    pub(in crate::http) struct SourceAddress(pub(in crate::http) Option<IpAddr>);

    impl<S: Send + Sync> FromRequestParts<S> for SourceAddress {
        type Rejection = ApiError;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
            Ok(SourceAddress(source_address(parts)))
        }
    }
}
#[cfg(feature = "passwords")]
pub(super) use client_address::SourceAddress;

#[cfg(test)]
mod tests {
    use super::in_api_terms;

    #[test]
    fn shape_errors_speak_json_not_rust() {
        let cases = [
            ("invalid type: string \"x\", expected i64", "must be an integer, not a string"),
            ("invalid type: sequence, expected a string", "must be a string, not an array"),
            (
                "invalid type: string \"nowhere\", expected struct Address",
                "must be an object with line1, city, postal_code and country (line2 optional), not a string",
            ),
            ("invalid value: integer `-1`, expected u32", "must be a whole number, 0 or more"),
            ("missing field `price_cents`", "is required"),
            ("unknown variant `fly`, expected `ship` or `deliver`", "must be ship or deliver"),
            ("invalid digit found in string", "must be a whole number"),
            ("invalid type: floating point `1e+20`, expected i64", "is too large: must be an integer"),
            ("invalid type: floating point `1.5`, expected i64", "must be an integer, not a decimal number"),
            ("invalid length 0, expected struct NewOrder with 2 elements", "must be an object, not an array"),
        ];
        for (serde, api) in cases {
            assert_eq!(in_api_terms(serde), api, "{serde}");
        }
        for (serde, _) in cases {
            let said = in_api_terms(serde);
            assert!(!["i64", "u32", "struct", "sequence"].iter().any(|rust| said.contains(rust)), "{said}");
        }
    }
}
