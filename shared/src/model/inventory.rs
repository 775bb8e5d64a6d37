//! The back office's view of stock: adjustments kept as an audit trail, and low-stock alerts.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A stock change by hand: a delta with its reason, never "set the stock to N", so it cannot
/// undo an order that landed between the admin's read and write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StockAdjustment {
    pub id: Uuid,
    pub product_id: Uuid,
    pub delta: i64,
    pub reason: String,
    /// `admin:<id>`.
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What took a product's stock below its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlertCause {
    Order,
    Adjustment,
    Edit,
}

/// One crossing of a product's low-stock threshold: recorded by the write that took the stock
/// from at or above the threshold to below it, and by no other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StockAlert {
    pub id: Uuid,
    pub product_id: Uuid,
    pub product_name: String,
    /// The stock right after the crossing write.
    pub stock: i64,
    pub threshold: i64,
    pub cause: AlertCause,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// When the alert went out to the operators' topic; `None` while in the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
}

impl StockAlert {
    /// The alert of a crossing just recorded: `stock` is the stock right after it; not yet
    /// acknowledged nor published.
    pub fn raised(
        id: Uuid,
        product_id: Uuid,
        product_name: String,
        stock: i64,
        threshold: i64,
        cause: AlertCause,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            product_id,
            product_name,
            stock,
            threshold,
            cause,
            created_at,
            acknowledged_at: None,
            acknowledged_by: None,
            published_at: None,
        }
    }
}

/// Whether moving a stock of `stock` by `delta` crosses the low-stock line: from at or above
/// `threshold_before` to below `threshold_after` (an edit may change both).
pub fn crosses_threshold(stock: i64, delta: i64, threshold_before: i64, threshold_after: i64) -> bool {
    stock >= threshold_before && stock + delta < threshold_after
}

#[cfg(test)]
mod tests {
    use super::crosses_threshold;

    #[test]
    fn only_the_move_from_at_or_above_to_below_crosses() {
        assert!(crosses_threshold(5, -1, 5, 5));
        assert!(crosses_threshold(7, -3, 5, 5));
        assert!(!crosses_threshold(8, -3, 5, 5));
        assert!(!crosses_threshold(4, -1, 5, 5));
        assert!(!crosses_threshold(3, 10, 5, 5));
        // Raising the threshold above the stock is a crossing too.
        assert!(crosses_threshold(6, 0, 5, 10));
    }
}
