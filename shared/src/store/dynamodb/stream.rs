//! The orders table's stream as the notices' outbox relay. A notice is saved in the same
//! transaction as the change it tells of; the table's stream (keys only) carries the insert of
//! its `NOTICE#<id>` item to the notification worker, which delivers it as it would a queue
//! message. The order path therefore sends no SQS message: the relay cannot be lost between the
//! write and a send, and the request saves a round trip. The local server follows the embedded
//! store's notices table the same way (`store::sqlite::NoticeFeed`).
//!
//! The event source mapping filters on inserts of notice items; anything else that arrives
//! (another item, a modify, a remove) is acknowledged and ignored.

use serde::Deserialize;
use uuid::Uuid;

use super::NOTICE_PREFIX;
use crate::queue::Delivery;
use crate::store::DeliveryMessage;

/// A DynamoDB Streams event, as Lambda hands it over (only what the relay reads).
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
struct StreamRecord {
    #[serde(rename = "eventName", default)]
    event_name: String,
    dynamodb: StreamChange,
}

#[derive(Debug, Deserialize)]
struct StreamChange {
    #[serde(rename = "Keys", default)]
    keys: Keys,
    #[serde(rename = "SequenceNumber")]
    sequence_number: String,
}

#[derive(Debug, Default, Deserialize)]
struct Keys {
    pk: Option<StringAttribute>,
}

#[derive(Debug, Deserialize)]
struct StringAttribute {
    #[serde(rename = "S")]
    s: String,
}

/// The deliveries the event's new notices call for, each identified by its record's sequence
/// number (what a partial batch response names to have the stream retried from there), with
/// `message` the notification queue's message for the notice. Records that are not a new
/// notice yield nothing.
pub fn notice_deliveries(event: StreamEvent, message: DeliveryMessage) -> Vec<Delivery> {
    event
        .records
        .into_iter()
        .filter(|record| record.event_name == "INSERT")
        .filter_map(|record| {
            let pk = record.dynamodb.keys.pk?.s;
            let notice_id: Uuid = pk.strip_prefix(NOTICE_PREFIX)?.parse().ok()?;
            // The record's sequence number stands in for the correlation id the keys do not carry.
            match message(notice_id, &record.dynamodb.sequence_number) {
                Ok(outgoing) => Some(Delivery {
                    message_id: record.dynamodb.sequence_number,
                    receipt: String::new(),
                    body: outgoing.body,
                    correlation_id: outgoing.correlation_id,
                    receive_count: 1,
                }),
                Err(err) => {
                    tracing::error!(%notice_id, error = %err, "notice delivery message not built");
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::queue::OutgoingMessage;

    fn message(notice_id: Uuid, correlation_id: &str) -> Result<OutgoingMessage, String> {
        Ok(OutgoingMessage::new(format!("deliver {notice_id}")).with_correlation_id(correlation_id))
    }

    fn record(event_name: &str, pk: &str, sequence_number: &str) -> serde_json::Value {
        json!({"eventName": event_name, "eventSource": "aws:dynamodb",
               "dynamodb": {"Keys": {"pk": {"S": pk}}, "SequenceNumber": sequence_number, "StreamViewType": "KEYS_ONLY"}})
    }

    #[test]
    fn only_inserted_notices_become_deliveries() {
        let notice = Uuid::now_v7();
        let event = json!({"Records": [
            record("INSERT", &format!("ORDER#{}", Uuid::now_v7()), "100"),
            record("INSERT", &format!("NOTICE#{notice}"), "200"),
            record("MODIFY", &format!("NOTICE#{notice}"), "300"),
            record("INSERT", "NOTICE#not-a-uuid", "400"),
        ]});
        let deliveries = notice_deliveries(serde_json::from_value(event).expect("event"), message);
        assert_eq!(
            deliveries,
            [Delivery {
                message_id: "200".into(),
                receipt: String::new(),
                body: format!("deliver {notice}"),
                correlation_id: Some("200".into()),
                receive_count: 1,
            }]
        );
    }
}
