//! Alerts to an SNS topic (the template's `LowStockTopic`, with an optional email subscription).

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::error::DisplayErrorContext;

use super::{AlertPublisher, alert_text};
use crate::model::StockAlert;

pub struct SnsAlerts {
    client: Client,
    topic_arn: String,
}

impl SnsAlerts {
    pub fn new(client: Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }
}

#[async_trait]
impl AlertPublisher for SnsAlerts {
    async fn publish(&self, alert: &StockAlert) -> Result<(), String> {
        let (subject, body) = alert_text(alert);
        // SNS subjects stop at 100 characters.
        let subject: String = subject.chars().take(100).collect();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SNS Publish: {}", DisplayErrorContext(&e)))
    }
}
