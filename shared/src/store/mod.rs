//! Persistence behind one trait per area ([`AccountStore`], [`SessionStore`], [`CatalogStore`],
//! [`OrderStore`], [`PaymentStore`]), with the production backend ([`dynamodb`]) and the embedded
//! one ([`sqlite`]) side by side. Every invariant — unique emails and product names, version
//! checks, category counts — is enforced inside the backend in one atomic step (a DynamoDB
//! condition or transaction, an SQL transaction); callers never read-then-write to check one.
//! `tests/store_conformance.rs` runs the same suite against both.

pub mod dynamodb;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod token;

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use time::OffsetDateTime;

use crate::model::{
    Admin, Category, CategorySummary, Customer, IdempotencyRecord, Notice, Order, OrderCounters, OrderStatus,
    PasswordReset, Payment, PaymentStatus, Principal, Product, Role, StockAdjustment, StockAlert, crosses_threshold,
};

pub use dynamodb::DynamoStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Which unique key a write collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueKey {
    CustomerEmail,
    AdminUsername,
    ProductName,
    IdempotencyKey,
}

impl fmt::Display for UniqueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UniqueKey::CustomerEmail => "a customer with this email already exists",
            UniqueKey::AdminUsername => "an admin with this username already exists",
            UniqueKey::ProductName => "a product with this name already exists",
            UniqueKey::IdempotencyKey => "this Idempotency-Key was already used",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Duplicate(UniqueKey),
    /// The item is not at the version the write expected (changed or deleted meanwhile).
    #[error("the item changed since it was read")]
    VersionConflict,
    #[error("invalid page token")]
    InvalidPageToken,
    /// An order's reservation found too little stock for these products; nothing was written.
    #[error("not enough stock")]
    InsufficientStock(Vec<Uuid>),
    /// Worth retrying later: throttling, a transaction conflict that outlasted our retries.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
}

/// One page request: at most `limit` items after the position `token` encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub token: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self { limit, token: None }
    }
}

/// A page of a list; `next_token` is opaque and only meaningful to the same list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// Catalog filters. Results are ordered by name (case-insensitively) on every backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    pub category: Option<Category>,
    /// Lower-case name prefix.
    pub name_prefix: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: Option<bool>,
    /// Below its low-stock threshold (or not).
    pub low_stock: Option<bool>,
}

impl ProductFilter {
    /// The part of the filter neither backend can answer from an index.
    pub(crate) fn matches_attributes(&self, product: &Product) -> bool {
        self.matches_price(product)
            && self.in_stock.is_none_or(|want| (product.stock > 0) == want)
            && self.low_stock.is_none_or(|want| (product.stock < product.low_stock_threshold) == want)
    }

    /// The price bounds alone (what is known of a product whose stock is yet to be summed).
    pub(crate) fn matches_price(&self, product: &Product) -> bool {
        self.min_price.is_none_or(|min| product.price_cents >= min)
            && self.max_price.is_none_or(|max| product.price_cents <= max)
    }
}

/// A customer's cooldown: every accepted order takes a slot of one cooldown period (a pending
/// order from its placement, a deferred one from its `release_at`), and what the customer
/// holds unpaid. Placements write it whole, conditioned on `version`; transitions that end a
/// hold or cancel a deferred order adjust it in their own atomic step and move `version` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cooldown {
    pub version: u64,
    /// Slot starts, strictly ascending; the domain drops the ones long over when it writes.
    pub slots: Vec<OffsetDateTime>,
    /// Units and value of the customer's orders in `processing order` or `pending`.
    pub unpaid_units: i64,
    pub unpaid_cents: i64,
    /// When the item may be collected: no slot or hold can outlive it.
    pub expires_at: OffsetDateTime,
}

/// What placing an order needs to read first: the customer's cooldown and the products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderContext {
    /// The stored cooldown, however old (the write is conditioned on its version).
    pub cooldown: Option<Cooldown>,
    /// The customer placing it: the order keeps their name, contact and address on file.
    pub customer: Option<Customer>,
    /// The requested products in request order; `None` for an unknown id.
    pub products: Vec<Option<Product>>,
    /// Whether the token asked about ([`TokenCheck`]) is refused (revoked, or issued before the
    /// account's sessions were ended); false when none was asked about.
    pub token_revoked: bool,
}

