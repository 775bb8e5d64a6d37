//! Sending email: the [`Mailer`] port the notification worker delivers through, and its
//! adapters. Every adapter sends the same RFC 5322 message, built by [`compose`] (lettre):
//! - [`eml::EmlOutbox`]: local, one `.eml` file per notice under `ORDERLY_DATA_DIR/outbox/`;
//! - [`smtp::SmtpRelay`]: local, through an SMTP relay when `SMTP_URL` is set;
//! - [`ses::SesMailer`]: on AWS, Amazon SES (SESv2 `SendEmail`, raw content).

#[cfg(feature = "mail")]
pub mod compose;
#[cfg(feature = "mail")]
pub mod eml;
#[cfg(feature = "ses")]
pub mod ses;
#[cfg(feature = "smtp")]
pub mod smtp;

use async_trait::async_trait;
use uuid::Uuid;

/// One email, rendered: what the customer reads, and who it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The notice's id: the message's `Message-ID`, and what makes a resend recognisable.
    pub id: Uuid,
    pub to_name: String,
    pub to_email: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Worth trying again later (a relay down, throttling).
    #[error("mail service unavailable: {0}")]
    Unavailable(String),
    /// This message can never be sent as it is (a malformed address).
    #[error("message refused: {0}")]
    Refused(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError>;
}
