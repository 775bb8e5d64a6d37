//! The `products` function: the catalog and categories. Anyone reads; admins write.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json as JsonResponse, Router};
use serde::Serialize;

use super::ApiError;
use super::extract::{Id, IfMatch, Json, Query};
use super::session::AdminSession;
use crate::domain::{Catalog, NewProduct, ProductPatch, ProductQuery};
use crate::model::Product;

pub fn routes(catalog: Catalog) -> Router {
    Router::new()
        .route("/products", get(list).post(create))
        .route("/products/{id}", get(show).patch(update).put(replace).delete(remove))
        .route("/categories", get(categories))
        .with_state(catalog)
}

/// A product with its version as a strong ETag, for `If-Match` on the next write.
pub(super) fn with_etag(status: StatusCode, product: Product) -> Response {
    let version = product.version;
    super::with_version((status, JsonResponse(product)).into_response(), version)
}

#[cfg_attr(feature = "openapi", utoipa::path(post, path = "/products", tag = "products", summary = "Create a product (admin)", request_body = crate::domain::NewProduct, responses((status = 201, description = "Created", body = crate::model::Product, headers(("ETag" = String, description = "The version, for If-Match"), ("Location" = String, description = "The product's URI"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "A product with this name exists", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn create(
    State(catalog): State<Catalog>,
    _admin: AdminSession,
    Json(input): Json<NewProduct>,
) -> Result<Response, ApiError> {
    Ok(created(catalog.create_product(input).await?))
}

/// 201 with the new product, its ETag and its `Location`.
pub(super) fn created(product: Product) -> Response {
    let location = format!("/products/{}", product.id);
    let mut response = with_etag(StatusCode::CREATED, product);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/products", tag = "products", summary = "List products by name", params(crate::domain::ProductQuery, ("If-None-Match" = Option<String>, Header, description = "The ETag of a page you hold: 304 if it is unchanged")), responses((status = 200, description = "A page of products", body = crate::store::Page<crate::model::Product>, headers(("ETag" = String, description = "A weak validator of this page, for If-None-Match"), ("Cache-Control" = String, description = "public, max-age=5"))), (status = 304, description = "Not modified: the page is the one If-None-Match names")), security((), ("bearer" = []))))]
async fn list(
    State(catalog): State<Catalog>,
    headers: HeaderMap,
    Query(query): Query<ProductQuery>,
) -> Result<Response, ApiError> {
    Ok(super::cacheable_json(&headers, &catalog.products(&query).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/products/{id}", tag = "products", summary = "Read a product", params(("id" = Uuid, Path, description = "Product id")), responses((status = 200, description = "The product", body = crate::model::Product, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem)), security((), ("bearer" = []))))]
async fn show(State(catalog): State<Catalog>, Id(id): Id) -> Result<Response, ApiError> {
    // Its ETag is the version `If-Match` takes, which orders do not move (stock is not part of
    // it), so it cannot answer `If-None-Match`; a short public lifetime still spares reads.
    let mut response = with_etag(StatusCode::OK, catalog.product(id).await?);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(super::CATALOG_CACHE_CONTROL));
    Ok(response)
}

#[cfg_attr(feature = "openapi", utoipa::path(patch, path = "/products/{id}", tag = "products", summary = "Change some fields of a product (admin)", params(("id" = Uuid, Path, description = "Product id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), request_body = crate::domain::ProductPatch, responses((status = 200, description = "The product as stored", body = crate::model::Product, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "The name is taken, or the stock differs from the current stock (stock moves by adjustments)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn update(
    State(catalog): State<Catalog>,
    _admin: AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(patch): Json<ProductPatch>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, catalog.update_product(id, expected, patch).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(put, path = "/products/{id}", tag = "products", summary = "Replace a product's fields (admin)", params(("id" = Uuid, Path, description = "Product id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), request_body = crate::domain::NewProduct, responses((status = 200, description = "The product as stored", body = crate::model::Product, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 409, description = "The name is taken, or the stock differs from the current stock (stock moves by adjustments)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn replace(
    State(catalog): State<Catalog>,
    _admin: AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(input): Json<NewProduct>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, catalog.replace_product(id, expected, input).await?))
}

#[cfg_attr(feature = "openapi", utoipa::path(delete, path = "/products/{id}", tag = "products", summary = "Delete a product (admin)", params(("id" = Uuid, Path, description = "Product id"), ("If-Match" = Option<String>, Header, description = "The version you read, as its ETag (\"3\"): a stale one answers 412")), responses((status = 204, description = "Deleted"), (status = 403, description = "Admins only", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 404, description = "No such product (or not yours)", content_type = "application/problem+json", body = crate::http::problem::Problem), (status = 412, description = "The If-Match version is stale; current_version says the current one", content_type = "application/problem+json", body = crate::http::problem::Problem)), security(("bearer" = []))))]
async fn remove(
    State(catalog): State<Catalog>,
    _admin: AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
) -> Result<StatusCode, ApiError> {
    catalog.delete_product(id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct Categories {
    items: Vec<crate::model::CategorySummary>,
}

#[cfg_attr(feature = "openapi", utoipa::path(get, path = "/categories", tag = "products", summary = "Categories with products", params(("If-None-Match" = Option<String>, Header, description = "The ETag of the list you hold: 304 if it is unchanged")), responses((status = 200, description = "Categories by name", body = crate::http::products::Categories, headers(("ETag" = String, description = "A weak validator of this list, for If-None-Match"), ("Cache-Control" = String, description = "public, max-age=5"))), (status = 304, description = "Not modified: the list is the one If-None-Match names")), security((), ("bearer" = []))))]
async fn categories(State(catalog): State<Catalog>, headers: HeaderMap) -> Result<Response, ApiError> {
    Ok(super::cacheable_json(&headers, &Categories { items: catalog.categories().await? }))
}
