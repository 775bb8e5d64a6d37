//! Accounts: logging in under the failed-login limits, changing a password or resetting a
//! forgotten one by email (either ends every session of the account), and admins (created by
//! the operator, never over the API).

use std::net::IpAddr;
use std::sync::Arc;

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Invalid as _;
use super::auth::{AccessToken, AuthConfig, LoginLimits, Password, Session, Sessions, too_many};
use super::field_errors;
use super::notifications::{AccountChange, NoticeMessage, queue_account_email};
use super::passwords::Hasher;
use crate::clock::Clock;
use crate::error::{Error, FieldError, Result};
use crate::model::{Admin, Email, PasswordReset, Principal, Role, Username};
use crate::queue::{Queue, QueueName};
use crate::store::{AccountLogin, AccountStore, PasswordChange, StoreError};

/// POST /auth/login body: an email (customers) or a username (admins), and the password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"})))]
pub struct LoginRequest {
    pub email: Option<String>,
    pub username: Option<String>,
    pub password: Password,
}

/// POST /auth/password body: the account's password, and the one to replace it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"current_password": "correct horse battery", "new_password": "a longer, better passphrase"})))]
pub struct PasswordChangeRequest {
    pub current_password: Password,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 10, max_length = 128))]
    pub new_password: Password,
}

/// POST /auth/password-reset body: the email of the account whose password is forgotten.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"email": "ada@example.com"})))]
pub struct PasswordResetRequest {
    pub email: String,
}

/// POST /auth/password-reset/confirm body: the code the reset email gave, and the new password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"code": "the code from the email", "new_password": "a longer, better passphrase"})))]
pub struct PasswordResetConfirmation {
    pub code: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 10, max_length = 128))]
    pub new_password: Password,
}

impl std::fmt::Debug for PasswordResetConfirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordResetConfirmation(<redacted>)")
    }
}

/// How long an emailed reset code works.
pub const PASSWORD_RESET_TTL: Duration = Duration::minutes(30);

/// Reset emails one address may be sent per login window: enough for a lost email or two,
/// too few to flood an inbox.
const RESETS_PER_ACCOUNT: u32 = 3;

const INVALID_CREDENTIALS: &str = "invalid credentials";

const RESET_CODE_REFUSED: &str = "is not a live reset code (unknown, used, expired, or sent before the account's \
                                  password or email last changed): ask for a new one";

/// The failed-login counters a login name and source address fill, each with its limit, in
/// the fixed window ending at `window_end`.
struct FailureCounters {
    counters: Vec<(String, u32)>,
    window_end: OffsetDateTime,
}

#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
    auth: Arc<AuthConfig>,
    sessions: Sessions,
    hasher: Hasher,
    /// The notifications queue carries reset emails to the notification worker.
    queue: Arc<dyn Queue>,
}

impl Accounts {
    pub fn new(
        store: Arc<dyn AccountStore>,
        clock: Arc<dyn Clock>,
        auth: Arc<AuthConfig>,
        sessions: Sessions,
        hasher: Hasher,
        queue: Arc<dyn Queue>,
    ) -> Self {
        Self { store, clock, auth, sessions, hasher, queue }
    }

