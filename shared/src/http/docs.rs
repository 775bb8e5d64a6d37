//! `GET /openapi.json`: the API's document as committed in `docs/openapi.json`, which a test
//! keeps equal to the one `http::openapi` generates from the code, so a Lambda binary serves
//! it without linking the generator. With the `docs-ui` feature (the local server), the
//! interactive docs page at `GET /docs` too.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
#[cfg(feature = "docs-ui")]
use swagger_ui_dist::{ApiDefinition, OpenApiSource};

/// The committed document, compacted by the build script.
pub const DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

pub fn routes() -> Router {
    let routes = Router::new().route("/openapi.json", get(openapi_json));
    #[cfg(feature = "docs-ui")]
    let routes = routes.merge(swagger_ui_dist::generate_routes(ApiDefinition {
        uri_prefix: "/docs",
        api_definition: OpenApiSource::Uri("/openapi.json"),
        title: Some("Orderly API"),
    }));
    routes
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/openapi.json", tag = "docs", summary = "This document", responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)), security(())))]
pub(super) async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], DOCUMENT).into_response()
}
