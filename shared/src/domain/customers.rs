//! Customers: sign-up, reading, and changes to one's own record.

use serde::Deserialize;
use uuid::Uuid;

use std::sync::Arc;

use std::net::IpAddr;

use super::Invalid as _;
use super::accounts::check_current_password;
use super::auth::{LoginLimits, Password, Session, too_many};
use super::directory::CustomerDirectory;
use super::notifications::{AccountChange, queue_account_email};
use super::passwords::Hasher;
use super::{UNCONDITIONAL_UPDATE_ATTEMPTS, backoff, field_errors};
use crate::clock::Clock;
use crate::error::{Error, FieldError, Result};
use crate::model::{Address, Customer, Email, PersonName, optional_text};
use crate::queue::Queue;
use crate::store::{AccountStore, StoreError};

/// POST /customers body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"name": "Ada Lovelace", "email": "ada@example.com", "password": "correct horse battery", "phone": "+44 20 7946 0000", "address": {"line1": "12 St James Sq", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}})))]
pub struct NewCustomer {
    pub name: String,
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 10, max_length = 128))]
    pub password: Password,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<Address>,
}

/// PATCH /customers/{id} body: only the fields present change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomerPatch {
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::model::not_null")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub email: Option<String>,
    /// `null` (or an empty string) removes it.
    #[serde(default, deserialize_with = "crate::model::removable")]
    pub phone: Option<Option<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "crate::model::removable")]
    pub address: Option<Option<Address>>,
    /// The customer's password: needed when a customer changes their own email (a password
    /// reset goes to the email, so a token alone must not move it). An admin needs none.
    #[serde(default)]
    pub current_password: Option<Password>,
}

fn parse_phone(raw: Option<&str>) -> Result<Option<String>, FieldError> {
    let phone = optional_text("phone", raw, 32)?;
    if let Some(p) = &phone {
        let digits = p.chars().filter(char::is_ascii_digit).count();
        if digits < 5 || !p.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c)) {
            return Err(FieldError::new("phone", "must be a phone number like +44 20 7946 0000"));
        }
    }
    Ok(phone)
}

/// Customers: sign-up, reading, and changes to one's own record.
#[derive(Clone)]
pub struct Customers {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
    hasher: Hasher,
    limits: LoginLimits,
    /// The notifications queue: an email change is told to the address it leaves.
    queue: Arc<dyn Queue>,
}

impl Customers {
    pub fn new(
        store: Arc<dyn AccountStore>,
        clock: Arc<dyn Clock>,
        hasher: Hasher,
        limits: LoginLimits,
        queue: Arc<dyn Queue>,
    ) -> Self {
        Self { store, clock, hasher, limits, queue }
    }

    /// Signs a customer up; at most `sign_ups_per_address` per window from one address.
    pub async fn sign_up(&self, input: NewCustomer, source: Option<IpAddr>) -> Result<Customer> {
        let name = PersonName::parse("name", &input.name);
        let email = Email::parse("email", &input.email);
        let phone = parse_phone(input.phone.as_deref());
        let address = input.address.map(|a| Address::parse("address", a)).transpose();
        let password = input.password.check_new("password");
        let (name, email, phone, address) = match (name, email, phone, address, password) {
            (Ok(n), Ok(e), Ok(p), Ok(a), Ok(())) => (n, e, p, a),
            (n, e, p, a, pw) => {
                return Err(field_errors([n.invalid(), e.invalid(), pw.invalid(), p.invalid(), a.invalid()]));
            }
        };
        let now = self.clock.now();
        if let Some(ip) = source {
            let window_end = self.limits.window_end(now)?;
            let key = format!("sign-up:{ip}");
            if !self.store.acquire_attempt(&key, self.limits.sign_ups_per_address, window_end).await? {
                return Err(too_many(now, window_end, "too many sign-ups from this address"));
            }
        }
        let password_hash = self.hasher.hash(input.password).await?;
        let customer =
            Customer { id: Uuid::now_v7(), name, email, phone, address, version: 1, created_at: now, updated_at: now };
        self.store.insert_customer(&customer, &password_hash).await?;
        tracing::info!(customer_id = %customer.id, "customer signed up");
        Ok(customer)
    }

