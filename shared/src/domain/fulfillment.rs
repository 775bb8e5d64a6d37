//! Fulfillment: a paid order gets a shipment (carrier, tracking number, a ZPL shipping label)
//! and becomes `shipped`; an admin records delivery. Tracking is read from the order's audit
//! trail and shipment.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::Session;
use super::ledger::{Ledger, TransitionError};
use crate::error::{Error, Result};
use crate::model::{Address, Order, OrderEvent, OrderStatus, Shipment};

pub const CARRIER: &str = "Orderly Parcel";

/// PUT /orders/{id}/fulfillment body (admin).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FulfillmentRequest {
    pub action: FulfillmentAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FulfillmentAction {
    /// Create the shipment of a paid order now (what the fulfillment worker does).
    Ship,
    /// Record that a shipped order was delivered.
    Deliver,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrackingEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// placed, deferred, released, paid, label_created, shipped, delivered, cancelled
    pub event: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tracking {
    pub order_id: Uuid,
    pub status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Who and where the parcel goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    pub events: Vec<TrackingEvent>,
}

/// A tracking number in the carrier's style: prefix, 12 digits from the order id, check digit.
fn tracking_number(order_id: Uuid) -> String {
    let digits: String = order_id.as_u128().to_string().chars().rev().take(12).collect();
    let check: u32 = digits.bytes().map(|b| u32::from(b - b'0')).sum::<u32>() % 10;
    format!("OP{digits}{check}")
}

/// A 4×6 inch ZPL label: sender, recipient's name and address, order number, and the tracking
/// barcode (Code 128). Every text field is escaped (see [`zpl_text`]).
fn zpl_label(order: &Order, tracking: &str) -> String {
    let mut to: Vec<String> = order.recipient.iter().map(|r| r.name.clone()).collect();
    match &order.shipping_address {
        Some(a) => to.extend(
            [
                Some(a.line1.clone()),
                a.line2.clone(),
                Some(format!("{} {}", a.postal_code, a.city)),
                Some(a.country.clone()),
            ]
            .into_iter()
            .flatten(),
        ),
        // Orders placed before addresses were required.
        None => to.push("(address on file)".into()),
    }
    let mut zpl = String::from("^XA^CI28^PW812^LL1218\n^FO40,40^A0N,40,40^FDOrderly^FS\n");
    zpl.push_str(&format!("^FO40,100^A0N,28,28^FDOrder {}^FS\n", order.id));
    for (i, line) in to.iter().enumerate() {
        zpl.push_str(&format!("^FO40,{}^A0N,36,36^FH^FD{}^FS\n", 200 + 50 * i, zpl_text(line)));
    }
    zpl.push_str(&format!("^FO40,600^BY3^BCN,200,Y,N,N^FD{tracking}^FS\n^FO40,900^A0N,32,32^FD{CARRIER}^FS\n^XZ\n"));
    zpl
}

/// Field data for a `^FH^FD` field: `_` is then the hex escape, so a `^` or `~` in a customer's
/// name or address can never start a command, and no control character (refused at input
/// anyway) can break the field.
fn zpl_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '^' | '~' | '_' | '\\' => format!("_{:02X}", c as u32),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Shipping paid orders (the worker, or an admin), recording delivery, tracking and labels.
#[derive(Clone)]
pub struct Fulfillment {
    ledger: Ledger,
}

impl Fulfillment {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    /// The fulfillment worker (and PUT .../fulfillment `ship`): creates the shipment of a paid
    /// order and marks it `shipped`. Anything but a paid order is left alone (`Ok(None)`), so
    /// a duplicate message is a no-op.
    pub async fn ship(&self, order_id: Uuid, actor: &str) -> Result<Option<Order>> {
        let order = self.ledger.orders.get_order(order_id).await?.ok_or(Error::NotFound("order"))?;
        if order.status != OrderStatus::Paid {
            return Ok(None);
        }
        match self.ship_as(&order, order.clone(), actor).await {
            Ok(shipped) => Ok(Some(shipped)),
            // Someone else shipped or cancelled it meanwhile.
            Err(TransitionError::Illegal { .. } | TransitionError::Raced) => Ok(None),
            Err(TransitionError::Failed(err)) => Err(err),
        }
    }

    /// Ships `amended` (the stored `order` itself, or it with an admin's corrections) in one
    /// write conditioned on `order`'s version; the label is printed from `amended`.
    pub(super) async fn ship_as(&self, order: &Order, amended: Order, actor: &str) -> Result<Order, TransitionError> {
        let Some(mut updated) = self.ledger.next_order(&amended, OrderEvent::ShipmentCreated, actor, None) else {
            return Err(TransitionError::Illegal { from: amended.status, event: OrderEvent::ShipmentCreated });
        };
        let tracking = tracking_number(amended.id);
        updated.shipment = Some(Shipment {
            carrier: CARRIER.into(),
            label_format: "zpl".into(),
            label: zpl_label(&amended, &tracking),
            tracking_number: tracking,
            created_at: updated.updated_at,
        });
        let shipped = self.ledger.write_transition(order, updated, OrderEvent::ShipmentCreated).await?;
        crate::telemetry::metric("OrdersShipped", 1);
        Ok(shipped)
    }

    /// PUT /orders/{id}/fulfillment (admin): `ship` a paid order or `deliver` a shipped one.
    pub async fn fulfill(&self, session: &Session, order_id: Uuid, request: FulfillmentRequest) -> Result<Order> {
        session.require_admin()?;
        let actor = format!("admin:{}", session.principal.id);
        let order = self.ledger.order_for(session, order_id).await?;
        match request.action {
            FulfillmentAction::Ship => {
                if order.status != OrderStatus::Paid {
                    return Err(Error::Conflict(format!("an order that is {} cannot be shipped", order.status)));
                }
                self.ship(order_id, &actor)
                    .await?
                    .ok_or_else(|| Error::Conflict("the order changed meanwhile; read it again".into()))
            }
            FulfillmentAction::Deliver => {
                let delivered = self.ledger.apply(order, OrderEvent::DeliveryRecorded, &actor, None).await?;
                crate::telemetry::metric("OrdersDelivered", 1);
                Ok(delivered)
            }
        }
    }

    /// GET /orders/{id}/tracking (owner or admin).
    pub async fn tracking(&self, session: &Session, order_id: Uuid) -> Result<Tracking> {
        let order = self.ledger.order_for(session, order_id).await?;
        let mut events = Vec::new();
        for entry in &order.history {
            let event = match (entry.event, entry.status) {
                // An amendment (a corrected address, the internal note) moves nothing for the
                // customer to follow, and the note's edits are not theirs to see.
                (None, _) if entry.change.is_some() => continue,
                (None, OrderStatus::ProcessingOrder) => "deferred",
                (None, _) => "placed",
                (Some(OrderEvent::Released), _) => "released",
                (Some(OrderEvent::PaymentSucceeded), OrderStatus::Paid) => "paid",
                (Some(OrderEvent::ShipmentCreated), _) => {
                    events.push(TrackingEvent { at: entry.at, event: "label_created" });
                    "shipped"
                }
                (Some(OrderEvent::DeliveryRecorded), _) => "delivered",
                (Some(OrderEvent::Cancelled | OrderEvent::PaymentDeadlinePassed), _) => "cancelled",
                (Some(OrderEvent::PaymentSucceeded | OrderEvent::PaymentDeclined), _) => continue,
            };
            events.push(TrackingEvent { at: entry.at, event });
        }
        Ok(Tracking {
            order_id: order.id,
            status: order.status,
            carrier: order.shipment.as_ref().map(|s| s.carrier.clone()),
            tracking_number: order.shipment.as_ref().map(|s| s.tracking_number.clone()),
            recipient: order.recipient.as_ref().map(|r| r.name.clone()),
            shipping_address: order.shipping_address.clone(),
            events,
        })
    }

    /// GET /orders/{id}/label (owner or admin): the ZPL shipping label; 409 until it ships.
    pub async fn label(&self, session: &Session, order_id: Uuid) -> Result<String> {
        let order = self.ledger.order_for(session, order_id).await?;
        let status = order.status;
        order
            .shipment
            .map(|s| s.label)
            .ok_or_else(|| Error::Conflict(format!("the order is {status}: its shipping label is made when it ships")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_text_cannot_inject_commands() {
        assert_eq!(zpl_text("Ada ^XZ~JA_x\\y"), "Ada _5EXZ_7EJA_5Fx_5Cy");
        assert_eq!(zpl_text("tab\there\nnew"), "tab here new");
    }

    #[test]
    fn tracking_numbers_are_stable_and_checked() {
        let id = Uuid::now_v7();
        let number = tracking_number(id);
        assert_eq!(number, tracking_number(id));
        assert!(number.starts_with("OP") && number.len() == 15, "{number}");
    }
}
