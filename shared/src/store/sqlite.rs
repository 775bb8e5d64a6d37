//! The embedded backend: one SQLite file (or `:memory:` in tests) on the [`EmbeddedDb`] engine.
//! Each write is one job of the engine's group commit, as atomic as its own transaction;
//! each read a snapshot on a reader connection. UNIQUE indexes and `WHERE version = ?` give the
//! same guarantees DynamoDB's conditions give in production. WAL with `synchronous=FULL` means
//! an acknowledged write survives a crash of the process (or the machine).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::Notify;
use uuid::Uuid;

use time::OffsetDateTime;

use super::{
    AccountLogin, AccountStore, AdjustmentWrite, AlertStore, CatalogStore, Cooldown, ExpiryStore, HoldRelease, Login,
    NewOrderWrite, NoticeClaim, NoticeStore, OrderContext, OrderFilter, OrderStore, Page, PageRequest, PasswordChange,
    PaymentChange, PaymentFilter, PaymentStore, ProductFilter, SessionStore, StoreError, TokenCheck, TransitionWrite,
    UniqueKey, attempt_key, counter_deltas, counters_from, epoch_millis, from_epoch_millis, hold_release, refunds,
    token,
};
use crate::clock::Clock;
use crate::embedded_db::{CachedStatements, EmbeddedDb, EngineError, Schema};
use crate::model::{
    Admin, AlertCause, Category, CategorySummary, Customer, IdempotencyRecord, Notice, Order, OrderCounters,
    OrderStatus, PasswordReset, Payment, Principal, Product, Role, StockAdjustment, StockAlert, crosses_threshold,
};
use crate::queue::SqliteQueue;

/// The store's tables.
pub const SCHEMA: Schema = Schema { name: "store", migrations: MIGRATIONS };

/// Schema versions, applied in order.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE customers (
        id        TEXT PRIMARY KEY,
        email_key TEXT NOT NULL UNIQUE,
        version   INTEGER NOT NULL,
        doc       TEXT NOT NULL
    ) STRICT;
    CREATE TABLE products (
        id          TEXT PRIMARY KEY,
        name_key    TEXT NOT NULL UNIQUE,
        category    TEXT NOT NULL,
        price_cents INTEGER NOT NULL,
        stock       INTEGER NOT NULL,
        version     INTEGER NOT NULL,
        doc         TEXT NOT NULL
    ) STRICT;
    CREATE INDEX products_by_category ON products (category, name_key);
"#,
    r#"
    ALTER TABLE customers ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';
    CREATE TABLE admins (
        id            TEXT PRIMARY KEY,
        username_key  TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        doc           TEXT NOT NULL
    ) STRICT;
    CREATE TABLE revoked_tokens (
        jti        TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE login_attempts (
        key        TEXT PRIMARY KEY,
        attempts   INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
"#,
    r#"
    CREATE TABLE orders (
        id          TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        status      TEXT NOT NULL,
        due_at      INTEGER NOT NULL,
        version     INTEGER NOT NULL,
        doc         TEXT NOT NULL
    ) STRICT;
    CREATE INDEX orders_by_customer ON orders (customer_id, id);
    CREATE INDEX orders_by_status ON orders (status, due_at, id);
    CREATE TABLE cooldowns (
        customer_id TEXT PRIMARY KEY,
        until_ms    INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE idempotency (
        customer_id TEXT NOT NULL,
        key         TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        doc         TEXT NOT NULL,
        PRIMARY KEY (customer_id, key)
    ) STRICT;
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT;
"#,
    r#"
    CREATE TABLE payments (
        id       TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        version  INTEGER NOT NULL,
        doc      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX payments_by_order ON payments (order_id, id);
"#,
    r#"
    CREATE TABLE refunds_pending (
        payment_id TEXT PRIMARY KEY
    ) STRICT;
"#,
    // Cooldowns become slots plus unpaid holds; the holds of orders already unpaid are counted.
    r#"
    DROP TABLE cooldowns;
    CREATE TABLE cooldowns (
        customer_id  TEXT PRIMARY KEY,
        version      INTEGER NOT NULL,
        slots        TEXT NOT NULL,
        unpaid_units INTEGER NOT NULL,
        unpaid_cents INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;
    INSERT INTO cooldowns (customer_id, version, slots, unpaid_units, unpaid_cents, expires_at)
        SELECT customer_id, 1, '[]',
               SUM((SELECT SUM(json_extract(line.value, '$.quantity')) FROM json_each(doc, '$.lines') AS line)),
               SUM(json_extract(doc, '$.total_cents')),
               CAST(strftime('%s', 'now') AS INTEGER) + 86400 * 30
        FROM orders WHERE status IN ('processing order', 'pending') GROUP BY customer_id;
"#,
    // Expired rows are collected by the sweep in batches (`ExpiryStore`), not on the request
    // path: these indexes make finding them cheap however many rows there are.
    r#"
    CREATE INDEX login_attempts_by_expiry ON login_attempts (expires_at);
    CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
    CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);
    CREATE INDEX cooldowns_by_expiry ON cooldowns (expires_at);
"#,
    // The back office: stock adjustments (an audit trail) and low-stock alerts (an outbox).
    r#"
    CREATE TABLE stock_adjustments (
        id         TEXT PRIMARY KEY,
        product_id TEXT NOT NULL,
        doc        TEXT NOT NULL
    ) STRICT;
    CREATE INDEX stock_adjustments_by_product ON stock_adjustments (product_id, id);
    CREATE TABLE stock_alerts (
        id           TEXT PRIMARY KEY,
        acknowledged INTEGER NOT NULL,
        published    INTEGER NOT NULL,
        doc          TEXT NOT NULL
    ) STRICT;
    CREATE INDEX stock_alerts_unpublished ON stock_alerts (published, id);
"#,
    // Customers' notices: an outbox the notification worker delivers from.
    r#"
    CREATE TABLE notices (
        id          TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        sent        INTEGER NOT NULL,
        lease_until INTEGER NOT NULL,
        relay_after INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        doc         TEXT NOT NULL
    ) STRICT;
    CREATE INDEX notices_by_customer ON notices (customer_id, id);
    CREATE INDEX notices_unsent ON notices (sent, id);
"#,
    // Pending refunds are tried in turn: one the gateway keeps refusing goes behind the others.
    r#"
    ALTER TABLE refunds_pending ADD COLUMN retry_after INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX refunds_pending_by_retry ON refunds_pending (retry_after, payment_id);
"#,
    // An account's sessions ended (a password change, a logout everywhere): its tokens issued
    // before `before_ms` are refused until `expires_at`, when they have all expired anyway.
    r#"
    CREATE TABLE sessions_ended (
        subject_id TEXT PRIMARY KEY,
        before_ms  INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX sessions_ended_by_expiry ON sessions_ended (expires_at);
"#,
    // Password resets, by the hash of their emailed secret; `expires_at` in epoch ms.
    r#"
    CREATE TABLE password_resets (
        token_hash TEXT PRIMARY KEY,
        used       INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        doc        TEXT NOT NULL
    ) STRICT;
    CREATE INDEX password_resets_by_expiry ON password_resets (expires_at);
"#,
    // Marking a notice sent was the writer's costliest statement: it parsed and rewrote the
    // document to set its `sent_at`, and moved the notice within an index of every notice. The
    // stamp now has its own column (notices marked before keep theirs in the document), and the
    // index holds the unsent notices alone, so the mark only removes the notice from it.
    r#"
    ALTER TABLE notices ADD COLUMN sent_at TEXT;
    DROP INDEX notices_unsent;
    CREATE INDEX notices_unsent ON notices (id) WHERE sent = 0;
"#,
];

/// A notice's document as read, with the `sent_at` stamp the mark keeps in its own column.
macro_rules! notice_doc {
    () => {
        "iif(sent_at IS NULL, doc, json_set(doc, '$.sent_at', sent_at))"
    };
}

#[derive(Clone)]
pub struct SqliteStore {
    db: EmbeddedDb,
    /// Set when notices are relayed from the notices table by a [`NoticeFeed`] (the local
    /// server): each write that saves a notice wakes it.
    feed: Option<Arc<Notify>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self { db: EmbeddedDb::open(path, &[SCHEMA])?, feed: None })
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Self { db: EmbeddedDb::in_memory(&[SCHEMA])?, feed: None })
    }

    /// The store and the queue in one file (the local server): one writer and one fsync per
    /// batch for both. Notices are relayed from the notices table, as the orders table's stream
    /// relays them on AWS: run the store's [`SqliteStore::notice_feed`] to deliver them. A
    /// notice no delivery has tried is not lost if nothing runs it: the sweep relays it through
    /// the notifications queue.
    pub fn open_with_queue(
        path: &Path,
        clock: Arc<dyn Clock>,
        max_receives: u32,
    ) -> Result<(Self, SqliteQueue), StoreError> {
        let db = EmbeddedDb::open(path, &[SCHEMA, crate::queue::sqlite::SCHEMA])?;
        Ok(Self::with_queue(db, clock, max_receives))
    }

    /// [`SqliteStore::open_with_queue`] in memory, for tests.
    pub fn in_memory_with_queue(clock: Arc<dyn Clock>, max_receives: u32) -> Result<(Self, SqliteQueue), StoreError> {
        let db = EmbeddedDb::in_memory(&[SCHEMA, crate::queue::sqlite::SCHEMA])?;
        Ok(Self::with_queue(db, clock, max_receives))
    }

    fn with_queue(db: EmbeddedDb, clock: Arc<dyn Clock>, max_receives: u32) -> (Self, SqliteQueue) {
        let queue = SqliteQueue::on(db.clone(), clock, max_receives);
        (Self { db, feed: Some(Arc::new(Notify::new())) }, queue)
    }

    /// The notices saved from now on, and those saved before and not sent yet (a crash may
    /// have cut their delivery short), in the order they were saved; `None` unless the store
    /// relays notices itself ([`SqliteStore::open_with_queue`]). A notice tried `gave_up_after`
    /// times or more (the queue dead-lettered it, or the mail service kept refusing it) is not
    /// brought again; one tried fewer times is, once per start (a refused one is then refused
    /// again, and nothing is sent twice: deliveries claim the notice first).
    pub async fn notice_feed(&self, gave_up_after: u32) -> Result<Option<NoticeFeed>, StoreError> {
        let Some(saved) = &self.feed else { return Ok(None) };
        let after = self
            .db
            .read(move |tx| {
                tx.row(
                    "SELECT coalesce((SELECT min(rowid) FROM notices WHERE sent = 0 AND attempts < ?1) - 1,
                                     (SELECT max(rowid) FROM notices), 0)",
                    [gave_up_after],
                    |row| row.get(0),
                )
                .map_err(backend)
            })
            .await?;
        Ok(Some(NoticeFeed { db: self.db.clone(), saved: saved.clone(), after, gave_up_after }))
    }

    /// Wakes the notice feed after a write that saved `notice`.
    fn notice_saved(&self, notice: Option<&Notice>) {
        if let (Some(saved), Some(_)) = (&self.feed, notice) {
            saved.notify_one();
        }
    }

    /// Hands every SQL statement the store runs, as written (placeholders unbound), to `hook`,
    /// for audits of their query plans. The hook is process-wide: the first one set stays.
    pub async fn trace_statements(&self, hook: fn(&str)) -> Result<(), StoreError> {
        Ok(self.db.trace_statements(hook).await?)
    }

    /// The plan SQLite chooses for `sql` (`EXPLAIN QUERY PLAN`), one step per line.
    pub async fn query_plan(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        self.db
            .read(move |conn| {
                let mut explain = conn.prepare(&sql).map_err(backend)?;
                // Unbound placeholders: the plan does not depend on the values.
                let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
                let steps = explain
                    .query_map(rusqlite::params_from_iter(nulls), |row| row.get::<_, String>(3))
                    .map_err(backend)?;
                steps.collect::<Result<_, _>>().map_err(backend)
            })
            .await
    }
}

