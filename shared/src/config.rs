//! Configuration from the environment, read once at start-up.

use std::env;

use time::Duration;

use crate::domain::{AuthConfig, LoginLimits, OrderSettings, PasswordCost};
use crate::store::dynamodb::TableNames;

/// DynamoDB table names from `CUSTOMERS_TABLE`, `PRODUCTS_TABLE` and `ORDERS_TABLE`. The
/// defaults match `template.yaml`'s names for a stack called `orderly`, so a bare
/// `orderly-local` pointed at DynamoDB Local needs no variable either.
pub fn table_names_from_env() -> TableNames {
    TableNames {
        customers: var_or("CUSTOMERS_TABLE", "orderly-customers"),
        products: var_or("PRODUCTS_TABLE", "orderly-products"),
        orders: var_or("ORDERS_TABLE", "orderly-orders"),
    }
}

pub fn var_or(name: &str, default: &str) -> String {
    env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

/// Authentication settings:
/// - `JWT_SECRET` (at least 32 bytes) signs tokens; `JWT_PREVIOUS_SECRET`, during a rotation,
///   still verifies tokens signed before it. `fallback_secret` is used when `JWT_SECRET` is
///   unset (the local server's generated development secret); Lambda passes none.
/// - `TOKEN_TTL_SECONDS` (default 900); per `LOGIN_WINDOW_SECONDS` (900):
///   `LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS` (10), `LOGIN_FAILURES_PER_ACCOUNT` (100),
///   `LOGIN_FAILURES_PER_ADDRESS` (100) and `SIGN_UPS_PER_ADDRESS` (20).
/// - `SESSION_CACHE_SECONDS` (5): how long a token found valid is trusted without asking the
///   store again; a logout through another process takes effect within it.
/// - `PASSWORD_HASH_MEMORY_KIB` (19,456) and `PASSWORD_HASH_ITERATIONS` (2): argon2id cost of
///   new hashes (existing hashes keep verifying with the cost they were made with). Anything
///   argon2 accepts (from 8 KiB and 1 iteration) is allowed, so a benchmark's own server can
///   sign up a hundred thousand customers in seconds; below the defaults a warning is logged.
pub fn auth_from_env(fallback_secret: Option<Vec<u8>>) -> Result<AuthConfig, String> {
    let secret = match env::var("JWT_SECRET").ok().filter(|s| !s.is_empty()) {
        Some(secret) => secret.into_bytes(),
        None => fallback_secret.ok_or("JWT_SECRET is not set")?,
    };
    let previous = env::var("JWT_PREVIOUS_SECRET").ok().filter(|s| !s.is_empty());
    let defaults = LoginLimits::default();
    let limits = LoginLimits {
        per_account_and_address: number("LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS", defaults.per_account_and_address)?,
        per_account: number("LOGIN_FAILURES_PER_ACCOUNT", defaults.per_account)?,
        per_address: number("LOGIN_FAILURES_PER_ADDRESS", defaults.per_address)?,
        sign_ups_per_address: number("SIGN_UPS_PER_ADDRESS", defaults.sign_ups_per_address)?,
        window: Duration::seconds(number("LOGIN_WINDOW_SECONDS", defaults.window.whole_seconds())?),
    };
    let ttl = Duration::seconds(number("TOKEN_TTL_SECONDS", 900)?);
    let default_cost = PasswordCost::default();
    let cost = PasswordCost {
        memory_kib: number("PASSWORD_HASH_MEMORY_KIB", default_cost.memory_kib)?,
        iterations: number("PASSWORD_HASH_ITERATIONS", default_cost.iterations)?,
    };
    if cost.memory_kib < 8 || cost.iterations < 1 {
        return Err("PASSWORD_HASH_MEMORY_KIB must be at least 8 and PASSWORD_HASH_ITERATIONS at least 1".into());
    }
    if cost.memory_kib < default_cost.memory_kib || cost.iterations < default_cost.iterations {
        tracing::warn!(
            memory_kib = cost.memory_kib,
            iterations = cost.iterations,
            "password hashes are cheaper than recommended: fine for a benchmark, not for real accounts"
        );
    }
    let session_cache = std::time::Duration::from_secs(number("SESSION_CACHE_SECONDS", 5)?);
    Ok(AuthConfig::new(&secret, previous.as_deref().map(str::as_bytes), ttl)?
        .with_limits(limits)
        .with_cost(cost)
        .with_session_cache(session_cache))
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => v.trim().parse().map_err(|_| format!("{name} must be a number, not {v:?}")),
        None => Ok(default),
    }
}

/// Order rules: `COOLDOWN_SECONDS` (300), `MAX_DEFERRED_ORDERS` (3),
/// `PAYMENT_DEADLINE_SECONDS` (1,800), `IDEMPOTENCY_TTL_SECONDS` (86,400), `MAX_UNPAID_UNITS`
/// (100), `MAX_UNPAID_CENTS` (1,000,000), `PAYMENT_CHARGE_WINDOW_SECONDS` (900).
pub fn order_settings_from_env() -> Result<OrderSettings, String> {
    let defaults = OrderSettings::default();
    let seconds = |name: &str, default: Duration| -> Result<Duration, String> {
        let value = number(name, default.whole_seconds())?;
        if value < 1 { Err(format!("{name} must be at least 1")) } else { Ok(Duration::seconds(value)) }
    };
    Ok(OrderSettings {
        cooldown: seconds("COOLDOWN_SECONDS", defaults.cooldown)?,
        max_deferred: number("MAX_DEFERRED_ORDERS", defaults.max_deferred)?,
        payment_deadline: seconds("PAYMENT_DEADLINE_SECONDS", defaults.payment_deadline)?,
        idempotency_ttl: seconds("IDEMPOTENCY_TTL_SECONDS", defaults.idempotency_ttl)?,
        max_unpaid_units: number("MAX_UNPAID_UNITS", defaults.max_unpaid_units)?,
        max_unpaid_cents: number("MAX_UNPAID_CENTS", defaults.max_unpaid_cents)?,
        charge_window: seconds("PAYMENT_CHARGE_WINDOW_SECONDS", defaults.charge_window)?,
    })
}

/// The simulated gateway's behaviour: `GATEWAY_LATENCY_MS` (0) per call and
/// `GATEWAY_FAILURE_RATE` (0.0–1.0, default 0) of charges failing transiently.
pub fn simulated_gateway_from_env() -> Result<crate::gateway::SimulatedGateway, String> {
    let latency = std::time::Duration::from_millis(number("GATEWAY_LATENCY_MS", 0u64)?);
    let rate: f64 = number("GATEWAY_FAILURE_RATE", 0.0)?;
    if !(0.0..=1.0).contains(&rate) {
        return Err("GATEWAY_FAILURE_RATE must be between 0 and 1".into());
    }
    Ok(crate::gateway::SimulatedGateway::new(latency, rate))
}

/// The payment worker's circuit breaker: opens after `GATEWAY_BREAKER_FAILURES` (5)
/// consecutive transient failures, for `GATEWAY_BREAKER_SECONDS` (30).
pub fn circuit_breaker_from_env() -> Result<crate::gateway::CircuitBreaker, String> {
    Ok(crate::gateway::CircuitBreaker::new(
        number("GATEWAY_BREAKER_FAILURES", 5u32)?,
        std::time::Duration::from_secs(number("GATEWAY_BREAKER_SECONDS", 30u64)?),
    ))
}
