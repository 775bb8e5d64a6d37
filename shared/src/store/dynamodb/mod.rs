//! The production backend: DynamoDB through aws-sdk-dynamodb, items via serde_dynamo.
//! Unique keys are guard items written in the same TransactWriteItems as the entity, versions
//! are condition expressions, and category counts are updated in the same transaction, so
//! every rule holds under any number of concurrent Lambda instances. The table layout is
//! documented in [`schema`].

pub mod schema;
mod stock_shards;
pub mod stream;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use time::OffsetDateTime;

use super::{
    AccountLogin, AccountStore, AdjustmentWrite, AlertStore, CatalogStore, Cooldown, ExpiryStore, FIRST_RELAY_AFTER,
    HoldRelease, Login, LowStockCheck, NewOrderWrite, NoticeClaim, NoticeStore, OrderContext, OrderFilter, OrderStore,
    Page, PageRequest, PasswordChange, PaymentChange, PaymentFilter, PaymentStore, ProductFilter, SessionStore,
    StoreError, TokenCheck, TransitionWrite, UniqueKey, attempt_key, counter_deltas, counters_from, epoch_millis,
    from_epoch_millis, hold_release, refunds, token,
};
use crate::model::{
    Admin, Category, CategorySummary, Customer, IdempotencyRecord, Notice, Order, OrderCounters, OrderStatus,
    PasswordReset, Payment, Principal, Product, Role, StockAdjustment, StockAlert,
};
use crate::retry::backoff;

type Item = HashMap<String, AttributeValue>;

/// Attempts for a transaction that keeps meeting `TransactionConflict` on a hot item.
const TRANSACTION_ATTEMPTS: usize = 20;
/// Index pages read per list request before returning a short page (selective filters).
const MAX_QUERY_ROUNDS: usize = 5;
/// BatchGetItem's limit per request.
const BATCH_GET_MAX: usize = 100;
/// TransactWriteItems' limit per request.
const MAX_TRANSACTION_ACTIONS: usize = 100;

/// The three DynamoDB tables (`crate::config::table_names_from_env` reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub customers: String,
    pub products: String,
    pub orders: String,
}

impl TableNames {
    /// Names with a common prefix, so tests can create a fresh set per test.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            customers: format!("{prefix}customers"),
            products: format!("{prefix}products"),
            orders: format!("{prefix}orders"),
        }
    }
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
    /// The orders table's stream feeds the notification worker (see [`stream`]), so the
    /// callers of a write that saves a notice send no message of their own.
    notices_by_stream: bool,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self { client, tables, notices_by_stream: false }
    }

    /// Declares that the orders table's stream relays every notice the store saves to the
    /// notification worker (the deployed stack: `NOTICE_RELAY=stream`).
    pub fn with_notices_relayed_by_stream(mut self) -> Self {
        self.notices_by_stream = true;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &TableNames {
        &self.tables
    }
}

/// An SDK error as a store error: transient ones (throttling, network) are `Unavailable`.
pub(crate) fn sdk_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match crate::aws::describe(operation, &err) {
        (detail, true) => StoreError::Unavailable(detail),
        (detail, false) => StoreError::Backend(detail),
    }
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("building request: {e}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A timestamp as the entities serialize it (RFC 3339), for attributes set by an update.
fn rfc3339(t: OffsetDateTime) -> Result<AttributeValue, StoreError> {
    Ok(s(t.format(&time::format_description::well_known::Rfc3339).map_err(build_err)?))
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Serializes an entity. Empty strings are left out (read back through `#[serde(default)]`):
/// DynamoDB Local, like DynamoDB before 2020, refuses them.
fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    let mut item: Item =
        serde_dynamo::to_item(value).map_err(|e| StoreError::Backend(format!("serializing item: {e}")))?;
    item.retain(|_, v| !matches!(v, AttributeValue::S(text) if text.is_empty()));
    Ok(item)
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Backend(format!("corrupt item: {e}")))
}

fn pk(value: String) -> Item {
    HashMap::from([("pk".to_owned(), s(value))])
}

fn customer_pk(id: Uuid) -> String {
    format!("CUSTOMER#{id}")
}
fn login_pk(key: &str) -> String {
    format!("LOGIN#{key}")
}
fn admin_pk(id: Uuid) -> String {
    format!("ADMIN#{id}")
}
fn revoked_pk(jti: Uuid) -> String {
    format!("REVOKED#{jti}")
}
fn sessions_ended_pk(subject: Uuid) -> String {
    format!("SESSIONS_ENDED#{subject}")
}
fn password_reset_pk(token_hash: &str) -> String {
    format!("PASSWORD_RESET#{token_hash}")
}
fn attempts_pk(key: &str, window_end: OffsetDateTime) -> String {
    format!("ATTEMPTS#{}", attempt_key(key, window_end))
}
fn product_pk(id: Uuid) -> String {
    format!("PRODUCT#{id}")
}
fn product_name_pk(key: &str) -> String {
    format!("PRODUCT_NAME#{key}")
}
fn category_pk(category: &Category) -> String {
    format!("CATEGORY#{category}")
}
/// Notice items' keys start so: the stream relay recognises new notices by it.
const NOTICE_PREFIX: &str = "NOTICE#";

fn notice_pk(id: Uuid) -> String {
    format!("{NOTICE_PREFIX}{id}")
}

/// A notice in the customer's list (`gsi1`) and, until first claimed, in the relay's outbox
/// (`gsi2`, sparse), with its delivery lease and relay time beside it.
fn notice_item(notice: &Notice) -> Result<Item, StoreError> {
    let mut item = to_item(notice)?;
    item.insert("pk".into(), s(notice_pk(notice.id)));
    item.insert("gsi1pk".into(), s(format!("NOTICES#{}", notice.customer_id)));
    item.insert("gsi1sk".into(), s(notice.id.to_string()));
    item.insert("gsi2pk".into(), s("NOTICES_UNSENT"));
    item.insert("gsi2sk".into(), s(notice.id.to_string()));
    item.insert("lease_until_ms".into(), n(0));
    item.insert("relay_after_ms".into(), n(epoch_millis(notice.created_at + FIRST_RELAY_AFTER)));
    item.insert("attempts".into(), n(0));
    Ok(item)
}

/// What the relay reads of an unsent notice.
#[derive(Deserialize)]
struct NoticeDelivery {
    id: Uuid,
    attempts: u32,
    relay_after_ms: i64,
}

fn adjustment_pk(id: Uuid) -> String {
    format!("ADJUSTMENT#{id}")
}

fn alert_pk(id: Uuid) -> String {
    format!("ALERT#{id}")
}

fn adjustment_item(adjustment: &StockAdjustment) -> Result<Item, StoreError> {
    let mut item = to_item(adjustment)?;
    item.insert("pk".into(), s(adjustment_pk(adjustment.id)));
    item.insert("gsi1pk".into(), s(format!("ADJUSTMENTS#{}", adjustment.product_id)));
    item.insert("gsi1sk".into(), s(adjustment.id.to_string()));
    Ok(item)
}

/// An alert; while unpublished it is also in the sparse outbox index `gsi2`.
fn alert_item(alert: &StockAlert) -> Result<Item, StoreError> {
    let mut item = to_item(alert)?;
    item.insert("pk".into(), s(alert_pk(alert.id)));
    item.insert("gsi1pk".into(), s("ALERT"));
    item.insert("gsi1sk".into(), s(alert.id.to_string()));
    if alert.published_at.is_none() {
        item.insert("gsi2pk".into(), s("ALERTS_UNPUBLISHED"));
        item.insert("gsi2sk".into(), s(alert.id.to_string()));
    }
    Ok(item)
}

/// The condition a [`LowStockCheck`] puts on a write moving the stock by `delta` (see there);
/// adds its values to `values`.
fn low_stock_condition(check: &LowStockCheck, delta: i64, values: &mut Item) -> String {
    values.insert(":threshold".into(), n(check.threshold));
    match &check.alert {
        Some(alert) => {
            values.insert(":before".into(), n(alert.stock - delta));
            "low_stock_threshold = :threshold AND stock = :before".to_owned()
        }
        // Crossing needs stock in [threshold, threshold - delta): empty unless stock goes down.
        None if delta < 0 => {
            values.insert(":window_end".into(), n(check.threshold - delta));
            "low_stock_threshold = :threshold AND (stock < :threshold OR stock >= :window_end)".to_owned()
        }
        None => "low_stock_threshold = :threshold".to_owned(),
    }
}

fn cooldown_pk(customer: Uuid) -> String {
    format!("COOLDOWN#{customer}")
}
fn order_pk(id: Uuid) -> String {
    format!("ORDER#{id}")
}
fn idempotency_pk(customer: Uuid, key: &str) -> String {
    format!("IDEMPOTENCY#{customer}#{key}")
}
fn status_partition(status: OrderStatus) -> String {
    format!("STATUS#{}", status.as_str())
}
/// Due times sort as zero-padded milliseconds, then the id for uniqueness.
fn due_sort_key(order: &Order) -> String {
    format!("{:015}#{}", epoch_millis(order.due_at()), order.id)
}

/// Counter updates are spread over this many items, so concurrent orders do not all
/// contend for one hot counter item; reading the metrics sums the shards.
const METRICS_SHARDS: u32 = 10;

fn payment_pk(id: Uuid) -> String {
    format!("PAYMENT#{id}")
}

/// A refund the gateway has yet to confirm: an outbox entry in the `REFUNDS_PENDING` partition
/// of `gsi2`, written with the transition that refunds the payment, deleted once confirmed.
fn refund_pk(payment: Uuid) -> String {
    format!("REFUND#{payment}")
}

