//! Queue consumers: each turns a queue's messages into domain calls. The Lambda worker
//! functions and the local server run the same consumers (see `crate::queue::worker`).

mod fulfillment_worker;
#[cfg(feature = "sqlite")]
mod notice_relay;
mod notification_worker;
mod order_worker;
mod payment_worker;

pub use fulfillment_worker::FulfillmentWorker;
#[cfg(feature = "sqlite")]
pub use notice_relay::{deliver_fed, run_local_notice_relay};
pub use notification_worker::{HANDED_OFF_RETRY, NotificationWorker, deliver_relayed};
pub use order_worker::OrderWorker;
pub use payment_worker::PaymentWorker;
