//! The production backend: SQS standard queues through aws-sdk-sqs, each with a dead-letter
//! queue its RedrivePolicy moves a message to after `maxReceiveCount` deliveries. The correlation
//! id travels as the String message attribute `correlation_id`; inside a traced Lambda invocation
//! the X-Ray trace header travels as the `AWSTraceHeader` system attribute, so the consumer's
//! invocation joins the sender's trace.
//!
//! SQS counts time in whole seconds: delays, visibility timeouts and waits are rounded up (a
//! retry asked for in 200 ms comes after 1 s; nothing ever comes earlier than asked).

use std::collections::HashMap;
use std::env;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, MessageSystemAttributeNameForSends,
    MessageSystemAttributeValue, QueueAttributeName,
};
use time::Duration;

use super::{
    CORRELATION_ID_ATTRIBUTE, Delivery, MAX_DELAY, MAX_VISIBILITY, MAX_WAIT, OutgoingMessage, Queue, QueueError,
    QueueName, clamp, clamp_batch,
};

/// How long a dead-letter peek long-polls: a short poll only samples some of SQS's servers and
/// can come back empty from a queue that holds messages.
const PEEK_WAIT_SECONDS: i32 = 1;
/// Dead letters are kept for SQS's longest retention, 14 days, to leave time to look at them.
const DLQ_RETENTION_SECONDS: &str = "1209600";

/// Where lambda_runtime puts the X-Ray trace header of the invocation it hands over
/// (`Root=1-...;Parent=...;Sampled=...`), before each one; the functions run one invocation at a
/// time, so it is that of the invocation sending. Unset outside Lambda.
const TRACE_HEADER_VAR: &str = "_X_AMZN_TRACE_ID";

/// The trace header to send with a message: a value in X-Ray's format, else none (SQS refuses a
/// malformed `AWSTraceHeader`, and a send must not fail over tracing).
fn trace_header(raw: Option<String>) -> Option<String> {
    raw.map(|v| v.trim().to_owned()).filter(|v| v.starts_with("Root=") && !v.contains(char::is_whitespace))
}

/// The URL of every logical queue and of its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    pub orders: String,
    pub payments: String,
    pub fulfillment: String,
    pub notifications: String,
    pub orders_dlq: String,
    pub payments_dlq: String,
    pub fulfillment_dlq: String,
    pub notifications_dlq: String,
}

impl QueueUrls {
    /// Reads `ORDERS_QUEUE_URL`, `PAYMENTS_QUEUE_URL`, `FULFILLMENT_QUEUE_URL`,
    /// `NOTIFICATIONS_QUEUE_URL` and the matching `*_DLQ_URL`s. Unlike table names there is no
    /// default: a URL holds the account id and region, so a guess would be wrong. The error names
    /// every missing variable.
    pub fn from_env() -> Result<Self, String> {
        let mut missing = Vec::new();
        let mut var = |name: &'static str| {
            let value = env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            if value.is_none() {
                missing.push(name);
            }
            value.unwrap_or_default()
        };
        let urls = Self {
            orders: var("ORDERS_QUEUE_URL"),
            payments: var("PAYMENTS_QUEUE_URL"),
            fulfillment: var("FULFILLMENT_QUEUE_URL"),
            notifications: var("NOTIFICATIONS_QUEUE_URL"),
            orders_dlq: var("ORDERS_DLQ_URL"),
            payments_dlq: var("PAYMENTS_DLQ_URL"),
            fulfillment_dlq: var("FULFILLMENT_DLQ_URL"),
            notifications_dlq: var("NOTIFICATIONS_DLQ_URL"),
        };
        if missing.is_empty() { Ok(urls) } else { Err(format!("queue URLs not set: {}", missing.join(", "))) }
    }

    pub fn url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Orders => &self.orders,
            QueueName::Payments => &self.payments,
            QueueName::Fulfillment => &self.fulfillment,
            QueueName::Notifications => &self.notifications,
        }
    }

    pub fn dlq_url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Orders => &self.orders_dlq,
            QueueName::Payments => &self.payments_dlq,
            QueueName::Fulfillment => &self.fulfillment_dlq,
            QueueName::Notifications => &self.notifications_dlq,
        }
    }
}

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    urls: QueueUrls,
}

