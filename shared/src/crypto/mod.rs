//! Crypto with a narrow, boring API. Keys never leave this module's types, and no type here prints
//! its secret through `Debug`.

pub mod api_key;
pub mod fernet;
pub mod keyring;
pub mod one_time;
pub mod password;
pub mod totp;

use rand::RngCore;
use subtle::ConstantTimeEq;

/// The only way secrets are compared.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A fresh 256-bit random token, base64url without padding (43 characters): session ids, CSRF
/// tokens, and the one-time setup, reset and OAuth-state tokens.
pub fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// SHA-256 of `bytes`, lowercase hex: the storage key of anything whose plaintext must not be
/// stored (session ids, one-time tokens, webhook ids).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 (hex) of a one-time token (setup, password reset, OAuth state): only this is ever stored.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.trim().as_bytes())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("token is invalid or has been tampered with")]
    InvalidToken,
    #[error("token has expired")]
    Expired,
    #[error("key material is malformed: {0}")]
    BadKey(&'static str),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// A key this function's cold start did not load (the bootstrap's `Secrets`): its
    /// code reached a use the function was not meant to have.
    #[error("this function holds no {0}")]
    Withheld(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<32>(), random_bytes::<32>());
    }
}
