//! Stock shards: a product with `stock_shards` above 1 keeps its stock in that many items,
//! `PRODUCT#<id>#STOCK#<k>`, instead of its own item (whose `stock` stays 0). Each shard carries
//! the price, so an order's write is conditioned on its shard alone: concurrent orders of a
//! flash sale land on different items and neither conflict nor share one item's write limit.
//! The stock is the sum of the shards; every decrement is conditioned on its own shard, so the
//! sum never goes below zero.
//!
//! The low-stock threshold is split into per-shard floors that add up to it, and the shards
//! are laid out so that each holds at least its floor whenever the sum is at or above the
//! threshold. An order taking from one shard no lower than its floor then cannot cross the
//! line, so it needs no other shard; an order that would go below a floor (the last units
//! above the line, a crossing, a quantity no shard can give) rewrites every shard conditioned
//! on all of them, so it knows the exact sum and records the one crossing. Units coming back
//! with a threshold, and edits that move units between shards (a new shard count, price or
//! threshold), rewrite every shard the same way.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use uuid::Uuid;

use super::{
    CatalogStock, DynamoStore, Item, TransactionError, adjustment_item, alert_item, build_err, from_item, n, pk,
    product_pk, s,
};
use crate::model::{Product, StockAlert, crosses_threshold};
use crate::store::{AdjustmentWrite, LowStockCheck, OrderStore, StoreError, UniqueKey};

pub(super) fn shard_pk(product: Uuid, shard: u32) -> String {
    format!("{}#STOCK#{shard}", product_pk(product))
}

/// `total` spread over `shards` as evenly as can be, the first shards taking the remainder.
pub(super) fn spread(total: i64, shards: u32) -> Vec<i64> {
    let count = i64::from(shards.max(1));
    (0..count).map(|k| total / count + i64::from(k < total % count)).collect()
}

/// The floors of a low-stock threshold: shard k keeps `floors[k]` units back from orders that
/// take from it alone. They add up to the threshold.
pub(super) fn floors(threshold: i64, shards: u32) -> Vec<i64> {
    spread(threshold, shards)
}

/// `total` laid over the shards so that, when it reaches the threshold, every shard holds at
/// least its floor: then an order taking from one shard down to its floor at most can never
/// take the sum below the threshold, and only orders that go below a floor need every shard.
pub(super) fn balanced(total: i64, threshold: i64, shards: u32) -> Vec<i64> {
    if total >= threshold {
        floors(threshold, shards).into_iter().zip(spread(total - threshold, shards)).map(|(f, r)| f + r).collect()
    } else {
        spread(total, shards)
    }
}

/// Which shards to take `quantity` from, given what each can give: one shard drawn at random
/// among those that can give it all (so concurrent orders spread out), else the fullest first.
/// `None` when all of them together can give too little.
pub(super) fn take_plan(available: &[i64], quantity: i64) -> Option<Vec<(u32, i64)>> {
    if available.iter().map(|a| (*a).max(0)).sum::<i64>() < quantity {
        return None;
    }
    let able: Vec<u32> =
        (0..available.len()).filter(|&k| available[k] >= quantity).filter_map(|k| u32::try_from(k).ok()).collect();
    if !able.is_empty() {
        return Some(vec![(able[fastrand::usize(..able.len())], quantity)]);
    }
    let mut fullest: Vec<(u32, i64)> =
        available.iter().enumerate().filter_map(|(k, &stock)| Some((u32::try_from(k).ok()?, stock))).collect();
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
    pub floors: Vec<i64>,
    /// The price the shards carry (every rewrite sets it on all of them).
    pub price_cents: i64,
    /// A fresh token per rewrite of every shard (an edit, a whole-product order, a refill
    /// below the line): a write conditioned on it is conditioned on the layout, the floors, the
    /// price and on no rewrite having landed since the read.
    pub generation: String,
}

impl ShardRead {
    pub fn total(&self) -> i64 {
        self.stocks.iter().sum()
    }

    /// The low-stock threshold the shards were laid out for.
    pub fn threshold(&self) -> i64 {
        self.floors.iter().sum()
    }