impl From<EngineError> for StoreError {
    fn from(err: EngineError) -> Self {
        StoreError::Backend(err.to_string())
    }
}

fn backend(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {err}"))
}

/// Maps a UNIQUE violation on `column` to `Duplicate(key)`, anything else to a backend error.
fn unique_violation(column: &'static str, key: UniqueKey) -> impl Fn(rusqlite::Error) -> StoreError {
    move |err| match &err {
        rusqlite::Error::SqliteFailure(e, Some(msg))
            if e.code == ErrorCode::ConstraintViolation && msg.contains(column) =>
        {
            StoreError::Duplicate(key)
        }
        _ => backend(err),
    }
}

fn to_doc<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("serializing: {e}")))
}

fn from_doc<T: DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Backend(format!("corrupt row: {e}")))
}

/// Keyset position: the sort key of the last item returned.
#[derive(Serialize, Deserialize)]
struct After {
    after: String,
}

fn decode_after(page: &PageRequest) -> Result<Option<String>, StoreError> {
    page.token.as_deref().map(|t| token::decode::<After>(t).map(|a| a.after)).transpose()
}

/// A position in the orders by due time, `<due>#<id>`.
fn due_position(after: &str) -> Result<(i64, String), StoreError> {
    match after.split_once('#') {
        Some((due, id)) => Ok((due.parse().map_err(|_| StoreError::InvalidPageToken)?, id.to_owned())),
        None => Err(StoreError::InvalidPageToken),
    }
}

