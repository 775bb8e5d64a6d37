//! The domain layer's error: what a caller of a [`crate::domain`] service can be told.
//! The HTTP layer maps it to a status and a problem document in one place
//! (`http::problem`); store errors are translated into it in `domain`.

pub use crate::model::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(
        "the current version is {current_version}, not the one given (a weak W/ ETag never matches): read it \
         again and re-apply your change with its version"
    )]
    PreconditionFailed { current_version: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// `what` says which limit: "too many failed logins", "too many orders waiting", …
    #[error("{what}; retry in {retry_after_secs} s")]
    TooManyRequests { what: &'static str, retry_after_secs: u64 },
    #[error("the service is busy, retry shortly")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
