//! The back office's stock: every product with what unpaid orders hold of it, stock
//! adjustments as deltas with a reason (an audit trail), and low-stock alerts — recorded by
//! the write that crosses a threshold, published from an outbox by the sweep, acknowledged by
//! an admin.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Invalid as _;
use super::auth::Session;
use super::ledger::{IdempotencyKey, saved_answer};
use super::{UNCONDITIONAL_UPDATE_ATTEMPTS, backoff, page_request};
use crate::alerts::AlertPublisher;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{
    AlertCause, IdempotencyRecord, MAX_STOCK, OrderStatus, Product, StockAdjustment, StockAlert, crosses_threshold,
    int_in_range, optional_text,
};
use crate::store::{
    AdjustmentWrite, AlertStore, CatalogStore, LowStockCheck, OrderFilter, OrderStore, Page, PageRequest,
    ProductFilter, StoreError, UniqueKey,
};

/// The largest single adjustment, either way.
const MAX_ADJUSTMENT: i64 = 1_000_000;
/// Unpaid orders read to count held units; beyond it the figure is a lower bound (logged).
const MAX_UNPAID_ORDERS_READ: usize = 10_000;
/// Items read to count low-stock products or open alerts for the metrics.
const MAX_COUNTED: usize = 10_000;

/// What a stock move by `delta` expects of `product` as read, and the alert it records if it
/// takes the stock below `threshold_after` ([`crosses_threshold`]).
pub(super) fn low_stock_check(
    product: &Product,
    delta: i64,
    threshold_after: i64,
    cause: AlertCause,
    now: OffsetDateTime,
) -> LowStockCheck {
    let crossing = crosses_threshold(product.stock, delta, product.low_stock_threshold, threshold_after);
    LowStockCheck {
        threshold: product.low_stock_threshold,
        alert: crossing.then(|| {
            let name = product.name.as_str().to_owned();
            StockAlert::raised(Uuid::now_v7(), product.id, name, product.stock + delta, threshold_after, cause, now)
        }),
    }
}

/// Reports a recorded crossing: the metric an alarm can watch, and a log line.
pub(super) fn report_alert(alert: &StockAlert) {
    tracing::warn!(alert_id = %alert.id, product_id = %alert.product_id, stock = alert.stock, threshold = alert.threshold, cause = ?alert.cause, "low stock");
    crate::telemetry::metric("LowStock", 1);
}

/// GET /admin/inventory query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct InventoryQuery {
    pub low_stock: Option<bool>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// A product as the back office sees it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryItem {
    #[serde(flatten)]
    pub product: Product,
    /// Units reserved by orders not paid yet (`processing order`, `pending`): they come back
    /// if those orders are cancelled or expire.
    pub held: i64,
    pub low_stock: bool,
}

/// POST /admin/inventory/{id}/adjustments body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"delta": -2, "reason": "two dented in storage"})))]
pub struct NewAdjustment {
    pub delta: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Adjusted {
    pub adjustment: StockAdjustment,
    pub product: Product,
}

/// GET /admin/alerts query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct AlertQuery {
    pub acknowledged: Option<bool>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

#[derive(Clone)]
pub struct Inventory {
    catalog: Arc<dyn CatalogStore>,
    orders: Arc<dyn OrderStore>,
    clock: Arc<dyn Clock>,
    /// How long an adjustment's `Idempotency-Key` is kept (as orders' and payments' keys).
    idempotency_ttl: Duration,
}

impl Inventory {
    pub fn new(
        catalog: Arc<dyn CatalogStore>,
        orders: Arc<dyn OrderStore>,
        clock: Arc<dyn Clock>,
        idempotency_ttl: Duration,
    ) -> Self {
        Self { catalog, orders, clock, idempotency_ttl }
    }

    pub async fn items(&self, query: InventoryQuery) -> Result<Page<InventoryItem>> {
        let page = page_request(query.limit, query.next_token)?;
        let filter = ProductFilter { low_stock: query.low_stock, ..ProductFilter::default() };
        let products = self.catalog.list_products(&filter, &page).await?;
        let held = self.held_units().await?;
        Ok(Page {
            items: products.items.into_iter().map(|p| item(p, &held)).collect(),
            next_token: products.next_token,
        })
    }

    pub async fn item(&self, id: Uuid) -> Result<InventoryItem> {
        let product = self.catalog.get_product(id).await?.ok_or(Error::NotFound("product"))?;
        Ok(item(product, &self.held_units().await?))
    }

