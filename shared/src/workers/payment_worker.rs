//! The payment worker: charges queued payments through the gateway, behind a circuit breaker.

use async_trait::async_trait;
use time::Duration;

use crate::domain::{ChargeError, ChargeResult, PaymentMessage, Payments};
use crate::gateway::{CircuitBreaker, GatewayError};
use crate::queue::{Consumer, Delivery, Outcome};

/// Backoff for transient gateway failures, growing with each delivery of the message.
fn retry_after(receive_count: u32) -> Duration {
    Duration::seconds(5 * 2i64.pow(receive_count.saturating_sub(1).min(6)))
}

/// When a charge's payment is not recorded yet, the next look (locally; on AWS the queue's
/// 60 s visibility timeout decides). See `UNRECORDED_GIVE_UP` for when the charge is dropped.
const UNRECORDED_RETRY_AFTER: Duration = Duration::seconds(60);

pub struct PaymentWorker {
    payments: Payments,
    breaker: CircuitBreaker,
}

impl PaymentWorker {
    pub fn new(payments: Payments, breaker: CircuitBreaker) -> Self {
        Self { payments, breaker }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Runs one charge the breaker let through; a transient failure counts against the gateway,
    /// a verdict for it, and a charge that never reached it (its payment settled or missing)
    /// neither.
    async fn guarded(
        &self,
        delivery: &Delivery,
        call: impl std::future::Future<Output = Result<ChargeResult, ChargeError>>,
    ) -> Result<ChargeResult, Outcome> {
        match call.await {
            Ok(result) => {
                if result.heard_from_gateway() {
                    self.breaker.record_success();
                } else {
                    self.breaker.release();
                }
                Ok(result)
            }
            Err(ChargeError::Gateway(GatewayError::Transient(detail))) => {
                self.breaker.record_failure();
                tracing::warn!(%detail, receive_count = delivery.receive_count, "gateway failed transiently; will retry");
                crate::telemetry::metric("GatewayErrors", 1);
                Err(Outcome::Retry { after: retry_after(delivery.receive_count) })
            }
            Err(ChargeError::Gateway(GatewayError::Permanent(detail))) => {
                self.breaker.record_success();
                tracing::error!(%detail, "gateway refused the request; dropped");
                Err(Outcome::Done)
            }
            Err(ChargeError::Store(err)) => {
                self.breaker.release();
                tracing::warn!(error = %err, "store failed while settling a payment; will retry");
                Err(Outcome::Retry { after: retry_after(delivery.receive_count) })
            }
        }
    }
}

#[async_trait]
impl Consumer for PaymentWorker {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let message: PaymentMessage = match serde_json::from_str(&delivery.body) {
            Ok(message) => message,
            Err(err) => {
                tracing::error!(error = %err, "unreadable payment message; dropped");
                crate::telemetry::metric("PoisonMessages", 1);
                return Outcome::Done;
            }
        };
        match &message {
            &PaymentMessage::Charge { payment_id, ref token, queued_at } => {
                if let Err(wait) = self.breaker.permit() {
                    // The gateway is resting: send the charge again for later and let this
                    // delivery go, so a bystander's payment never runs out of deliveries.
                    let wait = Duration::try_from(wait).unwrap_or(Duration::seconds(30));
                    let correlation_id = delivery.correlation_id.as_deref().unwrap_or(&delivery.message_id);
                    return match self.payments.postpone_charge(&message, correlation_id, wait).await {
                        Ok(()) => {
                            tracing::warn!(payment_id = %payment_id, wait_s = wait.whole_seconds(), "gateway circuit open; charge postponed");
                            Outcome::Done
                        }
                        Err(err) => {
                            tracing::warn!(payment_id = %payment_id, error = %err, "could not postpone; retrying this delivery");
                            Outcome::Retry { after: wait.max(retry_after(delivery.receive_count)) }
                        }
                    };
                }
                match self.guarded(delivery, self.payments.charge(payment_id, token, queued_at)).await {
                    Ok(ChargeResult::NotRecordedYet) => {
                        tracing::warn!(payment_id = %payment_id, receive_count = delivery.receive_count, "charge for a payment not recorded yet; will retry");
                        Outcome::Retry { after: UNRECORDED_RETRY_AFTER }
                    }
                    Ok(ChargeResult::NeverRecorded) => {
                        tracing::warn!(payment_id = %payment_id, "charge for a payment never recorded (its request failed); dropped");
                        Outcome::Done
                    }
                    Ok(result) => {
                        tracing::info!(payment_id = %payment_id, ?result, "charge handled");
                        if result == ChargeResult::NotApplicable {
                            tracing::info!(payment_id = %payment_id, "payment already settled; duplicate message");
                        }
                        Outcome::Done
                    }
                    Err(outcome) => outcome,
                }
            }
        }
    }
}
