//! The catalog: products with optimistic concurrency, and categories.

use serde::Deserialize;
use uuid::Uuid;

use std::sync::Arc;

use super::Invalid as _;
use super::inventory::{low_stock_check, report_alert};
use super::{UNCONDITIONAL_UPDATE_ATTEMPTS, backoff, field_errors};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{
    AlertCause, Category, CategorySummary, FieldError, MAX_STOCK, Product, ProductName, int_in_range,
    optional_multiline_text, optional_text,
};
use crate::store::{CatalogStore, Page, ProductFilter, StoreError};

/// Upper bounds that keep values sane (and far from integer overflow in any sum).
pub const MAX_PRICE_CENTS: i64 = 100_000_000; // 1,000,000.00
const MAX_DESCRIPTION: usize = 5_000;
const DEFAULT_LOW_STOCK_THRESHOLD: i64 = 5;
/// Enough to spread a flash sale's orders; few enough that an edit rewriting every shard stays
/// one small transaction.
pub const MAX_STOCK_SHARDS: u32 = 16;

/// POST /products and PUT /products/{id} body (PUT replaces every field).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"name": "Blue Mug", "description": "Stoneware, 350 ml", "price_cents": 1299, "stock": 40, "category": "kitchen", "low_stock_threshold": 5})))]
pub struct NewProduct {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub price_cents: i64,
    /// The initial stock when creating. In a PUT it must equal the current stock (409 naming the
    /// current stock otherwise): stock moves only through adjustments and orders.
    pub stock: i64,
    pub category: String,
    /// Defaults to 5.
    #[serde(default)]
    pub low_stock_threshold: Option<i64>,
    /// Items the stock is spread over on DynamoDB, 1 to 16 (default 1); more than one lets a
    /// flash sale's orders go to different items.
    #[serde(default)]
    pub stock_shards: Option<u32>,
    /// Expected current version (PUT only); the `If-Match` header takes precedence.
    #[serde(default)]
    pub version: Option<u64>,
}

/// PATCH /products/{id} body: only the fields present change. The stock is not one of them:
/// it moves through `POST /admin/inventory/{id}/adjustments` (a delta and a reason) and orders.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductPatch {
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub name: Option<String>,
    /// `null` (or an empty string) removes it.
    #[serde(default, deserialize_with = "crate::model::removable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub price_cents: Option<i64>,
    /// If present, must equal the current stock (409 naming the current stock otherwise).
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub stock: Option<i64>,
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub category: Option<String>,
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub low_stock_threshold: Option<i64>,
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub stock_shards: Option<u32>,
    /// Expected current version; the `If-Match` header takes precedence.
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub version: Option<u64>,
}

/// GET /products query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ProductQuery {
    pub category: Option<String>,
    /// Case-insensitive name prefix.
    pub q: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: Option<bool>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

fn shard_count(shards: u32) -> std::result::Result<u32, FieldError> {
    int_in_range("stock_shards", shards.into(), 1, MAX_STOCK_SHARDS.into()).map(|_| shards)
}

/// A POST or PUT body is a patch that sets every field, with the defaults for those left out.
impl From<NewProduct> for ProductPatch {
    fn from(input: NewProduct) -> Self {
        Self {
            name: Some(input.name),
            description: Some(input.description),
            price_cents: Some(input.price_cents),
            stock: Some(input.stock),
            category: Some(input.category),
            low_stock_threshold: Some(input.low_stock_threshold.unwrap_or(DEFAULT_LOW_STOCK_THRESHOLD)),
            stock_shards: Some(input.stock_shards.unwrap_or(1)),
            version: input.version,
        }
    }
}

/// A validated PATCH: `None` leaves a field as it is.
struct ProductChanges {
    name: Option<ProductName>,
    description: Option<String>,
    price_cents: Option<i64>,
    stock: Option<i64>,
    category: Option<Category>,
    low_stock_threshold: Option<i64>,
    stock_shards: Option<u32>,
}

