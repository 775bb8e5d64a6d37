//! Orders: placement with atomic stock reservation and the per-customer cooldown, reading,
//! cancellation, admin status changes, releases of deferred orders, and metrics. Transitions
//! go through the [`Ledger`].

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Invalid as _;
use super::auth::{Caller, Session, TOKEN_REFUSED};
use super::fulfillment::Fulfillment;
use super::inventory::{low_stock_check, report_alert};
use super::ledger::{IdempotencyKey, Ledger, OrderSettings, Placed, TransitionError};
use crate::error::{Error, FieldError, Result};
use crate::model::{
    Address, AlertCause, Customer, HistoryEntry, INTERNAL_NOTE_CHANGE, IdempotencyRecord, Notice, Order, OrderEvent,
    OrderLine, OrderStatus, Product, Recipient, Role, StockAlert, notice_of_placement, optional_text,
};
use crate::retry::backoff;
use crate::store::{
    Cooldown, LowStockCheck, NewOrderWrite, OrderContext, OrderFilter, Page, StoreError, TransitionWrite,
};

/// POST /orders body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"items": [{"product_id": "01900000-0000-7000-8000-000000000001", "quantity": 2}]})))]
pub struct NewOrder {
    pub items: Vec<NewOrderItem>,
    #[serde(default)]
    pub shipping_address: Option<Address>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewOrderItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// GET /orders query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct OrderQuery {
    pub status: Option<String>,
    /// Admins only: one customer's orders.
    pub customer_id: Option<Uuid>,
    /// Placed at or after / at or before (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_to: Option<OffsetDateTime>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// PUT /orders/{id}/status body (admin).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusChange {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// PUT /admin/orders/{id} body: any of a status change (along the transition table), a
/// corrected shipping address, an internal note.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"status": "shipped", "note": "left with the neighbour"})))]
pub struct OrderAmendment {
    pub status: Option<String>,
    pub reason: Option<String>,
    pub shipping_address: Option<Address>,
    /// The internal note; `""` clears it.
    pub note: Option<String>,
}

/// POST /orders/{id}/cancel body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderMetrics {
    pub total_orders: i64,
    pub by_status: BTreeMap<&'static str, i64>,
    /// Placement to delivery, over delivered orders; `null` before the first delivery.
    pub average_processing_seconds: Option<f64>,
    /// What paid orders brought in, less refunds.
    pub revenue_cents: i64,
}

/// At most this many lines: with a low-stock alert for every line, the order, cooldown,
/// idempotency, metrics and notice writes a placement stays inside DynamoDB's 100 actions per
/// transaction (2 × 45 + 5 = 95).
pub const MAX_ORDER_LINES: usize = 45;
pub const MAX_QUANTITY: i64 = 1_000;
/// Attempts when a concurrent order of the same customer, a price change or the low-stock line
/// gets in between.
const PLACEMENT_ATTEMPTS: usize = 8;
/// Of those, the first retries read again at once; later ones back off.
const IMMEDIATE_REREADS: usize = 2;

/// One attempt at a placement, decided and ready for its write.
struct Placement {
    order: Order,
    status_code: u16,
    body: String,
    idempotency: Option<IdempotencyRecord>,
    low_stock: Vec<LowStockCheck>,
    stock_shards: Vec<u32>,
    notice: Option<Notice>,
    expected_cooldown: Option<u64>,
    cooldown: Cooldown,
}

/// A validated order request.
#[derive(Debug)]
struct OrderRequest {
    items: Vec<NewOrderItem>,
    shipping_address: Option<Address>,
    /// Normalized JSON of the request, to compare replays.
    fingerprint: String,
}

