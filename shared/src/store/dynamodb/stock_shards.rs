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

use super::{
    CatalogStock, DynamoStore, Item, TransactionError, adjustment_item, build_err, from_item, n, pk, product_pk, s,
};
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

/// Reads of a product's item and of its shards are two reads, not one snapshot: a reshard, a
/// delete or an edit may land between them. They are read again this many times.
const SHARD_READ_ATTEMPTS: usize = 3;

/// A sharded product's shards as read: all `N` its item names, each written for that layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ShardRead {
    pub stocks: Vec<i64>,
    /// The price the shards carry (every rewrite sets it on all of them).
    pub price_cents: i64,
}

impl ShardRead {
    pub fn total(&self) -> i64 {
        self.stocks.iter().sum()
    }
}

impl DynamoStore {
    /// Each sharded product's shards in one `BatchGetItem`; `None` for a product whose shards
    /// are not the `N` its item named (resharded or deleted since that read).
    pub(super) async fn read_shards(
        &self,
        products: &[(Uuid, u32)],
    ) -> Result<HashMap<Uuid, Option<ShardRead>>, StoreError> {
        let keys: Vec<String> =
            products.iter().flat_map(|&(id, shards)| (0..shards).map(move |k| shard_pk(id, k))).collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let found = self.batch_get(&self.tables.products, keys).await?;
        let read = |id: Uuid, shards: u32| -> Option<ShardRead> {
            let items: Vec<&Item> = (0..shards).map(|k| found.get(&shard_pk(id, k))).collect::<Option<_>>()?;
            if items.iter().any(|item| number_of(item, "shards") != Some(i64::from(shards))) {
                return None;
            }
            let stocks = items.iter().map(|item| number_of(item, "stock")).collect::<Option<_>>()?;
            let price_cents = number_of(items.first()?, "price_cents")?;
            Some(ShardRead { stocks, price_cents })
        };
        Ok(products.iter().map(|&(id, shards)| (id, read(id, shards))).collect())
    }

    /// Gives each sharded product its stock, the sum of its shards (its own item holds none).
    /// A product resharded or deleted between the reads is read again (a deleted one becomes
    /// `None`), so a layout change never reads as short stock.
    pub(super) async fn with_shard_stock(
        &self,
        mut products: Vec<Option<Product>>,
    ) -> Result<Vec<Option<Product>>, StoreError> {
        let sharded = |p: &Option<Product>| p.as_ref().is_some_and(Product::is_sharded);
        let mut pending: Vec<usize> = (0..products.len()).filter(|&i| sharded(&products[i])).collect();
        for _ in 0..SHARD_READ_ATTEMPTS {
            if pending.is_empty() {
                return Ok(products);
            }
            let layouts: Vec<(Uuid, u32)> =
                pending.iter().filter_map(|&i| products[i].as_ref().map(|p| (p.id, p.stock_shards))).collect();
            let reads = self.read_shards(&layouts).await?;
            let mut stale = Vec::new();
            for &i in &pending {
                let Some(product) = products[i].as_mut() else { continue };
                match reads.get(&product.id) {
                    Some(Some(read)) => product.stock = read.total(),
                    _ => stale.push(i),
                }
            }
            let keys: Vec<String> =
                stale.iter().filter_map(|&i| products[i].as_ref().map(|p| product_pk(p.id))).collect();
            let mut fresh =
                if keys.is_empty() { HashMap::new() } else { self.batch_get(&self.tables.products, keys).await? };
            pending.clear();
            for i in stale {
                let Some(id) = products[i].as_ref().map(|p| p.id) else { continue };
                products[i] = fresh.remove(&product_pk(id)).map(from_item::<Product>).transpose()?;
                if sharded(&products[i]) {
                    pending.push(i);
                }
            }
        }
        if pending.is_empty() {
            Ok(products)
        } else {
            Err(StoreError::Unavailable("a product's stock shards kept changing while being read".into()))
        }
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
        stocks: &[i64],
        quantity: i64,
        price: Option<i64>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let plan = take_plan(stocks, quantity).ok_or_else(|| StoreError::InsufficientStock(vec![product]))?;
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
            let read = self.read_shards(&[(previous.id, previous.stock_shards)]).await?.remove(&previous.id);
            // Resharded or deleted since the domain's read: that read is stale.
            let held = read.flatten().ok_or(StoreError::VersionConflict)?.stocks;
            let total = held.iter().sum();
            (held, total, 0)
        } else {
            // The item's stock as it is now, not as the domain read it: orders land meanwhile,
            // and the write is conditioned on exactly this value.
            let item = self.get_item(&self.tables.products, product_pk(previous.id)).await?;
            let stock = item.as_ref().filter(|item| shards_of(item) == 1).and_then(|item| number_of(item, "stock"));
            let stock = stock.ok_or(StoreError::VersionConflict)?;
            (Vec::new(), stock, stock)
        };
        let total = held_total + delta;
        let crosses = crosses_threshold(held_total, delta, previous.low_stock_threshold, updated.low_stock_threshold);
        if total < 0 || crosses != alert.is_some() || alert.is_some_and(|a| a.stock != total) {
            return Err(StoreError::VersionConflict);
        }
        let item_to = if updated.is_sharded() { 0 } else { total };
        let writes = self.rewrite_shards(&held, updated, total)?;
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
            let read = self.read_shards(&[(product, shards)]).await?.remove(&product).flatten();
            // Deleted or resharded since it was read.
            let held = read.ok_or(StoreError::VersionConflict)?;
            self.take_from_shards(product, &held.stocks, -adjustment.delta, None)?
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

    /// Rewrites every shard of `updated` (and drops the shards read in `held` beyond them) so
    /// they hold `total`, each write conditioned on the stock `held` was read at: a write that
    /// landed since fails the transaction, so no unit is lost or made up.
    pub(super) fn rewrite_shards(
        &self,
        held: &[i64],
        updated: &Product,
        total: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let new = if updated.is_sharded() { spread(total, updated.stock_shards) } else { Vec::new() };
        let count = held.len().max(new.len());
        let mut actions = Vec::new();
        for shard in 0..count {
            let key = shard_pk(updated.id, u32::try_from(shard).map_err(build_err)?);
            let (condition, values) = match held.get(shard) {
                Some(&stock) => ("stock = :held", Some(HashMap::from([(":held".to_owned(), n(stock))]))),
                None => ("attribute_not_exists(pk)", None),
            };
            let action = match new.get(shard) {
                Some(&stock) => {
                    let item = HashMap::from([
                        ("pk".to_owned(), s(key)),
                        ("stock".to_owned(), n(stock)),
                        ("price_cents".to_owned(), n(updated.price_cents)),
                        // The layout it belongs to: a read of another layout's shards is stale.
                        ("shards".to_owned(), n(updated.stock_shards)),
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