fn refund_item(payment: Uuid) -> Item {
    let mut item = pk(refund_pk(payment));
    item.insert("payment_id".into(), s(payment.to_string()));
    item.insert("gsi2pk".into(), s("REFUNDS_PENDING"));
    item.insert("gsi2sk".into(), s(refund_turn(payment, 0)));
    item
}

/// A pending refund's place in `REFUNDS_PENDING`: when to try it next (epoch ms, zero-padded so
/// the keys sort by it), then the payment.
fn refund_turn(payment: Uuid, retry_after_ms: i64) -> String {
    format!("{retry_after_ms:020}#{payment}")
}

#[derive(Deserialize)]
struct PendingRefund {
    payment_id: Uuid,
}

fn payment_item(payment: &Payment) -> Result<Item, StoreError> {
    let mut item = to_item(payment)?;
    item.insert("pk".into(), s(payment_pk(payment.id)));
    item.insert("gsi1pk".into(), s(format!("ORDER_PAYMENTS#{}", payment.order_id)));
    item.insert("gsi1sk".into(), s(payment.id.to_string()));
    item.insert("gsi3pk".into(), s("PAYMENT"));
    item.insert("gsi3sk".into(), s(payment.id.to_string()));
    Ok(item)
}

fn order_item(order: &Order) -> Result<Item, StoreError> {
    let mut item = to_item(order)?;
    item.insert("pk".into(), s(order_pk(order.id)));
    item.insert("gsi1pk".into(), s(format!("CUSTOMER#{}", order.customer_id)));
    item.insert("gsi1sk".into(), s(order.id.to_string()));
    item.insert("gsi2pk".into(), s(status_partition(order.status)));
    item.insert("gsi2sk".into(), s(due_sort_key(order)));
    item.insert("gsi3pk".into(), s("ORDER"));
    item.insert("gsi3sk".into(), s(order.id.to_string()));
    Ok(item)
}

fn customer_item(customer: &Customer) -> Result<Item, StoreError> {
    let mut item = to_item(customer)?;
    item.insert("pk".into(), s(customer_pk(customer.id)));
    item.insert("gsi1pk".into(), s("CUSTOMER"));
    item.insert("gsi1sk".into(), s(customer.id.to_string()));
    Ok(item)
}

/// A customer's cooldown as an item: slots as a number set of epoch milliseconds (absent when
/// empty: DynamoDB has no empty sets), so a cancelled deferred order's slot is one `DELETE`.
fn cooldown_item(customer: Uuid, cooldown: &Cooldown) -> Item {
    let mut item = pk(cooldown_pk(customer));
    item.insert("version".into(), n(cooldown.version));
    if !cooldown.slots.is_empty() {
        item.insert(
            "slots".into(),
            AttributeValue::Ns(cooldown.slots.iter().map(|s| epoch_millis(*s).to_string()).collect()),
        );
    }
    item.insert("unpaid_units".into(), n(cooldown.unpaid_units));
    item.insert("unpaid_cents".into(), n(cooldown.unpaid_cents));
    item.insert(schema::TTL_ATTRIBUTE.into(), n(cooldown.expires_at.unix_timestamp()));
    item
}