fn parse_order(input: NewOrder) -> Result<OrderRequest> {
    let mut errors = Vec::new();
    if input.items.is_empty() {
        errors.push(FieldError::new("items", "must hold at least one item"));
    }
    if input.items.len() > MAX_ORDER_LINES {
        errors.push(FieldError::new("items", format!("must hold at most {MAX_ORDER_LINES} items")));
    }
    let mut seen = HashSet::new();
    for (i, item) in input.items.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            errors
                .push(FieldError::new(format!("items[{i}].quantity"), format!("must be between 1 and {MAX_QUANTITY}")));
        }
        if !seen.insert(item.product_id) {
            errors.push(FieldError::new(format!("items[{i}].product_id"), "appears twice: use one line per product"));
        }
    }
    let address = match input.shipping_address.clone().map(|a| Address::parse("shipping_address", a)).transpose() {
        Ok(a) => a,
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let fingerprint = serde_json::to_string(&input).map_err(|e| Error::Internal(format!("fingerprint: {e}")))?;
    Ok(OrderRequest { items: input.items, shipping_address: address, fingerprint })
}

fn actor(session: &Session) -> String {
    match session.principal.role {
        Role::Admin => format!("admin:{}", session.principal.id),
        Role::Customer => format!("customer:{}", session.principal.id),
    }
}

pub(super) const SYSTEM: &str = "system";
/// The cancel reason of an order the sweep expires, with its stale payment or alone.
pub(super) const DEADLINE_PASSED: &str = "payment deadline passed";

/// Placing, reading, cancelling and moving orders; releasing deferred ones; metrics.
#[derive(Clone)]
pub struct Orders {
    ledger: Ledger,
    /// An admin moving an order to `shipped` creates its shipment as the worker would.
    fulfillment: Fulfillment,
}

impl Orders {
    pub fn new(ledger: Ledger) -> Self {
        Self { fulfillment: Fulfillment::new(ledger.clone()), ledger }
    }

    /// An order the session may see (404 for anyone else's), as that session may see it.
    pub async fn order_for(&self, session: &Session, id: Uuid) -> Result<Order> {
        Ok(as_seen_by(session, self.ledger.order_for(session, id).await?))
    }