    /// Creates an admin, or leaves an existing one with that username as it is.
    pub async fn ensure_admin(&self, username: &str, password: Password) -> Result<Admin> {
        let username = admin_credentials(username, &password)?;
        let admin = Admin { id: Uuid::now_v7(), username, created_at: self.clock.now() };
        let hash = self.hasher.hash(password).await?;
        match self.store.insert_admin(&admin, &hash).await {
            Ok(()) => {
                tracing::info!(admin_id = %admin.id, "admin created");
                Ok(admin)
            }
            Err(StoreError::Duplicate(_)) => {
                tracing::info!("admin already exists; kept as it is");
                Ok(admin)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The operator's way back for an admin who forgot their password (there is no reset by
    /// email for admins): sets the admin's password and ends every session of the account.
    pub async fn reset_admin_password(&self, username: &str, password: Password) -> Result<()> {
        let username = admin_credentials(username, &password)?;
        let admin = self.store.find_login(username.as_str()).await?.filter(|login| login.role == Role::Admin);
        let Some(admin) = admin else { return Err(Error::NotFound("admin")) };
        let principal = Principal { id: admin.subject, role: Role::Admin };
        let login = AccountLogin { login: username.as_str().to_owned(), password_hash: admin.password_hash };
        let conflict = || Error::Conflict("the admin's password changed meanwhile: run it again".into());
        self.replace_password(principal, &login, password, None, None, conflict).await?;
        tracing::info!(admin_id = %principal.id, "admin password reset by the operator");
        Ok(())
    }

    /// Checks credentials under the failed-login limits and issues an access token.
    /// Unknown accounts and wrong passwords take the same path and the same time.
    pub async fn login(&self, request: LoginRequest, source: Option<IpAddr>) -> Result<AccessToken> {
        let login_key = match (&request.email, &request.username) {
            (Some(email), None) => email.trim().to_lowercase(),
            (None, Some(username)) => username.trim().to_lowercase(),
            _ => return Err(Error::invalid("email", "give either email (customers) or username (admins)")),
        };
        // No account has a longer name (emails stop at 254); refused before any key is built.
        if login_key.chars().count() > 254 {
            return Err(Error::Unauthorized(INVALID_CREDENTIALS));
        }
        let now = self.clock.now();
        let failures = FailureCounters::check(self.store.as_ref(), self.auth.limits, &login_key, source, now).await?;
        let login = self.store.find_login(&login_key).await?;
        let hash = login.as_ref().map(|l| l.password_hash.clone());
        let valid = self.hasher.verify(request.password, hash).await?;
        let Some(login) = login.filter(|_| valid) else {
            failures.count(self.store.as_ref()).await?;
            tracing::info!("login refused");
            return Err(Error::Unauthorized(INVALID_CREDENTIALS));
        };
        let token = self.sessions.issue(Principal { id: login.subject, role: login.role }, now)?;
        tracing::info!(subject = %login.subject, role = ?login.role, "login succeeded");
        Ok(token)
    }

    /// Changes the caller's password, checking the current one under the failed-login limits
    /// (a stolen token is no way round them), and ends every session of the account, this one
    /// included, in the same write: the answer is a new token.
    pub async fn change_password(
        &self,
        session: &Session,
        request: PasswordChangeRequest,
        source: Option<IpAddr>,
    ) -> Result<AccessToken> {
        let mut invalid = request.new_password.check_new("new_password").invalid();
        if request.current_password.0.is_empty() {
            invalid.insert(0, FieldError::new("current_password", "must not be empty"));
        }
        if !invalid.is_empty() {
            return Err(Error::Validation(invalid));
        }
        let principal = session.principal;
        let conflict = || {
            Error::Conflict("the account's password or email changed meanwhile: retry with its current password".into())
        };
        // Accounts are never deleted, so none found means its login moved with an email change
        // between the two reads (on DynamoDB).
        let login = self.store.login_of(&principal).await?.ok_or_else(conflict)?;
        let now = self.clock.now();
        let unchanged = request.current_password.0 == request.new_password.0;
        let (store, limits) = (self.store.as_ref(), self.auth.limits);
        check_current_password(store, &self.hasher, limits, &login, request.current_password, source, now).await?;
        if unchanged {
            return Err(Error::invalid("new_password", "must differ from the current password"));
        }
        self.replace_password(principal, &login, request.new_password, None, source, conflict).await
    }

    /// Emails a reset code to the customer who signs in with `email`, if there is one (an admin
    /// asks the operator). The answer is the same either way; requests are limited per address
    /// (as sign-ups are) and per email.
    pub async fn request_password_reset(&self, request: PasswordResetRequest, source: Option<IpAddr>) -> Result<()> {
        let email = Email::parse("email", &request.email).map_err(|e| Error::Validation(vec![e]))?;
        let login_key = email.key();
        let now = self.clock.now();
        let window_end = self.auth.limits.window_end(now)?;
        // The address first: an address over its limit must not use up anyone's per-email asks.
        let mut counters = Vec::new();
        if let Some(ip) = source {
            counters.push((format!("reset:address:{ip}"), self.auth.limits.sign_ups_per_address));
        }
        counters.push((format!("reset:account:{login_key}"), RESETS_PER_ACCOUNT));
        for (key, limit) in &counters {
            if !self.store.acquire_attempt(key, *limit, window_end).await? {
                return Err(too_many(now, window_end, "too many password resets"));
            }
        }
        let account = match self.store.find_login(&login_key).await? {
            Some(login) if login.role == Role::Customer => {
                self.store.get_customer(login.subject).await?.map(|customer| (customer, login.password_hash))
            }
            _ => None,
        };
        let Some((customer, password_hash)) = account else {
            tracing::info!("password reset asked for an email no customer has");
            return Ok(());
        };
        let code = new_reset_code()?;
        let reset = PasswordReset {
            id: Uuid::now_v7(),
            token_hash: sha256_hex(&code),
            customer_id: customer.id,
            login: login_key,
            for_password: sha256_hex(&password_hash),
            expires_at: now + PASSWORD_RESET_TTL,
            used_at: None,
        };
        self.store.insert_password_reset(&reset).await?;
        // Saved before it is sent: a send that fails leaves a reset nobody knows the code of,
        // which expires; the customer asks again.
        let message = NoticeMessage::PasswordReset {
            reset_id: reset.id,
            to_name: customer.name.as_str().to_owned(),
            to_email: customer.email.as_str().to_owned(),
            code,
            expires_at: reset.expires_at,
        };
        let outgoing = message.outgoing(&reset.id.to_string()).map_err(Error::Internal)?;
        if let Err(err) = self.queue.send(QueueName::Notifications, &outgoing, Duration::ZERO).await {
            tracing::warn!(reset_id = %reset.id, error = %err, "reset email not queued");
            return Err(Error::Unavailable);
        }
        tracing::info!(subject = %customer.id, reset_id = %reset.id, "password reset emailed");
        Ok(())
    }

    /// Sets a new password with an emailed reset code, which works once, for
    /// [`PASSWORD_RESET_TTL`], and only while the account still has the email it went to and
    /// the password it had (any reset or change ends every other code). Ends every session of
    /// the account, as a change does, and lifts its failed-login lockout (as seen from
    /// `source`); the answer is a new token.
    pub async fn reset_password(
        &self,
        request: PasswordResetConfirmation,
        source: Option<IpAddr>,
    ) -> Result<AccessToken> {
        let code = request.code.trim();
        let mut invalid = request.new_password.check_new("new_password").invalid();
        if code.is_empty() {
            invalid.insert(0, FieldError::new("code", "must not be empty: give the code the email gave"));
        }
        if !invalid.is_empty() {
            return Err(Error::Validation(invalid));
        }
        let refused = || Error::invalid("code", RESET_CODE_REFUSED);
        if code.len() > 100 {
            return Err(refused());
        }
        let now = self.clock.now();
        let reset = self
            .store
            .find_password_reset(&sha256_hex(code))
            .await?
            .filter(|reset| reset.used_at.is_none() && reset.expires_at > now)
            .ok_or_else(refused)?;
        let principal = Principal { id: reset.customer_id, role: Role::Customer };
        let login = self
            .store
            .login_of(&principal)
            .await?
            .filter(|login| login.login == reset.login && sha256_hex(&login.password_hash) == reset.for_password)
            .ok_or_else(refused)?;
        self.replace_password(principal, &login, request.new_password, Some(&reset), source, refused).await
    }

    /// Stores `new_password` for the account in place of the hash read in `login` (using up
    /// `reset`, if any) and ends every session of the account, in one write; then ends them
    /// again as of after that write, because a login that read the old hash while the write
    /// was under way carries a time between the two; answers a token issued at that later
    /// instant, so it is valid. The owner has just proved the account theirs, so its failed
    /// logins no longer lock them out: its own counter and its pair with `source` are emptied.
    /// `conflict`: the answer when the write finds the login or the reset changed since they
    /// were read.
    async fn replace_password(
        &self,
        principal: Principal,
        login: &AccountLogin,
        new_password: Password,
        reset: Option<&PasswordReset>,
        source: Option<IpAddr>,
        conflict: impl FnOnce() -> Error,
    ) -> Result<AccessToken> {
        let new_hash = self.hasher.hash(new_password).await?;
        let now = self.clock.now();
        let change = PasswordChange {
            principal: &principal,
            login,
            new_hash: &new_hash,
            sessions_before: now,
            sessions_until: self.sessions.sessions_until(now),
            reset,
        };
        match self.store.change_password(change).await {
            Ok(()) => {}
            Err(StoreError::VersionConflict) => return Err(conflict()),
            Err(other) => return Err(other.into()),
        }
        let written = self.clock.now();
        if let Err(err) = self.sessions.end_sessions(principal, written).await {
            // The write's own end stands: only a login racing the write could outlive it.
            tracing::warn!(subject = %principal.id, error = %err, "sessions not ended again after the write");
        }
        tracing::info!(subject = %principal.id, reset = reset.is_some(), "password changed; every session ended");
        if let Err(err) =
            FailureCounters::lift(self.store.as_ref(), self.auth.limits, &login.login, source, written).await
        {
            // The password stands; the lockout, if any, ends with its window.
            tracing::warn!(subject = %principal.id, error = %err, "failed logins not lifted after a new password");
        }
        if principal.role == Role::Customer {
            // The change is written: a failed read loses only the security email.
            match self.store.get_customer(principal.id).await {
                Ok(Some(customer)) => {
                    let change =
                        if reset.is_some() { AccountChange::PasswordReset } else { AccountChange::PasswordChanged };
                    let (name, email) = (customer.name.as_str(), customer.email.as_str());
                    queue_account_email(self.queue.as_ref(), name, email, change, written).await;
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(subject = %principal.id, error = %err, "security email not queued"),
            }
        }
        self.sessions.issue(principal, written)
    }
}

impl FailureCounters {
    /// The counters a failed login (or password check) for `login_key` from `source` fills,
    /// checked before verifying: 429 when one is full. Only failures count, so logins in flight
    /// never refuse one another. The pair's limit is the low one, so a guesser elsewhere cannot
    /// lock the owner out; the account's and the address's are ceilings far above it.
    async fn check(
        store: &dyn AccountStore,
        limits: LoginLimits,
        login_key: &str,
        source: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<Self> {
        let window_end = limits.window_end(now)?;
        let mut counters = vec![(account_counter(login_key), limits.per_account)];
        if let Some(ip) = source {
            counters.push((pair_counter(login_key, ip), limits.per_account_and_address));
            counters.push((address_counter(ip), limits.per_address));
        }
        let keys: Vec<String> = counters.iter().map(|(key, _)| key.clone()).collect();
        let counts = store.attempt_counts(&keys, window_end).await?;
        if counters.iter().zip(&counts).any(|((_, limit), count)| count >= limit) {
            return Err(too_many(now, window_end, "too many failed logins"));
        }
        Ok(Self { counters, window_end })
    }

    async fn count(&self, store: &dyn AccountStore) -> Result<()> {
        for (key, _) in &self.counters {
            store.acquire_attempt(key, u32::MAX, self.window_end).await?;
        }
        Ok(())
    }

    /// Empties the counters that lock `login_key` out (its own, and its pair with `source`)
    /// once its owner has set a new password. The address's own counter stays, as it counts
    /// guesses at any account.
    async fn lift(
        store: &dyn AccountStore,
        limits: LoginLimits,
        login_key: &str,
        source: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<()> {
        let mut keys = vec![account_counter(login_key)];
        keys.extend(source.map(|ip| pair_counter(login_key, ip)));
        Ok(store.clear_attempts(&keys, limits.window_end(now)?).await?)
    }
}

fn account_counter(login_key: &str) -> String {
    format!("account:{login_key}")
}

fn pair_counter(login_key: &str, source: IpAddr) -> String {
    format!("account:{login_key}|address:{source}")
}

fn address_counter(source: IpAddr) -> String {
    format!("address:{source}")
}

/// Checks the password a signed-in account gives to confirm a change (its password, its
/// email) as a login is checked: under the failed-login limits, a wrong one counted, so a
/// stolen token is no way round them. A wrong one is a 422 naming `current_password`.
pub(super) async fn check_current_password(
    store: &dyn AccountStore,
    hasher: &Hasher,
    limits: LoginLimits,
    login: &AccountLogin,
    password: Password,
    source: Option<IpAddr>,
    now: OffsetDateTime,
) -> Result<()> {
    let failures = FailureCounters::check(store, limits, &login.login, source, now).await?;
    if hasher.verify(password, Some(login.password_hash.clone())).await? {
        return Ok(());
    }
    failures.count(store).await?;
    tracing::info!("current password refused");
    Err(Error::invalid("current_password", "is not the account's password"))
}

/// An admin's username and a new password, checked together (the operator's commands).
fn admin_credentials(username: &str, password: &Password) -> Result<Username> {
    match (Username::parse("username", username), password.check_new("password")) {
        (Ok(u), Ok(())) => Ok(u),
        (u, p) => Err(field_errors([u.invalid(), p.invalid()])),
    }
}

/// A reset code: 32 random bytes, URL-safe base64 (43 characters).
fn new_reset_code() -> Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| Error::Internal("no randomness for a reset code".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256, lower-case hex: what the store keeps of a reset code (random enough that a plain
/// hash is safe: nothing to guess, unlike a password), and how a reset names the password hash
/// it was sent for.
fn sha256_hex(code: &str) -> String {
    digest(&SHA256, code.as_bytes()).as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}
