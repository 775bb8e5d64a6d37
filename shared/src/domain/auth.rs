//! Authentication and authorization: passwords (argon2), access tokens (HS256 JWT), logout
//! (revocation until the token would expire), login rate limits, and the access rules every
//! handler applies through [`Session`].

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Orderly, field_errors};
use crate::error::{Error, FieldError, Result};
use crate::model::{Admin, Principal, Role};
use crate::store::{Login, StoreError};

/// A verified, unrevoked access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    pub jti: Uuid,
    pub expires_at: OffsetDateTime,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.principal.role == Role::Admin
    }

    /// Admin-only routes: a customer is told it may not (403); it knows the route exists.
    pub fn require_admin(&self) -> Result<()> {
        if self.is_admin() { Ok(()) } else { Err(Error::Forbidden("this route is for admins")) }
    }

    /// A customer's own resources: anyone else's answer 404, so ids cannot be probed.
    pub fn require_self_or_admin(&self, owner: Uuid, resource: &'static str) -> Result<()> {
        if self.is_admin() || self.principal.id == owner { Ok(()) } else { Err(Error::NotFound(resource)) }
    }
}

/// A password as received: never printed, never logged.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// A new password: 10–128 characters, not blank.
    pub fn check_new(&self, field: &str) -> Result<(), FieldError> {
        let len = self.0.chars().count();
        if len < 10 || self.0.trim().is_empty() {
            Err(FieldError::new(field, "must be at least 10 characters"))
        } else if len > 128 {
            Err(FieldError::new(field, "must be at most 128 characters"))
        } else {
            Ok(())
        }
    }
}

/// Argon2id cost. The default is OWASP's (19 MiB, 2 passes): about 50 ms on one Lambda
/// vCPU share, well inside a 128 MB function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for PasswordCost {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2 }
    }
}

/// Failed-login limits per fixed window: per account and per source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_account: u32,
    pub per_address: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { per_account: 10, per_address: 100, window: Duration::minutes(15) }
    }
}

/// Everything authentication needs, built once at start-up.
pub struct AuthConfig {
    encoding: EncodingKey,
    /// The current key first; during a rotation the previous one still verifies.
    decoding: Vec<DecodingKey>,
    pub token_ttl: Duration,
    pub cost: PasswordCost,
    pub limits: LoginLimits,
    dummy_hash: OnceLock<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token_ttl", &self.token_ttl)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

/// Secrets shorter than this are refused: HS256 wants at least 256 bits of key.
pub const MIN_SECRET_BYTES: usize = 32;

impl AuthConfig {
    pub fn new(secret: &[u8], previous_secret: Option<&[u8]>, token_ttl: Duration) -> Result<Self, String> {
        for s in std::iter::once(secret).chain(previous_secret) {
            if s.len() < MIN_SECRET_BYTES {
                return Err(format!("a JWT secret must be at least {MIN_SECRET_BYTES} bytes"));
            }
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: std::iter::once(secret).chain(previous_secret).map(DecodingKey::from_secret).collect(),
            token_ttl,
            cost: PasswordCost::default(),
            limits: LoginLimits::default(),
            dummy_hash: OnceLock::new(),
        })
    }

    pub fn with_cost(mut self, cost: PasswordCost) -> Self {
        self.cost = cost;
        self
    }

    pub fn with_limits(mut self, limits: LoginLimits) -> Self {
        self.limits = limits;
        self
    }