fn cooldown_from_item(item: Item) -> Result<Cooldown, StoreError> {
    let number = |name: &str| -> Result<i64, StoreError> {
        match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|e| StoreError::Backend(format!("cooldown {name}: {e}"))),
            _ => Ok(0),
        }
    };
    let mut slots = match item.get("slots") {
        Some(AttributeValue::Ns(values)) => values
            .iter()
            .map(|v| {
                v.parse().map_err(|e| StoreError::Backend(format!("cooldown slot: {e}"))).and_then(from_epoch_millis)
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    slots.sort();
    Ok(Cooldown {
        version: number("version")? as u64,
        slots,
        unpaid_units: number("unpaid_units")?,
        unpaid_cents: number("unpaid_cents")?,
        expires_at: OffsetDateTime::from_unix_timestamp(number(schema::TTL_ATTRIBUTE)?)
            .map_err(|e| StoreError::Backend(format!("cooldown expiry: {e}")))?,
    })
}

fn product_item(product: &Product) -> Result<Item, StoreError> {
    let mut item = to_item(product)?;
    if product.is_sharded() {
        // Its shards hold the stock (see [`stock_shards`]).
        item.insert("stock".into(), n(0));
    }
    let name_key = product.name.key();
    item.insert("pk".into(), s(product_pk(product.id)));
    item.insert("gsi1pk".into(), s("PRODUCT"));
    item.insert("gsi1sk".into(), s(name_key.clone()));
    item.insert("gsi2pk".into(), s(format!("IN_CATEGORY#{}", product.category)));
    item.insert("gsi2sk".into(), s(name_key));
    Ok(item)
}

/// A write of a product item's own stock holds only while the item keeps its stock (a reshard
/// since the read moved it into shards: the write must fail, not add units no read counts).
const UNSHARDED: &str = "(attribute_not_exists(stock_shards) OR stock_shards = :one)";

/// How a catalog edit writes the product item's own stock.
#[derive(Debug, Clone, Copy)]
enum CatalogStock {
    /// Moved by the edit's delta, so orders since the read still count.
    Move,
    /// Set to `to`, if still `held`: the stock moves between the item and its shards.
    Set { held: i64, to: i64 },
}

/// The conditions of an edit moving the item's stock by its delta: never below zero, and the
/// low-stock line as the edit draws it, from the old threshold to the new one.
fn add_low_stock_window(
    previous: &Product,
    updated: &Product,
    alert: Option<&StockAlert>,
    condition: &mut String,
    values: &mut Item,
) {
    let delta = updated.stock - previous.stock;
    if delta < 0 {
        condition.push_str(" AND stock >= :taken");
        values.insert(":taken".to_owned(), n(-delta));
    }
    match alert {
        Some(alert) => {
            condition.push_str(" AND stock = :before");
            values.insert(":before".to_owned(), n(alert.stock - delta));
        }
        None if previous.low_stock_threshold < updated.low_stock_threshold - delta => {
            condition.push_str(" AND (stock < :window_start OR stock >= :window_end)");
            values.insert(":window_start".to_owned(), n(previous.low_stock_threshold));
            values.insert(":window_end".to_owned(), n(updated.low_stock_threshold - delta));
        }
        None => {}
    }
}

/// An order's transaction, with where its parts are, to read a cancellation.
struct OrderActions {
    writes: Vec<TransactWriteItem>,
    /// The line each stock write (the first writes) takes from.
    stock_lines: Vec<usize>,
    cooldown: usize,
    idempotency: Option<usize>,
}

/// What a cancelled order transaction means.
enum Refusal {
    /// Only a shard drawn without reading it held too little: plan on the shards as they are.
    DrainedShard,
    Error(StoreError),
}

/// Reads the failed conditions of an order's transaction, in the order of precedence: a used
/// key, a stale read (the cooldown moved; a product was deleted, repriced, resharded or moved
/// across its low-stock line since it was read), a drained shard, short stock. ALL_OLD tells
/// a price from the stock.
fn refusal(write: &NewOrderWrite<'_>, actions: &OrderActions, failed: &FailedConditions) -> Refusal {
    if failed.iter().any(|(i, _)| Some(*i) == actions.idempotency) {
        return Refusal::Error(StoreError::Duplicate(UniqueKey::IdempotencyKey));
    }
    let mut stale = failed.iter().any(|(i, _)| *i == actions.cooldown);
    let (mut drained, mut short) = (false, Vec::new());
    for (index, old) in failed {
        let Some(&line_index) = actions.stock_lines.get(*index) else { continue };
        let (Some(line), Some(&shards)) = (write.order.lines.get(line_index), write.stock_shards.get(line_index))
        else {
            continue;
        };
        let number = |name: &str| old.as_ref().and_then(|item| stock_shards::number_of(item, name));
        let priced = number("price_cents") == Some(line.unit_price_cents);
        let item_shards = old.as_ref().map_or(1, stock_shards::shards_of);
        match number("stock") {
            Some(_) if priced && shards > 1 => drained = true,
            Some(stock) if priced && item_shards == 1 && stock < line.quantity => short.push(line.product_id),
            _ => stale = true,
        }
    }
    if stale {
        Refusal::Error(StoreError::VersionConflict)
    } else if drained {
        Refusal::DrainedShard
    } else if !short.is_empty() {
        Refusal::Error(StoreError::InsufficientStock(short))
    } else {
        Refusal::Error(StoreError::Backend(format!("order {} already exists", write.order.id)))
    }
}

/// A login item: the uniqueness guard of an email or username, and the way in.
#[derive(Serialize, Deserialize)]
struct LoginItem {
    subject_id: Uuid,
    role: Role,
    password_hash: String,
}

/// A product-count item per category, kept in step with the products in one transaction.
#[derive(Deserialize)]
struct CategoryCount {
    name: Category,
    product_count: i64,
}

/// The actions whose condition failed, with the item as it was (ALL_OLD where requested).
type FailedConditions = Vec<(usize, Option<Item>)>;

enum CancelledTransaction {
    Conditions(FailedConditions),
    Store(StoreError),
}

/// What a cancelled transaction tells its caller.
enum TransactionError {
    /// The condition of the action at this index failed.
    ConditionFailed(usize),
    Store(StoreError),
}

impl From<StoreError> for TransactionError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

/// One page of an index, in index order (or reversed).
struct IndexQuery<'a> {
    table: &'a str,
    index: &'static str,
    partition: String,
    sort_prefix: Option<String>,
    /// Only sort keys up to and including this.
    sort_at_most: Option<String>,
    descending: bool,
}

impl<'a> IndexQuery<'a> {
    fn new(table: &'a str, index: &'static str, partition: impl Into<String>) -> Self {
        Self { table, index, partition: partition.into(), sort_prefix: None, sort_at_most: None, descending: false }
    }
}

impl DynamoStore {
    fn put(
        &self,
        table: &str,
        item: Item,
        condition: &str,
        values: Option<Item>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(&self, table: &str, key: String) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder().table_name(table).set_key(Some(pk(key))).build().map_err(build_err)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn unique_guard(&self, table: &str, key: String, owner: Uuid) -> Result<TransactWriteItem, StoreError> {
        let mut item = pk(key);
        item.insert("owner_id".into(), s(owner.to_string()));
        self.put(table, item, "attribute_not_exists(pk)", None)
    }

    fn new_login(
        &self,
        login: &str,
        subject_id: Uuid,
        role: Role,
        password_hash: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = to_item(&LoginItem { subject_id, role, password_hash: password_hash.to_owned() })?;
        item.insert("pk".into(), s(login_pk(login)));
        self.put(&self.tables.customers, item, "attribute_not_exists(pk)", None)
    }

    /// Ends the account's sessions begun before `before`, in a password change's transaction,
    /// unless a later end is there already (then the change runs again without it).
    fn end_sessions_update(
        &self,
        principal: &Principal,
        before: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.tables.customers)
            .set_key(Some(pk(sessions_ended_pk(principal.id))))
            .update_expression(END_SESSIONS)
            .condition_expression(LATER_END_ONLY)
            .set_expression_attribute_names(Some(end_sessions_names()))
            .set_expression_attribute_values(Some(end_sessions_values(before, until)))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn count_category(&self, category: &Category, delta: i64) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.tables.products)
            .set_key(Some(pk(category_pk(category))))
            .update_expression("SET gsi1pk = :kind, gsi1sk = :name, #name = :name ADD product_count :delta")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":kind", s("CATEGORY"))
            .expression_attribute_values(":name", s(category.as_str()))
            .expression_attribute_values(":delta", n(delta))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn version_is(version: u64) -> Option<Item> {
        Some(HashMap::from([(":expected".to_owned(), n(version))]))
    }

    /// Runs a transaction; reports the first action whose condition failed.
    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<(), TransactionError> {
        match self.transact_reporting(actions).await {
            Ok(()) => Ok(()),
            Err(CancelledTransaction::Conditions(failed)) => {
                Err(TransactionError::ConditionFailed(failed.first().map(|(i, _)| *i).unwrap_or(0)))
            }
            Err(CancelledTransaction::Store(e)) => Err(TransactionError::Store(e)),
        }
    }

    /// Runs a transaction, retrying with backoff while it only meets transaction conflicts
    /// or throttling; reports every action whose condition failed.
    async fn transact_reporting(&self, actions: Vec<TransactWriteItem>) -> Result<(), CancelledTransaction> {
        // The token of an attempt DynamoDB said was still in progress: it is sent again, so that
        // attempt completes (or is answered as done) instead of a new one running against it.
        let mut in_progress: Option<String> = None;
        for attempt in 0..TRANSACTION_ATTEMPTS {
            // A token per attempt makes the SDK's own resend of this attempt (a lost response)
            // idempotent, instead of failing our conditions against our own write.
            let attempt_token = in_progress.take().unwrap_or_else(|| Uuid::now_v7().to_string());
            let err = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .client_request_token(attempt_token.clone())
                // What each write costs, for benchmarks and the SDK's debug logs; it is free.
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let reasons: Vec<(String, Option<Item>)> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| (r.code().unwrap_or("None").to_owned(), r.item().cloned()))
                    .collect(),
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                    in_progress = Some(attempt_token);
                    vec![("TransactionConflict".into(), None)]
                }
                _ => return Err(CancelledTransaction::Store(sdk_error("TransactWriteItems", err))),
            };
            let failed: FailedConditions = reasons
                .iter()
                .enumerate()
                .filter(|(_, (code, _))| code == "ConditionalCheckFailed")
                .map(|(i, (_, item))| (i, item.clone()))
                .collect();
            if !failed.is_empty() {
                return Err(CancelledTransaction::Conditions(failed));
            }
            let retryable = reasons.iter().all(|(code, _)| {
                matches!(
                    code.as_str(),
                    "None" | "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                )
            });
            if !retryable {
                let codes: Vec<&str> = reasons.iter().map(|(c, _)| c.as_str()).collect();
                return Err(CancelledTransaction::Store(StoreError::Backend(format!(
                    "transaction cancelled: {codes:?}"
                ))));
            }
            backoff(attempt).await;
        }
        Err(CancelledTransaction::Store(StoreError::Unavailable(
            "transaction kept conflicting with concurrent writes".into(),
        )))
    }

    /// The shards of an order's sharded lines, read to plan their takes. Resharded, deleted or
    /// repriced since the order was decided: a stale read, which wins over short stock.
    async fn shards_for_order(
        &self,
        write: &NewOrderWrite<'_>,
    ) -> Result<HashMap<Uuid, stock_shards::ShardRead>, StoreError> {
        let lines = || write.order.lines.iter().zip(write.stock_shards).filter(|(_, shards)| **shards > 1);
        let sharded: Vec<(Uuid, u32)> = lines().map(|(line, shards)| (line.product_id, *shards)).collect();
        let mut read = self.read_shards(&sharded).await?;
        let mut planned = HashMap::new();
        for (line, _) in lines() {
            match read.remove(&line.product_id).flatten() {
                Some(shards) if shards.price_cents == line.unit_price_cents => {
                    planned.insert(line.product_id, shards);
                }
                _ => return Err(StoreError::VersionConflict),
            }
        }
        let short: Vec<Uuid> = lines()
            .map(|(line, _)| line)
            .filter(|line| planned.get(&line.product_id).is_some_and(|s| s.total() < line.quantity))
            .map(|line| line.product_id)
            .collect();
        if !short.is_empty() {
            return Err(StoreError::InsufficientStock(short));
        }
        Ok(planned)
    }

    /// The writes placing an order: each line's stock, taken from its product's item or from
    /// its shards (as planned on `held` when they were read, else from one drawn at random);
    /// the order; the cooldown; the idempotency key; the counters; alerts; the notice.
    fn order_actions(
        &self,
        write: &NewOrderWrite<'_>,
        held: Option<&HashMap<Uuid, stock_shards::ShardRead>>,
    ) -> Result<OrderActions, StoreError> {
        let order = write.order;
        let mut writes = Vec::with_capacity(2 * order.lines.len() + 4);
        let mut stock_lines = Vec::with_capacity(order.lines.len());
        let lines = order.lines.iter().zip(write.low_stock).zip(write.stock_shards);
        for (index, ((line, check), &shards)) in lines.enumerate() {
            let (product, quantity, price) = (line.product_id, line.quantity, line.unit_price_cents);
            let takes = match held.and_then(|held| held.get(&product)) {
                _ if shards <= 1 => vec![self.move_stock(product, -quantity, Some((price, check)))?],
                Some(read) => self.move_shard_stock(product, read, -quantity, check, Some(price))?,
                None => vec![self.take_from_random_shard(product, shards, check.threshold, quantity, price)?],
            };
            stock_lines.extend(std::iter::repeat_n(index, takes.len()));
            writes.extend(takes);
        }
        writes.push(self.put(&self.tables.orders, order_item(order)?, "attribute_not_exists(pk)", None)?);
        let cooldown = cooldown_item(order.customer_id, &write.cooldown);
        writes.push(match write.expected_cooldown {
            None => self.put(&self.tables.customers, cooldown, "attribute_not_exists(pk)", None)?,
            // A cooldown written before cooldowns had versions reads as version 0.
            Some(0) => self.put(&self.tables.customers, cooldown, "attribute_not_exists(version)", None)?,
            Some(version) => {
                self.put(&self.tables.customers, cooldown, "version = :expected", Self::version_is(version))?
            }
        });
        let cooldown_index = writes.len() - 1;
        let idempotency_index = match write.idempotency {
            Some(record) => {
                writes.push(self.save_idempotency(record, order.created_at)?);
                Some(writes.len() - 1)
            }
            None => None,
        };
        writes.extend(self.count_orders(&counter_deltas(None, order))?);
        for alert in write.low_stock.iter().filter_map(|check| check.alert.as_ref()) {
            writes.push(self.put(&self.tables.products, alert_item(alert)?, "attribute_not_exists(pk)", None)?);
        }
        if let Some(notice) = write.notice {
            writes.push(self.put(&self.tables.orders, notice_item(notice)?, "attribute_not_exists(pk)", None)?);
        }
        if writes.len() > MAX_TRANSACTION_ACTIONS {
            // Only an order of many lines, each taking from several nearly empty shards.
            return Err(StoreError::Unavailable("the order spans too many stock shards for one transaction".into()));
        }
        Ok(OrderActions { writes, stock_lines, cooldown: cooldown_index, idempotency: idempotency_index })
    }

    /// Saves an idempotency record unless a live one holds the key.
    fn save_idempotency(
        &self,
        record: &IdempotencyRecord,
        now: OffsetDateTime,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = to_item(record)?;
        item.insert("pk".into(), s(idempotency_pk(record.customer_id, &record.key)));
        item.insert("expires_ms".into(), n(epoch_millis(record.expires_at)));
        item.insert(schema::TTL_ATTRIBUTE.into(), n(record.expires_at.unix_timestamp()));
        let now = HashMap::from([(":now".to_owned(), n(epoch_millis(now)))]);
        self.put(&self.tables.orders, item, "attribute_not_exists(pk) OR expires_ms <= :now", Some(now))
    }

    /// Adds counter deltas to one random shard (see [`METRICS_SHARDS`]).
    fn count_orders(&self, deltas: &[(String, i64)]) -> Result<Option<TransactWriteItem>, StoreError> {
        if deltas.is_empty() {
            return Ok(None);
        }
        let mut update = Update::builder()
            .table_name(&self.tables.orders)
            .set_key(Some(pk(format!("METRICS#{}", fastrand::u32(0..METRICS_SHARDS)))));
        let mut adds = Vec::new();
        for (i, (name, delta)) in deltas.iter().enumerate() {
            adds.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), name)
                .expression_attribute_values(format!(":c{i}"), n(delta));
        }
        let update = update.update_expression(format!("ADD {}", adds.join(", "))).build().map_err(build_err)?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    /// Moves `quantity` units of a product's stock: a reservation (negative) only while
    /// enough stock remains at the expected price, with its low-stock check; a return
    /// (positive) only while it exists.
    fn move_stock(
        &self,
        product: Uuid,
        quantity: i64,
        reservation: Option<(i64, &LowStockCheck)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut values = HashMap::from([(":delta".to_owned(), n(quantity)), (":one".to_owned(), n(1))]);
        let condition = match reservation {
            Some((price, check)) => {
                values.insert(":needed".into(), n(-quantity));
                values.insert(":price".into(), n(price));
                format!(
                    "stock >= :needed AND price_cents = :price AND {} AND {UNSHARDED}",
                    low_stock_condition(check, quantity, &mut values)
                )
            }
            None => format!("attribute_exists(pk) AND {UNSHARDED}"),
        };
        // Stock is not part of the version: reservations never contend with catalog edits.
        self.stock_update(product_pk(product), "SET stock = stock + :delta", condition, values)
    }

    /// A conditional update of a stock attribute (a product's item or one of its stock shards)
    /// in a transaction; ALL_OLD on a failed condition tells short stock from a stale read.
    fn stock_update(
        &self,
        key: String,
        expression: &str,
        condition: String,
        values: Item,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.tables.products)
            .set_key(Some(pk(key)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Gives back what a transition no longer holds of its customer's cooldown (see
    /// [`HoldRelease`]): atomic adds, so no condition, and the version moves on so a placement
    /// that read the cooldown before must read it again.
    fn release_hold(&self, release: HoldRelease) -> Result<TransactWriteItem, StoreError> {
        let mut values = HashMap::from([
            (":one".to_owned(), n(1)),
            (":units".to_owned(), n(-release.units)),
            (":cents".to_owned(), n(-release.cents)),
            // Only for a cooldown collected meanwhile, which this recreates: let it go again.
            (":ttl".to_owned(), n((release.at + time::Duration::days(30)).unix_timestamp())),
        ]);
        let mut expression =
            "SET #ttl = if_not_exists(#ttl, :ttl) ADD version :one, unpaid_units :units, unpaid_cents :cents"
                .to_owned();
        if let Some(slot) = release.slot {
            expression.push_str(" DELETE slots :slot");
            values.insert(":slot".to_owned(), AttributeValue::Ns(vec![epoch_millis(slot).to_string()]));
        }
        let update = Update::builder()
            .table_name(&self.tables.customers)
            .set_key(Some(pk(cooldown_pk(release.customer))))
            .update_expression(expression)
            .expression_attribute_names("#ttl", schema::TTL_ATTRIBUTE)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A catalog edit: every attribute but the stock replaced if the stored version is still
    /// `previous.version`, and the stock moved by the edit's delta (never below zero), so
    /// reservations made since the read still count and never make the edit fail; or, when
    /// shards are involved, the item's own stock set exactly (`CatalogStock::Set`).
    fn product_update(
        &self,
        previous: &Product,
        updated: &Product,
        alert: Option<&StockAlert>,
        stock: CatalogStock,
    ) -> Result<Update, StoreError> {
        let mut names = HashMap::new();
        let mut values = HashMap::from([(":expected".to_owned(), n(previous.version))]);
        let mut condition = "version = :expected".to_owned();
        let mut sets = Vec::new();
        match stock {
            CatalogStock::Move => {
                sets.push("stock = stock + :delta".to_owned());
                values.insert(":delta".to_owned(), n(updated.stock - previous.stock));
                add_low_stock_window(previous, updated, alert, &mut condition, &mut values);
            }
            CatalogStock::Set { held, to } => {
                sets.push("stock = :to".to_owned());
                condition.push_str(" AND stock = :held");
                values.insert(":to".to_owned(), n(to));
                values.insert(":held".to_owned(), n(held));
            }
        }
        let item = product_item(updated)?;
        for (i, (name, value)) in item.iter().filter(|(k, _)| *k != "pk" && *k != "stock").enumerate() {
            sets.push(format!("#a{i} = :a{i}"));
            names.insert(format!("#a{i}"), name.clone());
            values.insert(format!(":a{i}"), value.clone());
        }
        // Attributes the edit dropped (an optional field now empty) go.
        let mut removes = Vec::new();
        for (i, name) in product_item(previous)?.into_keys().filter(|k| !item.contains_key(k)).enumerate() {
            removes.push(format!("#r{i}"));
            names.insert(format!("#r{i}"), name);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        Update::builder()
            .table_name(&self.tables.products)
            .set_key(Some(pk(product_pk(updated.id))))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_err)
    }

    /// One conditional `UpdateItem` whose refusal is an answer, not an error: a mark that is
    /// already there, an item gone. True when it was applied.
    async fn update_unless_done(
        &self,
        table: &str,
        key: String,
        update: &str,
        condition: &str,
        values: Item,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(pk(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(err) => Err(sdk_error("UpdateItem", err)),
        }
    }

    /// Replaces an item if its stored `version` is `expected` (a single conditional put).
    async fn put_if_version(&self, table: &str, item: Item, expected: u64) -> Result<(), StoreError> {
        match self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("version = :expected")
            .set_expression_attribute_values(Self::version_is(expected))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(StoreError::VersionConflict)
            }
            Err(err) => Err(sdk_error("PutItem", err)),
        }
    }

    async fn get<T: DeserializeOwned>(&self, table: &str, key: String) -> Result<Option<T>, StoreError> {
        self.get_item(table, key).await?.map(from_item).transpose()
    }

    async fn get_item(&self, table: &str, key: String) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(pk(key)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(output.item)
    }

    /// Strongly consistent reads of many items by `pk`, retrying unprocessed keys.
    async fn batch_get(&self, table: &str, pks: Vec<String>) -> Result<HashMap<String, Item>, StoreError> {
        self.batch_get_across(&[(table, pks)]).await
    }

    /// Strongly consistent reads by `pk` from several tables in as few `BatchGetItem` calls as
    /// DynamoDB allows (100 keys each), keyed by `pk` (each kind of item has its own prefix, so
    /// keys never clash across tables). An order's customer, cooldown and products are one call.
    async fn batch_get_across(&self, wanted: &[(&str, Vec<String>)]) -> Result<HashMap<String, Item>, StoreError> {
        let keys: Vec<(&str, &String)> =
            wanted.iter().flat_map(|(table, pks)| pks.iter().map(move |k| (*table, k))).collect();
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending: HashMap<String, Vec<Item>> = HashMap::new();
            for (table, key) in chunk {
                pending.entry((*table).to_owned()).or_default().push(pk((*key).clone()));
            }
            let mut attempt = 0;
            while !pending.is_empty() {
                let mut request = self.client.batch_get_item().return_consumed_capacity(ReturnConsumedCapacity::Total);
                for (table, keys) in pending.drain() {
                    let keys = KeysAndAttributes::builder()
                        .set_keys(Some(keys))
                        .consistent_read(true)
                        .build()
                        .map_err(build_err)?;
                    request = request.request_items(table, keys);
                }
                let output = request.send().await.map_err(|e| sdk_error("BatchGetItem", e))?;
                for item in output.responses.unwrap_or_default().into_values().flatten() {
                    if let Some(AttributeValue::S(key)) = item.get("pk") {
                        found.insert(key.clone(), item);
                    }
                }
                pending = output
                    .unprocessed_keys
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(table, unprocessed)| (table, unprocessed.keys))
                    .filter(|(_, keys)| !keys.is_empty())
                    .collect();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt >= TRANSACTION_ATTEMPTS {
                        return Err(StoreError::Unavailable("BatchGetItem left keys unprocessed".into()));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    /// Reads a page of items through a keys-only index: keys in index order from the index,
    /// the items themselves from the table, keeping those `keep` accepts. Reads more index
    /// pages while filtered-out items leave the page short, up to a bound.
    async fn list_by_index<T, F>(
        &self,
        query: IndexQuery<'_>,
        page: &PageRequest,
        keep: F,
    ) -> Result<Page<T>, StoreError>
    where
        T: DeserializeOwned,
        F: Fn(&T) -> bool,
    {
        let hash_attr = format!("{}pk", query.index);
        let range_attr = format!("{}sk", query.index);
        let mut start = match &page.token {
            Some(t) => Some(self.start_key(t, &query, &hash_attr, &range_attr)?),
            None => None,
        };
        let limit = page.limit as usize;
        let mut items = Vec::with_capacity(limit);
        for _ in 0..MAX_QUERY_ROUNDS {
            let mut request = self
                .client
                .query()
                .table_name(query.table)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .index_name(query.index)
                .scan_index_forward(!query.descending)
                .expression_attribute_names("#h", &hash_attr)
                .expression_attribute_values(":h", s(query.partition.clone()))
                .set_exclusive_start_key(start.take())
                // One extra key tells whether anything follows a full page, so the last
                // page carries no token.
                .limit(i32::try_from(page.limit).unwrap_or(i32::MAX).saturating_add(1));
            request = match (&query.sort_prefix, &query.sort_at_most) {
                (Some(prefix), _) => request
                    .key_condition_expression("#h = :h AND begins_with(#r, :prefix)")
                    .expression_attribute_names("#r", &range_attr)
                    .expression_attribute_values(":prefix", s(prefix.clone())),
                (None, Some(most)) => request
                    .key_condition_expression("#h = :h AND #r <= :most")
                    .expression_attribute_names("#r", &range_attr)
                    .expression_attribute_values(":most", s(most.clone())),
                (None, None) => request.key_condition_expression("#h = :h"),
            };
            let output = request.send().await.map_err(|e| sdk_error("Query", e))?;
            let keys = output.items.unwrap_or_default();
            let pks: Vec<String> = keys
                .iter()
                .filter_map(|k| match k.get("pk") {
                    Some(AttributeValue::S(v)) => Some(v.clone()),
                    _ => None,
                })
                .collect();
            let mut fetched = self.batch_get(query.table, pks.clone()).await?;
            for (index, key) in pks.iter().enumerate() {
                // Gone since the index was read (indexes are eventually consistent): skip it.
                let Some(item) = fetched.remove(key) else { continue };
                let value: T = from_item(item)?;
                if !keep(&value) {
                    continue;
                }
                items.push(value);
                if items.len() == limit {
                    let more = index + 1 < keys.len() || output.last_evaluated_key.is_some();
                    let next_token = if more { Some(encode_key(&keys[index])?) } else { None };
                    return Ok(Page { items, next_token });
                }
            }
            match output.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(Page { items, next_token: None }),
            }
        }
        let next_token = start.as_ref().map(encode_key).transpose()?;
        Ok(Page { items, next_token })
    }

    /// Decodes a page token into an ExclusiveStartKey, refusing tokens of another list.
    fn start_key(
        &self,
        token: &str,
        query: &IndexQuery<'_>,
        hash_attr: &str,
        range_attr: &str,
    ) -> Result<Item, StoreError> {
        let key: BTreeMap<String, String> = token::decode(token)?;
        // DynamoDB rejects empty key values and keys over 1 KiB: refuse them as bad tokens.
        let fits = key.len() == 3
            && key.values().all(|v| (1..=1024).contains(&v.len()))
            && key.contains_key("pk")
            && key.get(hash_attr) == Some(&query.partition)
            && key
                .get(range_attr)
                .is_some_and(|r| query.sort_prefix.as_ref().is_none_or(|p| r.starts_with(p.as_str())));
        if !fits {
            return Err(StoreError::InvalidPageToken);
        }
        Ok(key.into_iter().map(|(k, v)| (k, s(v))).collect())
    }
}

fn encode_key(key: &Item) -> Result<String, StoreError> {
    let plain: BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| match v {
            AttributeValue::S(v) => Some((k.as_str(), v.as_str())),
            _ => None,
        })
        .collect();
    token::encode(&plain)
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn insert_customer(&self, customer: &Customer, password_hash: &str) -> Result<(), StoreError> {
        let table = &self.tables.customers;
        let actions = vec![
            self.put(table, customer_item(customer)?, "attribute_not_exists(pk)", None)?,
            self.new_login(&customer.email.key(), customer.id, Role::Customer, password_hash)?,
        ];
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(1)) => Err(StoreError::Duplicate(UniqueKey::CustomerEmail)),
            Err(TransactionError::ConditionFailed(_)) => Err(StoreError::Backend("customer id collision".into())),
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    async fn get_customer(&self, id: Uuid) -> Result<Option<Customer>, StoreError> {
        self.get(&self.tables.customers, customer_pk(id)).await
    }

    async fn list_customers(&self, page: &PageRequest) -> Result<Page<Customer>, StoreError> {
        let query = IndexQuery::new(&self.tables.customers, "gsi1", "CUSTOMER");
        self.list_by_index(query, page, |_: &Customer| true).await
    }

    async fn update_customer(&self, previous: &Customer, updated: &Customer) -> Result<(), StoreError> {
        let table = &self.tables.customers;
        let (old_key, new_key) = (previous.email.key(), updated.email.key());
        if old_key == new_key {
            return self.put_if_version(table, customer_item(updated)?, previous.version).await;
        }
        // The login moves with its password hash; the delete's condition makes sure the hash
        // read here is still the one stored when the transaction runs.
        let old_login: LoginItem = self
            .get(table, login_pk(&old_key))
            .await?
            .ok_or_else(|| StoreError::Backend(format!("customer {} has no login item", previous.id)))?;
        let delete_old_login = Delete::builder()
            .table_name(table)
            .set_key(Some(pk(login_pk(&old_key))))
            .condition_expression("subject_id = :id AND password_hash = :hash")
            .expression_attribute_values(":id", s(previous.id.to_string()))
            .expression_attribute_values(":hash", s(old_login.password_hash.clone()))
            .build()
            .map_err(build_err)?;
        let actions = vec![
            self.put(table, customer_item(updated)?, "version = :expected", Self::version_is(previous.version))?,
            TransactWriteItem::builder().delete(delete_old_login).build(),
            self.new_login(&new_key, updated.id, Role::Customer, &old_login.password_hash)?,
        ];
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(0 | 1)) => Err(StoreError::VersionConflict),
            Err(TransactionError::ConditionFailed(_)) => Err(StoreError::Duplicate(UniqueKey::CustomerEmail)),
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    async fn insert_admin(&self, admin: &Admin, password_hash: &str) -> Result<(), StoreError> {
        let mut item = to_item(admin)?;
        item.insert("pk".into(), s(admin_pk(admin.id)));
        let actions = vec![
            self.put(&self.tables.customers, item, "attribute_not_exists(pk)", None)?,
            self.new_login(admin.username.as_str(), admin.id, Role::Admin, password_hash)?,
        ];
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(1)) => Err(StoreError::Duplicate(UniqueKey::AdminUsername)),
            Err(TransactionError::ConditionFailed(_)) => Err(StoreError::Backend("admin id collision".into())),
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    async fn find_login(&self, login: &str) -> Result<Option<Login>, StoreError> {
        let item: Option<LoginItem> = self.get(&self.tables.customers, login_pk(login)).await?;
        Ok(item.map(|i| Login { subject: i.subject_id, role: i.role, password_hash: i.password_hash }))
    }

    async fn login_of(&self, principal: &Principal) -> Result<Option<AccountLogin>, StoreError> {
        let table = &self.tables.customers;
        let login = match principal.role {
            Role::Customer => self.get::<Customer>(table, customer_pk(principal.id)).await?.map(|c| c.email.key()),
            Role::Admin => {
                self.get::<Admin>(table, admin_pk(principal.id)).await?.map(|a| a.username.as_str().to_owned())
            }
        };
        let Some(login) = login else { return Ok(None) };
        let item: Option<LoginItem> = self.get(table, login_pk(&login)).await?;
        // A login moved by an email change between the two reads is not this account's any more.
        Ok(item
            .filter(|item| item.subject_id == principal.id)
            .map(|item| AccountLogin { login, password_hash: item.password_hash }))
    }

    async fn change_password(&self, change: PasswordChange<'_>) -> Result<(), StoreError> {
        let table = &self.tables.customers;
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(pk(login_pk(&change.login.login))))
            .update_expression("SET password_hash = :new")
            .condition_expression("subject_id = :id AND password_hash = :previous")
            .expression_attribute_values(":new", s(change.new_hash))
            .expression_attribute_values(":id", s(change.principal.id.to_string()))
            .expression_attribute_values(":previous", s(change.login.password_hash.clone()))
            .build()
            .map_err(build_err)?;
        let mut actions = vec![
            TransactWriteItem::builder().update(update).build(),
            self.end_sessions_update(change.principal, change.sessions_before, change.sessions_until)?,
        ];
        const END: usize = 1;
        if let Some(reset) = change.reset {
            let used = Update::builder()
                .table_name(table)
                .set_key(Some(pk(password_reset_pk(&reset.token_hash))))
                .update_expression("SET used_at = :now")
                .condition_expression("attribute_not_exists(used_at) AND expires_ms > :now_ms")
                .expression_attribute_values(":now", rfc3339(change.sessions_before)?)
                .expression_attribute_values(":now_ms", n(epoch_millis(change.sessions_before)))
                .build()
                .map_err(build_err)?;
            actions.push(TransactWriteItem::builder().update(used).build());
        }
        let mut result = self.transact(actions.clone()).await;
        if let Err(TransactionError::ConditionFailed(END)) = result {
            // A later end of the sessions is there already (a logout everywhere meanwhile): it
            // stands, and covers this one.
            actions.remove(END);
            result = self.transact(actions).await;
        }
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(_)) => Err(StoreError::VersionConflict),
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    async fn insert_password_reset(&self, reset: &PasswordReset) -> Result<(), StoreError> {
        let mut item = to_item(reset)?;
        item.insert("pk".into(), s(password_reset_pk(&reset.token_hash)));
        item.insert("expires_ms".into(), n(epoch_millis(reset.expires_at)));
        item.insert(schema::TTL_ATTRIBUTE.into(), n(reset.expires_at.unix_timestamp()));
        self.client
            .put_item()
            .table_name(&self.tables.customers)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    async fn find_password_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>, StoreError> {
        self.get(&self.tables.customers, password_reset_pk(token_hash)).await
    }

    async fn acquire_attempt(&self, key: &str, limit: u32, window_end: OffsetDateTime) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.customers)
            .set_key(Some(pk(attempts_pk(key, window_end))))
            .update_expression("SET #ttl = :ttl ADD attempts :one")
            .condition_expression("attribute_not_exists(attempts) OR attempts < :limit")
            .expression_attribute_names("#ttl", schema::TTL_ATTRIBUTE)
            .expression_attribute_values(":ttl", n(window_end.unix_timestamp()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .send()
            .await;
        match result {
            Ok(_) => Ok(limit > 0),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(err) => Err(sdk_error("UpdateItem", err)),
        }
    }

    async fn attempt_counts(&self, keys: &[String], window_end: OffsetDateTime) -> Result<Vec<u32>, StoreError> {
        let pks: Vec<String> = keys.iter().map(|key| attempts_pk(key, window_end)).collect();
        let found = self.batch_get(&self.tables.customers, pks.clone()).await?;
        Ok(pks
            .iter()
            .map(|key| match found.get(key).and_then(|item| item.get("attempts")) {
                Some(AttributeValue::N(count)) => count.parse().unwrap_or(u32::MAX),
                _ => 0,
            })
            .collect())
    }

    async fn clear_attempts(&self, keys: &[String], window_end: OffsetDateTime) -> Result<(), StoreError> {
        // An update rather than a delete: the auth function's role updates these items already.
        for key in keys {
            let result = self
                .client
                .update_item()
                .table_name(&self.tables.customers)
                .set_key(Some(pk(attempts_pk(key, window_end))))
                .update_expression("SET attempts = :zero")
                .condition_expression("attempts > :zero")
                .expression_attribute_values(":zero", n(0))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => return Err(sdk_error("UpdateItem", err)),
            }
        }
        Ok(())
    }
}

