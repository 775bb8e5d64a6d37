//! Local delivery: each message written as `<outbox>/<notice id>.eml`, openable in any mail
//! client. A message's file gets its name only once it is complete and synced, so a file
//! either is complete or is not there, and a notice delivered twice leaves one file.
//!
//! One thread writes the files, in batches of whatever is waiting: one filesystem sync for the
//! batch instead of one `fsync` per file, then the names and one sync of the directory. A send
//! is answered only once its file and its name are on disk, so a notice marked sent has its
//! email.

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

/// How a message's file is made before it has its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Staging {
    /// Linux: an unnamed file in the outbox (`O_TMPFILE`), named by one `linkat` once synced.
    /// The outbox holds every message sent, and each operation on so large a directory costs:
    /// this is one (the link) per message where renaming takes three (a lookup for a file
    /// already there, the temporary name, the rename).
    Unnamed,
    /// Elsewhere, or where the filesystem cannot: a hidden `.<id>.eml.partial` file, renamed.
    Renamed,
}

/// A message's complete file, not yet named.
struct Staged {
    file: File,
    /// Its temporary name, when staged as [`Staging::Renamed`].
    partial: Option<PathBuf>,
}

impl EmlOutbox {
    pub fn new(dir: PathBuf, sender: Mailbox) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let staging = staging_for(&dir);
        Self::with_staging(dir, sender, staging)
    }

    fn with_staging(dir: PathBuf, sender: Mailbox, staging: Staging) -> Result<Self, String> {
        let (files, queued) = mpsc::channel();
        std::thread::Builder::new()
            .name("eml-outbox".into())
            .spawn(move || write_files(&dir, staging, &queued))
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
fn write_files(dir: &Path, staging: Staging, queued: &Receiver<Pending>) {
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        batch.extend(queued.try_iter().take(MAX_BATCH - 1));
        write_batch(dir, staging, batch);
    }
}

/// Writes every message of `batch` to a file without its name, syncs them together, names
/// them, syncs the directory, and answers each sender with its own outcome. The directory is
/// synced even when every file was there already: the batch that named one may have failed
/// its own directory sync.
fn write_batch(dir: &Path, staging: Staging, batch: Vec<Pending>) {
    let mut staged = Vec::new();
    let mut outcomes = Vec::new();
    for pending in batch {
        let path = dir.join(format!("{}.eml", pending.id));
        let outcome = match stage(dir, &pending, staging, &path) {
            Ok(Some(file)) => {
                staged.push((file, path, outcomes.len()));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        outcomes.push((pending.written, outcome));
    }
    let synced = File::open(dir).and_then(|dir_file| {
        sync_files(&dir_file, staged.iter().map(|(staged, ..)| &staged.file))?;
        for (staged, path, index) in &staged {
            if let Err(err) = publish(staged, path) {
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
    for (written, outcome) in outcomes {
        // A sender that went away (a cancelled delivery) is retried by its message.
        let _ = written.send(outcome);
    }
}

/// The message's complete file, not yet named; `None` when a rename would only replace a
/// file already there (an unnamed file finds that out when it is linked).
fn stage(dir: &Path, pending: &Pending, staging: Staging, path: &Path) -> io::Result<Option<Staged>> {
    let (file, partial) = match staging {
        Staging::Unnamed => (create_unnamed(dir)?, None),
        Staging::Renamed if path.exists() => return Ok(None),
        Staging::Renamed => {
            let partial = dir.join(format!(".{}.eml.partial", pending.id));
            (File::create(&partial)?, Some(partial))
        }
    };
    let mut staged = Staged { file, partial };
    match staged.file.write_all(&pending.bytes) {
        Ok(()) => Ok(Some(staged)),
        Err(err) => {
            if let Some(partial) = staged.partial.take() {
                let _ = std::fs::remove_file(partial);
            }
            Err(err)
        }
    }
}

/// Gives a staged file its name. A name already there is the same notice's message, delivered
/// before (or twice in one batch): it stays.
fn publish(staged: &Staged, path: &Path) -> io::Result<()> {
    let named = match &staged.partial {
        Some(partial) => std::fs::rename(partial, path),
        None => link_unnamed(&staged.file, path),
    };
    named.or_else(|err| if path.exists() { Ok(()) } else { Err(err) })
}

/// Unnamed files where the outbox's filesystem makes and links them (tried once, at start).
fn staging_for(dir: &Path) -> Staging {
    let probe = dir.join(format!(".probe-{}.eml", uuid::Uuid::now_v7()));
    let works = create_unnamed(dir).and_then(|file| link_unnamed(&file, &probe)).is_ok();
    let _ = std::fs::remove_file(&probe);
    if works { Staging::Unnamed } else { Staging::Renamed }
}

#[cfg(target_os = "linux")]
fn create_unnamed(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).open(dir)
}

/// Names an `O_TMPFILE` file through `/proc/self/fd` (`linkat` with `AT_EMPTY_PATH` would
/// need a privilege); fails if the name is taken.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, path: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated and outlive the call; the descriptor is open.
    let linked =
        unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    if linked == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn create_unnamed(_dir: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, _path: &Path) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
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
        let probed = staging_for(&std::env::temp_dir());
        if cfg!(target_os = "linux") {
            assert_eq!(probed, Staging::Unnamed, "Linux's temporary directory takes unnamed files");
        }
        // The fallback is tested wherever the probe picks unnamed files.
        let stagings = if probed == Staging::Unnamed { vec![probed, Staging::Renamed] } else { vec![probed] };
        for staging in stagings {
            each_send_leaves_one_complete_file(staging).await;
        }
    }

    async fn each_send_leaves_one_complete_file(staging: Staging) {
        let dir = std::env::temp_dir().join(format!("orderly-eml-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("outbox");
        let sender = "Orderly <orders@example.com>".parse().expect("mailbox");
        let outbox = Arc::new(EmlOutbox::with_staging(dir.clone(), sender, staging).expect("outbox"));
        let ids: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
        // Every id twice, all at once: a notice delivered again writes its file once.
        let sends = ids.iter().chain(&ids).map(|id| {
            let (outbox, email) = (outbox.clone(), email(*id));
            tokio::spawn(async move { outbox.send(&email).await })
        });
        for send in sends.collect::<Vec<_>>() {
            send.await.expect("joined").expect("sent");
        }
        // And once more after they are all written.
        outbox.send(&email(ids[0])).await.expect("sent again");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("outbox")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        names.sort();
        let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}.eml")).collect();
        expected.sort();
        assert_eq!(names, expected, "{staging:?}: one file per notice, no partial files left");
        let first = std::fs::read_to_string(dir.join(&expected[0])).expect("readable");
        assert!(first.contains("Subject: Order ") && first.contains("Thank you."), "{staging:?}: {first}");
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
