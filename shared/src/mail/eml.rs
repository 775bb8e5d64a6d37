//! Local delivery: each message written as `<outbox>/<notice id>.eml`, openable in any mail
//! client. Written to a temporary file, synced, then renamed: a file either is complete or is
//! not there, and a notice delivered twice writes the same file once.
//!
//! One thread writes the files, in batches of whatever is waiting: one filesystem sync for the
//! batch instead of one `fsync` per file, then the renames and one sync of the directory. A
//! send is answered only once its file and its name are on disk, so a notice marked sent has
//! its email.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};

use async_trait::async_trait;
use lettre::message::Mailbox;
use tokio::sync::oneshot;

use super::{MailError, Mailer, OutgoingEmail, compose};

/// The most files one sync covers.
const MAX_BATCH: usize = 256;

pub struct EmlOutbox {
    sender: Mailbox,
    files: Sender<Pending>,
}

/// A message waiting for the writer thread.
struct Pending {
    id: String,
    bytes: Vec<u8>,
    written: oneshot::Sender<io::Result<()>>,
}

impl EmlOutbox {
    pub fn new(dir: PathBuf, sender: Mailbox) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let (files, queued) = mpsc::channel();
        std::thread::Builder::new()
            .name("eml-outbox".into())
            .spawn(move || write_files(&dir, &queued))
            .map_err(|e| format!("starting the outbox writer: {e}"))?;
        Ok(Self { sender, files })
    }
}

#[async_trait]
impl Mailer for EmlOutbox {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let bytes = compose::message(&self.sender, email)?.formatted();
        let (written, answer) = oneshot::channel();
        let unavailable = |e: String| MailError::Unavailable(format!("writing the .eml: {e}"));
        self.files
            .send(Pending { id: email.id.to_string(), bytes, written })
            .map_err(|_| unavailable("the outbox writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| unavailable("the outbox writer has stopped".into()))?
            .map_err(|e| unavailable(e.to_string()))
    }
}

/// The writer thread: runs until the outbox is dropped.
fn write_files(dir: &Path, queued: &Receiver<Pending>) {
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        batch.extend(queued.try_iter().take(MAX_BATCH - 1));
        write_batch(dir, batch);
    }
}

/// Writes every new message of `batch` to its temporary file, syncs them together, renames them
/// into place, syncs the directory, and answers each sender with its own outcome.
fn write_batch(dir: &Path, batch: Vec<Pending>) {
    let mut renames = Vec::new();
    let mut outcomes = Vec::new();
    // A file already there (a notice delivered again) may have been renamed by a batch whose
    // directory sync failed: its name is synced again before anyone is told it is written.
    let mut sync_dir = false;
    for pending in batch {
        let path = dir.join(format!("{}.eml", pending.id));
        let partial = dir.join(format!(".{}.eml.partial", pending.id));
        let outcome = if path.exists() {
            sync_dir = true;
            Ok(())
        } else {
            match File::create(&partial).and_then(|mut file| file.write_all(&pending.bytes).map(|()| file)) {
                Ok(file) => {
                    renames.push((file, partial, path, outcomes.len()));
                    Ok(())
                }
                Err(err) => {
                    let _ = std::fs::remove_file(&partial);
                    Err(err)
                }
            }
        };
        outcomes.push((pending.written, outcome));
    }
    if !renames.is_empty() || sync_dir {
        let synced = File::open(dir).and_then(|dir_file| {
            sync_files(&dir_file, renames.iter().map(|(file, ..)| file))?;
            for (_, partial, path, index) in &renames {
                // The same notice twice in one batch: the first rename put the file in place.
                if let Err(err) =
                    std::fs::rename(partial, path).or_else(|err| if path.exists() { Ok(()) } else { Err(err) })
                {
                    outcomes[*index].1 = Err(err);
                }
            }
            dir_file.sync_all()
        });
        if let Err(err) = synced {
            for (_, outcome) in outcomes.iter_mut().filter(|(_, outcome)| outcome.is_ok()) {
                *outcome = Err(io::Error::new(err.kind(), err.to_string()));
            }
        }
    }
    for (written, outcome) in outcomes {
        // A sender that went away (a cancelled delivery) is retried by its message.
        let _ = written.send(outcome);
    }
}

/// Makes the batch's files durable: one `syncfs` of the outbox's filesystem on Linux, where it
/// costs one flush of the device for the whole batch (it reports writeback errors since Linux
/// 5.8; before, a failed write could go unreported); elsewhere an `fsync` per file.
#[cfg(target_os = "linux")]
fn sync_files<'a>(dir: &File, _files: impl Iterator<Item = &'a File>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `syncfs` only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn sync_files<'a>(_dir: &File, mut files: impl Iterator<Item = &'a File>) -> io::Result<()> {
    files.try_for_each(File::sync_all)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    fn email(id: Uuid) -> OutgoingEmail {
        OutgoingEmail {
            id,
            to_name: "Ada".into(),
            to_email: "ada@example.com".into(),
            subject: format!("Order {id}"),
            text: "Thank you.".into(),
            html: "<p>Thank you.</p>".into(),
        }
    }

    #[tokio::test]
    async fn concurrent_sends_each_leave_one_complete_file() {
        let dir = std::env::temp_dir().join(format!("orderly-eml-{}", Uuid::now_v7()));
        let outbox = Arc::new(
            EmlOutbox::new(dir.clone(), "Orderly <orders@example.com>".parse().expect("mailbox")).expect("outbox"),
        );
        let ids: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
        // Every id twice, all at once: a notice delivered again writes its file once.
        let sends = ids.iter().chain(&ids).map(|id| {
            let (outbox, email) = (outbox.clone(), email(*id));
            tokio::spawn(async move { outbox.send(&email).await })
        });
        for send in sends.collect::<Vec<_>>() {
            send.await.expect("joined").expect("sent");
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("outbox")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        names.sort();
        let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}.eml")).collect();
        expected.sort();
        assert_eq!(names, expected, "one file per notice, no partial files left");
        let first = std::fs::read_to_string(dir.join(&expected[0])).expect("readable");
        assert!(first.contains("Subject: Order ") && first.contains("Thank you."), "{first}");
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
