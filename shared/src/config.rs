//! Configuration from the environment, read once at start-up.

use std::env;

/// DynamoDB table names. Defaults match `template.yaml`'s names for a stack called `orderly`,
/// so a bare `orderly-local` pointed at DynamoDB Local needs no variable either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub customers: String,
    pub products: String,
    pub orders: String,
}

impl TableNames {
    pub fn from_env() -> Self {
        Self {
            customers: var_or("CUSTOMERS_TABLE", "orderly-customers"),
            products: var_or("PRODUCTS_TABLE", "orderly-products"),
            orders: var_or("ORDERS_TABLE", "orderly-orders"),
        }
    }

    /// Names with a common prefix, so tests can create a fresh set per test.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            customers: format!("{prefix}customers"),
            products: format!("{prefix}products"),
            orders: format!("{prefix}orders"),
        }
    }
}

pub fn var_or(name: &str, default: &str) -> String {
    env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}