/// DynamoDB's TTL deletes expired items itself (lazily: every read compares the expiry with
/// now, so one not yet deleted is never honoured).
#[async_trait]
impl ExpiryStore for DynamoStore {
    async fn delete_expired(&self, _now: OffsetDateTime, _limit: u32) -> Result<u32, StoreError> {
        Ok(0)
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn session_is_valid(&self, principal: &Principal, token: TokenCheck) -> Result<bool, StoreError> {
        // One round trip for both questions: is the token refused, does its principal exist.
        let subject = match principal.role {
            Role::Customer => customer_pk(principal.id),
            Role::Admin => admin_pk(principal.id),
        };
        let mut keys = token_keys(principal.id, token);
        keys.push(subject.clone());
        let found = self.batch_get(&self.tables.customers, keys).await?;
        Ok(found.contains_key(&subject) && !token_refused(&found, principal.id, token))
    }

    async fn end_sessions(
        &self,
        principal: &Principal,
        before: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.customers)
            .set_key(Some(pk(sessions_ended_pk(principal.id))))
            .update_expression(END_SESSIONS)
            .condition_expression(LATER_END_ONLY)
            .set_expression_attribute_names(Some(end_sessions_names()))
            .set_expression_attribute_values(Some(end_sessions_values(before, until)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A later end is already there: it covers this one.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(sdk_error("UpdateItem", err)),
        }
    }

    async fn revoke_token(&self, jti: Uuid, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let mut item = pk(revoked_pk(jti));
        item.insert("expires_at".into(), n(expires_at.unix_timestamp()));
        item.insert(schema::TTL_ATTRIBUTE.into(), n(expires_at.unix_timestamp()));
        self.client
            .put_item()
            .table_name(&self.tables.customers)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }
}

/// Sets an account's ended sessions: tokens issued before `:before` refused until `:until`.
const END_SESSIONS: &str = "SET before_ms = :before, expires_at = :until, #ttl = :until";
/// An earlier end never replaces a later one (the same one may be written again: a retry).
const LATER_END_ONLY: &str = "attribute_not_exists(before_ms) OR before_ms <= :before";

fn end_sessions_names() -> HashMap<String, String> {
    HashMap::from([("#ttl".to_owned(), schema::TTL_ATTRIBUTE.to_owned())])
}

fn end_sessions_values(before: OffsetDateTime, until: OffsetDateTime) -> Item {
    HashMap::from([(":before".to_owned(), n(epoch_millis(before))), (":until".to_owned(), n(until.unix_timestamp()))])
}

/// The items that say whether a token of `subject` is refused: its revocation and the
/// account's ended sessions.
fn token_keys(subject: Uuid, token: TokenCheck) -> Vec<String> {
    vec![revoked_pk(token.jti), sessions_ended_pk(subject)]
}

/// Whether the token is refused by the items [`token_keys`] read: revoked, or issued before the
/// account's sessions were ended (either until it would have expired).
fn token_refused(found: &HashMap<String, Item>, subject: Uuid, token: TokenCheck) -> bool {
    let ended = found.get(&sessions_ended_pk(subject)).is_some_and(|item| {
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
            _ => None,
        };
        number("before_ms").is_some_and(|before| before > epoch_millis(token.issued_at))
            && number("expires_at").is_some_and(|until| until > token.now.unix_timestamp())
    });
    ended || still_revoked(found.get(&revoked_pk(token.jti)), token.now)
}

