//! Reading customer records: what the `customers` function and the back office share, without
//! the password hashing that sign-up needs (so the `admin` function does not link argon2).

use std::sync::Arc;

use serde::Deserialize;
use uuid::Uuid;

use super::auth::Session;
use crate::error::{Error, Result};
use crate::model::{Customer, Email, Role};
use crate::store::{AccountStore, Page};

/// GET /customers and GET /admin/customers query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct CustomerQuery {
    pub limit: Option<u32>,
    pub next_token: Option<String>,
    /// Finds the customer who signs in with this email, in any letter case: a page of that one
    /// customer, or an empty page (`limit` and `next_token` do not apply); a malformed email
    /// is a 422. Encode a `+` in it as `%2B`.
    pub email: Option<String>,
}

#[derive(Clone)]
pub struct CustomerDirectory {
    store: Arc<dyn AccountStore>,
}

impl CustomerDirectory {
    pub fn new(store: Arc<dyn AccountStore>) -> Self {
        Self { store }
    }

    /// One customer: themselves or an admin (404 for anyone else).
    pub async fn customer(&self, session: &Session, id: Uuid) -> Result<Customer> {
        session.require_self_or_admin(id, "customer")?;
        self.store.get_customer(id).await?.ok_or(Error::NotFound("customer"))
    }

    /// Every customer in sign-up order, or the one with an email (admins: finding who wrote
    /// in to the shop).
    pub async fn customers(&self, session: &Session, query: CustomerQuery) -> Result<Page<Customer>> {
        session.require_admin()?;
        let page = super::page_request(query.limit, query.next_token)?;
        let Some(email) = query.email else {
            return Ok(self.store.list_customers(&page).await?);
        };
        let email = Email::parse("email", &email).map_err(|invalid| Error::Validation(vec![invalid]))?;
        let found = match self.store.find_login(&email.key()).await? {
            Some(login) if login.role == Role::Customer => self.store.get_customer(login.subject).await?,
            _ => None,
        };
        Ok(Page { items: found.into_iter().collect(), next_token: None })
    }
}
