//! Every service at once, over one store: the local server and the tests. A Lambda function
//! builds only the services its routes or messages need (see `crate::lambda`).

use std::sync::Arc;

use super::{
    Accounts, Alerts, AuthConfig, BackOffice, Catalog, Customers, Fulfillment, Hasher, Inventory, Ledger, NoticeBoard,
    Notifier, OrderSettings, Orders, Payments, Sessions, Sweeper,
};
use crate::alerts::LoggedAlerts;
use crate::clock::Clock;
use crate::gateway::PaymentGateway;
use crate::mail::Mailer;
use crate::queue::Queue;
use crate::store::Store;

#[derive(Clone)]
pub struct Services {
    pub sessions: Sessions,
    pub accounts: Accounts,
    pub customers: Customers,
    pub catalog: Catalog,
    pub ledger: Ledger,
    pub orders: Orders,
    pub payments: Payments,
    pub fulfillment: Fulfillment,
    pub sweeper: Sweeper,
    pub inventory: Inventory,
    pub alerts: Alerts,
    pub notices: NoticeBoard,
    pub notifier: Notifier,
    /// The queue, for the back office's dead-letter counts.
    pub queue: Arc<dyn Queue>,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        auth: AuthConfig,
        queue: Arc<dyn Queue>,
        gateway: Arc<dyn PaymentGateway>,
        settings: OrderSettings,
        mailer: Arc<dyn Mailer>,
    ) -> Self {
        let auth = Arc::new(auth);
        let sessions = Sessions::new(store.clone(), clock.clone(), auth.clone());
        let hasher = Hasher::per_core(auth.cost);
        let ledger = Ledger::new(store.clone(), store.clone(), clock.clone(), queue.clone(), gateway, settings);
        // Locally the back office lists alerts; there is no topic to publish them to.
        let alerts = Alerts::new(store.clone(), Arc::new(LoggedAlerts), clock.clone());
        Self {
            accounts: Accounts::new(
                store.clone(),
                clock.clone(),
                auth.clone(),
                sessions.clone(),
                hasher.clone(),
                queue.clone(),
            ),
            customers: Customers::new(store.clone(), clock.clone(), hasher, auth.limits, queue.clone()),
            catalog: Catalog::new(store.clone(), clock.clone()),
            inventory: Inventory::new(store.clone(), store.clone(), clock.clone(), settings.idempotency_ttl),
            sessions,
            orders: Orders::new(ledger.clone()),
            payments: Payments::new(ledger.clone()),
            fulfillment: Fulfillment::new(ledger.clone()),
            sweeper: Sweeper::new(ledger.clone(), store.clone(), alerts.clone(), store.clone()),
            notices: NoticeBoard::new(store.clone()),
            notifier: Notifier::new(store.clone(), mailer, clock.clone()),
            alerts,
            queue,
            ledger,
        }
    }

    /// The back office over the same services.
    pub fn back_office(&self) -> BackOffice {
        BackOffice {
            orders: self.orders.clone(),
            payments: self.payments.clone(),
            catalog: self.catalog.clone(),
            inventory: self.inventory.clone(),
            alerts: self.alerts.clone(),
            customers: self.customers.directory(),
            queue: self.queue.clone(),
        }
    }
}
