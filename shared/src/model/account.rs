//! Accounts: customers with their contact details and address, admins, and who a token
//! speaks for.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::FieldError;
use super::fields::{Email, PersonName, Username, optional_text};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(example = json!({"line1": "12 St James Sq", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"})))]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

impl Address {
    /// Checks every part, and names every one that is wrong (all the empty lines of an address
    /// at once, not the first of them).
    pub fn parse(field: &str, raw: Address) -> Result<Address, Vec<FieldError>> {
        let required = |name: &str, value: &str, max: usize| {
            let path = format!("{field}.{name}");
            optional_text(&path, Some(value), max)?.ok_or_else(|| FieldError::new(path, "must not be empty"))
        };
        let country = Some(raw.country.trim().to_ascii_uppercase())
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| FieldError::new(format!("{field}.country"), "must be a two-letter country code like GB"));
        let line1 = required("line1", &raw.line1, 200);
        let line2 = optional_text(&format!("{field}.line2"), raw.line2.as_deref(), 200);
        let city = required("city", &raw.city, 100);
        let postal_code = required("postal_code", &raw.postal_code, 20);
        match (line1, line2, city, postal_code, country) {
            (Ok(line1), Ok(line2), Ok(city), Ok(postal_code), Ok(country)) => {
                Ok(Address { line1, line2, city, postal_code, country })
            }
            (l1, l2, c, p, cc) => Err([l1.err(), l2.err(), c.err(), p.err(), cc.err()].into_iter().flatten().collect()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Customer {
    pub id: Uuid,
    pub name: PersonName,
    pub email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An admin account. Admins are created by the operator (see README), never over the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admin {
    pub id: Uuid,
    pub username: Username,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    Customer,
    Admin,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub id: Uuid,
    pub role: Role,
}

/// A customer's request to reset a forgotten password, as stored. The secret emailed to the
/// customer is kept only as its SHA-256 (`token_hash`): reading the store is no way to reset
/// anyone's password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordReset {
    /// Also the email's Message-ID.
    pub id: Uuid,
    /// Lower-case hex.
    pub token_hash: String,
    pub customer_id: Uuid,
    /// The login (lower-case email) it was sent to: it resets that login only.
    pub login: String,
    /// The SHA-256 (hex) of the password hash the account had when the code was sent: a reset
    /// or a change since (another code used, the owner securing the account) ends every code.
    pub for_password: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub used_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for PasswordReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordReset")
            .field("id", &self.id)
            .field("customer_id", &self.customer_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}