    /// Units per product in unpaid orders, read from the orders themselves: exact at the time
    /// of reading, with no counter on the hot product item for every order to contend on.
    async fn held_units(&self) -> Result<HashMap<Uuid, i64>> {
        let mut held = HashMap::new();
        let mut read = 0;
        for status in [OrderStatus::ProcessingOrder, OrderStatus::Pending] {
            let filter = OrderFilter { status: Some(status), ..OrderFilter::default() };
            let mut page = PageRequest::first(100);
            loop {
                let orders = self.orders.list_orders(&filter, &page).await?;
                read += orders.items.len();
                for line in orders.items.iter().filter(|o| o.status == status).flat_map(|o| &o.lines) {
                    *held.entry(line.product_id).or_insert(0) += line.quantity;
                }
                match orders.next_token {
                    Some(token) if read < MAX_UNPAID_ORDERS_READ => page.token = Some(token),
                    Some(_) => {
                        tracing::warn!(read, "held units counted over the first unpaid orders only");
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(held)
    }

    /// How many products are below their threshold now.
    pub async fn low_stock_count(&self) -> Result<u64> {
        let filter = ProductFilter { low_stock: Some(true), ..ProductFilter::default() };
        let filter = &filter;
        count(|page| async move { self.catalog.list_products(filter, &page).await }).await
    }

    /// Moves a product's stock by a delta, with its reason, in one conditional write that also
    /// records the adjustment and, if it crosses the threshold, the alert. With `key`, the
    /// write also saves the answer under it: the same request again (a client retrying after a
    /// lost response) gets the same adjustment back and moves nothing.
    pub async fn adjust(
        &self,
        session: &Session,
        id: Uuid,
        input: NewAdjustment,
        key: Option<IdempotencyKey>,
    ) -> Result<Adjusted> {
        session.require_admin()?;
        let delta = int_in_range("delta", input.delta, -MAX_ADJUSTMENT, MAX_ADJUSTMENT);
        let reason = optional_text("reason", Some(&input.reason), 500);
        let (delta, reason) = match (delta, reason) {
            (Ok(0), _) => return Err(Error::invalid("delta", "must not be zero")),
            (Ok(delta), Ok(Some(reason))) => (delta, reason),
            (Ok(_), Ok(None)) => return Err(Error::invalid("reason", "is required: say why the stock changes")),
            (d, r) => return Err(super::field_errors([d.invalid(), r.invalid()])),
        };
        let fingerprint = serde_json::json!({"product_id": id, "delta": delta, "reason": reason}).to_string();
        if let Some(replayed) = self.replay(session, id, key.as_ref(), &fingerprint).await? {
            return Ok(replayed);
        }
        for attempt in 0..UNCONDITIONAL_UPDATE_ATTEMPTS {
            let product = self.catalog.get_product(id).await?.ok_or(Error::NotFound("product"))?;
            if product.stock.saturating_add(delta) > MAX_STOCK {
                return Err(Error::invalid("delta", format!("would take the stock above {MAX_STOCK}")));
            }
            let now = self.clock.now();
            let adjustment = StockAdjustment {
                id: Uuid::now_v7(),
                product_id: id,
                delta,
                reason: reason.clone(),
                actor: format!("admin:{}", session.principal.id),
                at: now,
            };
            let check = low_stock_check(&product, delta, product.low_stock_threshold, AlertCause::Adjustment, now);
            let response = serde_json::to_string(&adjustment).map_err(|e| Error::Internal(e.to_string()))?;
            let idempotency = key.as_ref().map(|key| IdempotencyRecord {
                customer_id: session.principal.id,
                key: key.as_str().to_owned(),
                request: fingerprint.clone(),
                status_code: 201,
                response,
                expires_at: now + self.idempotency_ttl,
            });
            let write = AdjustmentWrite {
                adjustment: &adjustment,
                low_stock: &check,
                stock_shards: product.stock_shards,
                idempotency: idempotency.as_ref(),
            };
            match self.catalog.adjust_stock(write).await {
                Ok(()) => {
                    tracing::info!(product_id = %id, delta, "stock adjusted");
                    if let Some(alert) = &check.alert {
                        report_alert(alert);
                    }
                    let product = self.catalog.get_product(id).await?.ok_or(Error::NotFound("product"))?;
                    return Ok(Adjusted { adjustment, product });
                }
                Err(StoreError::InsufficientStock(_)) => {
                    return Err(Error::Conflict(format!(
                        "the stock is {}: a delta of {delta} would take it below zero",
                        product.stock
                    )));
                }
                // The same request, made meanwhile (a retry racing its first attempt).
                Err(StoreError::Duplicate(UniqueKey::IdempotencyKey)) => {
                    return self.replay(session, id, key.as_ref(), &fingerprint).await?.ok_or(Error::Unavailable);
                }
                // Orders moved the stock meanwhile: a delta still applies, so read and go again.
                Err(StoreError::VersionConflict) => backoff(attempt).await,
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Unavailable)
    }

    /// The adjustment an earlier request under `key` made, with the product as it is now.
    async fn replay(
        &self,
        session: &Session,
        id: Uuid,
        key: Option<&IdempotencyKey>,
        fingerprint: &str,
    ) -> Result<Option<Adjusted>> {
        let Some(key) = key else { return Ok(None) };
        let now = self.clock.now();
        let Some(record) = saved_answer(&*self.orders, now, session.principal.id, key, fingerprint).await? else {
            return Ok(None);
        };
        let adjustment: StockAdjustment =
            serde_json::from_str(&record.response).map_err(|e| Error::Internal(format!("saved adjustment: {e}")))?;
        let product = self.catalog.get_product(id).await?.ok_or(Error::NotFound("product"))?;
        tracing::info!(adjustment_id = %adjustment.id, "idempotent replay");
        Ok(Some(Adjusted { adjustment, product }))
    }

    pub async fn adjustments(
        &self,
        id: Uuid,
        limit: Option<u32>,
        next_token: Option<String>,
    ) -> Result<Page<StockAdjustment>> {
        let page = page_request(limit, next_token)?;
        self.catalog.get_product(id).await?.ok_or(Error::NotFound("product"))?;
        Ok(self.catalog.list_adjustments(id, &page).await?)
    }
}

/// The length of a paged list, reading at most [`MAX_COUNTED`] items.
async fn count<T, F, Fut>(mut read: F) -> Result<u64>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut page = PageRequest::first(100);
    let mut count = 0;
    loop {
        let items = read(page.clone()).await?;
        count += items.items.len();
        match items.next_token {
            Some(token) if count < MAX_COUNTED => page.token = Some(token),
            _ => return Ok(count as u64),
        }
    }
}

fn item(product: Product, held: &HashMap<Uuid, i64>) -> InventoryItem {
    InventoryItem {
        held: held.get(&product.id).copied().unwrap_or(0),
        low_stock: product.stock < product.low_stock_threshold,
        product,
    }
}

/// Low-stock alerts: listed and acknowledged by admins, published by the sweep.
#[derive(Clone)]
pub struct Alerts {
    store: Arc<dyn AlertStore>,
    publisher: Arc<dyn AlertPublisher>,
    clock: Arc<dyn Clock>,
}

impl Alerts {
    pub fn new(store: Arc<dyn AlertStore>, publisher: Arc<dyn AlertPublisher>, clock: Arc<dyn Clock>) -> Self {
        Self { store, publisher, clock }
    }

    pub async fn list(&self, query: AlertQuery) -> Result<Page<StockAlert>> {
        let page = page_request(query.limit, query.next_token)?;
        Ok(self.store.list_alerts(query.acknowledged, &page).await?)
    }

    /// Alerts not acknowledged yet (the overview's figure).
    pub async fn open_count(&self) -> Result<u64> {
        count(|page| async move { self.store.list_alerts(Some(false), &page).await }).await
    }

    /// The first acknowledgement stands; acknowledging again answers the alert as it is.
    pub async fn acknowledge(&self, session: &Session, id: Uuid) -> Result<StockAlert> {
        session.require_admin()?;
        let by = format!("admin:{}", session.principal.id);
        self.store.acknowledge_alert(id, &by, self.clock.now()).await?.ok_or(Error::NotFound("alert"))
    }

    /// Publishes what the outbox holds; an alert that fails stays for the next sweep.
    pub async fn publish_pending(&self) -> Result<u32> {
        let mut published = 0;
        for alert in self.store.unpublished_alerts(100).await? {
            match self.publisher.publish(&alert).await {
                Ok(()) => {
                    self.store.mark_alert_published(alert.id, self.clock.now()).await?;
                    published += 1;
                }
                Err(err) => {
                    tracing::warn!(alert_id = %alert.id, error = %err, "alert not published; retried next sweep")
                }
            }
        }
        Ok(published)
    }
}
