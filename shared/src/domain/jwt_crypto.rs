//! The one signature algorithm Orderly's tokens use, HS256, computed with `ring` (already linked
//! for TLS) and installed as jsonwebtoken's crypto provider. jsonwebtoken's own providers bring
//! every algorithm (RSA, ECDSA, EdDSA and their big-number code), several hundred kilobytes in
//! each Lambda binary for keys this service never accepts.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::hmac;
use signature::{Signer, Verifier};

static HS256_ONLY: CryptoProvider =
    CryptoProvider { signer_factory: signer, verifier_factory: verifier, jwk_utils: JwkUtils::new_unimplemented() };

/// Makes HS256 on ring jsonwebtoken's provider for this process; idempotent. Fails if
/// jsonwebtoken already settled on another provider (it was used before this ran, and would
/// panic on every token): a start-up error rather than a failure per request.
pub(crate) fn install() -> std::result::Result<(), String> {
    match HS256_ONLY.install_default() {
        Ok(()) => Ok(()),
        Err(installed) if std::ptr::eq(installed, &HS256_ONLY) => Ok(()),
        Err(_) => Err("jsonwebtoken was used before its HS256 provider was installed".into()),
    }
}

struct Hs256(hmac::Key);

impl Hs256 {
    fn new(algorithm: &Algorithm, secret: Result<&[u8]>) -> Result<Self> {
        if *algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret?)))
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(Hs256::new(algorithm, key.try_get_hmac_secret())?))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(Hs256::new(algorithm, key.try_get_hmac_secret())?))
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, message).as_ref().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    /// Constant-time comparison (ring's `verify`).
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        hmac::verify(&self.0, message, tag).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_sign_and_verify_with_hs256_and_refuse_other_keys_and_algorithms() {
        install().expect("installed");
        let header = jsonwebtoken::Header::new(Algorithm::HS256);
        let token = jsonwebtoken::encode(&header, &serde_json::json!({"sub": "x"}), &EncodingKey::from_secret(SECRET))
            .expect("signs");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &DecodingKey::from_secret(SECRET), &validation)
            .expect("verifies");
        assert_eq!(claims.claims["sub"], "x");

        let other = DecodingKey::from_secret(b"another secret of thirty-two bytes");
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &other, &validation).is_err());

        // The RFC 7515 A.1 HS256 example verifies with its key (the signature is ring's HMAC).
        let rfc_key = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        )
        .expect("base64");
        let rfc_token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(rfc_token, &DecodingKey::from_secret(&rfc_key), &validation)
                .is_ok()
        );

        // Any other algorithm is refused, signing or verifying, with an error (no panic).
        let hs512 = jsonwebtoken::Header::new(Algorithm::HS512);
        let refused = jsonwebtoken::encode(&hs512, &serde_json::json!({}), &EncodingKey::from_secret(SECRET));
        assert!(matches!(refused.map_err(|e| e.into_kind()), Err(ErrorKind::InvalidAlgorithm)));
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let hs512_token = format!("{}.{}.{}", b64(br#"{"alg":"HS512"}"#), b64(br#"{"sub":"x"}"#), b64(&[0; 64]));
        let mut hs512_validation = jsonwebtoken::Validation::new(Algorithm::HS512);
        hs512_validation.validate_exp = false;
        hs512_validation.required_spec_claims.clear();
        let refused = jsonwebtoken::decode::<serde_json::Value>(
            &hs512_token,
            &DecodingKey::from_secret(SECRET),
            &hs512_validation,
        );
        assert!(matches!(refused.map_err(|e| e.into_kind()), Err(ErrorKind::InvalidAlgorithm)));
    }
}
