//! The back office: every service an admin works with, for the `/admin` API and dashboard. It
//! adds no rules of its own: each operation is the same service call the other functions'
//! routes make, so `/admin/...` and, say, `PUT /products/{id}` cannot drift apart.

use std::sync::Arc;

use serde::Serialize;

use super::auth::Session;
use super::{Alerts, Catalog, CustomerDirectory, Inventory, OrderMetrics, Orders, Payments};
use crate::error::Result;
use crate::queue::{Queue, QueueName};

#[derive(Clone)]
pub struct BackOffice {
    pub orders: Orders,
    pub payments: Payments,
    pub catalog: Catalog,
    pub inventory: Inventory,
    pub alerts: Alerts,
    pub customers: CustomerDirectory,
    pub queue: Arc<dyn Queue>,
}

/// GET /admin/metrics: the overview.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminMetrics {
    #[serde(flatten)]
    pub orders: OrderMetrics,
    pub low_stock_count: u64,
    pub open_alerts: u64,
    /// Messages in each queue's dead-letter queue; `null` when the queue could not be asked.
    pub dead_letters: Option<Vec<DeadLetters>>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetters {
    pub queue: &'static str,
    pub messages: u64,
}

impl BackOffice {
    pub async fn metrics(&self, session: &Session) -> Result<AdminMetrics> {
        let (orders, low_stock_count, open_alerts) = tokio::try_join!(
            self.orders.order_metrics(session),
            self.inventory.low_stock_count(),
            self.alerts.open_count(),
        )?;
        let mut dead_letters = Vec::new();
        for queue in QueueName::ALL {
            match self.queue.dead_letter_count(queue).await {
                Ok(messages) => dead_letters.push(DeadLetters { queue: queue.as_str(), messages }),
                Err(err) => {
                    tracing::warn!(%queue, error = %err, "dead letters not counted");
                    return Ok(AdminMetrics { orders, low_stock_count, open_alerts, dead_letters: None });
                }
            }
        }
        Ok(AdminMetrics { orders, low_stock_count, open_alerts, dead_letters: Some(dead_letters) })
    }
}
