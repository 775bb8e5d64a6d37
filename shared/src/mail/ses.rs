//! Delivery on AWS: Amazon SES (SESv2 `SendEmail` with the raw RFC 5322 message), from the
//! verified sender the template's `SenderAddress` names.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::DisplayErrorContext;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{EmailContent, RawMessage};
use lettre::message::Mailbox;

use super::{MailError, Mailer, OutgoingEmail, compose};

pub struct SesMailer {
    client: Client,
    sender: Mailbox,
}

impl SesMailer {
    pub fn new(client: Client, sender: Mailbox) -> Self {
        Self { client, sender }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let bytes = compose::message(&self.sender, email)?.formatted();
        let raw =
            RawMessage::builder().data(Blob::new(bytes)).build().map_err(|e| MailError::Refused(e.to_string()))?;
        let result = self.client.send_email().content(EmailContent::builder().raw(raw).build()).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let refused = err.as_service_error().is_some_and(|e| {
                    e.is_message_rejected()
                        || e.is_mail_from_domain_not_verified_exception()
                        || e.is_bad_request_exception()
                });
                let detail = DisplayErrorContext(&err).to_string();
                if refused { Err(MailError::Refused(detail)) } else { Err(MailError::Unavailable(detail)) }
            }
        }
    }
}
