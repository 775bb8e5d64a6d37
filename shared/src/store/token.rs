//! Page tokens: the position to resume from, serialized and base64url-encoded so clients
//! treat it as opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

pub(crate) fn encode<T: Serialize>(position: &T) -> Result<String, StoreError> {
    let json = serde_json::to_vec(position).map_err(|e| StoreError::Backend(format!("encoding page token: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

pub(crate) fn decode<T: DeserializeOwned>(token: &str) -> Result<T, StoreError> {
    let json = URL_SAFE_NO_PAD.decode(token).map_err(|_| StoreError::InvalidPageToken)?;
    serde_json::from_slice(&json).map_err(|_| StoreError::InvalidPageToken)
}