/// Whether a revocation item read (if any) still holds at `now`: until the token would have
/// expired (an item without the time holds).
fn still_revoked(item: Option<&Item>, now: OffsetDateTime) -> bool {
    item.is_some_and(|item| match item.get("expires_at") {
        Some(AttributeValue::N(v)) => v.parse::<i64>().is_ok_and(|t| t > now.unix_timestamp()),
        _ => true,
    })
}

#[async_trait]
impl CatalogStore for DynamoStore {
    async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        let table = &self.tables.products;
        let mut actions = vec![
            self.put(table, product_item(product)?, "attribute_not_exists(pk)", None)?,
            self.unique_guard(table, product_name_pk(&product.name.key()), product.id)?,
            self.count_category(&product.category, 1)?,
        ];
        if product.is_sharded() {
            actions.extend(self.rewrite_shards(None, &stock_shards::ShardLayout::of(product), product.stock)?);
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(1)) => Err(StoreError::Duplicate(UniqueKey::ProductName)),
            Err(TransactionError::ConditionFailed(_)) => Err(StoreError::Backend("product id collision".into())),
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    async fn get_product(&self, id: Uuid) -> Result<Option<Product>, StoreError> {
        let product = self.get(&self.tables.products, product_pk(id)).await?;
        Ok(self.with_shard_stock(vec![product]).await?.pop().flatten())
    }

