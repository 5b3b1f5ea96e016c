//! Fernet (AES-128-CBC + HMAC-SHA256 with a timestamp), per the spec at github.com/fernet/spec.
//!
//! Written on the RustCrypto primitives rather than the `fernet` crate so that time is injected
//! (our clock, not `SystemTime`), keys are zeroized, and the byte-exact generate vector can be
//! tested with a fixed IV.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{CryptoError, ct_eq, random_bytes};
use crate::core::clock::UnixMillis;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

const VERSION: u8 = 0x80;
/// Tokens stamped this far in our future are refused, as the spec's reference implementations do.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
const HEADER_LEN: usize = 1 + 8 + 16;
const MAC_LEN: usize = 32;

/// One Fernet key: 16 bytes of signing key, then 16 bytes of encryption key.
pub struct FernetKey {
    signing: Zeroizing<[u8; 16]>,
    encryption: Zeroizing<[u8; 16]>,
}

impl std::fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FernetKey(**redacted**)")
    }
}

impl FernetKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        let mut signing = Zeroizing::new([0u8; 16]);
        let mut encryption = Zeroizing::new([0u8; 16]);
        signing.copy_from_slice(&key[..16]);
        encryption.copy_from_slice(&key[16..]);
        Self { signing, encryption }
    }

    /// The spec's textual form: 32 bytes, URL-safe base64.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(URL_SAFE.decode(text).map_err(|_| CryptoError::BadKey("not URL-safe base64"))?);
        let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| CryptoError::BadKey("not 32 bytes"))?;
        Ok(Self::from_bytes(key))
    }

    fn mac(&self, message: &[u8]) -> Result<[u8; MAC_LEN], CryptoError> {
        // HMAC takes keys of any length; the error arm exists only because the API is generic.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.signing.as_slice())
            .map_err(|_| CryptoError::BadKey("HMAC key"))?;
        mac.update(message);
        Ok(mac.finalize().into_bytes().into())
    }

    pub fn encrypt(&self, plaintext: &[u8], now: UnixMillis) -> Result<String, CryptoError> {
        self.encrypt_with_iv(plaintext, now, &random_bytes::<16>())
    }

    /// Encryption with a chosen IV: only the spec's generate vector needs this.
    pub fn encrypt_with_iv(&self, plaintext: &[u8], now: UnixMillis, iv: &[u8; 16]) -> Result<String, CryptoError> {
        let ciphertext =
            Aes128CbcEnc::new(self.encryption.as_ref().into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
        let mut token = Vec::with_capacity(HEADER_LEN + ciphertext.len() + MAC_LEN);
        token.push(VERSION);
        // The spec's timestamp is whole seconds.
        token.extend_from_slice(&now.secs().to_be_bytes());
        token.extend_from_slice(iv);
        token.extend_from_slice(&ciphertext);
        let mac = self.mac(&token)?;
        token.extend_from_slice(&mac);
        Ok(URL_SAFE.encode(token))
    }

    /// Verifies and decrypts. With a `ttl`, it bounds the token's age and the timestamp may not be
    /// more than [`MAX_CLOCK_SKEW`] in the future; without one, the timestamp is not checked. The MAC is checked before anything is decrypted.
    pub fn decrypt(
        &self,
        token: &str,
        ttl: Option<Duration>,
        now: UnixMillis,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let raw = URL_SAFE.decode(token.trim_end()).map_err(|_| CryptoError::InvalidToken)?;
        if raw.len() < HEADER_LEN + 16 + MAC_LEN || raw[0] != VERSION {
            return Err(CryptoError::InvalidToken);
        }
        let (message, mac) = raw.split_at(raw.len() - MAC_LEN);
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&message[1..9]);
        let timestamp = u64::from_be_bytes(stamp);
        // The timestamp is the spec's whole seconds. It matters only for a token with a TTL: a
        // token at rest (a TOTP secret, a key copy) written by a machine whose clock ran ahead
        // must still be readable, and its age bounds nothing.
        let stamped = UnixMillis::from_secs(timestamp);
        if let Some(ttl) = ttl {
            if stamped > now.plus(MAX_CLOCK_SKEW) {
                return Err(CryptoError::InvalidToken);
            }
            if stamped.plus(ttl) < now {
                return Err(CryptoError::Expired);
            }
        }
        let ciphertext = &message[HEADER_LEN..];
        if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
            return Err(CryptoError::InvalidToken);
        }
        if !ct_eq(&self.mac(message)?, mac) {
            return Err(CryptoError::InvalidToken);
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&message[9..HEADER_LEN]);
        Aes128CbcDec::new(self.encryption.as_ref().into(), (&iv).into())
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::InvalidToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instant `secs` after the epoch.
    fn at(secs: u64) -> UnixMillis {
        UnixMillis::from_secs(secs)
    }

    #[test]
    fn round_trip_and_tamper() {
        let key = FernetKey::from_bytes(&[7u8; 32]);
        let token = key.encrypt(b"broker token", at(1_000)).expect("encrypt");
        assert_eq!(
            key.decrypt(&token, Some(Duration::from_secs(60)), at(1_030)).expect("fresh").as_slice(),
            b"broker token"
        );
        assert_eq!(key.decrypt(&token, Some(Duration::from_secs(60)), at(1_061)), Err(CryptoError::Expired));
        assert_eq!(key.decrypt(&token, None, at(1_000_000)).expect("no ttl").as_slice(), b"broker token");

        let other = FernetKey::from_bytes(&[8u8; 32]);
        assert_eq!(other.decrypt(&token, None, at(1_000)), Err(CryptoError::InvalidToken));

        let mut bytes = URL_SAFE.decode(&token).expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(key.decrypt(&URL_SAFE.encode(&bytes), None, at(1_000)), Err(CryptoError::InvalidToken));
    }

    #[test]
    fn clock_skew_edge_is_sixty_seconds() {
        let key = FernetKey::from_bytes(&[1u8; 32]);
        let now = 2_000_000_000;
        assert!(
            key.decrypt(&key.encrypt(b"x", at(now + 60)).expect("encrypt"), Some(Duration::from_secs(10)), at(now))
                .is_ok()
        );
        assert_eq!(
            key.decrypt(&key.encrypt(b"x", at(now + 61)).expect("encrypt"), Some(Duration::from_secs(10)), at(now)),
            Err(CryptoError::InvalidToken)
        );
        let token = key.encrypt(b"x", at(now)).expect("encrypt");
        assert!(key.decrypt(&token, Some(Duration::from_secs(10)), at(now + 10)).is_ok());
        assert_eq!(key.decrypt(&token, Some(Duration::from_secs(10)), at(now + 11)), Err(CryptoError::Expired));
    }

    #[test]
    fn a_token_at_rest_from_a_clock_that_ran_ahead_still_reads() {
        let key = FernetKey::from_bytes(&[3u8; 32]);
        let token = key.encrypt(b"totp secret", at(10_000)).expect("encrypt");
        assert_eq!(key.decrypt(&token, None, at(5_000)).expect("no TTL: readable").as_slice(), b"totp secret");
        let ttl = Some(Duration::from_secs(60));
        assert_eq!(key.decrypt(&token, ttl, at(5_000)), Err(CryptoError::InvalidToken), "with a TTL: refused");
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let key = FernetKey::from_bytes(&[2u8; 32]);
        assert!(key.decrypt(&key.encrypt(b"", at(5)).expect("encrypt"), None, at(5)).expect("empty").is_empty());
    }

    #[test]
    fn debug_prints_nothing_secret() {
        assert_eq!(format!("{:?}", FernetKey::from_bytes(&[9u8; 32])), "FernetKey(**redacted**)");
    }
}
