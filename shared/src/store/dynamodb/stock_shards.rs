//! Stock shards: a product with `stock_shards` above 1 keeps its stock in that many items,
//! `PRODUCT#<id>#STOCK#<k>`, instead of its own item (whose `stock` stays 0). Each shard carries
//! the price, so an order's write is conditioned on its shard alone: concurrent orders of a
//! flash sale land on different items and neither conflict nor share one item's write limit.
//! The stock is the sum of the shards; every decrement is conditioned on its own shard, so the
//! sum never goes below zero. Edits that move units between shards (a new shard count, a new
//! price, a stock set by hand) rewrite every shard, each conditioned on the stock just read.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use uuid::Uuid;

use super::{CatalogStock, DynamoStore, Item, TransactionError, adjustment_item, build_err, n, pk, product_pk, s};
use crate::model::{Product, StockAdjustment, StockAlert, crosses_threshold};
use crate::store::StoreError;

pub(super) fn shard_pk(product: Uuid, shard: u32) -> String {
    format!("{}#STOCK#{shard}", product_pk(product))
}

/// `total` spread over `shards` as evenly as can be, the first shards taking the remainder.
pub(super) fn spread(total: i64, shards: u32) -> Vec<i64> {
    let count = i64::from(shards.max(1));
    (0..count).map(|k| total / count + i64::from(k < total % count)).collect()
}

/// Which shards to take `quantity` from, given their stock: one shard drawn at random among
/// those holding enough (so concurrent orders spread out), else the fullest first. `None` when
/// all of them together hold too little.
pub(super) fn take_plan(stocks: &[i64], quantity: i64) -> Option<Vec<(u32, i64)>> {
    if stocks.iter().sum::<i64>() < quantity {
        return None;
    }
    let able: Vec<u32> =
        (0..stocks.len()).filter(|&k| stocks[k] >= quantity).filter_map(|k| u32::try_from(k).ok()).collect();
    if !able.is_empty() {
        return Some(vec![(able[fastrand::usize(..able.len())], quantity)]);
    }
    let mut fullest: Vec<(u32, i64)> =
        stocks.iter().enumerate().filter_map(|(k, &stock)| Some((u32::try_from(k).ok()?, stock))).collect();
    fullest.sort_by_key(|&(_, stock)| std::cmp::Reverse(stock));
    let mut left = quantity;
    let mut plan = Vec::new();
    for (shard, stock) in fullest {
        if left == 0 {
            break;
        }
        let take = stock.min(left);
        if take > 0 {
            plan.push((shard, take));
            left -= take;
        }
    }
    Some(plan)
}

