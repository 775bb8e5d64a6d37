//! Accounts: logging in under the failed-login limits, and admins (created by the operator,
//! never over the API).

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::{AccessToken, AuthConfig, Password, Sessions};
use super::field_errors;
use super::passwords::{hash_password, verify_password};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{Admin, Principal, Username};
use crate::store::{AccountStore, Login, StoreError};

/// POST /auth/login body: an email (customers) or a username (admins), and the password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: Option<String>,
    pub username: Option<String>,
    pub password: Password,
}

const INVALID_CREDENTIALS: &str = "invalid credentials";

#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
    auth: Arc<AuthConfig>,
    sessions: Sessions,
}

impl Accounts {
    pub fn new(store: Arc<dyn AccountStore>, clock: Arc<dyn Clock>, auth: Arc<AuthConfig>, sessions: Sessions) -> Self {
        Self { store, clock, auth, sessions }
    }

    /// Creates an admin, or leaves an existing one with that username as it is.
    pub async fn ensure_admin(&self, username: &str, password: Password) -> Result<Admin> {
        let username = match (Username::parse("username", username), password.check_new("password")) {
            (Ok(u), Ok(())) => u,
            (u, p) => return Err(field_errors([u.err(), p.err()])),
        };
        let admin = Admin { id: Uuid::now_v7(), username, created_at: self.clock.now() };
        let hash = hash_password(self.auth.cost, password).await?;
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
        let limits = self.auth.limits;
        let window = limits.window.whole_seconds().max(1);
        let window_end = OffsetDateTime::from_unix_timestamp((now.unix_timestamp() / window + 1) * window)
            .map_err(|e| Error::Internal(format!("window end: {e}")))?;
        let account_key = format!("account:{login_key}");
        let address_key = source.map(|ip| format!("address:{ip}"));

        if !self.store.acquire_attempt(&account_key, limits.per_account, window_end).await? {
            return Err(too_many(now, window_end));
        }
        if let Some(key) = &address_key {
            if !self.store.acquire_attempt(key, limits.per_address, window_end).await? {
                self.store.release_attempt(&account_key, window_end).await?;
                return Err(too_many(now, window_end));
            }
        }

        let login = self.store.find_login(&login_key).await?;
        let hash = match &login {
            Some(Login { password_hash, .. }) => password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let valid = verify_password(request.password, hash).await? && login.is_some();
        let Some(login) = login.filter(|_| valid) else {
            tracing::info!("login refused");
            return Err(Error::Unauthorized(INVALID_CREDENTIALS));
        };
        // A success does not count against the limits.
        self.store.release_attempt(&account_key, window_end).await?;
        if let Some(key) = &address_key {
            self.store.release_attempt(key, window_end).await?;
        }
        let token = self.sessions.issue(Principal { id: login.subject, role: login.role }, now)?;
        tracing::info!(subject = %login.subject, role = ?login.role, "login succeeded");
        Ok(token)
    }

    /// A hash of nothing, with the configured cost, so unknown users cost a verification too.
    async fn dummy_hash(&self) -> Result<String> {
        if let Some(hash) = self.auth.dummy_hash.get() {
            return Ok(hash.clone());
        }
        let hash = hash_password(
            self.auth.cost,
            Password::new(std::iter::repeat_with(fastrand::alphanumeric).take(32).collect::<String>()),
        )
        .await?;
        Ok(self.auth.dummy_hash.get_or_init(|| hash).clone())
    }
}

fn too_many(now: OffsetDateTime, window_end: OffsetDateTime) -> Error {
    // Rounded up: a client that waits exactly this long finds the new window.
    let retry_after = ((window_end - now).as_seconds_f64().ceil() as i64).max(1);
    tracing::warn!(retry_after, "login rate limited");
    Error::TooManyRequests { retry_after_secs: retry_after.unsigned_abs() }
}