    /// Places an order for the signed-in customer: one atomic write reserves every line's
    /// stock, stores the order, moves the cooldown on and records the idempotency key. A
    /// session still to confirm is confirmed by the same read that fetches the order's
    /// context (is the token revoked, is the customer there), or first, when the request is
    /// refused before that read.
    pub async fn place_order(
        &self,
        caller: &Caller,
        input: NewOrder,
        key: Option<IdempotencyKey>,
        correlation_id: &str,
    ) -> Result<Placed> {
        let session = caller.session();
        if session.is_admin() {
            caller.confirm().await?;
            return Err(Error::Forbidden("orders are placed by customers"));
        }
        let customer_id = session.principal.id;
        let request = match parse_order(input) {
            Ok(request) => request,
            Err(invalid) => {
                caller.confirm().await?;
                return Err(invalid);
            }
        };
        let mut token = match caller {
            Caller::Unconfirmed(..) => Some(session.check(self.ledger.now())),
            Caller::Confirmed(_) => None,
        };
        // A request with a key already answered gets that answer, also when it raced the
        // first and lost (it then sees a moved cooldown, or the stock the first one took).
        let replay = |key: Option<IdempotencyKey>| {
            let fingerprint = request.fingerprint.clone();
            async move {
                match key {
                    Some(key) => self.ledger.replay(customer_id, &key, &fingerprint).await,
                    None => Ok(None),
                }
            }
        };
        // The key is looked up only when something refuses the request: a replay then finds the
        // saved answer; a first request (the common case) costs no lookup.
        let refused = |refusal: Error| {
            let replayed = replay(key.clone());
            async move { replayed.await?.ok_or(refusal) }
        };
        for attempt in 0..PLACEMENT_ATTEMPTS {
            let product_ids: Vec<Uuid> = request.items.iter().map(|i| i.product_id).collect();
            // The session is confirmed by the first attempt's read; later attempts trust it.
            let checked = token.take();
            let context = self.ledger.orders.order_context(customer_id, &product_ids, checked).await?;
            if checked.is_some() {
                if context.token_revoked || context.customer.is_none() {
                    return Err(Error::Unauthorized(TOKEN_REFUSED));
                }
                caller.confirmed_by_read();
            }
            let placement = match self.prepare(session, &request, context, key.as_ref(), correlation_id) {
                Ok(placement) => placement,
                Err(refusal) => return refused(refusal).await,
            };
            let Placement { order, status_code, body, notice, low_stock, .. } = &placement;
            let write = NewOrderWrite {
                order,
                notice: notice.as_ref(),
                low_stock,
                stock_shards: &placement.stock_shards,
                expected_cooldown: placement.expected_cooldown,
                cooldown: placement.cooldown.clone(),
                idempotency: placement.idempotency.as_ref(),
            };
            match self.ledger.orders.insert_order(&write).await {
                Ok(alerts) => {
                    // The notice's message and a deferred order's release go out together.
                    tokio::join!(
                        self.ledger.notice_saved(notice.as_ref(), &order.correlation_id),
                        self.after_placement(order, &alerts)
                    );
                    return Ok(Placed { status_code: *status_code, body: body.clone(), id: order.id });
                }
                Err(StoreError::InsufficientStock(ids)) => {
                    let short = order.lines.iter().filter(|l| ids.contains(&l.product_id));
                    return refused(insufficient_stock(short.map(|l| (l.name.as_str(), l.product_id)))).await;
                }
                Err(StoreError::Duplicate(crate::store::UniqueKey::IdempotencyKey)) => {
                    return replay(key.clone()).await?.ok_or(Error::Unavailable);
                }
                // The cooldown, a price or the low-stock line moved since it was read: decide
                // again on a fresh read. The state has moved already, so the first re-reads go
                // at once: on DynamoDB a burst that takes a product across its low-stock line
                // conflicts every order in flight twice (the crossing write must carry the
                // alert, the ones after it must not), and a pause only made them wait. Racers
                // that keep conflicting then back off, so that they spread out; after the last
                // attempt the answer (503) goes at once.
                Err(StoreError::VersionConflict) => {
                    if attempt >= IMMEDIATE_REREADS && attempt + 1 < PLACEMENT_ATTEMPTS {
                        backoff(attempt - IMMEDIATE_REREADS).await;
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Unavailable)
    }

    /// Decides an attempt at placing `request` from what was read: the order (pending, or
    /// deferred by the cooldown), its answer, and everything its one write must check and save.
    /// Refuses unknown products, short stock and the cooldown's limits.
    fn prepare(
        &self,
        session: &Session,
        request: &OrderRequest,
        context: OrderContext,
        key: Option<&IdempotencyKey>,
        correlation_id: &str,
    ) -> Result<Placement> {
        let settings = self.ledger.settings;
        let customer_id = session.principal.id;
        let (recipient, shipping_address) = ship_to(request, context.customer.as_ref())?;
        let products = known_products(request, context.products)?;
        let short: Vec<&Product> = request
            .items
            .iter()
            .zip(&products)
            .filter(|(item, product)| product.stock < item.quantity)
            .map(|(_, product)| product)
            .collect();
        if !short.is_empty() {
            return Err(insufficient_stock(short.iter().map(|p| (p.name.as_str(), p.id))));
        }

        let now = self.ledger.now();
        let lines: Vec<OrderLine> = request
            .items
            .iter()
            .zip(&products)
            .map(|(item, product)| OrderLine {
                product_id: product.id,
                name: product.name.as_str().to_owned(),
                unit_price_cents: product.price_cents,
                quantity: item.quantity,
                line_total_cents: product.price_cents * item.quantity,
            })
            .collect();
        let units: i64 = lines.iter().map(|l| l.quantity).sum();
        let total_cents: i64 = lines.iter().map(|l| l.line_total_cents).sum();
        let slot = take_slot(context.cooldown.as_ref(), units, total_cents, now, &settings)?;
        let status = if slot.release_at.is_some() { OrderStatus::ProcessingOrder } else { OrderStatus::Pending };
        let order = Order {
            id: Uuid::now_v7(),
            customer_id,
            status,
            total_cents,
            lines,
            recipient,
            shipping_address: Some(shipping_address),
            release_at: slot.release_at,
            payment_due_at: (status == OrderStatus::Pending).then(|| now + settings.payment_deadline),
            cancel_reason: None,
            payment_id: None,
            shipment: None,
            admin_note: None,
            correlation_id: correlation_id.to_owned(),
            history: vec![HistoryEntry { at: now, event: None, status, actor: actor(session), change: None }],
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let status_code = if status == OrderStatus::Pending { 201 } else { 202 };
        let body = serde_json::to_string(&order).map_err(|e| Error::Internal(format!("order JSON: {e}")))?;
        let idempotency = key.map(|key| IdempotencyRecord {
            customer_id,
            key: key.as_str().to_owned(),
            request: request.fingerprint.clone(),
            status_code,
            response: body.clone(),
            expires_at: now + settings.idempotency_ttl,
        });
        let low_stock = order
            .lines
            .iter()
            .zip(&products)
            .map(|(line, product)| {
                low_stock_check(product, -line.quantity, product.low_stock_threshold, AlertCause::Order, now)
            })
            .collect();
        let stock_shards = products.iter().map(|product| product.stock_shards).collect();
        let notice = notice_of_placement(&order);
        Ok(Placement {
            order,
            status_code,
            body,
            idempotency,
            low_stock,
            stock_shards,
            notice,
            expected_cooldown: context.cooldown.as_ref().map(|c| c.version),
            cooldown: slot.cooldown,
        })
    }

    /// Queues the release of a deferred order, and reports what the placement did.
    async fn after_placement(&self, order: &Order, alerts: &[StockAlert]) {
        tracing::info!(order_id = %order.id, customer_id = %order.customer_id, status = %order.status, total_cents = order.total_cents, "order placed");
        crate::telemetry::metric("OrdersPlaced", 1);
        if order.status == OrderStatus::ProcessingOrder {
            crate::telemetry::metric("OrdersDeferred", 1);
            if let Some(release_at) = order.release_at {
                self.schedule_release(order, release_at).await;
            }
        }
        alerts.iter().for_each(report_alert);
    }

    /// Sends the delayed release message. A lost message only delays the release until the
    /// next sweep, so a failure here is logged, not returned: the order is already accepted.
    async fn schedule_release(&self, order: &Order, release_at: OffsetDateTime) {
        let delay = release_at - self.ledger.now();
        let message = super::messages::OrderMessage::Release { order_id: order.id };
        if let Err(err) =
            self.ledger.send(crate::queue::QueueName::Orders, &message, &order.correlation_id, delay).await
        {
            tracing::warn!(order_id = %order.id, error = %err, "release message not sent; the sweeper will release it");
        }
    }

    /// A customer's own orders, or (admins) everyone's: newest first, except an admin's list
    /// filtered by status alone, which is by due time, latest first (a pending order's payment
    /// deadline, a deferred order's release, a later status's last change).
    pub async fn orders(&self, session: &Session, query: OrderQuery) -> Result<Page<Order>> {
        let status = query.status.as_deref().map(|s| OrderStatus::parse("status", s)).transpose();
        let page = super::page_request(query.limit, query.next_token.clone());
        let (status, page) = match (status, page) {
            (Ok(s), Ok(p)) => (s, p),
            (s, p) => {
                let page_errors = match p.err() {
                    Some(Error::Validation(errors)) => errors,
                    _ => Vec::new(),
                };
                return Err(Error::Validation(s.err().into_iter().chain(page_errors).collect()));
            }
        };
        let customer = if session.is_admin() {
            query.customer_id
        } else {
            match query.customer_id {
                Some(other) if other != session.principal.id => {
                    return Err(Error::invalid("customer_id", "customers can only list their own orders"));
                }
                _ => Some(session.principal.id),
            }
        };
        if let (Some(from), Some(to)) = (query.created_from, query.created_to)
            && from > to
        {
            return Err(Error::invalid("created_from", "must not be after created_to"));
        }
        let filter = OrderFilter { customer, status, created_from: query.created_from, created_to: query.created_to };
        let mut page = self.ledger.orders.list_orders(&filter, &page).await?;
        page.items = page.items.into_iter().map(|o| as_seen_by(session, o)).collect();
        Ok(page)
    }

    /// POST /orders/{id}/cancel: the owner or an admin; stock comes back in the same write.
    pub async fn cancel_order(
        &self,
        session: &Session,
        id: Uuid,
        if_match: Option<u64>,
        request: CancelRequest,
    ) -> Result<Order> {
        let reason = parse_reason(request.reason)?.unwrap_or_else(|| {
            format!("cancelled by {}", if session.is_admin() { "an admin" } else { "the customer" })
        });
        let order = self.ledger.order_for(session, id).await?;
        require_version(&order, if_match)?;
        match self.ledger.apply(order, OrderEvent::Cancelled, &actor(session), Some(reason)).await {
            Ok(cancelled) => Ok(as_seen_by(session, cancelled)),
            Err(TransitionError::Raced) if if_match.is_some() => Err(self.precondition_failed(session, id).await),
            Err(other) => Err(other.into()),
        }
    }

    /// PUT /orders/{id}/status (admin): moves an order along the transition table only.
    pub async fn change_status(
        &self,
        session: &Session,
        id: Uuid,
        if_match: Option<u64>,
        change: StatusChange,
    ) -> Result<Order> {
        session.require_admin()?;
        let target = OrderStatus::parse("status", &change.status).map_err(|e| Error::Validation(vec![e]))?;
        let reason = parse_reason(change.reason)?;
        let order = self.ledger.order_for(session, id).await?;
        require_version(&order, if_match)?;
        let event = status_event(&order, target)?;
        let written = match event {
            // Shipping creates the shipment (tracking number, label) like the worker does; under
            // If-Match, from the order as checked.
            OrderEvent::ShipmentCreated if if_match.is_some() => {
                self.fulfillment.ship_as(&order, order.clone(), &actor(session)).await
            }
            OrderEvent::ShipmentCreated => return self.ship(session, order.id).await,
            _ => self.ledger.apply(order, event, &actor(session), reason).await,
        };
        match written {
            Ok(written) => Ok(written),
            Err(TransitionError::Raced) if if_match.is_some() => Err(self.precondition_failed(session, id).await),
            Err(other) => Err(other.into()),
        }
    }

    /// The If-Match contract when a write lost to someone else's change after the version was
    /// checked: 412 with the version now stored.
    async fn precondition_failed(&self, session: &Session, id: Uuid) -> Error {
        match self.ledger.order_for(session, id).await {
            Ok(current) => Error::PreconditionFailed { current_version: current.version },
            Err(err) => err,
        }
    }

    async fn ship(&self, session: &Session, id: Uuid) -> Result<Order> {
        self.fulfillment
            .ship(id, &actor(session))
            .await?
            .ok_or_else(|| Error::Conflict("the order changed meanwhile; read it again".into()))
    }

    /// PUT /admin/orders/{id}: corrects the shipping address (before shipping) and the internal
    /// note, and moves the status if asked, in one conditional write with a history entry per
    /// change. Everything is checked before anything is written, so a refused request changes
    /// nothing. `if_match`: the version the admin saw; a stale one answers 412.
    pub async fn amend(
        &self,
        session: &Session,
        id: Uuid,
        if_match: Option<u64>,
        amendment: OrderAmendment,
    ) -> Result<Order> {
        session.require_admin()?;
        let address = amendment.shipping_address.map(|a| Address::parse("shipping_address", a)).transpose();
        let note = optional_text("note", amendment.note.as_deref(), 2_000);
        let target = amendment.status.as_deref().map(|s| OrderStatus::parse("status", s)).transpose();
        let reason = optional_text("reason", amendment.reason.as_deref(), 500);
        let (address, note, target, reason) = match (address, note, target, reason) {
            (Ok(address), Ok(note), Ok(target), Ok(reason)) => (address, note, target, reason),
            (a, n, t, r) => return Err(super::field_errors([a.invalid(), n.invalid(), t.invalid(), r.invalid()])),
        };
        let order = self.ledger.order_for(session, id).await?;
        require_version(&order, if_match)?;
        let event = target.filter(|t| *t != order.status).map(|t| status_event(&order, t)).transpose()?;
        if address.is_some() && !order.status.holds_stock() {
            return Err(Error::Conflict(format!("the address of a {} order cannot change", order.status)));
        }
        let now = self.ledger.now();
        let mut amended = order.clone();
        let mut changes = Vec::new();
        if let Some(address) = address {
            amended.shipping_address = Some(address);
            changes.push("shipping address corrected");
        }
        if amendment.note.is_some() && note != order.admin_note {
            amended.admin_note = note;
            changes.push(INTERNAL_NOTE_CHANGE);
        }
        for change in &changes {
            amended.history.push(HistoryEntry {
                at: now,
                event: None,
                status: order.status,
                actor: actor(session),
                change: Some((*change).to_owned()),
            });
        }
        amended.updated_at = now;
        let changed = !changes.is_empty();
        let written = match event {
            None => self.write_amendment(&order, amended, changed).await,
            // The label is printed from the amended order, in the same write.
            Some(OrderEvent::ShipmentCreated) => self.fulfillment.ship_as(&order, amended, &actor(session)).await,
            Some(event) => match self.ledger.next_order(&amended, event, &actor(session), reason) {
                Some(next) => self.ledger.write_transition(&order, next, event).await,
                None => return Err(Error::Internal("a checked transition did not apply".into())),
            },
        };
        let written = match written {
            Ok(written) => written,
            // The If-Match contract: someone else's change in between answers 412.
            Err(TransitionError::Raced) => return Err(self.precondition_failed(session, id).await),
            Err(other) => return Err(other.into()),
        };
        Ok(written)
    }

    /// Writes `amended` (address or note changes only) over `order`, if anything `changed`.
    async fn write_amendment(
        &self,
        order: &Order,
        mut amended: Order,
        changed: bool,
    ) -> Result<Order, TransitionError> {
        if !changed {
            return Ok(order.clone());
        }
        amended.version += 1;
        let write = TransitionWrite {
            previous: order,
            updated: &amended,
            restock: false,
            payment: None,
            idempotency: None,
            notice: None,
        };
        match self.ledger.commit(write).await {
            Ok(()) => Ok(amended),
            Err(StoreError::VersionConflict) => Err(TransitionError::Raced),
            Err(other) => Err(TransitionError::Failed(other.into())),
        }
    }

    /// Releases a deferred order whose time has come (the order worker and the sweeper).
    /// Early, duplicate and late deliveries are harmless: see [`Release`].
    pub async fn release_order(&self, id: Uuid) -> Result<Release> {
        let Some(order) = self.ledger.orders.get_order(id).await? else {
            return Ok(Release::NotApplicable);
        };
        if order.status != OrderStatus::ProcessingOrder {
            return Ok(Release::NotApplicable);
        }
        let now = self.ledger.now();
        match order.release_at {
            Some(at) if at > now => Ok(Release::NotYet { wait: at - now }),
            _ => match self.ledger.apply(order, OrderEvent::Released, SYSTEM, None).await {
                Ok(_) => Ok(Release::Released),
                // Cancelled or released by someone else meanwhile.
                Err(TransitionError::Illegal { .. } | TransitionError::Raced) => Ok(Release::NotApplicable),
                Err(TransitionError::Failed(err)) => Err(err),
            },
        }
    }

    /// The order worker's answer to a release message: release the order if it is due, or
    /// send the message again for when it will be (SQS delays stop at 15 minutes).
    pub async fn handle_release(&self, order_id: Uuid, correlation_id: &str) -> Result<Release> {
        let outcome = self.release_order(order_id).await?;
        if let Release::NotYet { wait } = outcome {
            let message = super::messages::OrderMessage::Release { order_id };
            self.ledger.send(crate::queue::QueueName::Orders, &message, correlation_id, wait).await?;
            tracing::info!(order_id = %order_id, wait_s = wait.whole_seconds(), "release not due yet; delayed again");
        }
        Ok(outcome)
    }

    /// GET /orders/metrics (admin): from counters kept by the writes.
    pub async fn order_metrics(&self, session: &Session) -> Result<OrderMetrics> {
        session.require_admin()?;
        let counters = self.ledger.orders.order_counters().await?;
        Ok(OrderMetrics {
            total_orders: counters.placed,
            by_status: OrderStatus::ALL
                .into_iter()
                .map(|s| (s.as_str(), counters.by_status.get(&s).copied().unwrap_or(0)))
                .collect(),
            average_processing_seconds: (counters.delivered > 0)
                .then(|| counters.delivered_seconds as f64 / counters.delivered as f64),
            revenue_cents: counters.revenue_cents,
        })
    }
}

/// What became of a release request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Released,
    /// Too early (SQS delays stop at 15 minutes): ask again after `wait`.
    NotYet {
        wait: Duration,
    },
    /// Gone, cancelled, or already released: nothing to do.
    NotApplicable,
}

/// Admins see the whole order; its customer, not the internal note.
fn as_seen_by(session: &Session, order: Order) -> Order {
    if session.is_admin() { order } else { order.for_customer() }
}

/// 412 when the caller read another version of the order than the one stored (`If-Match`).
fn require_version(order: &Order, if_match: Option<u64>) -> Result<()> {
    match if_match {
        Some(expected) if expected != order.version => {
            Err(Error::PreconditionFailed { current_version: order.version })
        }
        _ => Ok(()),
    }
}

/// An optional free-text reason: trimmed, at most 500 characters, no control characters.
fn parse_reason(raw: Option<String>) -> Result<Option<String>> {
    optional_text("reason", raw.as_deref(), 500).map_err(|e| Error::Validation(vec![e]))
}

fn illegal(from: OrderStatus, to: OrderStatus) -> Error {
    Error::Conflict(format!("an order cannot go from {from} to {to}"))
}

/// The event that moves `order` to `target` by an admin's hand, or why it cannot.
fn status_event(order: &Order, target: OrderStatus) -> Result<OrderEvent> {
    let event = match (order.status, target) {
        (OrderStatus::ProcessingOrder, OrderStatus::Pending) => OrderEvent::Released,
        (_, OrderStatus::Paid) => OrderEvent::PaymentSucceeded,
        (_, OrderStatus::Shipped) => OrderEvent::ShipmentCreated,
        (_, OrderStatus::Delivered) => OrderEvent::DeliveryRecorded,
        (_, OrderStatus::Cancelled) => OrderEvent::Cancelled,
        (from, to) => return Err(illegal(from, to)),
    };
    if order.status.after(event) != Some(target) {
        return Err(illegal(order.status, target));
    }
    // A payment in flight will settle the order itself; marking it paid by hand now would
    // have the capture refunded.
    if event == OrderEvent::PaymentSucceeded && order.payment_id.is_some() {
        return Err(Error::Conflict("this order has a payment; it becomes paid when the payment succeeds".into()));
    }
    Ok(event)
}

/// Who and where an order ships to: the customer as they are now, and the request's address or
/// else the one on file; with neither, nothing could be shipped (422).
fn ship_to(request: &OrderRequest, customer: Option<&Customer>) -> Result<(Option<Recipient>, Address)> {
    let address = request.shipping_address.clone().or_else(|| customer.and_then(|c| c.address.clone()));
    let Some(address) = address else {
        return Err(Error::invalid("shipping_address", "is required: give one, or add an address to your account"));
    };
    let recipient = customer.map(|c| Recipient {
        name: c.name.as_str().to_owned(),
        email: c.email.as_str().to_owned(),
        phone: c.phone.clone(),
    });
    Ok((recipient, address))
}

/// Where a new order goes in its customer's cooldown.
struct Slot {
    /// `None`: it enters payment now (`pending`); else it waits until then.
    release_at: Option<OffsetDateTime>,
    /// The cooldown to write with it.
    cooldown: Cooldown,
}

/// Takes the customer's next slot: now if no slot is running, else right after the last one
/// (so deferred orders go ahead in the order they were placed, one per cooldown period).
/// Refused (429) when `max_deferred` orders already wait, and (409) when the order would take
/// what the customer holds unpaid past the caps. Cancelled deferred orders have given their
/// slots back, so only orders that still wait count.
fn take_slot(
    stored: Option<&Cooldown>,
    units: i64,
    cents: i64,
    now: OffsetDateTime,
    settings: &OrderSettings,
) -> Result<Slot> {
    let running: Vec<OffsetDateTime> =
        stored.map(|c| c.slots.iter().copied().filter(|s| *s + settings.cooldown > now).collect()).unwrap_or_default();
    let waiting: Vec<&OffsetDateTime> = running.iter().filter(|s| **s > now).collect();
    if let Some(last) = running.last()
        && waiting.len() >= settings.max_deferred.max(0) as usize
    {
        // A place frees up when the first waiting order is released (or, if none may wait,
        // when the running slot ends).
        let free_at = waiting.first().map_or(*last + settings.cooldown, |first| **first);
        return Err(Error::TooManyRequests {
            what: "too many orders are waiting for the cooldown",
            retry_after_secs: ((free_at - now).as_seconds_f64().ceil() as u64).max(1),
        });
    }
    let (held_units, held_cents) = stored.map_or((0, 0), |c| (c.unpaid_units.max(0), c.unpaid_cents.max(0)));
    if held_units + units > settings.max_unpaid_units || held_cents + cents > settings.max_unpaid_cents {
        return Err(Error::Conflict(format!(
            "you hold {held_units} units worth {held_cents} cents in unpaid orders; with this one that would pass \
             the limit of {} units or {} cents: pay for or cancel an order first",
            settings.max_unpaid_units, settings.max_unpaid_cents
        )));
    }
    let release_at = running.last().map(|last| *last + settings.cooldown);
    let start = release_at.unwrap_or(now);
    let mut slots = running;
    slots.push(start);
    // Long enough for every slot to end and every hold to be paid or cancelled.
    let horizon = start + settings.cooldown + settings.payment_deadline + Duration::days(1);
    let cooldown = Cooldown {
        version: stored.map_or(1, |c| c.version + 1),
        slots,
        unpaid_units: held_units + units,
        unpaid_cents: held_cents + cents,
        expires_at: stored.map_or(horizon, |c| c.expires_at.max(horizon)),
    };
    Ok(Slot { release_at, cooldown })
}

/// Every requested product, in request order; unknown ids are a 422 naming them.
fn known_products(request: &OrderRequest, found: Vec<Option<Product>>) -> Result<Vec<Product>> {
    let mut products = Vec::with_capacity(found.len());
    let mut errors = Vec::new();
    for (i, (item, product)) in request.items.iter().zip(found).enumerate() {
        match product {
            Some(p) => products.push(p),
            None => errors.push(Some(FieldError::new(
                format!("items[{i}].product_id"),
                format!("no product {}", item.product_id),
            ))),
        }
    }
    if errors.is_empty() { Ok(products) } else { Err(Error::Validation(errors.into_iter().flatten().collect())) }
}

/// The refusal for short stock, naming each product (name and id).
fn insufficient_stock<'a>(short: impl IntoIterator<Item = (&'a str, Uuid)>) -> Error {
    crate::telemetry::metric("OrdersRefusedForStock", 1);
    let names: Vec<String> = short.into_iter().map(|(name, id)| format!("{name} ({id})")).collect();
    Error::Conflict(format!("not enough stock for: {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_deferred_orders_allowed_a_running_slot_refuses_and_none_does_not() {
        let now = OffsetDateTime::now_utc();
        let settings = OrderSettings { max_deferred: 0, ..OrderSettings::default() };
        let first = take_slot(None, 1, 100, now, &settings).expect("nothing running: pending");
        assert_eq!(first.release_at, None);
        match take_slot(Some(&first.cooldown), 1, 100, now + Duration::seconds(10), &settings) {
            Err(Error::TooManyRequests { retry_after_secs, .. }) => assert_eq!(retry_after_secs, 290),
            other => panic!("{:?}", other.map(|s| s.release_at)),
        }
        let later = take_slot(Some(&first.cooldown), 1, 100, now + settings.cooldown, &settings).expect("slot over");
        assert_eq!(later.release_at, None);
    }

    #[test]
    fn order_requests_are_checked_whole() {
        let id = Uuid::now_v7();
        let bad = NewOrder {
            items: vec![NewOrderItem { product_id: id, quantity: 0 }, NewOrderItem { product_id: id, quantity: 2 }],
            shipping_address: None,
        };
        match parse_order(bad) {
            Err(Error::Validation(errors)) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["items[0].quantity", "items[1].product_id"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_order(NewOrder { items: vec![], shipping_address: None }).is_err());
    }
}
