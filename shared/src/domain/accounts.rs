//! Accounts: logging in under the failed-login limits, changing a password (which ends every
//! session of the account), and admins (created by the operator, never over the API).

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use uuid::Uuid;

use super::Invalid as _;
use super::auth::{AccessToken, AuthConfig, Password, Session, Sessions, TOKEN_REFUSED, too_many};
use super::field_errors;
use super::passwords::Hasher;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{Admin, Principal, Username};
use crate::store::{AccountStore, PasswordChange, StoreError};

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
    pub new_password: Password,
}

const INVALID_CREDENTIALS: &str = "invalid credentials";

/// The failed-login counters a login name and source address fill, each with its limit, in
/// the fixed window ending at `window_end`.
struct FailureCounters {
    counters: Vec<(String, u32)>,
    window_end: time::OffsetDateTime,
}

#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
    auth: Arc<AuthConfig>,
    sessions: Sessions,
    hasher: Hasher,
}

impl Accounts {
    pub fn new(
        store: Arc<dyn AccountStore>,
        clock: Arc<dyn Clock>,
        auth: Arc<AuthConfig>,
        sessions: Sessions,
        hasher: Hasher,
    ) -> Self {
        Self { store, clock, auth, sessions, hasher }
    }

    /// Creates an admin, or leaves an existing one with that username as it is.
    pub async fn ensure_admin(&self, username: &str, password: Password) -> Result<Admin> {
        let username = match (Username::parse("username", username), password.check_new("password")) {
            (Ok(u), Ok(())) => u,
            (u, p) => return Err(field_errors([u.invalid(), p.invalid()])),
        };
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
        let failures = self.failure_counters(&login_key, source, now).await?;
        let login = self.store.find_login(&login_key).await?;
        let hash = login.as_ref().map(|l| l.password_hash.clone());
        let valid = self.hasher.verify(request.password, hash).await?;
        let Some(login) = login.filter(|_| valid) else {
            self.count_failure(&failures).await?;
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
        request.new_password.check_new("new_password").map_err(|e| Error::Validation(vec![e]))?;
        let principal = session.principal;
        // Gone since the session was confirmed: the token is as good as refused.
        let login = self.store.login_of(&principal).await?.ok_or(Error::Unauthorized(TOKEN_REFUSED))?;
        let now = self.clock.now();
        let failures = self.failure_counters(&login.login, source, now).await?;
        let unchanged = request.current_password.0 == request.new_password.0;
        if !self.hasher.verify(request.current_password, Some(login.password_hash.clone())).await? {
            self.count_failure(&failures).await?;
            tracing::info!(subject = %principal.id, "password change refused");
            return Err(Error::invalid("current_password", "is not the account's password"));
        }
        if unchanged {
            return Err(Error::invalid("new_password", "must differ from the current password"));
        }
        let new_hash = self.hasher.hash(request.new_password).await?;
        let change = PasswordChange {
            principal: &principal,
            login: &login,
            new_hash: &new_hash,
            sessions_before: now,
            sessions_until: self.sessions.sessions_until(now),
        };
        match self.store.change_password(change).await {
            Ok(()) => {}
            Err(StoreError::VersionConflict) => {
                return Err(Error::Conflict(
                    "the account's password or email changed meanwhile: sign in again and retry".into(),
                ));
            }
            Err(other) => return Err(other.into()),
        }
        self.sessions.forget_account(principal.id);
        tracing::info!(subject = %principal.id, "password changed; every session ended");
        self.sessions.issue(principal, now)
    }

    /// The counters a failed login (or password check) for `login_key` from `source` fills,
    /// checked before verifying: 429 when one is full. Only failures count, so logins in flight
    /// never refuse one another. The pair's limit is the low one, so a guesser elsewhere cannot
    /// lock the owner out; the account's and the address's are ceilings far above it.
    async fn failure_counters(
        &self,
        login_key: &str,
        source: Option<IpAddr>,
        now: time::OffsetDateTime,
    ) -> Result<FailureCounters> {
        let limits = self.auth.limits;
        let window_end = limits.window_end(now)?;
        let mut counters = vec![(format!("account:{login_key}"), limits.per_account)];
        if let Some(ip) = source {
            counters.push((format!("account:{login_key}|address:{ip}"), limits.per_account_and_address));
            counters.push((format!("address:{ip}"), limits.per_address));
        }
        let keys: Vec<String> = counters.iter().map(|(key, _)| key.clone()).collect();
        let counts = self.store.attempt_counts(&keys, window_end).await?;
        if counters.iter().zip(&counts).any(|((_, limit), count)| count >= limit) {
            return Err(too_many(now, window_end, "too many failed logins"));
        }
        Ok(FailureCounters { counters, window_end })
    }

    async fn count_failure(&self, failures: &FailureCounters) -> Result<()> {
        for (key, _) in &failures.counters {
            self.store.acquire_attempt(key, u32::MAX, failures.window_end).await?;
        }
        Ok(())
    }
}
