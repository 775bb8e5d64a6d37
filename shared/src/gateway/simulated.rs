//! A simulated card processor with the well-known test card numbers, for local runs, tests and
//! load tests. Its "vault" is the token itself: the token names the test card's behaviour (as
//! a real gateway's vault would remember the card), never the number.
//!
//! | card number | outcome |
//! |---|---|
//! | 4242 4242 4242 4242 (any other valid card too) | captured |
//! | 4000 0000 0000 0002 | declined: card_declined |
//! | 4000 0000 0000 9995 | declined: insufficient_funds |
//! | 4000 0000 0000 0119 | transient processing error, every time |
//!
//! `latency` delays every call; `failure_rate` (0–1) makes that share of charges fail
//! transiently at random, for fault and load tests.

use std::time::Duration;

use async_trait::async_trait;

use super::{CardDetails, CardToken, ChargeOutcome, GatewayError, PaymentGateway};

pub const SUCCEEDS: &str = "4242424242424242";
pub const DECLINED: &str = "4000000000000002";
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
pub const PROCESSING_ERROR: &str = "4000000000000119";

const TOKEN_PREFIX: &str = "tok_sim_";

#[derive(Debug, Clone, Default)]
pub struct SimulatedGateway {
    latency: Duration,
    failure_rate: f64,
}

impl SimulatedGateway {
    pub fn new(latency: Duration, failure_rate: f64) -> Self {
        Self { latency, failure_rate: failure_rate.clamp(0.0, 1.0) }
    }

    async fn call(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn tokenize(&self, card: &CardDetails) -> Result<CardToken, GatewayError> {
        self.call().await;
        let behaviour = match card.number.as_str() {
            DECLINED => "declined",
            INSUFFICIENT_FUNDS => "insufficient",
            PROCESSING_ERROR => "error",
            _ => "ok",
        };
        Ok(CardToken(format!("{TOKEN_PREFIX}{behaviour}_{}", uuid::Uuid::now_v7().simple())))
    }

    async fn charge(
        &self,
        token: &CardToken,
        _amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<ChargeOutcome, GatewayError> {
        self.call().await;
        if self.failure_rate > 0.0 && fastrand::f64() < self.failure_rate {
            return Err(GatewayError::Transient("simulated outage".into()));
        }
        let behaviour = token
            .0
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .ok_or_else(|| GatewayError::Permanent("unknown token".into()))?;
        match behaviour {
            "ok" => Ok(ChargeOutcome::Captured { reference: format!("ch_sim_{idempotency_key}") }),
            "declined" => Ok(ChargeOutcome::Declined { reason: "card_declined".into() }),
            "insufficient" => Ok(ChargeOutcome::Declined { reason: "insufficient_funds".into() }),
            "error" => Err(GatewayError::Transient("processing_error".into())),
            _ => Err(GatewayError::Permanent("unknown token".into())),
        }
    }

    async fn refund(&self, reference: &str, _amount_cents: i64) -> Result<(), GatewayError> {
        self.call().await;
        if reference.starts_with("ch_sim_") { Ok(()) } else { Err(GatewayError::Permanent("unknown charge".into())) }
    }
}