/// A number an item holds.
pub(super) fn number_of(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// How many shards a product item says it has.
pub(super) fn shards_of(item: &Item) -> u32 {
    number_of(item, "stock_shards").and_then(|k| u32::try_from(k).ok()).unwrap_or(1)
}

impl DynamoStore {
    /// Each sharded product's shards (`None` for one missing), in one `BatchGetItem`.
    pub(super) async fn read_shards(
        &self,
        products: &[(Uuid, u32)],
    ) -> Result<HashMap<Uuid, Vec<Option<i64>>>, StoreError> {
        let keys: Vec<String> =
            products.iter().flat_map(|&(id, shards)| (0..shards).map(move |k| shard_pk(id, k))).collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self.batch_get(&self.tables.products, keys).await?;
        Ok(products
            .iter()
            .map(|&(id, shards)| {
                (
                    id,
                    (0..shards)
                        .map(|k| found.get(&shard_pk(id, k)).and_then(|item| number_of(item, "stock")))
                        .collect(),
                )
            })
            .collect())
    }

    /// Gives each sharded product its stock, the sum of its shards (its own item holds none).
    pub(super) async fn add_shard_stock<'a>(
        &self,
        products: impl IntoIterator<Item = &'a mut Product>,
    ) -> Result<(), StoreError> {
        let mut sharded: Vec<&mut Product> = products.into_iter().filter(|p| p.is_sharded()).collect();
        if sharded.is_empty() {
            return Ok(());
        }
        let layouts: Vec<(Uuid, u32)> = sharded.iter().map(|p| (p.id, p.stock_shards)).collect();
        let stocks = self.read_shards(&layouts).await?;
        for product in &mut sharded {
            product.stock = stocks.get(&product.id).map_or(0, |shards| shards.iter().flatten().sum());
        }
        Ok(())
    }

    /// Takes `quantity` from one shard while it holds that many, at `price` when given (an
    /// order is priced as it was read). ALL_OLD tells a drained shard from a repriced one.
    pub(super) fn take_from_shard(
        &self,
        product: Uuid,
        shard: u32,
        quantity: i64,
        price: Option<i64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut values = HashMap::from([(":quantity".to_owned(), n(quantity))]);
        let mut condition = "stock >= :quantity".to_owned();
        if let Some(price) = price {
            condition.push_str(" AND price_cents = :price");
            values.insert(":price".to_owned(), n(price));
        }
        let update = Update::builder()
            .table_name(&self.tables.products)
            .set_key(Some(pk(shard_pk(product, shard))))
            .update_expression("SET stock = stock - :quantity")
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Gives `quantity` back to a shard drawn at random, while the product still has it (a
    /// product deleted or resharded since it was read fails the condition).
    pub(super) fn add_to_random_shard(
        &self,
        product: Uuid,
        shards: u32,
        quantity: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.tables.products)
            .set_key(Some(pk(shard_pk(product, fastrand::u32(0..shards.max(1))))))
            .update_expression("SET stock = stock + :quantity")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":quantity", n(quantity))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The writes taking `quantity` from a sharded product as its shards were just read, at
    /// `price` when given; `InsufficientStock` when they hold too little together.
    pub(super) fn take_from_shards(
        &self,
        product: Uuid,
        shards: &[Option<i64>],
        quantity: i64,
        price: Option<i64>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let stocks: Vec<i64> = shards.iter().map(|stock| stock.unwrap_or(0)).collect();
        let plan = take_plan(&stocks, quantity).ok_or_else(|| StoreError::InsufficientStock(vec![product]))?;
        plan.into_iter().map(|(shard, take)| self.take_from_shard(product, shard, take, price)).collect()
    }

    /// What an edit of a product with shards (before or after it) writes besides the product
    /// item: the item's own stock, and the shards rewritten to hold the stock as read now, moved
    /// by the edit's delta. Orders since the domain's read still count, as for any product; the
    /// edit's low-stock check must still hold for the stock as read now (else a stale read).
    pub(super) async fn move_between_shards(
        &self,
        previous: &Product,
        updated: &Product,
        alert: Option<&StockAlert>,
    ) -> Result<(CatalogStock, Vec<TransactWriteItem>), StoreError> {
        let delta = updated.stock - previous.stock;
        let same_shards = previous.stock_shards == updated.stock_shards && previous.price_cents == updated.price_cents;
        if same_shards && delta == 0 {
            // A name or a description: the shards stay as they are, and so do orders on them.
            return Ok((CatalogStock::Set { held: 0, to: 0 }, Vec::new()));
        }
        let (held, held_total, item_held) = if previous.is_sharded() {
            let held = self.read_shards(&[(previous.id, previous.stock_shards)]).await?.remove(&previous.id);
            let held = held.unwrap_or_default();
            let total = held.iter().flatten().sum();
            (held, total, 0)
        } else {
            (Vec::new(), previous.stock, previous.stock)
        };
        let total = held_total + delta;
        let crosses = crosses_threshold(held_total, delta, previous.low_stock_threshold, updated.low_stock_threshold);
        if total < 0 || crosses != alert.is_some() || alert.is_some_and(|a| a.stock != total) {
            return Err(StoreError::VersionConflict);
        }
        let item_to = if updated.is_sharded() { 0 } else { total };
        let writes = self.rewrite_shards(previous, &held, updated, total)?;
        Ok((CatalogStock::Set { held: item_held, to: item_to }, writes))
    }

    /// A stock adjustment of a sharded product: units added to a shard drawn at random, or
    /// taken from the shards as they are now; with the adjustment's record.
    pub(super) async fn adjust_sharded_stock(
        &self,
        adjustment: &StockAdjustment,
        shards: u32,
    ) -> Result<(), StoreError> {
        let product = adjustment.product_id;
        let mut actions = if adjustment.delta >= 0 {
            vec![self.add_to_random_shard(product, shards, adjustment.delta)?]
        } else {
            let held = self.read_shards(&[(product, shards)]).await?.remove(&product).unwrap_or_default();
            if held.iter().all(Option::is_none) {
                // Deleted or resharded since it was read.
                return Err(StoreError::VersionConflict);
            }
            self.take_from_shards(product, &held, -adjustment.delta, None)?
        };
        let shard_actions = actions.len();
        actions.push(self.put(
            &self.tables.products,
            adjustment_item(adjustment)?,
            "attribute_not_exists(pk)",
            None,
        )?);
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(i)) if i < shard_actions => Err(StoreError::VersionConflict),
            Err(TransactionError::ConditionFailed(_)) => Err(StoreError::Backend("adjustment id collision".into())),
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    /// Rewrites every shard of `updated` (and drops the shards `previous` had beyond them) so
    /// they hold `total`, each write conditioned on the stock `held` was read at: a write that
    /// landed since fails the transaction, so no unit is lost or made up.
    pub(super) fn rewrite_shards(
        &self,
        previous: &Product,
        held: &[Option<i64>],
        updated: &Product,
        total: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let new = if updated.is_sharded() { spread(total, updated.stock_shards) } else { Vec::new() };
        let old_count = if previous.is_sharded() { previous.stock_shards } else { 0 };
        let count = old_count.max(u32::try_from(new.len()).map_err(build_err)?);
        let mut actions = Vec::new();
        for shard in 0..count {
            let key = shard_pk(updated.id, shard);
            let read = held.get(shard as usize).copied().flatten();
            let (condition, values) = match read {
                Some(stock) => ("stock = :held", Some(HashMap::from([(":held".to_owned(), n(stock))]))),
                None => ("attribute_not_exists(pk)", None),
            };
            let action = match new.get(shard as usize) {
                Some(&stock) => {
                    let item = HashMap::from([
                        ("pk".to_owned(), s(key)),
                        ("stock".to_owned(), n(stock)),
                        ("price_cents".to_owned(), n(updated.price_cents)),
                    ]);
                    let put = Put::builder()
                        .table_name(&self.tables.products)
                        .set_item(Some(item))
                        .condition_expression(condition)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(build_err)?;
                    TransactWriteItem::builder().put(put).build()
                }
                None => {
                    let delete = Delete::builder()
                        .table_name(&self.tables.products)
                        .set_key(Some(pk(key)))
                        .condition_expression(condition)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(build_err)?;
                    TransactWriteItem::builder().delete(delete).build()
                }
            };
            actions.push(action);
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::{spread, take_plan};

    #[test]
    fn spread_keeps_the_exact_total() {
        assert_eq!(spread(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(spread(3, 4), vec![1, 1, 1, 0]);
        assert_eq!(spread(0, 2), vec![0, 0]);
        assert_eq!(spread(7, 1), vec![7]);
    }

    #[test]
    fn a_take_uses_one_able_shard_else_the_fullest_first() {
        let one = take_plan(&[0, 5, 9, 2], 4).expect("enough");
        assert_eq!(one.len(), 1);
        assert!(matches!(one[0], (1, 4) | (2, 4)), "{one:?}");
        assert_eq!(take_plan(&[3, 0, 4, 2], 8), Some(vec![(2, 4), (0, 3), (3, 1)]));
        assert_eq!(take_plan(&[3, 0, 4], 8), None);
    }
}
