//! The payment gateway port: what the payment worker needs from a card processor, behind a
//! trait so a real provider can replace the [`simulated`] one. Card numbers go to the gateway
//! once, at tokenization; everything after works with its token and references.

mod breaker;
pub mod simulated;

use std::fmt;

use async_trait::async_trait;

pub use breaker::CircuitBreaker;
pub use simulated::SimulatedGateway;

/// Card details as the customer typed them: printed only as brand and last four digits.
#[derive(Clone, PartialEq, Eq)]
pub struct CardDetails {
    pub number: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub cvc: String,
}

impl fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last4 = self.number.get(self.number.len().saturating_sub(4)..).unwrap_or("");
        write!(f, "CardDetails(**** {last4})")
    }
}

/// A gateway's single-use reference to a card it holds; safe to queue and log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CardToken(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Authorized and captured; `reference` identifies the charge for refunds.
    Captured { reference: String },
    /// The issuer said no; paying again with another card may work.
    Declined { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Worth retrying, and nothing was charged: 5xx, the processor's own transient errors. (An
    /// answer that never came, where a charge may have gone through, is not this: the payment
    /// then stays marked as out at the gateway and the charge is asked again.)
    #[error("gateway unavailable: {0}")]
    Transient(String),
    /// Never worth retrying (an unknown or expired token).
    #[error("gateway refused the request: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Hands the card to the gateway's vault; only the token comes back.
    async fn tokenize(&self, card: &CardDetails) -> Result<CardToken, GatewayError>;
    /// Authorizes and captures `amount_cents`. Idempotent per `idempotency_key` (the payment
    /// id): a retried charge never charges twice.
    async fn charge(
        &self,
        token: &CardToken,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<ChargeOutcome, GatewayError>;
    /// Refunds a captured charge in full; idempotent per charge.
    async fn refund(&self, reference: &str, amount_cents: i64) -> Result<(), GatewayError>;
}
