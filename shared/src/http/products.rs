//! The `products` function: the catalog and categories. Anyone reads; admins write.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
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
    let etag = HeaderValue::from_str(&format!("\"{}\"", product.version));
    let mut response = (status, JsonResponse(product)).into_response();
    if let Ok(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

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

async fn list(
    State(catalog): State<Catalog>,
    Query(query): Query<ProductQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(catalog.products(&query).await?))
}

async fn show(State(catalog): State<Catalog>, Id(id): Id) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, catalog.product(id).await?))
}

async fn update(
    State(catalog): State<Catalog>,
    _admin: AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(patch): Json<ProductPatch>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, catalog.update_product(id, expected, patch).await?))
}

async fn replace(
    State(catalog): State<Catalog>,
    _admin: AdminSession,
    Id(id): Id,
    IfMatch(expected): IfMatch,
    Json(input): Json<NewProduct>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, catalog.replace_product(id, expected, input).await?))
}

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
struct Categories {
    items: Vec<crate::model::CategorySummary>,
}

async fn categories(State(catalog): State<Catalog>) -> Result<impl IntoResponse, ApiError> {
    Ok(JsonResponse(Categories { items: catalog.categories().await? }))
}