    async fn list_products(&self, filter: &ProductFilter, page: &PageRequest) -> Result<Page<Product>, StoreError> {
        let (index, partition) = match &filter.category {
            Some(category) => ("gsi2", format!("IN_CATEGORY#{category}")),
            None => ("gsi1", "PRODUCT".to_owned()),
        };
        let query = IndexQuery {
            sort_prefix: filter.name_prefix.clone(),
            ..IndexQuery::new(&self.tables.products, index, partition)
        };
        // A sharded product's stock is known once its shards are read: its stock filters apply
        // after that (the page may come out short; its token still leads on).
        let keep = |p: &Product| if p.is_sharded() { filter.matches_price(p) } else { filter.matches_attributes(p) };
        let page = self.list_by_index(query, page, keep).await?;
        let items = self.with_shard_stock(page.items.into_iter().map(Some).collect()).await?;
        let items = items.into_iter().flatten().filter(|p| filter.matches_attributes(p)).collect();
        Ok(Page { items, next_token: page.next_token })
    }

    async fn update_product(
        &self,
        previous: &Product,
        updated: &Product,
        alert: Option<&StockAlert>,
    ) -> Result<(), StoreError> {
        let table = &self.tables.products;
        let (old_key, new_key) = (previous.name.key(), updated.name.key());
        let (stock, shard_writes) = if previous.is_sharded() || updated.is_sharded() {
            self.move_between_shards(previous, updated, alert).await?
        } else {
            (CatalogStock::Move, Vec::new())
        };
        let mut actions =
            vec![TransactWriteItem::builder().update(self.product_update(previous, updated, alert, stock)?).build()];
        if let Some(alert) = alert {
            actions.push(self.put(table, alert_item(alert)?, "attribute_not_exists(pk)", None)?);
        }
        // The shards moved since they were read: a stale read, like a moved version.
        let shard_actions = actions.len()..actions.len() + shard_writes.len();
        actions.extend(shard_writes);
        let mut new_name_action = None;
        if old_key != new_key {
            actions.push(self.delete(table, product_name_pk(&old_key))?);
            new_name_action = Some(actions.len());
            actions.push(self.unique_guard(table, product_name_pk(&new_key), updated.id)?);
        }
        if previous.category != updated.category {
            actions.push(self.count_category(&previous.category, -1)?);
            actions.push(self.count_category(&updated.category, 1)?);
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(0)) => Err(StoreError::VersionConflict),
            Err(TransactionError::ConditionFailed(i)) if shard_actions.contains(&i) => Err(StoreError::VersionConflict),
            Err(TransactionError::ConditionFailed(i)) if Some(i) == new_name_action => {
                Err(StoreError::Duplicate(UniqueKey::ProductName))
            }
            Err(TransactionError::ConditionFailed(i)) => {
                Err(StoreError::Backend(format!("unexpected condition failure at {i}")))
            }
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    async fn delete_product(&self, previous: &Product) -> Result<(), StoreError> {
        let table = &self.tables.products;
        let delete_product = Delete::builder()
            .table_name(table)
            .set_key(Some(pk(product_pk(previous.id))))
            .condition_expression("version = :expected")
            .set_expression_attribute_values(Self::version_is(previous.version))
            .build()
            .map_err(build_err)?;
        let mut actions = vec![
            TransactWriteItem::builder().delete(delete_product).build(),
            self.delete(table, product_name_pk(&previous.name.key()))?,
            self.count_category(&previous.category, -1)?,
        ];
        if previous.is_sharded() {
            for shard in 0..previous.stock_shards {
                actions.push(self.delete(table, stock_shards::shard_pk(previous.id, shard))?);
            }
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactionError::ConditionFailed(_)) => Err(StoreError::VersionConflict),
            Err(TransactionError::Store(e)) => Err(e),
        }
    }