    /// Reading customers, as the back office does too.
    pub fn directory(&self) -> CustomerDirectory {
        CustomerDirectory::new(self.store.clone())
    }

    /// PATCH /customers/{id}: changes the given fields. `if_match`: the version the caller
    /// read; a stale one answers 412 and changes nothing. A customer changing their own email
    /// confirms it with their password, checked as a login is (`source`: for the limits).
    pub async fn update_customer(
        &self,
        session: &Session,
        id: Uuid,
        if_match: Option<u64>,
        patch: CustomerPatch,
        source: Option<IpAddr>,
    ) -> Result<Customer> {
        session.require_self_or_admin(id, "customer")?;
        let name = patch.name.as_deref().map(|n| PersonName::parse("name", n)).transpose();
        let email = patch.email.as_deref().map(|e| Email::parse("email", e)).transpose();
        let phone = patch.phone.map(|p| parse_phone(p.as_deref())).transpose();
        let address = patch.address.map(|a| a.map(|a| Address::parse("address", a)).transpose()).transpose();
        let (name, email, phone, address) = match (name, email, phone, address) {
            (Ok(n), Ok(e), Ok(p), Ok(a)) => (n, e, p, a),
            (n, e, p, a) => return Err(field_errors([n.invalid(), e.invalid(), p.invalid(), a.invalid()])),
        };
        let mut current_password = patch.current_password;
        let mut email_change_confirmed = session.is_admin();
        for attempt in 0..UNCONDITIONAL_UPDATE_ATTEMPTS {
            let current = self.store.get_customer(id).await?.ok_or(Error::NotFound("customer"))?;
            if let Some(expected) = if_match
                && expected != current.version
            {
                return Err(Error::PreconditionFailed { current_version: current.version });
            }
            let mut updated = current.clone();
            if let Some(n) = &name {
                updated.name = n.clone();
            }
            if let Some(e) = &email {
                updated.email = e.clone();
            }
            if let Some(p) = &phone {
                updated.phone = p.clone();
            }
            if let Some(a) = &address {
                updated.address = a.clone();
            }
            if updated == current {
                return Ok(current);
            }
            // Decided on the record the write is conditioned on, so an email moved meanwhile (by
            // an admin) cannot make a change back look like no change.
            if updated.email.key() != current.email.key() && !email_change_confirmed {
                self.confirm_email_change(session, current_password.take(), source).await?;
                email_change_confirmed = true;
            }
            updated.version = current.version + 1;
            updated.updated_at = self.clock.now();
            match self.store.update_customer(&current, &updated).await {
                Ok(()) => {
                    if updated.email.key() != current.email.key() {
                        let change = AccountChange::EmailChanged { new_email: updated.email.as_str().to_owned() };
                        let (name, old_email) = (current.name.as_str(), current.email.as_str());
                        queue_account_email(self.queue.as_ref(), name, old_email, change, updated.updated_at).await;
                    }
                    return Ok(updated);
                }
                Err(StoreError::VersionConflict) => backoff(attempt).await,
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Unavailable)
    }

    /// A customer's own email change needs their password.
    async fn confirm_email_change(
        &self,
        session: &Session,
        password: Option<Password>,
        source: Option<IpAddr>,
    ) -> Result<()> {
        let Some(password) = password.filter(|p| !p.0.is_empty()) else {
            return Err(Error::invalid("current_password", "is needed to change the email: give your password"));
        };
        // The customer was just read, so no login means it moved with an email change in between
        // (on DynamoDB), as a password change finds it.
        let moved = || Error::Conflict("the account's email changed meanwhile: read it again and retry".into());
        let login = self.store.login_of(&session.principal).await?.ok_or_else(moved)?;
        let now = self.clock.now();
        check_current_password(self.store.as_ref(), &self.hasher, self.limits, &login, password, source, now).await
    }
}