    fn argon2(cost: PasswordCost) -> Result<Argon2<'static>> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashes on the blocking pool: argon2 is CPU-bound by design.
async fn hash_password(cost: PasswordCost, password: Password) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        AuthConfig::argon2(cost)?
            .hash_password(password.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("hashing password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
}

async fn verify_password(password: Password, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| Error::Internal(format!("stored hash: {e}")))?;
        // The parameters come from the hash itself, so older hashes keep verifying.
        Ok(Argon2::default().verify_password(password.0.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| Error::Internal(format!("verifying task: {e}")))?
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    jti: Uuid,
    iat: i64,
    exp: i64,
}

/// POST /auth/login body: an email (customers) or a username (admins), and the password.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: Option<String>,
    pub username: Option<String>,
    pub password: Password,
}

#[derive(Serialize)]
pub struct AccessToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub role: Role,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("role", &self.role)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A random secret of 256 bits from the operating system's generator, hex-encoded (the local
/// server's development JWT secret).
pub fn random_secret() -> String {
    use argon2::password_hash::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Admin usernames: 3–64 of `a-z 0-9 . _ -`; never an email, so they cannot clash with one.
fn parse_username(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim().to_ascii_lowercase();
    let ok = (3..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok { Ok(name) } else { Err(FieldError::new("username", "must be 3-64 of a-z, 0-9, '.', '_' or '-'")) }
}

const INVALID_CREDENTIALS: &str = "invalid credentials";

impl Orderly {
    pub(crate) async fn hash_new_password(&self, password: Password) -> Result<String> {
        hash_password(self.auth.cost, password).await
    }

    /// Creates an admin, or leaves an existing one with that username as it is.
    pub async fn ensure_admin(&self, username: &str, password: Password) -> Result<Admin> {
        let username = parse_username(username).map_err(|e| Error::Validation(vec![e]));
        let checked = password.check_new("password");
        let username = match (username, checked) {
            (Ok(u), Ok(())) => u,
            (u, p) => {
                return Err(field_errors([
                    u.err().and_then(|e| match e {
                        Error::Validation(mut v) => v.pop(),
                        _ => None,
                    }),
                    p.err(),
                ]));
            }
        };
        let admin = Admin { id: Uuid::now_v7(), username, created_at: self.clock.now() };
        let hash = self.hash_new_password(password).await?;
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
        let token = self.issue_token(Principal { id: login.subject, role: login.role }, now)?;
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

    fn issue_token(&self, principal: Principal, now: OffsetDateTime) -> Result<AccessToken> {
        let expires = now + self.auth.token_ttl;
        let claims = Claims {
            sub: principal.id,
            role: principal.role,
            jti: Uuid::now_v7(),
            iat: now.unix_timestamp(),
            exp: expires.unix_timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(JwtAlgorithm::HS256), &claims, &self.auth.encoding)
            .map_err(|e| Error::Internal(format!("signing token: {e}")))?;
        Ok(AccessToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: self.auth.token_ttl.whole_seconds(),
            role: principal.role,
        })
    }

    /// Verifies a bearer token: HS256 only, signed by a configured key, not expired by this
    /// service's clock, not revoked, and for an account that still exists.
    pub async fn authenticate(&self, token: &str) -> Result<Session> {
        const REFUSED: &str = "the access token is invalid, expired or revoked";
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        // Expiry is checked below against the injected clock, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = self
            .auth
            .decoding
            .iter()
            .find_map(|key| jsonwebtoken::decode::<Claims>(token, key, &validation).ok())
            .ok_or(Error::Unauthorized(REFUSED))?
            .claims;
        let now = self.clock.now();
        let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| Error::Unauthorized(REFUSED))?;
        if expires_at <= now {
            return Err(Error::Unauthorized(REFUSED));
        }
        let session =
            Session { principal: Principal { id: claims.sub, role: claims.role }, jti: claims.jti, expires_at };
        if !self.store.session_is_valid(&session.principal, session.jti, now).await? {
            return Err(Error::Unauthorized(REFUSED));
        }
        Ok(session)
    }

    /// Revokes the session's token until it would have expired anyway.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        self.store.revoke_token(session.jti, session.expires_at).await?;
        tracing::info!(subject = %session.principal.id, "logged out");
        Ok(())
    }
}

fn too_many(now: OffsetDateTime, window_end: OffsetDateTime) -> Error {
    // Rounded up: a client that waits exactly this long finds the new window.
    let retry_after = ((window_end - now).as_seconds_f64().ceil() as i64).max(1);
    tracing::warn!(retry_after, "login rate limited");
    Error::TooManyRequests { retry_after_secs: retry_after.unsigned_abs() }
}