    async fn adjust_stock(&self, write: AdjustmentWrite<'_>) -> Result<(), StoreError> {
        let (adjustment, check) = (write.adjustment, write.low_stock);
        check.validate(adjustment.delta)?;
        if write.stock_shards > 1 {
            return self.adjust_sharded_stock(write).await;
        }
        let table = &self.tables.products;
        let mut values = HashMap::from([(":delta".to_owned(), n(adjustment.delta)), (":one".to_owned(), n(1))]);
        let mut condition = format!(
            "attribute_exists(pk) AND {UNSHARDED} AND {}",
            low_stock_condition(check, adjustment.delta, &mut values)
        );
        if adjustment.delta < 0 {
            condition.push_str(" AND stock >= :needed");
            values.insert(":needed".to_owned(), n(-adjustment.delta));
        }
        let mut actions = vec![
            self.stock_update(product_pk(adjustment.product_id), "SET stock = stock + :delta", condition, values)?,
            self.put(table, adjustment_item(adjustment)?, "attribute_not_exists(pk)", None)?,
        ];
        if let Some(alert) = &check.alert {
            actions.push(self.put(table, alert_item(alert)?, "attribute_not_exists(pk)", None)?);
        }
        let idempotency = match write.idempotency {
            Some(record) => {
                actions.push(self.save_idempotency(record, adjustment.at)?);
                Some(actions.len() - 1)
            }
            None => None,
        };
        match self.transact_reporting(actions).await {
            Ok(()) => Ok(()),
            // A used key first, as on SQLite, whatever else failed with it.
            Err(CancelledTransaction::Conditions(failed)) if failed.iter().any(|(i, _)| Some(*i) == idempotency) => {
                Err(StoreError::Duplicate(UniqueKey::IdempotencyKey))
            }
            Err(CancelledTransaction::Conditions(failed)) => match failed.first() {
                // Short only if the item still holds the stock; resharded since, it is stale.
                Some((0, Some(old))) => match stock_shards::number_of(old, "stock") {
                    Some(stock) if stock_shards::shards_of(old) == 1 && stock + adjustment.delta < 0 => {
                        Err(StoreError::InsufficientStock(vec![adjustment.product_id]))
                    }
                    _ => Err(StoreError::VersionConflict),
                },
                Some((0, None)) => Err(StoreError::VersionConflict),
                _ => Err(StoreError::Backend("adjustment or alert id collision".into())),
            },
            Err(CancelledTransaction::Store(e)) => Err(e),
        }
    }

    async fn list_adjustments(&self, product: Uuid, page: &PageRequest) -> Result<Page<StockAdjustment>, StoreError> {
        let query = IndexQuery::new(&self.tables.products, "gsi1", format!("ADJUSTMENTS#{product}"));
        self.list_by_index(IndexQuery { descending: true, ..query }, page, |_: &StockAdjustment| true).await
    }

    async fn list_categories(&self) -> Result<Vec<CategorySummary>, StoreError> {
        let mut categories = Vec::new();
        let mut page = PageRequest::first(100);
        loop {
            let query = IndexQuery::new(&self.tables.products, "gsi1", "CATEGORY");
            let result = self.list_by_index(query, &page, |c: &CategoryCount| c.product_count > 0).await?;
            categories.extend(
                result
                    .items
                    .into_iter()
                    .map(|c| CategorySummary { name: c.name, product_count: c.product_count.try_into().unwrap_or(0) }),
            );
            match result.next_token {
                Some(token) => page.token = Some(token),
                None => return Ok(categories),
            }
        }
    }
}

#[async_trait]
impl OrderStore for DynamoStore {
    fn relays_notices(&self) -> bool {
        self.notices_by_stream
    }

    async fn order_context(
        &self,
        customer: Uuid,
        products: &[Uuid],
        token: Option<TokenCheck>,
    ) -> Result<OrderContext, StoreError> {
        let pks: Vec<String> = products.iter().map(|id| product_pk(*id)).collect();
        // One read: the customer with their cooldown (and the token's revocation, when asked),
        // and the products.
        let (cooldown_key, customer_key) = (cooldown_pk(customer), customer_pk(customer));
        let mut customer_keys = token.map(|token| token_keys(customer, token)).unwrap_or_default();
        customer_keys.extend([cooldown_key.clone(), customer_key.clone()]);
        let mut found = self
            .batch_get_across(&[(&self.tables.customers, customer_keys), (&self.tables.products, pks.clone())])
            .await?;
        let token_revoked = token.is_some_and(|token| token_refused(&found, customer, token));
        let cooldown = found.remove(&cooldown_key).map(cooldown_from_item).transpose()?;
        let placed_by = found.remove(&customer_key).map(from_item::<Customer>).transpose()?;
        let products: Vec<Option<Product>> =
            pks.iter().map(|key| found.remove(key).map(from_item).transpose()).collect::<Result<_, _>>()?;
        let products = self.with_shard_stock(products).await?;
        Ok(OrderContext { cooldown, customer: placed_by, products, token_revoked })
    }

    async fn insert_order(&self, write: &NewOrderWrite<'_>) -> Result<Vec<StockAlert>, StoreError> {
        let order = write.order;
        if write.low_stock.len() != order.lines.len() || write.stock_shards.len() != order.lines.len() {
            return Err(StoreError::Backend("one low-stock check and stock layout per order line is required".into()));
        }
        for (line, check) in order.lines.iter().zip(write.low_stock) {
            check.validate(-line.quantity)?;
        }
        // A sharded line that crosses no line first takes from one shard drawn at random,
        // without reading any; the shards are read (and the take planned on them) when that
        // shard held too little, or first when the line crosses its low-stock line.
        let mut held = None;
        if write.low_stock.iter().zip(write.stock_shards).any(|(check, shards)| *shards > 1 && check.alert.is_some()) {
            held = Some(self.shards_for_order(write).await?);
        }
        loop {
            let planned = held.is_some();
            let mut actions = self.order_actions(write, held.as_ref())?;
            let failed = match self.transact_reporting(std::mem::take(&mut actions.writes)).await {
                Ok(()) => return Ok(write.low_stock.iter().filter_map(|check| check.alert.clone()).collect()),
                Err(CancelledTransaction::Store(e)) => return Err(e),
                Err(CancelledTransaction::Conditions(failed)) => failed,
            };
            match refusal(write, &actions, &failed) {
                Refusal::DrainedShard if !planned => held = Some(self.shards_for_order(write).await?),
                // Drained again since the read: the caller reads everything again.
                Refusal::DrainedShard => return Err(StoreError::VersionConflict),
                Refusal::Error(e) => return Err(e),
            }
        }
    }