impl SqsQueue {
    pub fn new(client: Client, urls: QueueUrls) -> Self {
        Self { client, urls }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn urls(&self) -> &QueueUrls {
        &self.urls
    }
}

/// Classifies an SDK error: throttling, server errors and network trouble are worth retrying
/// later.
fn sdk_error<E>(operation: &str, err: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match crate::aws::describe(operation, &err) {
        (detail, true) => QueueError::Unavailable(detail),
        (detail, false) => QueueError::Backend(detail),
    }
}

fn build_err(e: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(format!("building request: {e}"))
}

/// `d` clamped to `0..=max`, in whole seconds rounded up, as SQS takes it.
fn seconds_up(d: Duration, max: Duration) -> i32 {
    let millis = clamp(d, max).whole_milliseconds().unsigned_abs();
    i32::try_from(millis.div_ceil(1000)).unwrap_or(i32::MAX)
}

/// A received message as a delivery; `None` (logged) for a message missing its id, receipt or
/// body, which SQS never sends.
fn delivery(queue: QueueName, message: Message) -> Option<Delivery> {
    let attribute = |name: MessageSystemAttributeName| message.attributes().and_then(|a| a.get(&name));
    let receive_count = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let correlation_id = message
        .message_attributes()
        .and_then(|a| a.get(CORRELATION_ID_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .map(str::to_owned);
    match (message.message_id, message.receipt_handle, message.body) {
        (Some(message_id), Some(receipt), Some(body)) => {
            Some(Delivery { message_id, receipt, body, correlation_id, receive_count })
        }
        (message_id, _, _) => {
            tracing::error!(queue = %queue, message_id, "SQS message without its id, receipt or body; skipped");
            None
        }
    }
}

/// The `SentTimestamp` attribute, for ordering dead letters oldest first.
fn sent_timestamp(message: &Message) -> u64 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|t| t.parse().ok())
        .unwrap_or(u64::MAX)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: QueueName, message: &OutgoingMessage, delay: Duration) -> Result<(), QueueError> {
        message.validate()?;
        let mut request = self
            .client
            .send_message()
            .queue_url(self.urls.url(queue))
            .message_body(&message.body)
            .delay_seconds(seconds_up(delay, MAX_DELAY));
        if let Some(id) = message.correlation() {
            let value =
                MessageAttributeValue::builder().data_type("String").string_value(id).build().map_err(build_err)?;
            request = request.message_attributes(CORRELATION_ID_ATTRIBUTE, value);
        }
        if let Some(header) = trace_header(env::var(TRACE_HEADER_VAR).ok()) {
            let value = MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()
                .map_err(build_err)?;
            request = request.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, value);
        }
        request.send().await.map_err(|e| sdk_error("SendMessage", e))?;
        Ok(())
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(self.urls.url(queue))
            .max_number_of_messages(clamp_batch(max) as i32)
            .visibility_timeout(seconds_up(visibility, MAX_VISIBILITY))
            .wait_time_seconds(seconds_up(wait, MAX_WAIT))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(CORRELATION_ID_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", e))?;
        Ok(output.messages.unwrap_or_default().into_iter().filter_map(|m| delivery(queue, m)).collect())
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        match self.client.delete_message().queue_url(self.urls.url(queue)).receipt_handle(receipt).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_receipt_handle_is_invalid() => {
                let error = DisplayErrorContext(e.err());
                tracing::warn!(queue = %queue, %error, "delete with an unknown receipt ignored");
                Ok(())
            }
            Err(e) => Err(sdk_error("DeleteMessage", e)),
        }
    }

    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        let request = self
            .client
            .change_message_visibility()
            .queue_url(self.urls.url(queue))
            .receipt_handle(receipt)
            .visibility_timeout(seconds_up(visibility, MAX_VISIBILITY));
        match request.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if e.err().is_receipt_handle_is_invalid() || e.err().is_message_not_inflight() =>
            {
                let error = DisplayErrorContext(e.err());
                tracing::warn!(queue = %queue, %error, "visibility change for a message no longer leased ignored");
                Ok(())
            }
            Err(e) => Err(sdk_error("ChangeMessageVisibility", e)),
        }
    }

    /// Peeks at the DLQ: a receive with a visibility timeout of 0, so the messages stay where
    /// they are (their receive count in the DLQ goes up, which nothing reads). Like every SQS
    /// receive it is a sample: at most 10 messages, possibly fewer than the queue holds.
    async fn dead_letter_count(&self, queue: QueueName) -> Result<u64, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(self.urls.dlq_url(queue))
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes (dead letters)", e))?;
        Ok(output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    async fn dead_letters(&self, queue: QueueName, max: u32) -> Result<Vec<Delivery>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(self.urls.dlq_url(queue))
            .max_number_of_messages(clamp_batch(max) as i32)
            .visibility_timeout(0)
            .wait_time_seconds(PEEK_WAIT_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names(CORRELATION_ID_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage (dead letters)", e))?;
        let mut messages = output.messages.unwrap_or_default();
        messages.sort_by_key(sent_timestamp);
        Ok(messages
            .into_iter()
            .filter_map(|m| delivery(queue, m))
            .map(|d| Delivery { receipt: String::new(), ..d })
            .collect())
    }
}

/// Creates the four queues (`{prefix}orders`, …) and their dead-letter queues
/// (`{prefix}orders-dlq`, …), each queue redriving to its DLQ after `max_receives` deliveries.
/// For tests against an emulator (the local server never uses SQS); production queues come
/// from template.yaml. Creating queues that exist with the same attributes is harmless.
pub async fn create_queues(client: &Client, prefix: &str, max_receives: u32) -> Result<QueueUrls, QueueError> {
    let (orders, orders_dlq) = create_pair(client, prefix, QueueName::Orders, max_receives).await?;
    let (payments, payments_dlq) = create_pair(client, prefix, QueueName::Payments, max_receives).await?;
    let (fulfillment, fulfillment_dlq) = create_pair(client, prefix, QueueName::Fulfillment, max_receives).await?;
    let (notifications, notifications_dlq) =
        create_pair(client, prefix, QueueName::Notifications, max_receives).await?;
    Ok(QueueUrls {
        orders,
        payments,
        fulfillment,
        notifications,
        orders_dlq,
        payments_dlq,
        fulfillment_dlq,
        notifications_dlq,
    })
}

/// One queue and its DLQ: (queue URL, DLQ URL).
async fn create_pair(
    client: &Client,
    prefix: &str,
    queue: QueueName,
    max_receives: u32,
) -> Result<(String, String), QueueError> {
    let retention = HashMap::from([(QueueAttributeName::MessageRetentionPeriod, DLQ_RETENTION_SECONDS.to_owned())]);
    let dlq_url = create_queue(client, &format!("{prefix}{queue}-dlq"), retention).await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_error("GetQueueAttributes", e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| QueueError::Backend(format!("no ARN for the queue {dlq_url}")))?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receives.max(1).to_string(),
    });
    let policy = HashMap::from([(QueueAttributeName::RedrivePolicy, redrive.to_string())]);
    let url = create_queue(client, &format!("{prefix}{queue}"), policy).await?;
    Ok((url, dlq_url))
}

async fn create_queue(
    client: &Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, QueueError> {
    client
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| sdk_error("CreateQueue", e))?
        .queue_url
        .ok_or_else(|| QueueError::Backend(format!("CreateQueue returned no URL for {name}")))
}

#[cfg(test)]
mod tests {
    use super::trace_header;

    #[test]
    fn trace_header_is_sent_only_in_xrays_format() {
        let lambda = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(trace_header(Some(lambda.to_owned())).as_deref(), Some(lambda));
        assert_eq!(trace_header(Some(format!(" {lambda}\n"))).as_deref(), Some(lambda));
        assert_eq!(trace_header(None), None);
        assert_eq!(trace_header(Some(String::new())), None);
        assert_eq!(trace_header(Some("not-a-trace".to_owned())), None);
        assert_eq!(trace_header(Some("Root=1-a; Parent=b".to_owned())), None);
    }
}
