//! Authentication and authorization: access tokens (HS256 JWT), their revocation and the end of
//! all of an account's sessions, each until the tokens would expire ([`Sessions`]), the settings
//! of passwords and login limits, and the access rules every handler applies through
//! [`Session`]. Hashing itself is in `passwords`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, FieldError, Result};
use crate::model::{Principal, Role};
use crate::store::{SessionStore, TokenCheck};

/// A verified, unrevoked access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    pub jti: Uuid,
    /// To the millisecond: a password change refuses the tokens issued before it, and the
    /// token it issues itself is valid.
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl Session {
    /// What the store judges of this token at `now`.
    pub fn check(&self, now: OffsetDateTime) -> TokenCheck {
        TokenCheck { jti: self.jti, issued_at: self.issued_at, now }
    }

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

/// Who places an order: a session this instance has confirmed with the store lately, or a
/// customer's session still to confirm, which the order's own read confirms (one read instead
/// of two; see [`crate::domain::Orders::place_order`]).
#[derive(Clone)]
pub enum Caller {
    Confirmed(Session),
    /// With when it was handed on: before the caller's read, so what that read finds is
    /// remembered only if nothing was forgotten since ([`CheckedSessions::remember`]).
    Unconfirmed(Session, Sessions, Instant),
}

impl Caller {
    pub fn session(&self) -> &Session {
        match self {
            Caller::Confirmed(session) | Caller::Unconfirmed(session, ..) => session,
        }
    }

    fn into_session(self) -> Session {
        match self {
            Caller::Confirmed(session) | Caller::Unconfirmed(session, ..) => session,
        }
    }

    /// The caller's own read found the session valid (its token not revoked, its account
    /// there): this process trusts it for a while, as after any other check.
    pub fn confirmed_by_read(&self) {
        if let Caller::Unconfirmed(session, sessions, since) = self {
            sessions.remember(session, *since);
        }
    }

    /// Confirms the session with the store, if it is not yet (for an answer given before the
    /// order's read: a bad token is told 401 before anything else).
    pub async fn confirm(&self) -> Result<()> {
        match self {
            Caller::Confirmed(_) => Ok(()),
            Caller::Unconfirmed(session, sessions, _) => sessions.confirm(session).await,
        }
    }
}

/// A password as received: never printed, never logged.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Password))]
pub struct Password(pub(super) String);

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
        if self.0.trim().is_empty() {
            Err(FieldError::new(field, "must not be blank"))
        } else if len < 10 {
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

/// Limits per fixed window. Failed logins are counted per account *and* source address (a
/// guesser elsewhere cannot lock the owner out), per account (a much higher ceiling against a
/// guesser with many addresses) and per address; sign-ups are counted per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_account_and_address: u32,
    pub per_account: u32,
    pub per_address: u32,
    pub sign_ups_per_address: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_account_and_address: 10,
            per_account: 100,
            per_address: 100,
            sign_ups_per_address: 20,
            window: Duration::minutes(15),
        }
    }
}

#[cfg(feature = "passwords")]
impl LoginLimits {
    /// The end of the fixed window `now` falls in: counters are keyed by it.
    pub(super) fn window_end(&self, now: OffsetDateTime) -> Result<OffsetDateTime> {
        let window = self.window.whole_seconds().max(1);
        OffsetDateTime::from_unix_timestamp((now.unix_timestamp() / window + 1) * window)
            .map_err(|e| Error::Internal(format!("window end: {e}")))
    }
}

/// 429 until the window ends (rounded up: a client that waits exactly this long finds the new
/// window).
#[cfg(feature = "passwords")]
pub(super) fn too_many(now: OffsetDateTime, window_end: OffsetDateTime, what: &'static str) -> Error {
    let retry_after = ((window_end - now).as_seconds_f64().ceil() as i64).max(1);
    tracing::warn!(retry_after, what, "rate limited");
    Error::TooManyRequests { what, retry_after_secs: retry_after.unsigned_abs() }
}

/// Everything authentication needs, built once at start-up.
pub struct AuthConfig {
    #[cfg_attr(not(feature = "passwords"), allow(dead_code, reason = "only logins sign tokens"))]
    encoding: EncodingKey,
    /// The current key first; during a rotation the previous one still verifies.
    decoding: Vec<DecodingKey>,
    pub token_ttl: Duration,
    pub cost: PasswordCost,
    pub limits: LoginLimits,
    /// How long a token found valid in the store is trusted without asking again (see
    /// [`Sessions`]): the bound on how late another function honours a logout.
    pub session_cache: std::time::Duration,
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
        super::jwt_crypto::install()?;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: std::iter::once(secret).chain(previous_secret).map(DecodingKey::from_secret).collect(),
            token_ttl,
            cost: PasswordCost::default(),
            limits: LoginLimits::default(),
            session_cache: std::time::Duration::from_secs(5),
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