    async fn get_idempotency(&self, customer: Uuid, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get(&self.tables.orders, idempotency_pk(customer, key)).await
    }

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        self.get(&self.tables.orders, order_pk(id)).await
    }

    async fn list_orders(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page<Order>, StoreError> {
        let table = &self.tables.orders;
        let query = match (filter.customer, filter.status) {
            (Some(customer), _) => IndexQuery::new(table, "gsi1", format!("CUSTOMER#{customer}")),
            (None, Some(status)) => IndexQuery::new(table, "gsi2", status_partition(status)),
            (None, None) => IndexQuery::new(table, "gsi3", "ORDER"),
        };
        let wanted = *filter;
        self.list_by_index(IndexQuery { descending: true, ..query }, page, |o: &Order| {
            wanted.status.is_none_or(|s| o.status == s) && wanted.matches_creation(o)
        })
        .await
    }

    async fn transition_order(&self, write: &TransitionWrite<'_>) -> Result<(), StoreError> {
        let (previous, updated) = (write.previous, write.updated);
        for attempt in 0..3 {
            let mut actions = vec![self.put(
                &self.tables.orders,
                order_item(updated)?,
                "version = :expected",
                Self::version_is(previous.version),
            )?];
            match write.payment {
                Some(PaymentChange::Insert(payment)) => {
                    actions.push(self.put(
                        &self.tables.orders,
                        payment_item(payment)?,
                        "attribute_not_exists(pk)",
                        None,
                    )?);
                }
                Some(PaymentChange::Update { previous, updated }) => actions.push(self.put(
                    &self.tables.orders,
                    payment_item(updated)?,
                    "version = :expected",
                    Self::version_is(previous.version),
                )?),
                None => {}
            }
            let payment_index = write.payment.map(|_| actions.len() - 1);
            if let Some(payment_id) = refunds(write.payment) {
                actions.push(self.put(
                    &self.tables.orders,
                    refund_item(payment_id),
                    "attribute_not_exists(pk)",
                    None,
                )?);
            }
            if let Some(record) = write.idempotency {
                actions.push(self.save_idempotency(record, updated.updated_at)?);
            }
            let idempotency_index = write.idempotency.map(|_| actions.len() - 1);
            let mut resharded = false;
            if write.restock {
                // Products deleted since the order was placed get nothing back.
                let pks: Vec<String> = previous.lines.iter().map(|l| product_pk(l.product_id)).collect();
                let existing = self.batch_get(&self.tables.products, pks).await?;
                for line in &previous.lines {
                    let Some(item) = existing.get(&product_pk(line.product_id)) else { continue };
                    match stock_shards::shards_of(item) {
                        1 => actions.push(self.move_stock(line.product_id, line.quantity, None)?),
                        // To one shard, or to every one when the units lift the sum back over
                        // its line (see `move_shard_stock`), from the shards as they are now.
                        shards => {
                            // Resharded or deleted since its item was read: read both again.
                            let Some(read) = self.read_shards_of(line.product_id, shards).await? else {
                                resharded = true;
                                break;
                            };
                            let check = LowStockCheck { threshold: read.threshold(), alert: None };
                            actions.extend(self.move_shard_stock(
                                line.product_id,
                                &read,
                                line.quantity,
                                &check,
                                None,
                            )?);
                        }
                    }
                }
            }
            if resharded {
                backoff(attempt).await;
                continue;
            }
            if actions.len() > MAX_TRANSACTION_ACTIONS {
                // Only a restock of many lines whose sharded products are all below their line.
                return Err(StoreError::Unavailable(
                    "the restock spans too many stock shards for one transaction".into(),
                ));
            }
            if let Some(release) = hold_release(previous, updated) {
                actions.push(self.release_hold(release)?);
            }
            actions.extend(self.count_orders(&counter_deltas(Some(previous), updated))?);
            if let Some(notice) = write.notice {
                actions.push(self.put(&self.tables.orders, notice_item(notice)?, "attribute_not_exists(pk)", None)?);
            }
            let failed = match self.transact_reporting(actions).await {
                Ok(()) => return Ok(()),
                Err(CancelledTransaction::Store(e)) => return Err(e),
                Err(CancelledTransaction::Conditions(failed)) => failed,
            };
            // A used key wins over everything else: the caller replays the first answer.
            if failed.iter().any(|(i, _)| Some(*i) == idempotency_index) {
                return Err(StoreError::Duplicate(UniqueKey::IdempotencyKey));
            }
            if failed.iter().any(|(i, _)| *i == 0 || Some(*i) == payment_index) {
                return Err(StoreError::VersionConflict);
            }
            // A product was deleted between the read above and the write: again.
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("products kept changing during a restock".into()))
    }

    async fn orders_due(
        &self,
        status: OrderStatus,
        due_by: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<Order>, StoreError> {
        let query = IndexQuery {
            sort_at_most: Some(format!("{:015}#~", epoch_millis(due_by))),
            ..IndexQuery::new(&self.tables.orders, "gsi2", status_partition(status))
        };
        self.list_by_index(query, page, |o: &Order| o.status == status).await
    }

    async fn order_counters(&self) -> Result<OrderCounters, StoreError> {
        let shards: Vec<String> = (0..METRICS_SHARDS).map(|i| format!("METRICS#{i}")).collect();
        let found = self.batch_get(&self.tables.orders, shards).await?;
        let values = found.into_values().flat_map(|item| {
            item.into_iter().filter_map(|(name, value)| match value {
                AttributeValue::N(v) if name != "pk" => v.parse::<i64>().ok().map(|v| (name, v)),
                _ => None,
            })
        });
        Ok(counters_from(values))
    }
}

#[async_trait]
impl PaymentStore for DynamoStore {
    async fn get_payment(&self, id: Uuid) -> Result<Option<Payment>, StoreError> {
        self.get(&self.tables.orders, payment_pk(id)).await
    }

    async fn pending_refunds(&self, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        let query = IndexQuery::new(&self.tables.orders, "gsi2", "REFUNDS_PENDING");
        let page = self.list_by_index(query, &PageRequest::first(limit), |_: &PendingRefund| true).await?;
        Ok(page.items.into_iter().map(|r| r.payment_id).collect())
    }

    async fn postpone_refund(&self, payment: Uuid, until: OffsetDateTime) -> Result<(), StoreError> {
        let values = HashMap::from([(":turn".to_owned(), s(refund_turn(payment, epoch_millis(until))))]);
        let (update, condition) = ("SET gsi2sk = :turn", "attribute_exists(pk)");
        self.update_unless_done(&self.tables.orders, refund_pk(payment), update, condition, values).await.map(|_| ())
    }

    async fn confirm_refund(&self, payment: Uuid) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.orders)
            .set_key(Some(pk(refund_pk(payment))))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }

    async fn list_payments(&self, filter: &PaymentFilter, page: &PageRequest) -> Result<Page<Payment>, StoreError> {
        let query = match filter.order {
            Some(order) => IndexQuery::new(&self.tables.orders, "gsi1", format!("ORDER_PAYMENTS#{order}")),
            None => IndexQuery::new(&self.tables.orders, "gsi3", "PAYMENT"),
        };
        let status = filter.status;
        self.list_by_index(IndexQuery { descending: true, ..query }, page, |p: &Payment| {
            status.is_none_or(|s| p.status == s)
        })
        .await
    }
}

#[async_trait]
impl NoticeStore for DynamoStore {
    async fn list_notices(&self, customer: Uuid, page: &PageRequest) -> Result<Page<Notice>, StoreError> {
        let query = IndexQuery::new(&self.tables.orders, "gsi1", format!("NOTICES#{customer}"));
        self.list_by_index(IndexQuery { descending: true, ..query }, page, |_: &Notice| true).await
    }

    async fn get_notice(&self, id: Uuid) -> Result<Option<Notice>, StoreError> {
        self.get(&self.tables.orders, notice_pk(id)).await
    }

    async fn claim_notice(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<NoticeClaim, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.orders)
            .set_key(Some(pk(notice_pk(id))))
            // Claimed once, a notice is the worker's and its queue's to retry: it leaves the
            // relay's index, so notices claimed and never sent (refused, dead-lettered) cannot
            // pile up ahead of the ones the relay is for.
            .update_expression("SET lease_until_ms = :until ADD attempts :one REMOVE gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(sent_at) AND lease_until_ms <= :now")
            .expression_attribute_values(":until", n(epoch_millis(lease_until)))
            .expression_attribute_values(":now", n(epoch_millis(now)))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => Ok(NoticeClaim::Claimed(Box::new(from_item(output.attributes.unwrap_or_default())?))),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Ok(match self.get_notice(id).await? {
                    Some(notice) if notice.sent_at.is_some() => NoticeClaim::Sent,
                    Some(_) => NoticeClaim::Leased,
                    None => NoticeClaim::Missing,
                })
            }
            Err(err) => Err(sdk_error("UpdateItem", err)),
        }
    }

    async fn mark_notice_sent(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        let values = HashMap::from([(":at".to_owned(), rfc3339(at)?)]);
        let (update, condition) =
            ("SET sent_at = :at REMOVE gsi2pk, gsi2sk", "attribute_exists(pk) AND attribute_not_exists(sent_at)");
        self.update_unless_done(&self.tables.orders, notice_pk(id), update, condition, values).await.map(|_| ())
    }

    async fn notices_to_relay(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Notice>, StoreError> {
        let query = IndexQuery::new(&self.tables.orders, "gsi2", "NOTICES_UNSENT");
        let due = epoch_millis(now);
        let page = self
            .list_by_index(query, &PageRequest::first(limit), |d: &NoticeDelivery| {
                d.attempts == 0 && d.relay_after_ms <= due
            })
            .await?;
        let mut notices = Vec::with_capacity(page.items.len());
        for delivery in page.items {
            notices.extend(self.get_notice(delivery.id).await?);
        }
        Ok(notices)
    }

    async fn defer_relay(&self, id: Uuid, until: OffsetDateTime) -> Result<(), StoreError> {
        let values = HashMap::from([(":until".to_owned(), n(epoch_millis(until)))]);
        let (update, condition) =
            ("SET relay_after_ms = :until", "attribute_exists(pk) AND attribute_not_exists(sent_at)");
        self.update_unless_done(&self.tables.orders, notice_pk(id), update, condition, values).await.map(|_| ())
    }
}

#[async_trait]
impl AlertStore for DynamoStore {
    async fn list_alerts(
        &self,
        acknowledged: Option<bool>,
        page: &PageRequest,
    ) -> Result<Page<StockAlert>, StoreError> {
        let query = IndexQuery::new(&self.tables.products, "gsi1", "ALERT");
        self.list_by_index(IndexQuery { descending: true, ..query }, page, |a: &StockAlert| {
            acknowledged.is_none_or(|want| a.acknowledged_at.is_some() == want)
        })
        .await
    }

    async fn get_alert(&self, id: Uuid) -> Result<Option<StockAlert>, StoreError> {
        self.get(&self.tables.products, alert_pk(id)).await
    }

    async fn acknowledge_alert(
        &self,
        id: Uuid,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<Option<StockAlert>, StoreError> {
        let values = HashMap::from([(":at".to_owned(), rfc3339(at)?), (":by".to_owned(), s(by))]);
        let (update, condition) = (
            "SET acknowledged_at = :at, acknowledged_by = :by",
            "attribute_exists(pk) AND attribute_not_exists(acknowledged_at)",
        );
        // Refused when gone, or acknowledged already: the stored alert says which.
        self.update_unless_done(&self.tables.products, alert_pk(id), update, condition, values).await?;
        self.get_alert(id).await
    }

    async fn unpublished_alerts(&self, limit: u32) -> Result<Vec<StockAlert>, StoreError> {
        let query = IndexQuery::new(&self.tables.products, "gsi2", "ALERTS_UNPUBLISHED");
        Ok(self.list_by_index(query, &PageRequest::first(limit), |_: &StockAlert| true).await?.items)
    }

    async fn mark_alert_published(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        let values = HashMap::from([(":at".to_owned(), rfc3339(at)?)]);
        let update = "SET published_at = :at REMOVE gsi2pk, gsi2sk";
        self.update_unless_done(&self.tables.products, alert_pk(id), update, "attribute_exists(pk)", values)
            .await
            .map(|_| ())
    }
}