/// Turns `limit + 1` fetched rows into a page, with a token only when more rows exist.
fn into_page<T>(mut rows: Vec<(String, T)>, limit: u32) -> Result<Page<T>, StoreError> {
    let limit = limit as usize;
    let next_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(key, _)| token::encode(&After { after: key.clone() })).transpose()?
    } else {
        None
    };
    Ok(Page { items: rows.into_iter().map(|(_, item)| item).collect(), next_token })
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn insert_customer(&self, customer: &Customer, password_hash: &str) -> Result<(), StoreError> {
        let (id, key, version, doc) =
            (customer.id.to_string(), customer.email.key(), customer.version, to_doc(customer)?);
        let hash = password_hash.to_owned();
        self.db
            .write(move |tx| {
                tx.exec(
                    "INSERT INTO customers (id, email_key, version, doc, password_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, key, version, doc, hash],
                )
                .map_err(unique_violation("email_key", UniqueKey::CustomerEmail))?;
                Ok(())
            })
            .await
    }

    async fn get_customer(&self, id: Uuid) -> Result<Option<Customer>, StoreError> {
        self.db
            .read(move |tx| {
                let doc: Option<String> = tx
                    .row("SELECT doc FROM customers WHERE id = ?1", [id.to_string()], |row| row.get(0))
                    .optional()
                    .map_err(backend)?;
                doc.as_deref().map(from_doc).transpose()
            })
            .await
    }

    async fn list_customers(&self, page: &PageRequest) -> Result<Page<Customer>, StoreError> {
        let after = decode_after(page)?.unwrap_or_default();
        let limit = page.limit;
        self.db
            .read(move |tx| {
                let mut stmt = tx
                    .prepare_cached("SELECT id, doc FROM customers WHERE id > ?1 ORDER BY id LIMIT ?2")
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![after, limit + 1], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .map_err(backend)?
                    .map(|row| {
                        let (id, doc) = row.map_err(backend)?;
                        Ok((id, from_doc::<Customer>(&doc)?))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                into_page(rows, limit)
            })
            .await
    }

    async fn update_customer(&self, previous: &Customer, updated: &Customer) -> Result<(), StoreError> {
        let (id, key, expected, version, doc) =
            (updated.id.to_string(), updated.email.key(), previous.version, updated.version, to_doc(updated)?);
        self.db
            .write(move |tx| {
                let changed = tx
                    .exec(
                        "UPDATE customers SET email_key = ?2, version = ?3, doc = ?4 WHERE id = ?1 AND version = ?5",
                        params![id, key, version, doc, expected],
                    )
                    .map_err(unique_violation("email_key", UniqueKey::CustomerEmail))?;
                if changed == 1 { Ok(()) } else { Err(StoreError::VersionConflict) }
            })
            .await
    }

    async fn insert_admin(&self, admin: &Admin, password_hash: &str) -> Result<(), StoreError> {
        let (id, key, hash, doc) =
            (admin.id.to_string(), admin.username.as_str().to_owned(), password_hash.to_owned(), to_doc(admin)?);
        self.db
            .write(move |tx| {
                tx.exec(
                    "INSERT INTO admins (id, username_key, password_hash, doc) VALUES (?1, ?2, ?3, ?4)",
                    params![id, key, hash, doc],
                )
                .map_err(unique_violation("username_key", UniqueKey::AdminUsername))?;
                Ok(())
            })
            .await
    }

    async fn find_login(&self, login: &str) -> Result<Option<Login>, StoreError> {
        let login = login.to_owned();
        self.db
            .read(move |tx| {
                let row: Option<(String, String, String)> = tx
                    .row(
                        "SELECT id, password_hash, 'customer' FROM customers WHERE email_key = ?1
                     UNION ALL
                     SELECT id, password_hash, 'admin' FROM admins WHERE username_key = ?1",
                        [login],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()
                    .map_err(backend)?;
                row.map(|(id, password_hash, role)| {
                    Ok(Login {
                        subject: Uuid::parse_str(&id).map_err(|e| StoreError::Backend(format!("corrupt id: {e}")))?,
                        role: if role == "admin" { Role::Admin } else { Role::Customer },
                        password_hash,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn login_of(&self, principal: &Principal) -> Result<Option<AccountLogin>, StoreError> {
        let (id, role) = (principal.id.to_string(), principal.role);
        self.db
            .read(move |tx| {
                let sql = match role {
                    Role::Customer => "SELECT email_key, password_hash FROM customers WHERE id = ?1",
                    Role::Admin => "SELECT username_key, password_hash FROM admins WHERE id = ?1",
                };
                tx.row(sql, [id], |row| Ok(AccountLogin { login: row.get(0)?, password_hash: row.get(1)? }))
                    .optional()
                    .map_err(backend)
            })
            .await
    }

    async fn change_password(&self, change: PasswordChange<'_>) -> Result<(), StoreError> {
        let (id, role) = (change.principal.id.to_string(), change.principal.role);
        let (login, previous, new) =
            (change.login.login.clone(), change.login.password_hash.clone(), change.new_hash.to_owned());
        let (before, until) = (change.sessions_before, change.sessions_until);
        let reset = change
            .reset
            .map(|reset| {
                Ok::<_, StoreError>((
                    reset.token_hash.clone(),
                    to_doc(&PasswordReset { used_at: Some(before), ..reset.clone() })?,
                ))
            })
            .transpose()?;
        self.db
            .write(move |tx| {
                if let Some((token_hash, used)) = &reset {
                    let sql = "UPDATE password_resets SET used = 1, doc = ?2
                               WHERE token_hash = ?1 AND used = 0 AND expires_at > ?3";
                    if tx.exec(sql, params![token_hash, used, epoch_millis(before)]).map_err(backend)? != 1 {
                        return Err(StoreError::VersionConflict);
                    }
                }
                let sql = match role {
                    Role::Customer => {
                        "UPDATE customers SET password_hash = ?2 WHERE id = ?1 AND email_key = ?3 AND password_hash = ?4"
                    }
                    Role::Admin => {
                        "UPDATE admins SET password_hash = ?2 WHERE id = ?1 AND username_key = ?3 AND password_hash = ?4"
                    }
                };
                if tx.exec(sql, params![id, new, login, previous]).map_err(backend)? != 1 {
                    return Err(StoreError::VersionConflict);
                }
                end_sessions(tx, &id, before, until)
            })
            .await
    }

    async fn insert_password_reset(&self, reset: &PasswordReset) -> Result<(), StoreError> {
        let (token_hash, expires_at, doc) = (reset.token_hash.clone(), epoch_millis(reset.expires_at), to_doc(reset)?);
        self.db
            .write(move |tx| {
                tx.exec(
                    "INSERT INTO password_resets (token_hash, used, expires_at, doc) VALUES (?1, 0, ?2, ?3)",
                    params![token_hash, expires_at, doc],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn find_password_reset(&self, token_hash: &str) -> Result<Option<PasswordReset>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.db
            .read(move |tx| {
                let doc: Option<String> = tx
                    .row("SELECT doc FROM password_resets WHERE token_hash = ?1", [token_hash], |row| row.get(0))
                    .optional()
                    .map_err(backend)?;
                doc.as_deref().map(from_doc).transpose()
            })
            .await
    }

    async fn acquire_attempt(&self, key: &str, limit: u32, window_end: OffsetDateTime) -> Result<bool, StoreError> {
        let key = attempt_key(key, window_end);
        let expires_at = window_end.unix_timestamp();
        self.db
            .write(move |tx| {
                let taken = tx
                    .exec(
                        "INSERT INTO login_attempts (key, attempts, expires_at) VALUES (?1, 1, ?2)
                     ON CONFLICT (key) DO UPDATE SET attempts = attempts + 1 WHERE attempts < ?3",
                        params![key, expires_at, limit],
                    )
                    .map_err(backend)?;
                Ok(taken == 1 && limit > 0)
            })
            .await
    }

    async fn attempt_counts(&self, keys: &[String], window_end: OffsetDateTime) -> Result<Vec<u32>, StoreError> {
        let keys: Vec<String> = keys.iter().map(|key| attempt_key(key, window_end)).collect();
        self.db
            .read(move |tx| {
                let mut count =
                    tx.prepare_cached("SELECT attempts FROM login_attempts WHERE key = ?1").map_err(backend)?;
                keys.iter()
                    .map(|key| count.query_row([key], |row| row.get(0)).optional().map(Option::unwrap_or_default))
                    .collect::<Result<_, _>>()
                    .map_err(backend)
            })
            .await
    }

    async fn clear_attempts(&self, keys: &[String], window_end: OffsetDateTime) -> Result<(), StoreError> {
        let keys: Vec<String> = keys.iter().map(|key| attempt_key(key, window_end)).collect();
        self.db
            .write(move |tx| {
                for key in &keys {
                    tx.exec("DELETE FROM login_attempts WHERE key = ?1", [key]).map_err(backend)?;
                }
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl ExpiryStore for SqliteStore {
    async fn delete_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u32, StoreError> {
        let (seconds, millis) = (now.unix_timestamp(), epoch_millis(now));
        self.db
            .write(move |tx| {
                let mut deleted = 0;
                // Each table's expiry in its own unit: seconds, but milliseconds for idempotency records
                // and password resets.
                for (table, expired_before) in [
                    ("login_attempts", seconds),
                    ("revoked_tokens", seconds),
                    ("sessions_ended", seconds),
                    ("password_resets", millis),
                    ("cooldowns", seconds),
                    ("idempotency", millis),
                ] {
                    let left = i64::from(limit) - i64::from(deleted);
                    if left <= 0 {
                        break;
                    }
                    deleted += tx
                        .exec(
                            &format!(
                                "DELETE FROM {table} WHERE rowid IN
                                 (SELECT rowid FROM {table} WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)"
                            ),
                            params![expired_before, left],
                        )
                        .map_err(backend)? as u32;
                }
                Ok(deleted)
            })
            .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn session_is_valid(&self, principal: &Principal, token: TokenCheck) -> Result<bool, StoreError> {
        let (id, role) = (principal.id.to_string(), principal.role);
        self.db
            .read(move |tx| {
                let revoked = token_refused(tx, &id, token)?;
                let exists_sql = match role {
                    Role::Customer => "SELECT EXISTS (SELECT 1 FROM customers WHERE id = ?1)",
                    Role::Admin => "SELECT EXISTS (SELECT 1 FROM admins WHERE id = ?1)",
                };
                let exists: bool = tx.row(exists_sql, [id], |row| row.get(0)).map_err(backend)?;
                Ok(exists && !revoked)
            })
            .await
    }

    async fn revoke_token(&self, jti: Uuid, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let jti = jti.to_string();
        self.db
            .write(move |tx| {
                tx.exec(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                    params![jti, expires_at.unix_timestamp()],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn end_sessions(
        &self,
        principal: &Principal,
        before: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let subject = principal.id.to_string();
        self.db.write(move |tx| end_sessions(tx, &subject, before, until)).await
    }
}

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        let row = ProductRow::of(product)?;
        self.db
            .write(move |tx| {
                tx.exec(
                    "INSERT INTO products (id, name_key, category, price_cents, stock, version, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![row.id, row.name_key, row.category, row.price_cents, row.stock, row.version, row.doc],
                )
                .map_err(unique_violation("name_key", UniqueKey::ProductName))?;
                Ok(())
            })
            .await
    }

    async fn get_product(&self, id: Uuid) -> Result<Option<Product>, StoreError> {
        self.db
            .read(move |tx| {
                let doc: Option<String> = tx
                    .row("SELECT doc FROM products WHERE id = ?1", [id.to_string()], |row| row.get(0))
                    .optional()
                    .map_err(backend)?;
                doc.as_deref().map(from_doc).transpose()
            })
            .await
    }

    async fn list_products(&self, filter: &ProductFilter, page: &PageRequest) -> Result<Page<Product>, StoreError> {
        let after = decode_after(page)?.unwrap_or_default();
        let limit = page.limit;
        let filter = filter.clone();
        self.db
            .read(move |tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT name_key, doc FROM products
                     WHERE name_key > ?1
                       AND (?2 IS NULL OR category = ?2)
                       AND (?3 IS NULL OR substr(name_key, 1, length(?3)) = ?3)
                       AND (?4 IS NULL OR price_cents >= ?4)
                       AND (?5 IS NULL OR price_cents <= ?5)
                       AND (?6 IS NULL OR (stock > 0) = ?6)
                       AND (?8 IS NULL OR (stock < json_extract(doc, '$.low_stock_threshold')) = ?8)
                     ORDER BY name_key LIMIT ?7",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(
                        params![
                            after,
                            filter.category.as_ref().map(Category::as_str),
                            filter.name_prefix,
                            filter.min_price,
                            filter.max_price,
                            filter.in_stock,
                            limit + 1,
                            filter.low_stock
                        ],
                        |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
                    )
                    .map_err(backend)?
                    .map(|row| {
                        let (key, doc) = row.map_err(backend)?;
                        Ok((key, from_doc::<Product>(&doc)?))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                into_page(rows, limit)
            })
            .await
    }

    async fn update_product(
        &self,
        previous: &Product,
        updated: &Product,
        alert: Option<&StockAlert>,
    ) -> Result<(), StoreError> {
        let row = ProductRow::of(updated)?;
        let (expected, delta) = (previous.version, updated.stock - previous.stock);
        let (threshold_before, threshold_after) = (previous.low_stock_threshold, updated.low_stock_threshold);
        let alert = alert.cloned();
        self.db
            .write(move |tx| {
                let Some(current) = read_stock(tx, &row.id)? else { return Err(StoreError::VersionConflict) };
                let as_expected = match &alert {
                    Some(alert) => current.stock == alert.stock - delta,
                    None => !crosses_threshold(current.stock, delta, threshold_before, threshold_after),
                };
                if !as_expected || current.version != expected {
                    return Err(StoreError::VersionConflict);
                }
                // Stock moves by the edit's delta, so reservations made since the read still count.
                let changed = tx
                    .exec(
                        "UPDATE products SET name_key = ?2, category = ?3, price_cents = ?4, stock = stock + ?5,
                         version = ?6, doc = json_set(?7, '$.stock', stock + ?5)
                     WHERE id = ?1 AND version = ?8 AND stock + ?5 >= 0",
                        params![
                            row.id,
                            row.name_key,
                            row.category,
                            row.price_cents,
                            delta,
                            row.version,
                            row.doc,
                            expected
                        ],
                    )
                    .map_err(unique_violation("name_key", UniqueKey::ProductName))?;
                if changed != 1 {
                    return Err(StoreError::VersionConflict);
                }
                if let Some(alert) = &alert {
                    insert_alert(tx, alert)?;
                }
                Ok(())
            })
            .await
    }

    async fn adjust_stock(&self, write: AdjustmentWrite<'_>) -> Result<(), StoreError> {
        let adjustment = write.adjustment.clone();
        let check = write.low_stock.clone();
        check.validate(adjustment.delta)?;
        let doc = to_doc(&adjustment)?;
        let idempotency = write.idempotency.cloned();
        self.db
            .write(move |tx| {
                if let Some(record) = &idempotency {
                    save_idempotency(tx, record, adjustment.at)?;
                }
                let product = adjustment.product_id.to_string();
                let Some(current) = read_stock(tx, &product)? else { return Err(StoreError::VersionConflict) };
                if current.stock + adjustment.delta < 0 {
                    return Err(StoreError::InsufficientStock(vec![adjustment.product_id]));
                }
                if !check.holds(current.stock, current.threshold, adjustment.delta) {
                    return Err(StoreError::VersionConflict);
                }
                move_stock(tx, &product, adjustment.delta)?;
                tx.exec(
                    "INSERT INTO stock_adjustments (id, product_id, doc) VALUES (?1, ?2, ?3)",
                    params![adjustment.id.to_string(), product, doc],
                )
                .map_err(backend)?;
                if let Some(alert) = &check.alert {
                    insert_alert(tx, alert)?;
                }
                Ok(())
            })
            .await
    }

    async fn list_adjustments(&self, product: Uuid, page: &PageRequest) -> Result<Page<StockAdjustment>, StoreError> {
        let after = decode_after(page)?.unwrap_or_else(|| "~".to_owned());
        let (product, limit) = (product.to_string(), page.limit);
        self.db
            .read(move |tx| {
                list_docs(
                    tx,
                    "SELECT id, doc FROM stock_adjustments WHERE product_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                    params![product, after, limit + 1],
                    limit,
                )
            })
            .await
    }

    async fn delete_product(&self, previous: &Product) -> Result<(), StoreError> {
        let (id, expected) = (previous.id.to_string(), previous.version);
        self.db
            .write(move |tx| {
                let deleted = tx
                    .exec("DELETE FROM products WHERE id = ?1 AND version = ?2", params![id, expected])
                    .map_err(backend)?;
                if deleted == 1 { Ok(()) } else { Err(StoreError::VersionConflict) }
            })
            .await
    }

    async fn list_categories(&self) -> Result<Vec<CategorySummary>, StoreError> {
        self.db
            .read(|tx| {
                let mut stmt = tx
                    .prepare_cached("SELECT category, COUNT(*) FROM products GROUP BY category ORDER BY category")
                    .map_err(backend)?;
                let rows =
                    stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))).map_err(backend)?;
                rows.map(|row| {
                    let (name, product_count) = row.map_err(backend)?;
                    let name = Category::parse("category", &name)
                        .map_err(|e| StoreError::Backend(format!("corrupt category: {}", e.message)))?;
                    Ok(CategorySummary { name, product_count })
                })
                .collect()
            })
            .await
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    fn relays_notices(&self) -> bool {
        self.feed.is_some()
    }

    async fn order_context(
        &self,
        customer: Uuid,
        products: &[Uuid],
        token: Option<TokenCheck>,
    ) -> Result<OrderContext, StoreError> {
        let (customer, ids): (String, Vec<String>) =
            (customer.to_string(), products.iter().map(Uuid::to_string).collect());
        self.db
            .read(move |tx| {
                let token_revoked = match token {
                    Some(token) => token_refused(tx, &customer, token)?,
                    None => false,
                };
                let cooldown = read_cooldown(tx, &customer)?;
                let doc: Option<String> = tx
                    .row("SELECT doc FROM customers WHERE id = ?1", [&customer], |row| row.get(0))
                    .optional()
                    .map_err(backend)?;
                let customer = doc.as_deref().map(from_doc::<Customer>).transpose()?;
                let mut stmt = tx.prepare_cached("SELECT doc FROM products WHERE id = ?1").map_err(backend)?;
                let products = ids
                    .iter()
                    .map(|id| {
                        let doc: Option<String> = stmt.query_row([id], |row| row.get(0)).optional().map_err(backend)?;
                        doc.as_deref().map(from_doc::<Product>).transpose()
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok(OrderContext { cooldown, customer, products, token_revoked })
            })
            .await
    }

    async fn insert_order(&self, write: &NewOrderWrite<'_>) -> Result<Vec<StockAlert>, StoreError> {
        let order = write.order.clone();
        let (expected_cooldown, cooldown) = (write.expected_cooldown, write.cooldown.clone());
        let idempotency = write.idempotency.cloned();
        let low_stock = write.low_stock.to_vec();
        let notice = write.notice.cloned();
        for (line, check) in order.lines.iter().zip(&low_stock) {
            check.validate(-line.quantity)?;
        }
        // Ids for the alerts of crossings the read did not see, drawn here so that a replayed
        // write saves the same ones.
        let unread_alert_ids: Vec<Uuid> = order.lines.iter().map(|_| Uuid::now_v7()).collect();
        let doc = to_doc(&order)?;
        let saved = self
            .db
            .write(move |tx| {
                // In the order of precedence (see the trait): a used key, a stale read, short stock.
                if let Some(record) = &idempotency {
                    save_idempotency(tx, record, order.created_at)?;
                }
                let customer = order.customer_id.to_string();
                if read_cooldown(tx, &customer)?.map(|c| c.version) != expected_cooldown {
                    return Err(StoreError::VersionConflict);
                }
                if low_stock.len() != order.lines.len() {
                    return Err(StoreError::Backend("one low-stock check per order line is required".into()));
                }
                let (mut short, mut alerts) = (Vec::new(), Vec::new());
                let lines = order.lines.iter().zip(&low_stock).zip(&unread_alert_ids);
                for ((line, check), &alert_id) in lines {
                    let product = line.product_id.to_string();
                    match read_stock(tx, &product)? {
                        Some(current)
                            if current.price_cents == line.unit_price_cents && current.stock < line.quantity =>
                        {
                            short.push(line.product_id)
                        }
                        // The low-stock line is settled on the stock as it is now (see the trait).
                        Some(current)
                            if current.price_cents == line.unit_price_cents && current.threshold == check.threshold =>
                        {
                            move_stock(tx, &product, -line.quantity)?;
                            let unread = |stock| {
                                let (id, name) = (line.product_id, line.name.clone());
                                let (threshold, at) = (check.threshold, order.created_at);
                                StockAlert::raised(alert_id, id, name, stock, threshold, AlertCause::Order, at)
                            };
                            if let Some(alert) = check.settle(current.stock, -line.quantity, unread) {
                                insert_alert(tx, &alert)?;
                                alerts.push(alert);
                            }
                        }
                        // Deleted, repriced, or its low-stock threshold changed since it was read.
                        _ => return Err(StoreError::VersionConflict),
                    }
                }
                if !short.is_empty() {
                    return Err(StoreError::InsufficientStock(short));
                }
                tx.exec(
                "INSERT INTO orders (id, customer_id, status, due_at, version, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    order.id.to_string(),
                    customer,
                    order.status.as_str(),
                    epoch_millis(order.due_at()),
                    order.version,
                    doc
                ],
            )
            .map_err(backend)?;
                write_cooldown(tx, &customer, &cooldown)?;
                if let Some(notice) = &notice {
                    insert_notice(tx, notice)?;
                }
                add_counters(tx, counter_deltas(None, &order))?;
                Ok(alerts)
            })
            .await?;
        self.notice_saved(write.notice);
        Ok(saved)
    }

    async fn get_idempotency(&self, customer: Uuid, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (customer, key) = (customer.to_string(), key.to_owned());
        self.db
            .read(move |tx| {
                let doc: Option<String> = tx
                    .row("SELECT doc FROM idempotency WHERE customer_id = ?1 AND key = ?2", [customer, key], |row| {
                        row.get(0)
                    })
                    .optional()
                    .map_err(backend)?;
                doc.as_deref().map(from_doc).transpose()
            })
            .await
    }

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        self.db
            .read(move |tx| {
                let doc: Option<String> = tx
                    .row("SELECT doc FROM orders WHERE id = ?1", [id.to_string()], |row| row.get(0))
                    .optional()
                    .map_err(backend)?;
                doc.as_deref().map(from_doc).transpose()
            })
            .await
    }

    async fn list_orders(&self, filter: &OrderFilter, page: &PageRequest) -> Result<Page<Order>, StoreError> {
        let after = decode_after(page)?;
        let limit = page.limit;
        let filter = *filter;
        self.db
            .read(move |tx| {
                let customer = filter.customer.map(|c| c.to_string());
                let status = filter.status.map(OrderStatus::as_str);
                // By due time when listing one status across customers, else newest first; the
                // position is `<due>#<id>` or `<id>`.
                let by_due = customer.is_none() && status.is_some();
                let (due_after, id_after) = match after {
                    Some(after) if by_due => due_position(&after)?,
                    Some(after) if !after.contains('#') => (0, after),
                    None => (i64::MAX, "~".to_owned()),
                    Some(_) => return Err(StoreError::InvalidPageToken),
                };
                // Placement times are RFC 3339 in the document: compared as instants.
                let sql = if by_due {
                    "SELECT due_at, id, doc FROM orders WHERE status = ?2 AND (due_at, id) < (?3, ?4)
                   AND (?6 IS NULL OR unixepoch(json_extract(doc, '$.created_at'), 'subsec') >= ?6)
                   AND (?7 IS NULL OR unixepoch(json_extract(doc, '$.created_at'), 'subsec') <= ?7)
                 ORDER BY due_at DESC, id DESC LIMIT ?5"
                } else if customer.is_some() {
                    // One statement per filter shape: an optional `(?1 IS NULL OR …)` filter
                    // keeps SQLite off the customer's index and walks every order.
                    "SELECT due_at, id, doc FROM orders
                 WHERE customer_id = ?1 AND id < ?4 AND (?2 IS NULL OR status = ?2)
                   AND (?6 IS NULL OR unixepoch(json_extract(doc, '$.created_at'), 'subsec') >= ?6)
                   AND (?7 IS NULL OR unixepoch(json_extract(doc, '$.created_at'), 'subsec') <= ?7)
                 ORDER BY id DESC LIMIT ?5"
                } else {
                    "SELECT due_at, id, doc FROM orders
                 WHERE id < ?4
                   AND (?6 IS NULL OR unixepoch(json_extract(doc, '$.created_at'), 'subsec') >= ?6)
                   AND (?7 IS NULL OR unixepoch(json_extract(doc, '$.created_at'), 'subsec') <= ?7)
                 ORDER BY id DESC LIMIT ?5"
                };
                let seconds = |t: Option<OffsetDateTime>| t.map(|t| t.unix_timestamp_nanos() as f64 / 1e9);
                let (from, to) = (seconds(filter.created_from), seconds(filter.created_to));
                let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params![customer, status, due_after, id_after, limit + 1, from, to], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
                    })
                    .map_err(backend)?
                    .map(|row| {
                        let (due, id, doc) = row.map_err(backend)?;
                        let position = if by_due { format!("{due}#{id}") } else { id };
                        Ok((position, from_doc::<Order>(&doc)?))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                into_page(rows, limit)
            })
            .await
    }

    async fn transition_order(&self, write: &TransitionWrite<'_>) -> Result<(), StoreError> {
        let (previous, updated, restock) = (write.previous.clone(), write.updated.clone(), write.restock);
        let doc = to_doc(&updated)?;
        let payment = match write.payment {
            Some(PaymentChange::Insert(p)) => Some((None, p.clone(), to_doc(p)?)),
            Some(PaymentChange::Update { previous, updated }) => {
                Some((Some(previous.version), updated.clone(), to_doc(updated)?))
            }
            None => None,
        };
        let idempotency = write.idempotency.cloned();
        let refunded = refunds(write.payment);
        let notice = write.notice.cloned();
        self.db
            .write(move |tx| {
                if let Some(record) = &idempotency {
                    save_idempotency(tx, record, updated.updated_at)?;
                }
                if let Some(notice) = &notice {
                    insert_notice(tx, notice)?;
                }
                if let Some(payment_id) = refunded {
                    tx.exec("INSERT OR IGNORE INTO refunds_pending (payment_id) VALUES (?1)", [payment_id.to_string()])
                        .map_err(backend)?;
                }
                if let Some((expected, payment, payment_doc)) = &payment {
                    let written = match expected {
                        None => tx.exec(
                            "INSERT INTO payments (id, order_id, version, doc) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (id) DO NOTHING",
                            params![payment.id.to_string(), payment.order_id.to_string(), payment.version, payment_doc],
                        ),
                        Some(expected) => tx.exec(
                            "UPDATE payments SET version = ?2, doc = ?3 WHERE id = ?1 AND version = ?4",
                            params![payment.id.to_string(), payment.version, payment_doc, expected],
                        ),
                    }
                    .map_err(backend)?;
                    if written != 1 {
                        return Err(StoreError::VersionConflict);
                    }
                }
                let changed = tx
                .exec(
                    "UPDATE orders SET status = ?2, due_at = ?3, version = ?4, doc = ?5 WHERE id = ?1 AND version = ?6",
                    params![
                        updated.id.to_string(),
                        updated.status.as_str(),
                        epoch_millis(updated.due_at()),
                        updated.version,
                        doc,
                        previous.version
                    ],
                )
                .map_err(backend)?;
                if changed != 1 {
                    return Err(StoreError::VersionConflict);
                }
                if restock {
                    for line in &previous.lines {
                        tx.exec(
                            "UPDATE products SET stock = stock + ?2, doc = json_set(doc, '$.stock', stock + ?2)
                         WHERE id = ?1",
                            params![line.product_id.to_string(), line.quantity],
                        )
                        .map_err(backend)?;
                    }
                }
                if let Some(release) = hold_release(&previous, &updated) {
                    release_hold(tx, release)?;
                }
                add_counters(tx, counter_deltas(Some(&previous), &updated))
            })
            .await?;
        self.notice_saved(write.notice);
        Ok(())
    }

    async fn orders_due(
        &self,
        status: OrderStatus,
        due_by: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<Order>, StoreError> {
        let (due_after, id_after) = match decode_after(page)? {
            Some(after) => due_position(&after)?,
            None => (i64::MIN, String::new()),
        };
        let (due_by, limit) = (epoch_millis(due_by), page.limit);
        self.db
            .read(move |tx| {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT due_at, id, doc FROM orders WHERE status = ?1 AND due_at <= ?2 AND (due_at, id) > (?3, ?4)
                         ORDER BY due_at, id LIMIT ?5",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![status.as_str(), due_by, due_after, id_after, limit + 1], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
                    })
                    .map_err(backend)?
                    .map(|row| {
                        let (due, id, doc) = row.map_err(backend)?;
                        Ok((format!("{due}#{id}"), from_doc::<Order>(&doc)?))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                into_page(rows, limit)
            })
            .await
    }

    async fn order_counters(&self) -> Result<OrderCounters, StoreError> {
        self.db
            .read(|tx| {
                let mut stmt = tx.prepare_cached("SELECT name, value FROM counters").map_err(backend)?;
                let rows = stmt
                    .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(backend)?;
                Ok(counters_from(rows))
            })
            .await
    }
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn get_payment(&self, id: Uuid) -> Result<Option<Payment>, StoreError> {
        self.db
            .read(move |tx| {
                let doc: Option<String> = tx
                    .row("SELECT doc FROM payments WHERE id = ?1", [id.to_string()], |row| row.get(0))
                    .optional()
                    .map_err(backend)?;
                doc.as_deref().map(from_doc).transpose()
            })
            .await
    }

    async fn pending_refunds(&self, limit: u32) -> Result<Vec<Uuid>, StoreError> {
        self.db
            .read(move |tx| {
                let mut stmt = tx
                    .prepare_cached("SELECT payment_id FROM refunds_pending ORDER BY retry_after, payment_id LIMIT ?1")
                    .map_err(backend)?;
                let rows = stmt.query_map([limit], |row| row.get::<_, String>(0)).map_err(backend)?;
                rows.map(|id| {
                    Uuid::parse_str(&id.map_err(backend)?).map_err(|e| StoreError::Backend(format!("corrupt id: {e}")))
                })
                .collect()
            })
            .await
    }

    async fn postpone_refund(&self, payment: Uuid, until: OffsetDateTime) -> Result<(), StoreError> {
        self.db
            .write(move |tx| {
                tx.exec(
                    "UPDATE refunds_pending SET retry_after = ?2 WHERE payment_id = ?1",
                    params![payment.to_string(), epoch_millis(until)],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn confirm_refund(&self, payment: Uuid) -> Result<(), StoreError> {
        self.db
            .write(move |tx| {
                tx.exec("DELETE FROM refunds_pending WHERE payment_id = ?1", [payment.to_string()]).map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn list_payments(&self, filter: &PaymentFilter, page: &PageRequest) -> Result<Page<Payment>, StoreError> {
        let after = decode_after(page)?.unwrap_or_else(|| "~".to_owned());
        let (order, limit) = (filter.order.map(|o| o.to_string()), page.limit);
        let status = filter.status.map(|s| s.as_str());
        self.db
            .read(move |tx| {
                // By the order's index when one order's payments are asked for (see list_orders).
                let sql = if order.is_some() {
                    "SELECT id, doc FROM payments
                 WHERE order_id = ?1 AND id < ?3 AND (?2 IS NULL OR json_extract(doc, '$.status') = ?2)
                 ORDER BY id DESC LIMIT ?4"
                } else {
                    "SELECT id, doc FROM payments
                 WHERE id < ?3 AND (?2 IS NULL OR json_extract(doc, '$.status') = ?2)
                 ORDER BY id DESC LIMIT ?4"
                };
                list_docs(tx, sql, params![order, status, after, limit + 1], limit)
            })
            .await
    }
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn list_alerts(
        &self,
        acknowledged: Option<bool>,
        page: &PageRequest,
    ) -> Result<Page<StockAlert>, StoreError> {
        let after = decode_after(page)?.unwrap_or_else(|| "~".to_owned());
        let limit = page.limit;
        self.db
            .read(move |tx| {
                list_docs(
                    tx,
                    "SELECT id, doc FROM stock_alerts WHERE (?1 IS NULL OR acknowledged = ?1) AND id < ?2
                 ORDER BY id DESC LIMIT ?3",
                    params![acknowledged, after, limit + 1],
                    limit,
                )
            })
            .await
    }

    async fn get_alert(&self, id: Uuid) -> Result<Option<StockAlert>, StoreError> {
        self.db.read(move |tx| read_alert(tx, &id.to_string())).await
    }

    async fn acknowledge_alert(
        &self,
        id: Uuid,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<Option<StockAlert>, StoreError> {
        let by = by.to_owned();
        self.db
            .write(move |tx| {
                let id = id.to_string();
                let Some(mut alert) = read_alert(tx, &id)? else { return Ok(None) };
                if alert.acknowledged_at.is_none() {
                    alert.acknowledged_at = Some(at);
                    alert.acknowledged_by = Some(by.clone());
                    tx.exec(
                        "UPDATE stock_alerts SET acknowledged = 1, doc = ?2 WHERE id = ?1",
                        params![id, to_doc(&alert)?],
                    )
                    .map_err(backend)?;
                }
                Ok(Some(alert))
            })
            .await
    }

    async fn unpublished_alerts(&self, limit: u32) -> Result<Vec<StockAlert>, StoreError> {
        self.db
            .read(move |tx| {
                let page: Page<StockAlert> = list_docs(
                    tx,
                    "SELECT id, doc FROM stock_alerts WHERE published = 0 ORDER BY id LIMIT ?1",
                    params![limit],
                    limit,
                )?;
                Ok(page.items)
            })
            .await
    }

    async fn mark_alert_published(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        self.db
            .write(move |tx| {
                let id = id.to_string();
                if let Some(mut alert) = read_alert(tx, &id)?.filter(|a| a.published_at.is_none()) {
                    alert.published_at = Some(at);
                    tx.exec(
                        "UPDATE stock_alerts SET published = 1, doc = ?2 WHERE id = ?1",
                        params![id, to_doc(&alert)?],
                    )
                    .map_err(backend)?;
                }
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl NoticeStore for SqliteStore {
    async fn list_notices(&self, customer: Uuid, page: &PageRequest) -> Result<Page<Notice>, StoreError> {
        let after = decode_after(page)?.unwrap_or_else(|| "~".to_owned());
        let (customer, limit) = (customer.to_string(), page.limit);
        self.db
            .read(move |tx| {
                list_docs(
                    tx,
                    concat!(
                        "SELECT id, ",
                        notice_doc!(),
                        " FROM notices WHERE customer_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
                    ),
                    params![customer, after, limit + 1],
                    limit,
                )
            })
            .await
    }

    async fn get_notice(&self, id: Uuid) -> Result<Option<Notice>, StoreError> {
        self.db.read(move |tx| read_notice(tx, &id.to_string())).await
    }

    async fn claim_notice(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> Result<NoticeClaim, StoreError> {
        self.db
            .write(move |tx| {
                let id = id.to_string();
                let claimed = tx
                    .exec(
                        "UPDATE notices SET lease_until = ?2, attempts = attempts + 1
                     WHERE id = ?1 AND sent = 0 AND lease_until <= ?3",
                        params![id, epoch_millis(lease_until), epoch_millis(now)],
                    )
                    .map_err(backend)?;
                Ok(match read_notice(tx, &id)? {
                    Some(notice) if claimed == 1 => NoticeClaim::Claimed(Box::new(notice)),
                    Some(notice) if notice.sent_at.is_some() => NoticeClaim::Sent,
                    Some(_) => NoticeClaim::Leased,
                    None => NoticeClaim::Missing,
                })
            })
            .await
    }

    async fn mark_notice_sent(&self, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        // The stamp as the document's serde writes it, in its own column: the reads put it in
        // the document (see the migration that added the column).
        let at = at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| StoreError::Backend(format!("sent_at: {e}")))?;
        self.db
            .write(move |tx| {
                tx.exec(
                    "UPDATE notices SET sent = 1, sent_at = ?2 WHERE id = ?1 AND sent = 0",
                    params![id.to_string(), at],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    async fn notices_to_relay(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Notice>, StoreError> {
        self.db.read(move |tx| {
            let page: Page<Notice> = list_docs(
                tx,
                "SELECT id, doc FROM notices WHERE sent = 0 AND attempts = 0 AND relay_after <= ?1 ORDER BY id LIMIT ?2",
                params![epoch_millis(now), limit],
                limit,
            )?;
            Ok(page.items)
        })
        .await
    }

    async fn defer_relay(&self, id: Uuid, until: OffsetDateTime) -> Result<(), StoreError> {
        self.db
            .write(move |tx| {
                tx.exec(
                    "UPDATE notices SET relay_after = ?2 WHERE id = ?1 AND sent = 0",
                    params![id.to_string(), epoch_millis(until)],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }
}

/// Saves `notice` in the outbox.
fn insert_notice(tx: &Connection, notice: &Notice) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO notices (id, customer_id, sent, lease_until, relay_after, attempts, doc)
         VALUES (?1, ?2, 0, 0, ?3, 0, ?4)",
        params![
            notice.id.to_string(),
            notice.customer_id.to_string(),
            epoch_millis(notice.created_at + super::FIRST_RELAY_AFTER),
            to_doc(notice)?
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// The notices table read as a stream: the local server's stand-in for the orders table's
/// stream on AWS. It follows the table's rowids, which the one writer hands out in commit
/// order (notices are never deleted, so none is reused), so a reader that has seen a rowid has
/// seen every notice committed before it.
pub struct NoticeFeed {
    db: EmbeddedDb,
    saved: Arc<Notify>,
    /// The rowid of the last notice read.
    after: i64,
    /// Tries after which a notice is left alone (see [`SqliteStore::notice_feed`]).
    gave_up_after: u32,
}

impl NoticeFeed {
    /// The ids of the next notices saved, neither sent nor given up on, oldest first, at most
    /// `limit`; waits up to `patience` for one. Each is returned once.
    pub async fn next(&mut self, limit: u32, patience: std::time::Duration) -> Result<Vec<Uuid>, StoreError> {
        let mut waited = false;
        loop {
            let after = self.after;
            let rows: Vec<(i64, String, bool, u32)> = self
                .db
                .read(move |tx| {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT rowid, id, sent, attempts FROM notices WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                        )
                        .map_err(backend)?;
                    let rows = stmt
                        .query_map(params![after, limit], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })
                        .map_err(backend)?;
                    rows.collect::<Result<_, _>>().map_err(backend)
                })
                .await?;
            if let Some((last, ..)) = rows.last() {
                self.after = *last;
                let gave_up_after = self.gave_up_after;
                return rows
                    .into_iter()
                    .filter(|(_, _, sent, attempts)| !sent && *attempts < gave_up_after)
                    .map(|(_, id, ..)| id.parse().map_err(|e| StoreError::Backend(format!("notice id {id}: {e}"))))
                    .collect();
            }
            if waited {
                return Ok(Vec::new());
            }
            // A notice saved since the read above has left its wake-up waiting.
            let _ = tokio::time::timeout(patience, self.saved.notified()).await;
            waited = true;
        }
    }
}

/// Whether the token of the account `subject` is refused: revoked, or issued before the
/// account's sessions were ended (either until it would have expired).
fn token_refused(tx: &Connection, subject: &str, token: TokenCheck) -> Result<bool, StoreError> {
    tx.row(
        "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?1 AND expires_at > ?2)
             OR EXISTS (SELECT 1 FROM sessions_ended WHERE subject_id = ?3 AND before_ms > ?4 AND expires_at > ?2)",
        params![token.jti.to_string(), expired_before(token.now), subject, epoch_millis(token.issued_at)],
        |row| row.get(0),
    )
    .map_err(backend)
}

/// Ends the sessions of the account `subject` begun before `before`, keeping a later end.
fn end_sessions(
    tx: &Connection,
    subject: &str,
    before: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO sessions_ended (subject_id, before_ms, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (subject_id) DO UPDATE SET before_ms = MAX(before_ms, excluded.before_ms),
                                                expires_at = MAX(expires_at, excluded.expires_at)",
        params![subject, epoch_millis(before), until.unix_timestamp()],
    )
    .map_err(backend)?;
    Ok(())
}

fn read_notice(tx: &Connection, id: &str) -> Result<Option<Notice>, StoreError> {
    let doc: Option<String> = tx
        .row(concat!("SELECT ", notice_doc!(), " FROM notices WHERE id = ?1"), [id], |row| row.get(0))
        .optional()
        .map_err(backend)?;
    doc.as_deref().map(from_doc).transpose()
}

fn read_alert(tx: &Connection, id: &str) -> Result<Option<StockAlert>, StoreError> {
    let doc: Option<String> =
        tx.row("SELECT doc FROM stock_alerts WHERE id = ?1", [id], |row| row.get(0)).optional().map_err(backend)?;
    doc.as_deref().map(from_doc).transpose()
}

/// The customer's cooldown row, if any.
fn read_cooldown(tx: &Connection, customer: &str) -> Result<Option<Cooldown>, StoreError> {
    let row: Option<(i64, String, i64, i64, i64)> = tx
        .row(
            "SELECT version, slots, unpaid_units, unpaid_cents, expires_at FROM cooldowns WHERE customer_id = ?1",
            [customer],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((version, slots, unpaid_units, unpaid_cents, expires_at)) = row else {
        return Ok(None);
    };
    let slots: Vec<i64> = serde_json::from_str(&slots).map_err(|e| StoreError::Backend(format!("slots: {e}")))?;
    Ok(Some(Cooldown {
        version: version as u64,
        slots: slots.into_iter().map(from_epoch_millis).collect::<Result<_, _>>()?,
        unpaid_units,
        unpaid_cents,
        expires_at: from_epoch_millis(expires_at * 1000)?,
    }))
}

fn write_cooldown(tx: &Connection, customer: &str, cooldown: &Cooldown) -> Result<(), StoreError> {
    let slots: Vec<i64> = cooldown.slots.iter().copied().map(epoch_millis).collect();
    let slots = serde_json::to_string(&slots).map_err(|e| StoreError::Backend(format!("slots: {e}")))?;
    tx.exec(
        "INSERT INTO cooldowns (customer_id, version, slots, unpaid_units, unpaid_cents, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, slots = excluded.slots,
             unpaid_units = excluded.unpaid_units, unpaid_cents = excluded.unpaid_cents, expires_at = excluded.expires_at",
        params![
            customer,
            cooldown.version,
            slots,
            cooldown.unpaid_units,
            cooldown.unpaid_cents,
            cooldown.expires_at.unix_timestamp()
        ],
    )
    .map_err(backend)?;
    Ok(())
}

/// Gives back what a transition no longer holds (see [`HoldRelease`]).
fn release_hold(tx: &Connection, release: HoldRelease) -> Result<(), StoreError> {
    let customer = release.customer.to_string();
    // A cooldown collected meanwhile is recreated, as DynamoDB's atomic adds do: let it go again.
    let mut cooldown = read_cooldown(tx, &customer)?.unwrap_or_else(|| Cooldown {
        version: 0,
        slots: Vec::new(),
        unpaid_units: 0,
        unpaid_cents: 0,
        expires_at: release.at + time::Duration::days(30),
    });
    cooldown.version += 1;
    cooldown.unpaid_units -= release.units;
    cooldown.unpaid_cents -= release.cents;
    if let Some(slot) = release.slot {
        cooldown.slots.retain(|s| *s != slot);
    }
    write_cooldown(tx, &customer, &cooldown)
}

/// Saves an idempotency record unless a live one holds the key (`Duplicate` then).
fn save_idempotency(tx: &Connection, record: &IdempotencyRecord, now: OffsetDateTime) -> Result<(), StoreError> {
    let taken = tx
        .exec(
            "INSERT INTO idempotency (customer_id, key, expires_at, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (customer_id, key) DO UPDATE SET expires_at = excluded.expires_at, doc = excluded.doc
             WHERE idempotency.expires_at <= ?5",
            params![
                record.customer_id.to_string(),
                record.key,
                epoch_millis(record.expires_at),
                to_doc(record)?,
                epoch_millis(now)
            ],
        )
        .map_err(backend)?;
    if taken == 0 { Err(StoreError::Duplicate(UniqueKey::IdempotencyKey)) } else { Ok(()) }
}

fn add_counters(tx: &Connection, deltas: Vec<(String, i64)>) -> Result<(), StoreError> {
    for (name, delta) in deltas {
        tx.exec(
            "INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            params![name, delta],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// What stock-moving writes check of a product.
struct StockState {
    stock: i64,
    price_cents: i64,
    threshold: i64,
    version: u64,
}

fn read_stock(tx: &Connection, product: &str) -> Result<Option<StockState>, StoreError> {
    tx.row(
        "SELECT stock, price_cents, json_extract(doc, '$.low_stock_threshold'), version FROM products WHERE id = ?1",
        [product],
        |row| {
            Ok(StockState {
                stock: row.get(0)?,
                price_cents: row.get(1)?,
                threshold: row.get(2)?,
                version: row.get(3)?,
            })
        },
    )
    .optional()
    .map_err(backend)
}

fn move_stock(tx: &Connection, product: &str, delta: i64) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE products SET stock = stock + ?2, doc = json_set(doc, '$.stock', stock + ?2) WHERE id = ?1",
        params![product, delta],
    )
    .map_err(backend)?;
    Ok(())
}

fn insert_alert(tx: &Connection, alert: &StockAlert) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO stock_alerts (id, acknowledged, published, doc) VALUES (?1, ?2, ?3, ?4)",
        params![alert.id.to_string(), alert.acknowledged_at.is_some(), alert.published_at.is_some(), to_doc(alert)?],
    )
    .map_err(backend)?;
    Ok(())
}

/// One page of `(sort key, doc)` rows from `sql`, which must fetch `limit + 1` of them.
fn list_docs<T: DeserializeOwned>(
    tx: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    limit: u32,
) -> Result<Page<T>, StoreError> {
    let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
    let rows = stmt
        .query_map(params, |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
        .map_err(backend)?
        .map(|row| {
            let (key, doc) = row.map_err(backend)?;
            Ok((key, from_doc::<T>(&doc)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    into_page(rows, limit)
}

fn expired_before(now: OffsetDateTime) -> i64 {
    now.unix_timestamp()
}

/// A product's indexed columns plus its document.
struct ProductRow {
    id: String,
    name_key: String,
    category: String,
    price_cents: i64,
    stock: i64,
    version: u64,
    doc: String,
}

impl ProductRow {
    fn of(product: &Product) -> Result<Self, StoreError> {
        Ok(Self {
            id: product.id.to_string(),
            name_key: product.name.key(),
            category: product.category.as_str().to_owned(),
            price_cents: product.price_cents,
            stock: product.stock,
            version: product.version,
            doc: to_doc(product)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NoticeKind, OrderStatus};

    /// A notice marked sent before its stamp had a column, the stamp in its document, is read
    /// with that stamp once the file is migrated, and is neither claimed nor relayed again.
    #[tokio::test]
    async fn a_notice_marked_before_the_stamp_had_a_column_keeps_its_stamp() {
        let dir = std::env::temp_dir().join(format!("orderly-sqlite-store-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("orderly.sqlite3");
        let created_at = OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("a time");
        let sent_at = created_at + time::Duration::seconds(3);
        let notice = Notice {
            id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            kind: NoticeKind::OrderAccepted,
            to_name: "Ada".into(),
            to_email: "ada@example.com".into(),
            order_id: Uuid::now_v7(),
            status: OrderStatus::Pending,
            lines: Vec::new(),
            total_cents: 1000,
            release_at: None,
            payment_due_at: None,
            payment: None,
            carrier: None,
            tracking_number: None,
            cancel_reason: None,
            refunded: false,
            created_at,
            sent_at: None,
        };

        let earlier = Schema { name: "store", migrations: &MIGRATIONS[..MIGRATIONS.len() - 1] };
        let before = EmbeddedDb::open(&path, &[earlier]).expect("the file as it was");
        let saved = notice.clone();
        let stamp = sent_at.format(&time::format_description::well_known::Rfc3339).expect("a stamp");
        before
            .write(move |tx| {
                insert_notice(tx, &saved)?;
                // How a notice was marked sent then.
                tx.exec(
                    "UPDATE notices SET sent = 1, doc = json_set(doc, '$.sent_at', ?2) WHERE id = ?1",
                    params![saved.id.to_string(), stamp],
                )
                .map_err(backend)?;
                Ok::<_, StoreError>(())
            })
            .await
            .expect("marked the old way");
        drop(before);

        let store = SqliteStore::open(&path).expect("migrated");
        let read = store.get_notice(notice.id).await.expect("read").expect("the notice");
        assert_eq!(read, Notice { sent_at: Some(sent_at), ..notice.clone() });
        let listed = store.list_notices(notice.customer_id, &PageRequest::first(10)).await.expect("list");
        assert_eq!(listed.items, [read]);
        let later = created_at + time::Duration::hours(1);
        let claim = store.claim_notice(notice.id, later, later + time::Duration::minutes(1)).await.expect("claim");
        assert!(matches!(claim, NoticeClaim::Sent), "{claim:?}");
        assert!(store.notices_to_relay(later, 10).await.expect("relay").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
