//! Local delivery: each message written as `<outbox>/<notice id>.eml`, openable in any mail
//! client. Written to a temporary file, synced, then renamed: a file either is complete or is
//! not there, and a notice delivered twice writes the same file once.

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::Mailbox;

use super::{MailError, Mailer, OutgoingEmail, compose};

pub struct EmlOutbox {
    dir: PathBuf,
    sender: Mailbox,
}

impl EmlOutbox {
    pub fn new(dir: PathBuf, sender: Mailbox) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Self { dir, sender })
    }
}

#[async_trait]
impl Mailer for EmlOutbox {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let bytes = compose::message(&self.sender, email)?.formatted();
        let path = self.dir.join(format!("{}.eml", email.id));
        let partial = self.dir.join(format!(".{}.eml.partial", email.id));
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            if path.exists() {
                return Ok(());
            }
            let mut file = std::fs::File::create(&partial)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        })
        .await
        .map_err(|e| MailError::Unavailable(format!("writing the .eml: {e}")))?
        .map_err(|e| MailError::Unavailable(format!("writing the .eml: {e}")))
    }
}