/// A token as the store judges it: its id (revoked by a logout), when it was issued (refused
/// if before the account's sessions were ended: a password change, a logout everywhere), and
/// now (either lasts until the token would have expired). Also confirmed in the read of an
/// order's context, saving a read of its own; the account's existence is then the context's
/// `customer`.
#[derive(Debug, Clone, Copy)]
pub struct TokenCheck {
    pub jti: Uuid,
    pub issued_at: OffsetDateTime,
    pub now: OffsetDateTime,
}

/// What a write that moves a product's stock expects of its low-stock state, so that the one
/// write that takes the stock from at or above the threshold to below it records the alert,
/// and no other ([`crosses_threshold`]). The write requires the threshold still at `threshold`
/// and then, with an alert, the stock still at exactly `alert.stock - delta` (the alert names
/// the true stock), without one, a stock this write does not take across the line. A stock
/// that moved into or out of the crossing since it was read is a stale read (`VersionConflict`,
/// unless the stock is short for the write, which reports as such). One exception, for orders
/// on a store that sees the stock as it writes: see [`OrderStore::insert_order`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowStockCheck {
    pub threshold: i64,
    pub alert: Option<StockAlert>,
}

impl LowStockCheck {
    /// A check whose alert does not describe a crossing is the caller's mistake, refused before
    /// anything is written (`Backend`), on every backend.
    pub(crate) fn validate(&self, delta: i64) -> Result<(), StoreError> {
        match &self.alert {
            Some(alert) if !crosses_threshold(alert.stock - delta, delta, self.threshold, self.threshold) => {
                Err(StoreError::Backend(format!("alert {} describes no crossing of {}", alert.id, self.threshold)))
            }
            _ => Ok(()),
        }
    }

    /// Whether a stored `stock` and `threshold` are what this check expects of a write of `delta`.
    pub(crate) fn holds(&self, stock: i64, threshold: i64, delta: i64) -> bool {
        threshold == self.threshold
            && match &self.alert {
                Some(alert) => stock == alert.stock - delta,
                None => !crosses_threshold(stock, delta, threshold, threshold),
            }
    }

    /// The alert a write of `delta` on the stored `stock` records, decided as it writes rather
    /// than from the read: the check's own alert naming the true stock, or, when the read saw
    /// no crossing, `unread` (given the stock after the write).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn settle(&self, stock: i64, delta: i64, unread: impl FnOnce(i64) -> StockAlert) -> Option<StockAlert> {
        crosses_threshold(stock, delta, self.threshold, self.threshold).then(|| match &self.alert {
            Some(alert) => StockAlert { stock: stock + delta, ..alert.clone() },
            None => unread(stock + delta),
        })
    }
}

/// A stock adjustment and its low-stock check, written in one atomic step with the stock move.
#[derive(Debug, Clone, Copy)]
pub struct AdjustmentWrite<'a> {
    pub adjustment: &'a StockAdjustment,
    pub low_stock: &'a LowStockCheck,
    /// The product's `stock_shards` as read; a product resharded since is a stale read.
    pub stock_shards: u32,
    /// Saved with the adjustment unless a live record holds its key (`Duplicate`
    /// `IdempotencyKey`, checked first): a retried request never moves the stock twice.
    pub idempotency: Option<&'a IdempotencyRecord>,
}

/// A new order and everything written with it, in one atomic step.
#[derive(Debug, Clone)]
pub struct NewOrderWrite<'a> {
    /// Its lines' quantities are reserved, each only if the stock suffices and the price is
    /// still the line's `unit_price_cents`.
    pub order: &'a Order,
    /// One per line, in line order: the alert of a line that takes its product below the
    /// threshold is saved with the order (see [`OrderStore::insert_order`] for a stale one).
    pub low_stock: &'a [LowStockCheck],
    /// One per line, in line order: the `stock_shards` of the line's product as read. A
    /// product resharded since is a stale read.
    pub stock_shards: &'a [u32],
    /// The write happens only if the stored cooldown is still at this version (`None`: there is
    /// none); it then becomes `cooldown`.
    pub expected_cooldown: Option<u64>,
    pub cooldown: Cooldown,
    /// Saved unless a live record for the same customer and key exists.
    pub idempotency: Option<&'a IdempotencyRecord>,
    /// The customer's notice of the new order, saved in the outbox with it.
    pub notice: Option<&'a Notice>,
}

