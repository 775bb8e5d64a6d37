//! Where low-stock alerts go once recorded: the operators' SNS topic on AWS ([`sns`]), the
//! log locally ([`LoggedAlerts`]), where the back office lists them anyway. The sweep publishes
//! what the outbox holds (see [`crate::store::AlertStore`]), so a failed publish is retried.

#[cfg(feature = "lambda")]
pub mod sns;

use async_trait::async_trait;

use crate::model::StockAlert;

#[async_trait]
pub trait AlertPublisher: Send + Sync + 'static {
    /// Delivers one alert; an error leaves it in the outbox for the next sweep.
    async fn publish(&self, alert: &StockAlert) -> Result<(), String>;
}

/// The subject and body an operator reads.
pub fn alert_text(alert: &StockAlert) -> (String, String) {
    let subject = format!("Low stock: {}", alert.product_name);
    let body = format!(
        "{} (product {}) is down to {} units, below its low-stock threshold of {}.\nCause: {:?}. Raised at {}.",
        alert.product_name, alert.product_id, alert.stock, alert.threshold, alert.cause, alert.created_at
    );
    (subject, body)
}

/// Local: alerts are listed by `GET /admin/alerts`; publishing is one log line.
pub struct LoggedAlerts;

#[async_trait]
impl AlertPublisher for LoggedAlerts {
    async fn publish(&self, alert: &StockAlert) -> Result<(), String> {
        let (subject, _) = alert_text(alert);
        tracing::warn!(alert_id = %alert.id, product_id = %alert.product_id, stock = alert.stock, threshold = alert.threshold, "{subject}");
        Ok(())
    }
}
