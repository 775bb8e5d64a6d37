//! Password hashing with argon2id, kept apart so only the functions that sign up and log in
//! link it. Hashing runs on the blocking pool: argon2 is CPU-bound by design.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::auth::{Password, PasswordCost};
use crate::error::{Error, Result};

fn argon2(cost: PasswordCost) -> Result<Argon2<'static>> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes on the blocking pool: argon2 is CPU-bound by design.
pub(super) async fn hash_password(cost: PasswordCost, password: Password) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2(cost)?
            .hash_password(password.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("hashing password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
}

pub(super) async fn verify_password(password: Password, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| Error::Internal(format!("stored hash: {e}")))?;
        // The parameters come from the hash itself, so older hashes keep verifying.
        Ok(Argon2::default().verify_password(password.0.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| Error::Internal(format!("verifying task: {e}")))?
}

/// A random secret of 256 bits from the operating system's generator, hex-encoded (the local
/// server's development JWT secret).
pub fn random_secret() -> String {
    use argon2::password_hash::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