/// An order moving from `previous` (status and version as read) to `updated`, with what
/// must change in the same atomic step.
#[derive(Debug, Clone, Copy)]
pub struct TransitionWrite<'a> {
    pub previous: &'a Order,
    pub updated: &'a Order,
    /// Give every line's quantity back to its product (products deleted since are skipped).
    pub restock: bool,
    pub payment: Option<PaymentChange<'a>>,
    /// Saved unless a live record for the same customer and key exists.
    pub idempotency: Option<&'a IdempotencyRecord>,
    /// The customer's notice of the change, saved in the outbox with it.
    pub notice: Option<&'a Notice>,
}

/// A payment written with an order transition. An update that makes it `refunded` also records
/// a pending refund (see [`PaymentStore::pending_refunds`]).
#[derive(Debug, Clone, Copy)]
pub enum PaymentChange<'a> {
    Insert(&'a Payment),
    /// Only if the stored payment is still at `previous.version`.
    Update {
        previous: &'a Payment,
        updated: &'a Payment,
    },
}

/// GET /orders filters. Results are newest first, except that a `status` filter without a
/// customer lists by due time, latest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub customer: Option<Uuid>,
    pub status: Option<OrderStatus>,
    /// Placed at or after / at or before.
    pub created_from: Option<OffsetDateTime>,
    pub created_to: Option<OffsetDateTime>,
}

impl OrderFilter {
    /// The part of the filter neither backend answers from an index.
    pub(crate) fn matches_creation(&self, order: &Order) -> bool {
        self.created_from.is_none_or(|from| order.created_at >= from)
            && self.created_to.is_none_or(|to| order.created_at <= to)
    }
}

/// Payment list filters; newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub order: Option<Uuid>,
    pub status: Option<PaymentStatus>,
}

/// What a login name (a customer's email or an admin's username, lower case) leads to.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub subject: Uuid,
    pub role: Role,
    pub password_hash: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login").field("subject", &self.subject).field("role", &self.role).finish_non_exhaustive()
    }
}

/// An account's login name (lower case) and password hash, found by the account's id.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountLogin {
    pub login: String,
    pub password_hash: String,
}

impl fmt::Debug for AccountLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountLogin").field("login", &self.login).finish_non_exhaustive()
    }
}

/// A new password hash for an account, replacing the one it was checked against, and the end of
/// every session the account had: tokens issued before `sessions_before` (now) are refused until
/// `sessions_until`, when the last of them has expired anyway.
#[derive(Clone, Copy)]
pub struct PasswordChange<'a> {
    pub principal: &'a Principal,
    pub login: &'a AccountLogin,
    pub new_hash: &'a str,
    pub sessions_before: OffsetDateTime,
    pub sessions_until: OffsetDateTime,
    /// The reset the change uses up, for a forgotten password: it must still be unused and
    /// unexpired at `sessions_before`, and is used from then on.
    pub reset: Option<&'a PasswordReset>,
}

