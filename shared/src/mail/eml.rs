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
    Unnamed(Link),
    /// Elsewhere, or where the filesystem cannot: a hidden `.<id>.eml.partial` file, renamed.
    Renamed,
}

/// How an unnamed file is given its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// `linkat` of the descriptor itself (`AT_EMPTY_PATH`): no path to resolve. Linux allows
    /// it for a file the caller opened since 6.10; before, only with `CAP_DAC_READ_SEARCH`.
    Descriptor,
    /// `linkat` of `/proc/self/fd/<n>`: any Linux with `/proc`, at the cost of a walk through
    /// `/proc` per message (9 % of the outbox thread's time in perf).
    ProcPath,
}

/// A message's complete file, not yet named.
struct Staged {
    file: File,
    naming: Naming,
}

/// How a staged file gets its name.
enum Naming {
    Link(Link),
    /// Renamed from its temporary name.
    Rename(PathBuf),
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
/// opened once per batch and unnamed files are made and named relative to it (no path to walk
/// per message), and it is synced even when every file was there already: the batch that named
/// one may have failed its own directory sync.
fn write_batch(dir: &Path, staging: Staging, batch: Vec<Pending>) {
    let dir_file = match File::open(dir) {
        Ok(dir_file) => dir_file,
        Err(err) => {
            for pending in batch {
                let _ = pending.written.send(Err(io::Error::new(err.kind(), err.to_string())));
            }
            return;
        }
    };
    let mut staged = Vec::new();
    let mut outcomes = Vec::new();
    for pending in batch {
        let name = format!("{}.eml", pending.id);
        let outcome = match stage(dir, &dir_file, &pending, staging, &name) {
            Ok(Some(file)) => {
                staged.push((file, name, outcomes.len()));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        outcomes.push((pending.written, outcome));
    }
    let synced = sync_files(&dir_file, staged.iter().map(|(staged, ..)| &staged.file)).and_then(|()| {
        for (staged, name, index) in &staged {
            if let Err(err) = publish(staged, dir, &dir_file, name) {
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
fn stage(dir: &Path, dir_file: &File, pending: &Pending, staging: Staging, name: &str) -> io::Result<Option<Staged>> {
    let mut staged = match staging {
        Staging::Unnamed(link) => Staged { file: create_unnamed(dir_file)?, naming: Naming::Link(link) },
        Staging::Renamed if dir.join(name).exists() => return Ok(None),
        Staging::Renamed => {
            let partial = dir.join(format!(".{name}.partial"));
            Staged { file: File::create(&partial)?, naming: Naming::Rename(partial) }
        }
    };
    match staged.file.write_all(&pending.bytes) {
        Ok(()) => Ok(Some(staged)),
        Err(err) => {
            if let Naming::Rename(partial) = &staged.naming {
                let _ = std::fs::remove_file(partial);
            }
            Err(err)
        }
    }
}

/// Gives a staged file its name. A name already there is the same notice's message, delivered
/// before (or twice in one batch): it stays.
fn publish(staged: &Staged, dir: &Path, dir_file: &File, name: &str) -> io::Result<()> {
    let named = match &staged.naming {
        Naming::Rename(partial) => std::fs::rename(partial, dir.join(name)),
        Naming::Link(link) => link_unnamed(&staged.file, dir_file, name, *link),
    };
    named.or_else(|err| if dir.join(name).exists() { Ok(()) } else { Err(err) })
}

/// Unnamed files where the outbox's filesystem makes and links them, by descriptor where the
/// kernel allows it (tried once, at start).
fn staging_for(dir: &Path) -> Staging {
    let probe = format!(".probe-{}.eml", uuid::Uuid::now_v7());
    let links = |link| {
        let dir_file = File::open(dir)?;
        let linked = create_unnamed(&dir_file).and_then(|file| link_unnamed(&file, &dir_file, &probe, link));
        let _ = std::fs::remove_file(dir.join(&probe));
        linked
    };
    [Link::Descriptor, Link::ProcPath]
        .into_iter()
        .find(|link| links(*link).is_ok())
        .map_or(Staging::Renamed, Staging::Unnamed)
}

#[cfg(target_os = "linux")]
fn create_unnamed(dir_file: &File) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: the path is a NUL-terminated literal; the directory's descriptor is open.
    let fd = unsafe {
        libc::openat(dir_file.as_raw_fd(), c".".as_ptr(), libc::O_WRONLY | libc::O_TMPFILE | libc::O_CLOEXEC, 0o666)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `openat` just returned this descriptor, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Names an `O_TMPFILE` file `name` in the directory; fails if the name is taken.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, dir_file: &File, name: &str, link: Link) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    let to = CString::new(name)?;
    // Built before the call, so that nothing is freed between the call and reading its errno.
    let from = match link {
        Link::Descriptor => None,
        Link::ProcPath => Some(CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?),
    };
    let linked = match &from {
        // SAFETY: every path is NUL-terminated and outlives the call; the descriptors are open.
        None => unsafe {
            libc::linkat(file.as_raw_fd(), c"".as_ptr(), dir_file.as_raw_fd(), to.as_ptr(), libc::AT_EMPTY_PATH)
        },
        // SAFETY: as above.
        Some(from) => unsafe {
            libc::linkat(libc::AT_FDCWD, from.as_ptr(), dir_file.as_raw_fd(), to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        },
    };
    if linked == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn create_unnamed(_dir_file: &File) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, _dir_file: &File, _name: &str, _link: Link) -> io::Result<()> {
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
        let probe_dir = std::env::temp_dir().join(format!("orderly-eml-probe-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&probe_dir).expect("probe directory");
        let probed = staging_for(&probe_dir);
        assert_eq!(std::fs::read_dir(&probe_dir).expect("probe directory").count(), 0, "the probe leaves nothing");
        std::fs::remove_dir(&probe_dir).expect("cleaned up");
        if cfg!(target_os = "linux") {
            assert!(matches!(probed, Staging::Unnamed(_)), "Linux's temporary directory takes unnamed files");
        }
        // Linux 6.10 and later link a file the caller opened by its descriptor: the probe must
        // find that, not fall back to /proc because the descriptor's link is broken.
        if linux_release().is_some_and(|release| release >= (6, 10)) {
            assert_eq!(probed, Staging::Unnamed(Link::Descriptor));
        }
        // Every way to name a file that this machine allows, not only the one the probe picked.
        let mut stagings = vec![probed];
        if probed == Staging::Unnamed(Link::Descriptor) {
            stagings.push(Staging::Unnamed(Link::ProcPath));
        }
        if probed != Staging::Renamed {
            stagings.push(Staging::Renamed);
        }
        for staging in stagings {
            each_send_leaves_one_complete_file(staging).await;
        }
    }

    /// The running kernel's (major, minor), on Linux.
    fn linux_release() -> Option<(u32, u32)> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let mut parts = release.trim().split(['.', '-']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
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
