//! Local delivery through an SMTP relay (`SMTP_URL`, e.g. `smtp://127.0.0.1:1025` for a
//! development mail catcher, `smtps://user:pass@smtp.example.com` for a real one).

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{MailError, Mailer, OutgoingEmail, compose};

pub struct SmtpRelay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: Mailbox,
}

impl SmtpRelay {
    pub fn from_url(url: &str, sender: Mailbox) -> Result<Self, String> {
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| format!("SMTP_URL: {e}"))?.build();
        Ok(Self { transport, sender })
    }
}

#[async_trait]
impl Mailer for SmtpRelay {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = compose::message(&self.sender, email)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_permanent() => Err(MailError::Refused(err.to_string())),
            Err(err) => Err(MailError::Unavailable(err.to_string())),
        }
    }
}
