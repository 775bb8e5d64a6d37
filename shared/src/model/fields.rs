//! Validated values: client input becomes one of these at the edge, so the domain and the
//! stores never see an invalid name, email or category.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::FieldError;

/// A PATCH member (RFC 7396 merge patch) that may be left out but not removed, such as a
/// product's name: `null` is refused (a 422 naming the field) instead of leaving the field
/// alone. With `#[serde(default, deserialize_with = "not_null")]` on an `Option<T>`.
pub fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A PATCH member that may be removed, such as a customer's phone: left out is `None` (left as
/// it is), `null` is `Some(None)` (removed), a value `Some(Some(value))`. With
/// `#[serde(default, deserialize_with = "removable")]` on an `Option<Option<T>>`.
pub fn removable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

fn trimmed_len_between(field: &str, raw: &str, min: usize, max: usize) -> Result<String, FieldError> {
    let value = raw.trim();
    let len = value.chars().count();
    if len < min {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if len > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A person's display name: 1–200 characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        trimmed_len_between(field, raw, 1, 200).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, kept as written; uniqueness uses [`Email::key`] (lower case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let value = trimmed_len_between(field, raw, 1, 254)?;
        let valid = match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !value.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if valid {
            Ok(Self(value))
        } else {
            Err(FieldError::new(field, "must be an email address like name@example.com"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The case-insensitive uniqueness key.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A product name: 1–200 characters, trimmed; unique case-insensitively via [`ProductName::key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        trimmed_len_between(field, raw, 1, 200).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// An admin's login name: 3–64 of `a-z 0-9 . _ -`, lower-cased here once, so stores compare
/// it as stored. Never an email, so it cannot clash with a customer's login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim().to_ascii_lowercase();
        let ok = (3..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok { Ok(Self(name)) } else { Err(FieldError::new(field, "must be 3-64 of a-z, 0-9, '.', '_' or '-'")) }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A category slug: lower-case letters, digits and dashes, 1–50 characters (`garden-tools`).
/// Slugs make the category filter exact and case-free on every backend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Category(String);

impl Category {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        let ok = (1..=50).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(field, "must be 1-50 lower-case letters, digits or dashes, like garden-tools"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An integer in `min..=max`, or a field error saying so.
pub fn int_in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, FieldError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(field, format!("must be between {min} and {max}")))
    }
}

/// Optional one-line free text bounded in length (phone numbers, address lines, reasons): no
/// control character at all, so nothing stored can break a label, a log line or an email.
pub fn optional_text(field: &str, raw: Option<&str>, max: usize) -> Result<Option<String>, FieldError> {
    bounded_text(field, raw.map(str::to_owned), max, false)
}

/// Optional multi-line free text (descriptions): newlines are kept (CRLF becomes LF), any
/// other control character is refused.
pub fn optional_multiline_text(field: &str, raw: Option<&str>, max: usize) -> Result<Option<String>, FieldError> {
    bounded_text(field, raw.map(|r| r.replace("\r\n", "\n")), max, true)
}

fn bounded_text(field: &str, raw: Option<String>, max: usize, newlines: bool) -> Result<Option<String>, FieldError> {
    let Some(value) = raw.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && !(newlines && c == '\n')) {
        let allowed = if newlines { " other than newlines" } else { "" };
        return Err(FieldError::new(field, format!("must not contain control characters{allowed}")));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_keyed_case_insensitively() {
        let email = Email::parse("email", "  Ada@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Ada@Example.COM");
        assert_eq!(email.key(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "a@b@example.com", "ada@.com"]
        {
            assert!(Email::parse("email", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn usernames_are_lower_cased_once() {
        assert_eq!(Username::parse("username", " Ops.Admin ").expect("valid").as_str(), "ops.admin");
        for bad in ["ab", "ops admin", "ops@example.com", &"a".repeat(65)] {
            assert!(Username::parse("username", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn free_text_refuses_control_characters() {
        for bad in ["a\u{0}b", "esc\u{1b}[31m", "two\nlines", "cr\rhere", "bell\u{7}"] {
            let error = optional_text("address.line1", Some(bad), 200).expect_err(bad);
            assert_eq!(error.field, "address.line1");
        }
        assert_eq!(optional_text("reason", Some("  ok  "), 10), Ok(Some("ok".into())));
        let kept = optional_multiline_text("description", Some("one\r\ntwo\nthree"), 100);
        assert_eq!(kept, Ok(Some("one\ntwo\nthree".into())));
        assert!(optional_multiline_text("description", Some("tab\there"), 100).is_err());
        assert!(optional_multiline_text("description", Some("nul\u{0}"), 100).is_err());
    }

    #[test]
    fn categories_are_slugs() {
        assert!(Category::parse("category", "garden-tools").is_ok());
        for bad in ["", "Garden", "garden tools", "-x", "x-", &"a".repeat(51)] {
            assert!(Category::parse("category", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse("name", "  Mug ").expect("valid").as_str(), "Mug");
        assert!(ProductName::parse("name", "   ").is_err());
        assert!(ProductName::parse("name", &"x".repeat(201)).is_err());
        assert!(ProductName::parse("name", "bad\u{0}name").is_err());
    }
}