/// Customers, admins and their logins, and the failed-login counters.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Inserts a new customer and its login; `Duplicate(CustomerEmail)` if the email is taken.
    async fn insert_customer(&self, customer: &Customer, password_hash: &str) -> Result<(), StoreError>;

    async fn get_customer(&self, id: Uuid) -> Result<Option<Customer>, StoreError>;

    /// Customers in sign-up order.
    async fn list_customers(&self, page: &PageRequest) -> Result<Page<Customer>, StoreError>;

    /// Replaces `previous` with `updated` if the stored version is still `previous.version`;
    /// an email change moves the login (and its password hash) to the new email.
    async fn update_customer(&self, previous: &Customer, updated: &Customer) -> Result<(), StoreError>;

    /// Inserts an admin and its login; `Duplicate(AdminUsername)` if the username is taken.
    async fn insert_admin(&self, admin: &Admin, password_hash: &str) -> Result<(), StoreError>;

    /// The account a lower-case login name belongs to.
    async fn find_login(&self, login: &str) -> Result<Option<Login>, StoreError>;

    /// The login name and password hash of the account `principal`, if it exists.
    async fn login_of(&self, principal: &Principal) -> Result<Option<AccountLogin>, StoreError>;

    /// Stores the new password hash and ends the account's sessions, in one write, if the
    /// account's login is still `change.login` (the name and the hash) and its reset, if any,
    /// is still unused and unexpired: else `VersionConflict` (the password or the email changed
    /// meanwhile, the reset was used or expired), and nothing is written.
    async fn change_password(&self, change: PasswordChange<'_>) -> Result<(), StoreError>;

    /// Saves a new password reset.
    async fn insert_password_reset(&self, reset: &PasswordReset) -> Result<(), StoreError>;

    /// The reset whose secret hashes to `token_hash`, used or not, expired or not.
    async fn find_password_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>, StoreError>;

    /// Takes one of `limit` attempts in the counter `key` for the window ending at
    /// `window_end`, atomically; false when none is left (and then nothing is counted).
    async fn acquire_attempt(&self, key: &str, limit: u32, window_end: OffsetDateTime) -> Result<bool, StoreError>;

    /// How many attempts each counter of `keys` holds in the window ending at `window_end`
    /// (0 for one never counted), in the order of `keys`.
    async fn attempt_counts(&self, keys: &[String], window_end: OffsetDateTime) -> Result<Vec<u32>, StoreError>;

    /// Empties the counters `keys` for the window ending at `window_end`: a new password lifts
    /// the failed logins counted against the old one. A counter never taken stays absent.
    async fn clear_attempts(&self, keys: &[String], window_end: OffsetDateTime) -> Result<(), StoreError>;
}

/// What every authenticated request checks: revocations and whether the principal still exists.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// True while the token is not refused ([`TokenCheck`]) and its principal still exists.
    async fn session_is_valid(&self, principal: &Principal, token: TokenCheck) -> Result<bool, StoreError>;

    /// Refuses the token `jti` until `expires_at` (when it would expire anyway).
    async fn revoke_token(&self, jti: Uuid, expires_at: OffsetDateTime) -> Result<(), StoreError>;

    /// Refuses every token of `principal` issued before `before`, until `until` (when the last
    /// of them has expired anyway). An earlier end never replaces a later one.
    async fn end_sessions(
        &self,
        principal: &Principal,
        before: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<(), StoreError>;
}

/// Products and their categories.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Inserts a new product; `Duplicate(ProductName)` if the name is taken.
    async fn insert_product(&self, product: &Product) -> Result<(), StoreError>;

    async fn get_product(&self, id: Uuid) -> Result<Option<Product>, StoreError>;

    async fn list_products(&self, filter: &ProductFilter, page: &PageRequest) -> Result<Page<Product>, StoreError>;

    /// Writes `updated`'s catalog fields over `previous` if the stored version is still
    /// `previous.version`; the stock moves by `updated.stock - previous.stock` (never below zero,
    /// else `VersionConflict`), so reservations made since the read still count. `alert`: the
    /// edit takes the stock below the (new) threshold, as read; saved with it, and the write
    /// then requires the stock unmoved since the read. Without one, an edit that would cross
    /// reports `VersionConflict` (see [`LowStockCheck`]).
    async fn update_product(
        &self,
        previous: &Product,
        updated: &Product,
        alert: Option<&StockAlert>,
    ) -> Result<(), StoreError>;

    /// Moves the product's stock by the adjustment's delta and saves the adjustment (and the
    /// check's alert) in one step. `VersionConflict`: the product is gone, or the check does not
    /// hold; `InsufficientStock`: the delta would take the stock below zero.
    async fn adjust_stock(&self, write: AdjustmentWrite<'_>) -> Result<(), StoreError>;

    /// A product's adjustments, newest first.
    async fn list_adjustments(&self, product: Uuid, page: &PageRequest) -> Result<Page<StockAdjustment>, StoreError>;

    /// Deletes the product if the stored version is still `previous.version`.
    async fn delete_product(&self, previous: &Product) -> Result<(), StoreError>;

    /// Categories that have at least one product, by name.
    async fn list_categories(&self) -> Result<Vec<CategorySummary>, StoreError>;
}

