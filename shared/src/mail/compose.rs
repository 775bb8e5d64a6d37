//! The RFC 5322 message every adapter sends: a plain-text and an HTML alternative, the
//! customer's name on the `To:` line, the notice id as the `Message-ID`.

use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header};

use super::{MailError, OutgoingEmail};

/// The message from `sender` (e.g. `Orderly <orders@example.com>`).
pub fn message(sender: &Mailbox, email: &OutgoingEmail) -> Result<Message, MailError> {
    let to_address = email.to_email.parse().map_err(|e| MailError::Refused(format!("recipient address: {e}")))?;
    let to = Mailbox::new(Some(email.to_name.clone()), to_address);
    let domain = sender.email.domain();
    Message::builder()
        .from(sender.clone())
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}@{domain}>", email.id)))
        .header(header::MIME_VERSION_1_0)
        .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
        .map_err(|e| MailError::Refused(format!("building the message: {e}")))
}

/// The sender as configured (`MAIL_FROM`), e.g. `Orderly <orders@example.com>`.
pub fn sender(raw: &str) -> Result<Mailbox, String> {
    raw.parse().map_err(|e| format!("MAIL_FROM {raw:?} is not an address: {e}"))
}