    pub fn with_session_cache(mut self, session_cache: std::time::Duration) -> Self {
        self.session_cache = session_cache;
        self
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    jti: Uuid,
    #[serde(deserialize_with = "whole_seconds")]
    iat: i64,
    /// `iat` to the millisecond (see [`Session::issued_at`]). A claim of its own, so `iat` stays
    /// the integer every version reads: during a deploy both run at once (docs/deploying.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat_ms: Option<i64>,
    exp: i64,
}

/// A NumericDate read to its whole second, integer or not (RFC 7519 allows a fraction, and
/// tokens from another issuer may have one).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<i64, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    if seconds.is_finite() && seconds.abs() < 1e15 {
        Ok(seconds.floor() as i64)
    } else {
        Err(serde::de::Error::custom("not a date"))
    }
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Access tokens: issuing them, verifying the one a request carries, and revoking it.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    auth: Arc<AuthConfig>,
    checked: Arc<CheckedSessions>,
}

/// Why a token is refused, whatever the reason: an invalid signature, an expiry, a revocation
/// or an account gone all read the same.
pub const TOKEN_REFUSED: &str = "the access token is invalid, expired or revoked";

/// Tokens this process found valid in the store lately, so a client's next requests skip the
/// check: a revocation made through another process (another Lambda function) is honoured
/// within `AuthConfig::session_cache`; one made through this process at once.
#[derive(Default)]
struct CheckedSessions(Mutex<CheckedState>);

#[derive(Default)]
struct CheckedState {
    by_jti: HashMap<Uuid, Checked>,
    /// When a token or an account was last forgotten: a check that began before it may have
    /// read the store before the revocation, so it is not remembered.
    last_forget: Option<Instant>,
}

/// When a token was found valid, and whose it is.
struct Checked {
    at: Instant,
    subject: Uuid,
}

/// Past this many remembered tokens, the stale ones are dropped (and all, if none is stale).
const MAX_CHECKED_SESSIONS: usize = 10_000;

