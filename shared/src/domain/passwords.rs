//! Password hashing with argon2id, kept apart so only the functions that sign up and log in
//! link it. Hashing runs on the blocking pool: argon2 is CPU-bound by design.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::auth::{Password, PasswordCost};
use crate::error::{Error, Result};

fn argon2(cost: PasswordCost) -> Result<Argon2<'static>> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashing and verifying passwords, at most `permits` at a time. Each argon2 run takes the
/// configured memory (19 MiB by default) and a core for tens of milliseconds, so a burst of
/// sign-ups or logins beyond the cores only queues, for at most [`Hasher::MAX_WAIT`], and is
/// then answered 503 with Retry-After: memory and latency stay bounded whatever the burst.
#[derive(Clone)]
pub struct Hasher {
    cost: PasswordCost,
    permits: Arc<Semaphore>,
    /// A hash of a random password at `cost`: unknown logins verify against it, so they take
    /// as long as known ones.
    dummy: Arc<OnceLock<String>>,
}

impl Hasher {
    /// How long a hash may wait for a free core before the request is refused.
    pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn new(cost: PasswordCost, permits: usize) -> Self {
        static BIG_BLOCKS_UNMAPPED: std::sync::Once = std::sync::Once::new();
        BIG_BLOCKS_UNMAPPED.call_once(return_big_blocks_to_the_system);
        Self { cost, permits: Arc::new(Semaphore::new(permits)), dummy: Arc::new(OnceLock::new()) }
    }

    /// One permit per core: more would only share the cores and multiply the memory.
    pub fn per_core(cost: PasswordCost) -> Self {
        Self::new(cost, std::thread::available_parallelism().map_or(2, usize::from))
    }

    pub(super) async fn hash(&self, password: Password) -> Result<String> {
        let cost = self.cost;
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2(cost)?
                .hash_password(password.0.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("hashing password: {e}")))
        })
        .await
    }

    /// Checks `password` against `hash`, or (no hash: an unknown account) against the dummy
    /// hash, so both cost one verification; an unknown account is never valid.
    pub(super) async fn verify(&self, password: Password, hash: Option<String>) -> Result<bool> {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => self.dummy_hash().await?,
        };
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&hash).map_err(|e| Error::Internal(format!("stored hash: {e}")))?;
                // The parameters come from the hash itself, so older hashes keep verifying.
                Ok(Argon2::default().verify_password(password.0.as_bytes(), &parsed).is_ok())
            })
            .await?;
        Ok(matches && known)
    }

    async fn dummy_hash(&self) -> Result<String> {
        if let Some(hash) = self.dummy.get() {
            return Ok(hash.clone());
        }
        let random = std::iter::repeat_with(fastrand::alphanumeric).take(32).collect::<String>();
        let hash = self.hash(Password::new(random)).await?;
        Ok(self.dummy.get_or_init(|| hash).clone())
    }

    /// Runs `work` on the blocking pool once a permit is free (503 after [`Self::MAX_WAIT`]).
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let permit = tokio::time::timeout(Self::MAX_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                tracing::warn!("password hashing saturated; refused");
                Error::Unavailable
            })?
            .map_err(|e| Error::Internal(format!("hashing permits: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
    }
}

/// argon2's working memory (19 MiB a hash) is allocated and freed per hash. Once glibc has seen
/// a block that big freed, it serves the next ones from its per-thread arenas and keeps them:
/// a burst of sign-ups left the process at over a gigabyte. A fixed mmap threshold makes every
/// such block its own mapping, given back to the system as soon as the hash is done. (The
/// local server allocates with mimalloc, which this does not tune: it keeps a few blocks for a
/// while, bounded by the hashing permits; see the README.)
fn return_big_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once, before any hash.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// A random secret of 256 bits from the operating system's generator, hex-encoded (the local
/// server's development JWT secret).
pub fn random_secret() -> String {
    use argon2::password_hash::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