impl ProductChanges {
    fn parse(patch: &ProductPatch) -> Result<Self> {
        let name = patch.name.as_deref().map(|n| ProductName::parse("name", n)).transpose();
        let description = patch
            .description
            .as_ref()
            .map(|d| {
                optional_multiline_text("description", d.as_deref(), MAX_DESCRIPTION).map(Option::unwrap_or_default)
            })
            .transpose();
        let price = patch.price_cents.map(|p| int_in_range("price_cents", p, 0, MAX_PRICE_CENTS)).transpose();
        let stock = patch.stock.map(|s| int_in_range("stock", s, 0, MAX_STOCK)).transpose();
        let category = patch.category.as_deref().map(|c| Category::parse("category", c)).transpose();
        let threshold =
            patch.low_stock_threshold.map(|t| int_in_range("low_stock_threshold", t, 0, MAX_STOCK)).transpose();
        let shards = patch.stock_shards.map(shard_count).transpose();
        match (name, description, price, stock, category, threshold, shards) {
            (
                Ok(name),
                Ok(description),
                Ok(price_cents),
                Ok(stock),
                Ok(category),
                Ok(low_stock_threshold),
                Ok(stock_shards),
            ) => Ok(Self { name, description, price_cents, stock, category, low_stock_threshold, stock_shards }),
            (n, d, p, s, c, t, k) => Err(field_errors([
                n.invalid(),
                d.invalid(),
                p.invalid(),
                s.invalid(),
                c.invalid(),
                t.invalid(),
                k.invalid(),
            ])),
        }
    }

    /// A `stock` other than the product's as first read is refused: the server cannot know what
    /// the client read, and orders placed since then must still count (stock moves by deltas
    /// only). Checked once, on the first read: an order that moves the stock while the edit is
    /// written makes the edit go again, not fail.
    fn check_stock(&self, product: &Product) -> Result<()> {
        match self.stock {
            Some(stock) if stock != product.stock => Err(Error::Conflict(format!(
                "the stock is {} now, not {stock}: stock moves through POST /admin/inventory/{}/adjustments \
                 (a delta and a reason), so orders placed since your read still count",
                product.stock, product.id
            ))),
            _ => Ok(()),
        }
    }

    /// Applies the changes to `product` as read; never the stock (see `check_stock`).
    fn apply_to(&self, product: &mut Product) {
        if let Some(v) = &self.name {
            product.name = v.clone();
        }
        if let Some(v) = &self.description {
            product.description = v.clone();
        }
        if let Some(v) = self.price_cents {
            product.price_cents = v;
        }
        if let Some(v) = &self.category {
            product.category = v.clone();
        }
        if let Some(v) = self.low_stock_threshold {
            product.low_stock_threshold = v;
        }
        if let Some(v) = self.stock_shards {
            product.stock_shards = v;
        }
    }
}

impl ProductQuery {
    fn filter(&self) -> Result<ProductFilter> {
        let category = self.category.as_deref().map(|c| Category::parse("category", c)).transpose();
        let min = self.min_price.map(|p| int_in_range("min_price", p, 0, MAX_PRICE_CENTS)).transpose();
        let max = self.max_price.map(|p| int_in_range("max_price", p, 0, MAX_PRICE_CENTS)).transpose();
        let q = optional_text("q", self.q.as_deref(), 200);
        let (category, min_price, max_price, q) = match (category, min, max, q) {
            (Ok(c), Ok(min), Ok(max), Ok(q)) => (c, min, max, q),
            (c, min, max, q) => return Err(field_errors([c.invalid(), min.invalid(), max.invalid(), q.invalid()])),
        };
        if let (Some(min), Some(max)) = (min_price, max_price)
            && min > max
        {
            return Err(Error::invalid("min_price", "must not be greater than max_price"));
        }
        Ok(ProductFilter {
            category,
            name_prefix: q.map(|q| q.to_lowercase()),
            min_price,
            max_price,
            in_stock: self.in_stock,
            low_stock: None,
        })
    }
}

/// The catalog: products with optimistic concurrency, and categories.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn CatalogStore>,
    clock: Arc<dyn Clock>,
}