impl CheckedSessions {
    fn state(&self) -> std::sync::MutexGuard<'_, CheckedState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fresh(&self, jti: Uuid, ttl: std::time::Duration) -> bool {
        self.state().by_jti.get(&jti).is_some_and(|checked| checked.at.elapsed() < ttl)
    }

    /// Trusts the session from now, as found by a check that began at `checked_since`.
    fn remember(&self, session: &Session, checked_since: Instant, ttl: std::time::Duration) {
        let mut state = self.state();
        if state.last_forget.is_some_and(|forgot| forgot >= checked_since) {
            return;
        }
        let checked = &mut state.by_jti;
        if checked.len() >= MAX_CHECKED_SESSIONS {
            checked.retain(|_, checked| checked.at.elapsed() < ttl);
            if checked.len() >= MAX_CHECKED_SESSIONS {
                checked.clear();
            }
        }
        checked.insert(session.jti, Checked { at: Instant::now(), subject: session.principal.id });
    }

    fn forget(&self, jti: Uuid) {
        let mut state = self.state();
        state.by_jti.remove(&jti);
        state.last_forget = Some(Instant::now());
    }

    fn forget_account(&self, subject: Uuid) {
        let mut state = self.state();
        state.by_jti.retain(|_, checked| checked.subject != subject);
        state.last_forget = Some(Instant::now());
    }
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, clock: Arc<dyn Clock>, auth: Arc<AuthConfig>) -> Self {
        Self { store, clock, auth, checked: Arc::default() }
    }

    /// A signed access token for `principal`, valid for the configured time from `now`.
    #[cfg(feature = "passwords")]
    pub(crate) fn issue(&self, principal: Principal, now: OffsetDateTime) -> Result<AccessToken> {
        let expires = now + self.auth.token_ttl;
        let claims = Claims {
            sub: principal.id,
            role: principal.role,
            jti: Uuid::now_v7(),
            iat: now.unix_timestamp(),
            iat_ms: Some((now.unix_timestamp_nanos() / 1_000_000) as i64),
            exp: expires.unix_timestamp(),
        };
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(JwtAlgorithm::HS256), &claims, &self.auth.encoding)
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
        Ok(self.caller(token, false).await?.into_session())
    }

    /// [`Sessions::authenticate`], except that with `may_defer` a customer's session this
    /// process has not confirmed lately is not looked up here but handed on to be confirmed
    /// by the caller's own read ([`Caller::Unconfirmed`]).
    pub async fn caller(&self, token: &str, may_defer: bool) -> Result<Caller> {
        let session = self.decode(token)?;
        if self.is_confirmed(&session) {
            Ok(Caller::Confirmed(session))
        } else if may_defer && !session.is_admin() {
            Ok(Caller::Unconfirmed(session, self.clone(), Instant::now()))
        } else {
            self.confirm(&session).await?;
            Ok(Caller::Confirmed(session))
        }
    }

    /// The session a bearer token carries, if it is signed by a configured key (HS256 only) and
    /// not expired by this service's clock: what can be told without the store.
    fn decode(&self, token: &str) -> Result<Session> {
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        // Expiry is checked below against the injected clock, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = self
            .auth
            .decoding
            .iter()
            .find_map(|key| jsonwebtoken::decode::<Claims>(token, key, &validation).ok())
            .ok_or(Error::Unauthorized(TOKEN_REFUSED))?
            .claims;
        let expires_at =
            OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| Error::Unauthorized(TOKEN_REFUSED))?;
        if expires_at <= self.clock.now() {
            return Err(Error::Unauthorized(TOKEN_REFUSED));
        }
        // A token without milliseconds (issued before them) counts from its second.
        let issued_at = match claims.iat_ms {
            Some(ms) => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000),
            None => OffsetDateTime::from_unix_timestamp(claims.iat),
        }
        .map_err(|_| Error::Unauthorized(TOKEN_REFUSED))?;
        Ok(Session {
            principal: Principal { id: claims.sub, role: claims.role },
            jti: claims.jti,
            issued_at,
            expires_at,
        })
    }

    /// Whether this process confirmed the session with the store recently enough to trust it.
    fn is_confirmed(&self, session: &Session) -> bool {
        self.checked.fresh(session.jti, self.auth.session_cache)
    }

    /// Asks the store whether the session's token is revoked and its account gone (401 if
    /// either), and remembers the answer for a while.
    async fn confirm(&self, session: &Session) -> Result<()> {
        let since = Instant::now();
        if !self.store.session_is_valid(&session.principal, session.check(self.clock.now())).await? {
            return Err(Error::Unauthorized(TOKEN_REFUSED));
        }
        self.remember(session, since);
        Ok(())
    }

    /// Trusts the session for a while: a check that began at `since` has just found it valid.
    fn remember(&self, session: &Session, since: Instant) {
        self.checked.remember(session, since, self.auth.session_cache);
    }

    /// Revokes the session's token until it would have expired anyway.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        // Revoked, then forgotten: a check that began before the forget is not remembered, so
        // one running meanwhile that found the token valid before the revocation is not trusted.
        self.store.revoke_token(session.jti, session.expires_at).await?;
        self.checked.forget(session.jti);
        tracing::info!(subject = %session.principal.id, "logged out");
        Ok(())
    }

    /// Ends every session of the account: each of its tokens issued until now is refused until
    /// it would have expired, wherever it was issued.
    pub async fn logout_everywhere(&self, session: &Session) -> Result<()> {
        self.end_sessions(session.principal, self.clock.now()).await?;
        tracing::info!(subject = %session.principal.id, "logged out everywhere");
        Ok(())
    }

    /// Refuses the account's tokens issued before `before` (a later end stands), and forgets
    /// this process's confirmations of them: refused here at once, elsewhere within the
    /// session cache's bound.
    pub(crate) async fn end_sessions(&self, principal: Principal, before: OffsetDateTime) -> Result<()> {
        let ended = self.store.end_sessions(&principal, before, self.sessions_until(before)).await;
        // Forgotten even if the write failed: an earlier end (a password change's) may stand.
        self.checked.forget_account(principal.id);
        Ok(ended?)
    }

    /// When every token issued until `now` has expired.
    pub(crate) fn sessions_until(&self, now: OffsetDateTime) -> OffsetDateTime {
        now + self.auth.token_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).expect("claims")
    }

    /// `iat` is written as an integer with milliseconds beside it, and read whole or not: the
    /// previous version reads what this one writes, and this one what others write.
    #[test]
    fn issue_times_are_written_whole_and_read_either_way() {
        let subject = r#""sub":"01900000-0000-7000-8000-000000000001","role":"customer","jti":"01900000-0000-7000-8000-000000000002""#;
        let written = serde_json::to_value(Claims {
            iat_ms: Some(1_795_420_800_123),
            ..claims(&format!(r#"{{{subject},"iat":1795420800,"exp":1795421700}}"#))
        })
        .expect("json");
        assert_eq!(
            (written["iat"].as_i64(), written["iat_ms"].as_i64()),
            (Some(1_795_420_800), Some(1_795_420_800_123))
        );
        let fractional = claims(&format!(r#"{{{subject},"iat":1795420800.987,"exp":1795421700}}"#));
        assert_eq!((fractional.iat, fractional.iat_ms), (1_795_420_800, None));
        assert!(serde_json::from_str::<Claims>(&format!(r#"{{{subject},"iat":1e300,"exp":1}}"#)).is_err());
    }
}
