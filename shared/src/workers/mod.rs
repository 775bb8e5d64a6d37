//! Queue consumers: each turns a queue's messages into domain calls. The Lambda worker
//! functions and the local server run the same consumers (see `crate::queue::worker`).

mod fulfillment_worker;
mod notification_worker;
mod order_worker;
mod payment_worker;

pub use fulfillment_worker::FulfillmentWorker;
pub use notification_worker::NotificationWorker;
pub use order_worker::OrderWorker;
pub use payment_worker::PaymentWorker;
