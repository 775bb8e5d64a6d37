//! The catalog: products and the categories they are listed under.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::fields::{Category, ProductName};

/// The most units a product may hold: far from integer overflow in any sum.
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    pub id: Uuid,
    pub name: ProductName,
    #[serde(default)]
    pub description: String,
    pub price_cents: i64,
    pub stock: i64,
    pub category: Category,
    pub low_stock_threshold: i64,
    /// How many items hold the stock on DynamoDB (1: the product's own). More spreads a flash
    /// sale's orders over several items; the stock is their sum. See docs/performance.md.
    #[serde(default = "one_shard")]
    pub stock_shards: u32,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

fn one_shard() -> u32 {
    1
}

impl Product {
    pub fn is_sharded(&self) -> bool {
        self.stock_shards > 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategorySummary {
    pub name: Category,
    pub product_count: u64,
}