/// The notifications queue's message for a notice (`notice_id`, `correlation_id`): the domain's
/// format, handed to the stream relay (`dynamodb::stream`), which the store module cannot
/// import from the domain.
pub type DeliveryMessage = fn(Uuid, &str) -> Result<crate::queue::OutgoingMessage, String>;

/// Orders with their stock reservations, cooldowns, idempotency records and counters.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Whether the notices this store saves are relayed without the caller: the embedded store
    /// opened with the queue has its notice feed (`sqlite::NoticeFeed`), and DynamoDB's stream
    /// carries them when deployed so (`NOTICE_RELAY=stream`). When false the caller sends the
    /// message after the write, and the sweep relays it if that send is lost.
    fn relays_notices(&self) -> bool {
        false
    }

    /// What placing an order reads, in one read: the customer's cooldown and record, the
    /// products, and whether `token` is revoked when asked.
    async fn order_context(
        &self,
        customer: Uuid,
        products: &[Uuid],
        token: Option<TokenCheck>,
    ) -> Result<OrderContext, StoreError>;
    /// Places an order atomically: reserves every line, saves the order and its idempotency
    /// record, moves the cooldown and counts the order (`placed` and its status), or writes
    /// nothing and reports, when several conditions fail at once, the first of (on every backend):
    /// 1. `Duplicate(IdempotencyKey)`: a live record holds the key; the caller replays the saved
    ///    answer, which stands whatever else changed.
    /// 2. `VersionConflict`: a stale read; the cooldown is not at `expected_cooldown`, or a
    ///    product was deleted or repriced (short of stock or not) since it was read. Read again.
    /// 3. `InsufficientStock`: every product, in line order, whose stock is short of its line.
    ///
    /// Answers the low-stock alerts saved with the order. A line whose [`LowStockCheck`] went
    /// stale because the stock moved into or out of its crossing (the threshold unchanged) is a
    /// `VersionConflict` on DynamoDB, whose conditional write must be decided from the read.
    /// The embedded store sees the stock as it writes (one writer) and settles such a line
    /// there: it saves the alert the true stock calls for, if any (the check's, or a new one
    /// from the line's product and the order's time), and places the order. Either way the one
    /// write that crosses records the one alert; on SQLite the racers of a flash sale crossing
    /// the line are not sent back to read again (twice: into the crossing, then past it).
    async fn insert_order(&self, write: &NewOrderWrite<'_>) -> Result<Vec<StockAlert>, StoreError>;

    async fn get_idempotency(&self, customer: Uuid, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>, StoreError>;

    async fn list_orders(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page<Order>, StoreError>;

    /// Applies a transition if the stored order is still at `previous.version`, with restock,
    /// payment, pending refund, idempotency record and counters (old status down, new status up;
    /// `delivered` and `delivered_seconds` on delivery) and the customer's cooldown (an order
    /// that stops being unpaid gives back its units and value, a deferred order cancelled its
    /// slot: see [`Cooldown`]) in the same atomic step. A restock skips
    /// the lines of products deleted since, on every backend. Otherwise it writes nothing and
    /// reports, when several conditions fail at once, the first of (on every backend):
    /// 1. `Duplicate(IdempotencyKey)`: a live record holds the key (replay the saved answer).
    /// 2. `VersionConflict`: the order is not at `previous.version`, the payment of an `Update`
    ///    not at its `previous.version`, or the payment of an `Insert` exists already.
    async fn transition_order(&self, write: &TransitionWrite<'_>) -> Result<(), StoreError>;

    /// Orders in `status` whose due time ([`Order::due_at`]) is at or before `due_by`, oldest
    /// first, a page at a time: orders changed after their page was read are not met again,
    /// so work left on one page (say, a payment still at the gateway) never hides the next.
    async fn orders_due(
        &self,
        status: OrderStatus,
        due_by: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<Order>, StoreError>;

    async fn order_counters(&self) -> Result<OrderCounters, StoreError>;
}

/// Payments and the refund outbox. Payments are written with order transitions
/// ([`OrderStore::transition_order`]); this trait reads them and confirms refunds.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    async fn get_payment(&self, id: Uuid) -> Result<Option<Payment>, StoreError>;

    /// Payments marked `refunded` whose refund the gateway has not confirmed yet, those to try
    /// next first (by the time set by [`PaymentStore::postpone_refund`], then by id). A
    /// transition that marks a payment `refunded` records it here in the same atomic step (an
    /// outbox), to try at once.
    async fn pending_refunds(&self, limit: u32) -> Result<Vec<Uuid>, StoreError>;

    /// Puts a pending refund behind the others until `until`: one the gateway keeps refusing
    /// cannot hold up the refunds after it. Nothing if it was confirmed meanwhile.
    async fn postpone_refund(&self, payment: Uuid, until: OffsetDateTime) -> Result<(), StoreError>;

    async fn confirm_refund(&self, payment: Uuid) -> Result<(), StoreError>;

    /// Payments matching the filter; newest first.
    async fn list_payments(&self, filter: &PaymentFilter, page: &PageRequest) -> Result<Page<Payment>, StoreError>;
}

/// Low-stock alerts: saved by the writes that cross a threshold (see [`LowStockCheck`]), then
/// published from an outbox and acknowledged by the back office.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Newest first; `acknowledged` filters on whether an admin has acknowledged them.
    async fn list_alerts(&self, acknowledged: Option<bool>, page: &PageRequest)
    -> Result<Page<StockAlert>, StoreError>;

    async fn get_alert(&self, id: Uuid) -> Result<Option<StockAlert>, StoreError>;

    /// Records the first acknowledgement (a later one changes nothing); `None` for no such alert.
    async fn acknowledge_alert(&self, id: Uuid, by: &str, at: OffsetDateTime)
    -> Result<Option<StockAlert>, StoreError>;

    /// Alerts not yet published, oldest first (the outbox).
    async fn unpublished_alerts(&self, limit: u32) -> Result<Vec<StockAlert>, StoreError>;

    async fn mark_alert_published(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError>;
}

/// How long a new notice waits for its queue message before the sweep relays it again.
pub(crate) const FIRST_RELAY_AFTER: time::Duration = time::Duration::minutes(2);

/// Why a notice's delivery could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeClaim {
    /// Claimed until the lease given: deliver it, then mark it sent.
    Claimed(Box<Notice>),
    /// Sent already: nothing to do (a redelivered or duplicate message).
    Sent,
    /// Another delivery holds it: try again after its lease.
    Leased,
    Missing,
}

/// The customers' notices: recorded by the writes that cause them (see [`NewOrderWrite`] and
/// [`TransitionWrite`]), then delivered from this outbox, each exactly once as far as the
/// store can tell (a claim with a lease, then a mark).
#[async_trait]
pub trait NoticeStore: Send + Sync + 'static {
    /// A customer's notices, newest first.
    async fn list_notices(&self, customer: Uuid, page: &PageRequest) -> Result<Page<Notice>, StoreError>;

    async fn get_notice(&self, id: Uuid) -> Result<Option<Notice>, StoreError>;

    /// Claims an unsent notice's delivery until `lease_until`, unless another claim's lease runs
    /// past `now`; counts the attempt.
    async fn claim_notice(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<NoticeClaim, StoreError>;

    /// Marks it sent (and out of the outbox); a notice sent already stays as it was.
    async fn mark_notice_sent(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError>;

    /// Unsent notices no delivery was ever claimed for, whose relay is due at `now`, oldest
    /// first: their queue message may have been lost.
    async fn notices_to_relay(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Notice>, StoreError>;

    /// Puts the next relay of an unsent notice off until `until`.
    async fn defer_relay(&self, id: Uuid, until: OffsetDateTime) -> Result<(), StoreError>;
}

/// Rows that carry an expiry: login counters of past windows, revocations of expired tokens,
/// idempotency records, cooldowns. Reads always compare the expiry with now, so an expired row
/// is never honoured; this only collects them, off the request path (the sweep).
#[async_trait]
pub trait ExpiryStore: Send + Sync + 'static {
    /// Deletes up to `limit` rows that expired before `now`; how many it deleted (a backend
    /// whose database expires rows itself deletes none).
    async fn delete_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u32, StoreError>;
}

/// Every area at once: what a backend implements, and what the wiring hands out (as the
/// narrower traits above) to the services that need each.
pub trait Store:
    AccountStore + SessionStore + CatalogStore + OrderStore + PaymentStore + AlertStore + NoticeStore + ExpiryStore
{
}

impl<T> Store for T where
    T: AccountStore + SessionStore + CatalogStore + OrderStore + PaymentStore + AlertStore + NoticeStore + ExpiryStore
{
}

/// Counter deltas of a placement or transition, shared by both backends.
pub(crate) fn counter_deltas(previous: Option<&Order>, updated: &Order) -> Vec<(String, i64)> {
    let mut deltas = Vec::new();
    match previous {
        None => {
            deltas.push(("placed".to_owned(), 1));
            deltas.push((status_counter(updated.status), 1));
        }
        Some(previous) if previous.status != updated.status => {
            deltas.push((status_counter(previous.status), -1));
            deltas.push((status_counter(updated.status), 1));
            if updated.status == OrderStatus::Paid {
                deltas.push(("revenue_cents".to_owned(), updated.total_cents));
            }
            if updated.status == OrderStatus::Cancelled
                && matches!(previous.status, OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered)
            {
                deltas.push(("revenue_cents".to_owned(), -updated.total_cents));
            }
            if updated.status == OrderStatus::Delivered {
                deltas.push(("delivered".to_owned(), 1));
                deltas
                    .push(("delivered_seconds".to_owned(), (updated.updated_at - updated.created_at).whole_seconds()));
            }
        }
        Some(_) => {}
    }
    deltas
}

pub(crate) fn status_counter(status: OrderStatus) -> String {
    format!("status_{}", status.as_str().replace(' ', "_"))
}

/// Sums named counters into [`OrderCounters`].
pub(crate) fn counters_from(values: impl IntoIterator<Item = (String, i64)>) -> OrderCounters {
    let mut counters = OrderCounters::default();
    for (name, value) in values {
        match name.as_str() {
            "placed" => counters.placed += value,
            "delivered" => counters.delivered += value,
            "delivered_seconds" => counters.delivered_seconds += value,
            "revenue_cents" => counters.revenue_cents += value,
            other => {
                if let Some(status) = OrderStatus::ALL.into_iter().find(|s| status_counter(*s) == other) {
                    *counters.by_status.entry(status).or_insert(0) += value;
                }
            }
        }
    }
    counters
}

/// Milliseconds since the epoch: the sortable form of due times and cooldowns.
pub(crate) fn epoch_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_epoch_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Backend(format!("bad timestamp {ms}: {e}")))
}

/// Counter keys are per window, so a new window starts from zero without any reset.
pub(crate) fn attempt_key(key: &str, window_end: OffsetDateTime) -> String {
    format!("{key}#{}", window_end.unix_timestamp())
}

/// What a transition gives back of its customer's cooldown: the units and value it held unpaid
/// (leaving `processing order` or `pending` for anything else) and, for a deferred order
/// cancelled before its release, its slot. Shared by both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HoldRelease {
    pub customer: Uuid,
    pub units: i64,
    pub cents: i64,
    pub slot: Option<OffsetDateTime>,
    /// When the transition happened (the injected clock's time): a cooldown row collected
    /// meanwhile is recreated to expire 30 days after it.
    pub at: OffsetDateTime,
}

pub(crate) fn hold_release(previous: &Order, updated: &Order) -> Option<HoldRelease> {
    let unpaid = |status| matches!(status, OrderStatus::ProcessingOrder | OrderStatus::Pending);
    (unpaid(previous.status) && !unpaid(updated.status)).then(|| HoldRelease {
        customer: previous.customer_id,
        units: previous.lines.iter().map(|l| l.quantity).sum(),
        cents: previous.total_cents,
        slot: (previous.status == OrderStatus::ProcessingOrder).then_some(previous.release_at).flatten(),
        at: updated.updated_at,
    })
}

/// Whether a payment change is the one that refunds it (and so records a pending refund).
pub(crate) fn refunds(change: Option<PaymentChange<'_>>) -> Option<Uuid> {
    match change {
        Some(PaymentChange::Update { previous, updated })
            if updated.status == crate::model::PaymentStatus::Refunded
                && previous.status != crate::model::PaymentStatus::Refunded =>
        {
            Some(updated.id)
        }
        _ => None,
    }
}