impl Catalog {
    pub fn new(store: Arc<dyn CatalogStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub async fn create_product(&self, input: NewProduct) -> Result<Product> {
        if input.version.is_some() {
            return Err(Error::invalid("version", "is for PUT: a new product has none yet"));
        }
        let ProductChanges {
            name: Some(name),
            description: Some(description),
            price_cents: Some(price_cents),
            stock: Some(stock),
            category: Some(category),
            low_stock_threshold: Some(low_stock_threshold),
            stock_shards: Some(stock_shards),
        } = ProductChanges::parse(&ProductPatch::from(input))?
        else {
            return Err(Error::Internal("a new product's patch sets every field".into()));
        };
        let now = self.clock.now();
        let product = Product {
            id: Uuid::now_v7(),
            name,
            description,
            price_cents,
            stock,
            category,
            low_stock_threshold,
            stock_shards,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_product(&product).await?;
        tracing::info!(product_id = %product.id, "product created");
        Ok(product)
    }

    pub async fn product(&self, id: Uuid) -> Result<Product> {
        self.store.get_product(id).await?.ok_or(Error::NotFound("product"))
    }

    pub async fn products(&self, query: &ProductQuery) -> Result<Page<Product>> {
        let filter = query.filter()?;
        let page = super::page_request(query.limit, query.next_token.clone())?;
        Ok(self.store.list_products(&filter, &page).await?)
    }

    pub async fn categories(&self) -> Result<Vec<CategorySummary>> {
        Ok(self.store.list_categories().await?)
    }

    /// PATCH: applies `patch` to the current product. With an expected version (If-Match or
    /// the body's `version`) a stale write is refused (412); without one, a concurrent change is
    /// re-read and the patch re-applied, so no other writer's change is lost. A `stock` must
    /// equal the current stock (409 otherwise, nothing written): the version does not cover the
    /// stock, so only adjustments and orders move it, by deltas.
    pub async fn update_product(&self, id: Uuid, if_match: Option<u64>, patch: ProductPatch) -> Result<Product> {
        let changes = ProductChanges::parse(&patch)?;
        let expected = if_match.or(patch.version);
        self.write_product(id, expected, &changes).await
    }

    /// PUT: replaces every client-settable field but the stock, which must equal the current
    /// stock, with the same rules as PATCH.
    pub async fn replace_product(&self, id: Uuid, if_match: Option<u64>, input: NewProduct) -> Result<Product> {
        let expected = if_match.or(input.version);
        let changes = ProductChanges::parse(&ProductPatch::from(input))?;
        self.write_product(id, expected, &changes).await
    }

    /// One conditional write of `changes` applied to the current product; re-read and
    /// re-applied on a concurrent change when the client gave no expected version. The stock is
    /// checked against the first read only (see `ProductChanges::check_stock`).
    async fn write_product(&self, id: Uuid, expected: Option<u64>, changes: &ProductChanges) -> Result<Product> {
        for attempt in 0..UNCONDITIONAL_UPDATE_ATTEMPTS {
            let current = self.product(id).await?;
            check_version(&current, expected)?;
            if attempt == 0 {
                changes.check_stock(&current)?;
            }
            let mut updated = current.clone();
            changes.apply_to(&mut updated);
            if updated == current {
                return Ok(current);
            }
            updated.version = current.version + 1;
            let now = self.clock.now();
            updated.updated_at = now;
            // An edit never moves the stock (delta 0); a threshold change can still cross.
            let check = low_stock_check(&current, 0, updated.low_stock_threshold, AlertCause::Edit, now);
            match self.store.update_product(&current, &updated, check.alert.as_ref()).await {
                // Read back: orders may have moved the stock meanwhile.
                Ok(()) => {
                    if let Some(alert) = &check.alert {
                        report_alert(alert);
                    }
                    return self.product(id).await;
                }
                // Changed meanwhile: the next round's read tells an edit (412 when the client
                // named a version) from orders that only moved the stock (go again).
                Err(StoreError::VersionConflict) => backoff(attempt).await,
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Unavailable)
    }

    pub async fn delete_product(&self, id: Uuid, if_match: Option<u64>) -> Result<()> {
        for attempt in 0..UNCONDITIONAL_UPDATE_ATTEMPTS {
            let current = self.product(id).await?;
            check_version(&current, if_match)?;
            match self.store.delete_product(&current).await {
                Ok(()) => {
                    tracing::info!(product_id = %id, "product deleted");
                    return Ok(());
                }
                Err(StoreError::VersionConflict) if if_match.is_none() => backoff(attempt).await,
                Err(StoreError::VersionConflict) => return Err(self.stale_or_gone(id).await),
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Unavailable)
    }

    /// After a refused conditional write: 404 if the product is gone, else 412 with its version.
    async fn stale_or_gone(&self, id: Uuid) -> Error {
        match self.product(id).await {
            Ok(current) => Error::PreconditionFailed { current_version: current.version },
            Err(err) => err,
        }
    }
}

fn check_version(current: &Product, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(v) if v != current.version => Err(Error::PreconditionFailed { current_version: current.version }),
        _ => Ok(()),
    }
}