    /// What each shard can give without going below its floor.
    fn available(&self) -> Vec<i64> {
        self.stocks.iter().zip(&self.floors).map(|(stock, floor)| (stock - floor).max(0)).collect()
    }
}

/// How a sharded product's shards are to be laid out.
pub(super) struct ShardLayout {
    pub product: Uuid,
    pub shards: u32,
    pub threshold: i64,
    pub price_cents: i64,
}

impl ShardLayout {
    pub fn of(product: &Product) -> Self {
        Self {
            product: product.id,
            shards: product.stock_shards,
            threshold: product.low_stock_threshold,
            price_cents: product.price_cents,
        }
    }

    /// The layout the shards just read are in.
    fn as_read(product: Uuid, read: &ShardRead) -> Self {
        let shards = u32::try_from(read.stocks.len()).unwrap_or(u32::MAX);
        Self { product, shards, threshold: read.threshold(), price_cents: read.price_cents }
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
            let floors = items.iter().map(|item| number_of(item, "floor")).collect::<Option<_>>()?;
            let price_cents = number_of(items.first()?, "price_cents")?;
            let generation = match items.first()?.get("generation") {
                Some(AttributeValue::S(generation)) => generation.clone(),
                _ => return None,
            };
            Some(ShardRead { stocks, floors, price_cents, generation })
        };
        Ok(products.iter().map(|&(id, shards)| (id, read(id, shards))).collect())
    }

    /// One product's shards, if they are the `shards` its item named.
    pub(super) async fn read_shards_of(&self, product: Uuid, shards: u32) -> Result<Option<ShardRead>, StoreError> {
        Ok(self.read_shards(&[(product, shards)]).await?.remove(&product).flatten())
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

    /// Takes `quantity` from one shard while that leaves it at or above its `floor` (as laid
    /// out for the threshold the take was decided on), at `price` when given (an order is priced
    /// as it was read). ALL_OLD tells a drained shard from a repriced one.
    pub(super) fn take_from_shard(
        &self,
        product: Uuid,
        shard: u32,
        quantity: i64,
        floor: i64,
        price: Option<i64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut values = HashMap::from([
            (":quantity".to_owned(), n(quantity)),
            (":needed".to_owned(), n(quantity + floor)),
            (":floor".to_owned(), n(floor)),
        ]);
        let mut condition = "stock >= :needed AND floor = :floor".to_owned();
        if let Some(price) = price {
            condition.push_str(" AND price_cents = :price");
            values.insert(":price".to_owned(), n(price));
        }
        self.stock_update(shard_pk(product, shard), "SET stock = stock - :quantity", condition, values)
    }

    /// Takes from one shard drawn at random, without reading the shards: for an order that
    /// crosses no line, with the floors of the threshold it was decided on.
    pub(super) fn take_from_random_shard(
        &self,
        product: Uuid,
        shards: u32,
        threshold: i64,
        quantity: i64,
        price: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let shard = fastrand::u32(0..shards.max(1));
        let floor = floors(threshold, shards).get(shard as usize).copied().unwrap_or(0);
        self.take_from_shard(product, shard, quantity, floor, Some(price))
    }

    /// Gives `quantity` back to a shard drawn at random, while no rewrite has landed since
    /// `read` (so the shards are still laid out as read: a product deleted, resharded or given
    /// another threshold since fails the condition). Only for a read that shows every shard at
    /// or above its floor (no threshold, or a sum at or above it): takes since then keep them
    /// there, so units added to any one keep them there too.
    fn add_to_random_shard(
        &self,
        product: Uuid,
        read: &ShardRead,
        quantity: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let shards = u32::try_from(read.stocks.len()).map_err(build_err)?;
        let update = Update::builder()
            .table_name(&self.tables.products)
            .set_key(Some(pk(shard_pk(product, fastrand::u32(0..shards.max(1))))))
            .update_expression("SET stock = stock + :quantity")
            .condition_expression("generation = :generation")
            .expression_attribute_values(":quantity", n(quantity))
            .expression_attribute_values(":generation", s(read.generation.clone()))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The writes moving a sharded product's stock by `delta` from the shards as just `read`,
    /// under `check` (the low-stock check the move was decided with), at `price` when given:
    /// - a decrement that crosses no line and that the shards can give above their floors
    ///   takes from one shard, or from several, each conditioned on itself alone;
    /// - units coming back while the sum is at or above the threshold go to one shard;
    /// - anything else (a crossing, a take below the floors, units coming back below the line)
    ///   rewrites every shard, conditioned on all of them as read: the exact sum decides.
    ///
    /// `InsufficientStock` when the shards hold too little; `VersionConflict` when the check
    /// no longer holds for what was read.
    pub(super) fn move_shard_stock(
        &self,
        product: Uuid,
        read: &ShardRead,
        delta: i64,
        check: &LowStockCheck,
        price: Option<i64>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let (total, threshold) = (read.total(), read.threshold());
        if total + delta < 0 {
            return Err(StoreError::InsufficientStock(vec![product]));
        }
        if threshold != check.threshold || !check.holds(total, threshold, delta) {
            return Err(StoreError::VersionConflict);
        }
        if delta < 0
            && check.alert.is_none()
            && let Some(plan) = take_plan(&read.available(), -delta)
        {
            return plan
                .into_iter()
                .map(|(shard, take)| {
                    let floor = read.floors.get(shard as usize).copied().unwrap_or(0);
                    self.take_from_shard(product, shard, take, floor, price)
                })
                .collect();
        }
        if delta > 0 && total >= threshold {
            return Ok(vec![self.add_to_random_shard(product, read, delta)?]);
        }
        self.rewrite_shards(Some(read), &ShardLayout::as_read(product, read), total + delta)
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
        let same_layout = previous.stock_shards == updated.stock_shards
            && previous.price_cents == updated.price_cents
            && previous.low_stock_threshold == updated.low_stock_threshold;
        if same_layout && delta == 0 {
            // A name or a description: the shards stay as they are, and so do orders on them.
            return Ok((CatalogStock::Set { held: 0, to: 0 }, Vec::new()));
        }
        let (held, held_total, item_held) = if previous.is_sharded() {
            // Resharded or deleted since the domain's read: that read is stale.
            let read = self.read_shards_of(previous.id, previous.stock_shards).await?;
            let read = read.ok_or(StoreError::VersionConflict)?;
            let total = read.total();
            (Some(read), total, 0)
        } else {
            // The item's stock as it is now, not as the domain read it: orders land meanwhile,
            // and the write is conditioned on exactly this value.
            let item = self.get_item(&self.tables.products, product_pk(previous.id)).await?;
            let stock = item.as_ref().filter(|item| shards_of(item) == 1).and_then(|item| number_of(item, "stock"));
            let stock = stock.ok_or(StoreError::VersionConflict)?;
            (None, stock, stock)
        };
        let total = held_total + delta;
        let crosses = crosses_threshold(held_total, delta, previous.low_stock_threshold, updated.low_stock_threshold);
        if total < 0 || crosses != alert.is_some() || alert.is_some_and(|a| a.stock != total) {
            return Err(StoreError::VersionConflict);
        }
        let (item_to, layout) = if updated.is_sharded() {
            (0, ShardLayout::of(updated))
        } else {
            // Back to the item: every shard goes.
            (total, ShardLayout { shards: 0, ..ShardLayout::of(updated) })
        };
        let writes = self.rewrite_shards(held.as_ref(), &layout, total)?;
        Ok((CatalogStock::Set { held: item_held, to: item_to }, writes))
    }

    /// A stock adjustment of a sharded product, moved as [`Self::move_shard_stock`] decides,
    /// with the adjustment's record and its alert.
    pub(super) async fn adjust_sharded_stock(&self, write: AdjustmentWrite<'_>) -> Result<(), StoreError> {
        let (adjustment, check) = (write.adjustment, write.low_stock);
        let product = adjustment.product_id;
        // Deleted or resharded since it was read: stale.
        let read = self.read_shards_of(product, write.stock_shards).await?.ok_or(StoreError::VersionConflict)?;
        // A used key first (the first failed condition is the one reported), then the shards.
        let mut actions = match write.idempotency {
            Some(record) => vec![self.save_idempotency(record, adjustment.at)?],
            None => Vec::new(),
        };
        let keyed = actions.len();
        match self.move_shard_stock(product, &read, adjustment.delta, check, None) {
            Ok(moves) => actions.extend(moves),
            // Refused from the read alone: a used key still comes first, as on SQLite.
            Err(refused) => {
                let taken = match write.idempotency {
                    Some(record) => self
                        .get_idempotency(record.customer_id, &record.key)
                        .await?
                        .is_some_and(|saved| saved.expires_at > adjustment.at),
                    None => false,
                };
                return Err(if taken { StoreError::Duplicate(UniqueKey::IdempotencyKey) } else { refused });
            }
        }
        let shard_actions = actions.len();
        let table = &self.tables.products;
        actions.push(self.put(table, adjustment_item(adjustment)?, "attribute_not_exists(pk)", None)?);
        if let Some(alert) = &check.alert {
            actions.push(self.put(table, alert_item(alert)?, "attribute_not_exists(pk)", None)?);
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(i)) if i < keyed => {
                Err(StoreError::Duplicate(UniqueKey::IdempotencyKey))
            }
            Err(TransactionError::ConditionFailed(i)) if i < shard_actions => Err(StoreError::VersionConflict),
            Err(TransactionError::ConditionFailed(_)) => {
                Err(StoreError::Backend("adjustment or alert id collision".into()))
            }
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    /// Rewrites every shard of `layout` (and drops the shards `held` had beyond them) so they
    /// hold `total`, balanced over its floors, under a new generation; each write is conditioned
    /// on the shard as `held` read it (its stock and generation): a write that landed since fails
    /// the transaction, so no unit is lost or made up. `layout.shards` 0 drops them all (the
    /// stock goes back to the item).
    pub(super) fn rewrite_shards(
        &self,
        held: Option<&ShardRead>,
        layout: &ShardLayout,
        total: i64,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let new = if layout.shards > 1 { balanced(total, layout.threshold, layout.shards) } else { Vec::new() };
        let new_floors = floors(layout.threshold, layout.shards);
        let generation = Uuid::now_v7().to_string();
        let held_stocks = held.map_or(&[][..], |read| &read.stocks[..]);
        let count = held_stocks.len().max(new.len());
        let mut actions = Vec::new();
        for shard in 0..count {
            let key = shard_pk(layout.product, u32::try_from(shard).map_err(build_err)?);
            let (condition, values) = match (held, held_stocks.get(shard)) {
                (Some(read), Some(&stock)) => (
                    "stock = :held AND generation = :held_generation",
                    Some(HashMap::from([
                        (":held".to_owned(), n(stock)),
                        (":held_generation".to_owned(), s(read.generation.clone())),
                    ])),
                ),
                _ => ("attribute_not_exists(pk)", None),
            };
            let action = match new.get(shard) {
                Some(&stock) => {
                    let item = HashMap::from([
                        ("pk".to_owned(), s(key)),
                        ("stock".to_owned(), n(stock)),
                        ("price_cents".to_owned(), n(layout.price_cents)),
                        // The layout it belongs to: a read of another layout's shards is stale.
                        ("shards".to_owned(), n(layout.shards)),
                        ("floor".to_owned(), n(new_floors.get(shard).copied().unwrap_or(0))),
                        ("generation".to_owned(), s(generation.clone())),
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
    use super::{balanced, floors, spread, take_plan};

    #[test]
    fn spread_keeps_the_exact_total() {
        assert_eq!(spread(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(spread(3, 4), vec![1, 1, 1, 0]);
        assert_eq!(spread(0, 2), vec![0, 0]);
        assert_eq!(spread(7, 1), vec![7]);
    }

    #[test]
    fn at_or_above_the_threshold_every_shard_holds_its_floor() {
        assert_eq!(floors(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(balanced(20, 10, 4), vec![6, 6, 4, 4]);
        for total in 10..40 {
            let laid = balanced(total, 10, 4);
            assert_eq!(laid.iter().sum::<i64>(), total);
            assert!(laid.iter().zip(floors(10, 4)).all(|(stock, floor)| *stock >= floor), "{total}: {laid:?}");
        }
        assert_eq!(balanced(7, 10, 4).iter().sum::<i64>(), 7, "below the line: any layout of the exact sum");
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
