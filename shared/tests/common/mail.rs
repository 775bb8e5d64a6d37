//! A mail service for tests: records what it is given, or refuses while told to.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use orderly::mail::{MailError, Mailer, OutgoingEmail};

#[derive(Default)]
pub struct RecordingMailer {
    sent: Mutex<Vec<OutgoingEmail>>,
    failing: AtomicBool,
}

impl RecordingMailer {
    pub fn sent(&self) -> Vec<OutgoingEmail> {
        self.sent.lock().expect("lock").clone()
    }

    /// While failing, every send answers "unavailable" and records nothing.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(MailError::Unavailable("the test mail service is down".into()));
        }
        self.sent.lock().expect("lock").push(email.clone());
        Ok(())
    }
}
