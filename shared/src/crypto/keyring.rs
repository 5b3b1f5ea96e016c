//! The envelope key ring. KMS protects a small set of 256-bit root keys (newest first); every
//! Fernet key is derived from a root with HKDF-SHA256 and a purpose label, so the API-key copies,
//! TOTP secrets, SMTP password and each broker's tokens are encrypted under different keys, and a
//! leak of one derived key opens only its own purpose.
//!
//! Rotation prepends a new root: new writes use it, old tokens still decrypt under the older roots
//! until they are re-encrypted, and nothing has to stop while that happens. A token does not name
//! its root: [`PurposeCipher::decrypt_identified`] finds it by trying each (an HMAC check apiece),
//! which is how re-encryption finds what is left under an old root and retirement knows when none
//! is. A running function keeps its purpose keys current with `crate::store::app_secret::LiveCipher`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::CryptoError;
use super::fernet::FernetKey;
use crate::core::clock::UnixMillis;

/// What a derived key protects. The label is part of the derivation and must never change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    ApiKeyCopy,
    TotpSecret,
    SmtpPassword,
    /// The HMAC key that signs device cookies (a browser that has logged in to an account before).
    DeviceCookie,
    /// One key per broker, named by its stable broker id (e.g. `zerodha`).
    BrokerTokens(String),
}

impl Purpose {
    fn label(&self) -> String {
        match self {
            Purpose::ApiKeyCopy => "kavach/fernet/v1/api-key-copy".into(),
            Purpose::TotpSecret => "kavach/fernet/v1/totp-secret".into(),
            Purpose::SmtpPassword => "kavach/fernet/v1/smtp-password".into(),
            Purpose::DeviceCookie => "kavach/hmac/v1/device-cookie".into(),
            Purpose::BrokerTokens(broker) => format!("kavach/fernet/v1/broker/{broker}"),
        }
    }
}

struct RootKey {
    id: u32,
    material: Zeroizing<[u8; 32]>,
}

/// Root keys, newest first.
pub struct KeyRing {
    roots: Vec<RootKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u32> = self.roots.iter().map(|root| root.id).collect();
        f.debug_struct("KeyRing").field("root_ids", &ids).finish_non_exhaustive()
    }
}

/// The plaintext that KMS encrypts: `{"v":1,"keys":[{"id":2,"key":"<base64>"},…]}`.
#[derive(Serialize, Deserialize)]
struct RingDocument {
    v: u32,
    keys: Vec<RootDocument>,
}

#[derive(Serialize, Deserialize)]
struct RootDocument {
    id: u32,
    key: String,
}

impl KeyRing {
    /// A ring with one root, as provisioning creates it.
    pub fn single(material: Zeroizing<[u8; 32]>) -> Self {
        Self { roots: vec![RootKey { id: 1, material }] }
    }

    /// A new ring with `material` as its newest root; older roots stay for decryption.
    #[must_use]
    pub fn rotated(self, material: Zeroizing<[u8; 32]>) -> Self {
        let id = self.roots.first().map_or(1, |newest| newest.id.saturating_add(1));
        let mut roots = vec![RootKey { id, material }];
        roots.extend(self.roots);
        Self { roots }
    }

    pub fn newest_id(&self) -> Option<u32> {
        self.roots.first().map(|root| root.id)
    }

    /// The root ids, newest first.
    pub fn ids(&self) -> Vec<u32> {
        self.roots.iter().map(|root| root.id).collect()
    }

    /// The ring without root `id`: what retiring it leaves. Refused for the newest root (new
    /// writes use it) and for an id the ring does not hold.
    pub fn without(self, id: u32) -> Result<Self, CryptoError> {
        if self.newest_id() == Some(id) {
            return Err(CryptoError::BadKey("the newest root cannot be retired: rotate first"));
        }
        if !self.roots.iter().any(|root| root.id == id) {
            return Err(CryptoError::BadKey("the key ring has no root with that id"));
        }
        Ok(Self { roots: self.roots.into_iter().filter(|root| root.id != id).collect() })
    }

    pub fn len(&self) -> usize {
        self.roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Parses the decrypted ring. Roots are ordered newest first whatever the stored order.
    pub fn from_plaintext(plaintext: &[u8]) -> Result<Self, CryptoError> {
        let document: RingDocument =
            serde_json::from_slice(plaintext).map_err(|_| CryptoError::BadKey("key ring is not valid JSON"))?;
        if document.v != 1 {
            return Err(CryptoError::BadKey("unknown key ring version"));
        }
        let mut roots = Vec::with_capacity(document.keys.len());
        for root in document.keys {
            let bytes = Zeroizing::new(STANDARD.decode(root.key).map_err(|_| CryptoError::BadKey("root key base64"))?);
            let mut material = Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(CryptoError::BadKey("root key is not 32 bytes"));
            }
            material.copy_from_slice(&bytes);
            roots.push(RootKey { id: root.id, material });
        }
        if roots.is_empty() {
            return Err(CryptoError::BadKey("key ring has no keys"));
        }
        roots.sort_by_key(|root| std::cmp::Reverse(root.id));
        Ok(Self { roots })
    }

    pub fn to_plaintext(&self) -> Zeroizing<Vec<u8>> {
        let document = RingDocument {
            v: 1,
            keys: self
                .roots
                .iter()
                .map(|root| RootDocument { id: root.id, key: STANDARD.encode(root.material.as_slice()) })
                .collect(),
        };
        // Serialising plain strings and integers cannot fail.
        Zeroizing::new(serde_json::to_vec(&document).unwrap_or_default())
    }

    /// The Fernet keys for one purpose, newest first.
    pub fn cipher(&self, purpose: &Purpose) -> Result<PurposeCipher, CryptoError> {
        let keys = self.derive(purpose)?.iter().map(|(id, okm)| (*id, FernetKey::from_bytes(okm))).collect();
        Ok(PurposeCipher { keys })
    }

    /// The HMAC-SHA256 keys for one purpose, newest first: signs with the newest root's, verifies
    /// with any, so a rotation does not void what an older root signed.
    pub fn mac(&self, purpose: &Purpose) -> Result<PurposeMac, CryptoError> {
        Ok(PurposeMac { keys: self.derive(purpose)?.into_iter().map(|(_, okm)| okm).collect() })
    }

    /// One 256-bit key per root for `purpose` (HKDF-SHA256 with the purpose's label), with the
    /// root's id, newest first.
    fn derive(&self, purpose: &Purpose) -> Result<Vec<DerivedKey>, CryptoError> {
        let label = purpose.label();
        let keys = self
            .roots
            .iter()
            .map(|root| {
                let mut okm = Zeroizing::new([0u8; 32]);
                Hkdf::<Sha256>::new(Some(b"kavach-key-ring"), root.material.as_slice())
                    .expand(label.as_bytes(), okm.as_mut_slice())
                    .map_err(|_| CryptoError::BadKey("HKDF output length"))?;
                Ok((root.id, okm))
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        if keys.is_empty() {
            return Err(CryptoError::BadKey("key ring has no keys"));
        }
        Ok(keys)
    }
}

/// A purpose key derived from one root: the root's id and the 256 bits.
type DerivedKey = (u32, Zeroizing<[u8; 32]>);

/// Signs with the newest key and verifies with any, in constant time.
pub struct PurposeMac {
    keys: Vec<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for PurposeMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurposeMac").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

impl PurposeMac {
    /// No key, for a function that does not use this purpose: signing is
    /// [`CryptoError::Withheld`], and nothing verifies.
    pub fn withheld() -> Self {
        Self { keys: Vec::new() }
    }

    /// HMAC takes keys of any length; the error exists only because the API is generic.
    fn mac(key: &[u8; 32], message: &[u8]) -> Result<Hmac<Sha256>, CryptoError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| CryptoError::BadKey("HMAC key"))?;
        mac.update(message);
        Ok(mac)
    }

    /// The tag of `message` under the newest key.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 32], CryptoError> {
        let key = self.keys.first().ok_or(CryptoError::Withheld("purpose key"))?;
        Ok(Self::mac(key, message)?.finalize().into_bytes().into())
    }

    /// Whether `tag` is `message`'s under any of the keys, compared in constant time.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        self.keys.iter().any(|key| Self::mac(key, message).is_ok_and(|mac| mac.verify_slice(tag).is_ok()))
    }
}

/// Encrypts with the newest key and decrypts with any, honouring the token's TTL.
#[derive(Debug)]
pub struct PurposeCipher {
    /// (root id, derived key), newest first. Empty only when withheld: [`KeyRing::cipher`] refuses
    /// to derive none.
    keys: Vec<(u32, FernetKey)>,
}

impl PurposeCipher {
    /// No key, for a function that does not use this purpose: each use is
    /// [`CryptoError::Withheld`].
    pub fn withheld() -> Self {
        Self { keys: Vec::new() }
    }

    pub fn encrypt(&self, plaintext: &[u8], now: UnixMillis) -> Result<String, CryptoError> {
        self.keys.first().ok_or(CryptoError::Withheld("purpose key"))?.1.encrypt(plaintext, now)
    }

    pub fn decrypt(
        &self,
        token: &str,
        ttl: Option<Duration>,
        now: UnixMillis,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.decrypt_identified(token, ttl, now).map(|(_, plaintext)| plaintext)
    }

    /// The plaintext and the id of the root whose key opened it.
    pub fn decrypt_identified(
        &self,
        token: &str,
        ttl: Option<Duration>,
        now: UnixMillis,
    ) -> Result<(u32, Zeroizing<Vec<u8>>), CryptoError> {
        if self.keys.is_empty() {
            return Err(CryptoError::Withheld("purpose key"));
        }
        let mut outcome = Err(CryptoError::InvalidToken);
        for (id, key) in &self.keys {
            match key.decrypt(token, ttl, now) {
                Ok(plaintext) => return Ok((*id, plaintext)),
                Err(CryptoError::Expired) => outcome = Err(CryptoError::Expired),
                Err(_) => {}
            }
        }
        outcome
    }

    /// The ids of the roots this purpose's keys come from, newest first (empty when withheld).
    pub fn root_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|(id, _)| *id).collect()
    }

    /// The id of the root new writes use.
    pub fn newest_id(&self) -> Option<u32> {
        self.keys.first().map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instant `secs` after the epoch.
    fn at(secs: u64) -> UnixMillis {
        UnixMillis::from_secs(secs)
    }

    fn root(byte: u8) -> Zeroizing<[u8; 32]> {
        Zeroizing::new([byte; 32])
    }

    #[test]
    fn purposes_derive_distinct_keys() {
        let ring = KeyRing::single(root(1));
        let api = ring.cipher(&Purpose::ApiKeyCopy).expect("cipher");
        let totp = ring.cipher(&Purpose::TotpSecret).expect("cipher");
        let zerodha = ring.cipher(&Purpose::BrokerTokens("zerodha".into())).expect("cipher");
        let dhan = ring.cipher(&Purpose::BrokerTokens("dhan".into())).expect("cipher");
        let token = api.encrypt(b"secret", at(100)).expect("encrypt");
        assert_eq!(api.decrypt(&token, None, at(100)).expect("same purpose").as_slice(), b"secret");
        for other in [&totp, &zerodha] {
            assert_eq!(other.decrypt(&token, None, at(100)), Err(CryptoError::InvalidToken));
        }
        let broker_token = zerodha.encrypt(b"t", at(100)).expect("encrypt");
        assert_eq!(dhan.decrypt(&broker_token, None, at(100)), Err(CryptoError::InvalidToken));
    }

    #[test]
    fn rotation_keeps_old_tokens_readable_and_writes_with_the_new_root() {
        let old_ring = KeyRing::single(root(1));
        let old_tokens: Vec<String> = (0..100)
            .map(|i| old_ring.cipher(&Purpose::ApiKeyCopy).expect("cipher").encrypt(&[i], at(10)).expect("encrypt"))
            .collect();

        let ring = old_ring.rotated(root(2));
        assert_eq!(ring.newest_id(), Some(2));
        assert_eq!(ring.len(), 2);
        let cipher = ring.cipher(&Purpose::ApiKeyCopy).expect("cipher");
        for (i, token) in old_tokens.iter().enumerate() {
            assert_eq!(cipher.decrypt(token, None, at(10)).expect("old token").as_slice(), &[i as u8]);
        }

        // 100 % of new writes use the new root: a ring holding only the new root reads them.
        let only_new = KeyRing::single(root(2)).cipher(&Purpose::ApiKeyCopy).expect("cipher");
        let only_old = KeyRing::single(root(1)).cipher(&Purpose::ApiKeyCopy).expect("cipher");
        for i in 0..100u8 {
            let token = cipher.encrypt(&[i], at(10)).expect("encrypt");
            assert!(only_new.decrypt(&token, None, at(10)).is_ok());
            assert_eq!(only_old.decrypt(&token, None, at(10)), Err(CryptoError::InvalidToken));
        }
    }

    #[test]
    fn macs_verify_across_a_rotation_and_only_for_their_purpose() {
        let old = KeyRing::single(root(1));
        let tag = old.mac(&Purpose::DeviceCookie).expect("mac").sign(b"message").expect("sign");
        let rotated = KeyRing::single(root(1)).rotated(root(2));
        let mac = rotated.mac(&Purpose::DeviceCookie).expect("mac");
        assert!(mac.verify(b"message", &tag), "an older root's tag still verifies");
        assert!(!mac.verify(b"other", &tag));
        assert!(!mac.verify(b"message", &tag[..31]));
        assert!(!KeyRing::single(root(1)).mac(&Purpose::SmtpPassword).expect("mac").verify(b"message", &tag));
        assert!(
            KeyRing::single(root(2))
                .mac(&Purpose::DeviceCookie)
                .expect("mac")
                .verify(b"message", &mac.sign(b"message").expect("sign"))
        );
    }

    #[test]
    fn ring_ttl_is_honoured() {
        let cipher = KeyRing::single(root(3)).cipher(&Purpose::TotpSecret).expect("cipher");
        let token = cipher.encrypt(b"x", at(1_000)).expect("encrypt");
        assert!(cipher.decrypt(&token, Some(Duration::from_secs(30)), at(1_030)).is_ok());
        assert_eq!(cipher.decrypt(&token, Some(Duration::from_secs(30)), at(1_031)), Err(CryptoError::Expired));
    }

    #[test]
    fn plaintext_round_trip_orders_newest_first() {
        let ring = KeyRing::single(root(1)).rotated(root(2)).rotated(root(3));
        let text = ring.to_plaintext();
        let mut document: serde_json::Value = serde_json::from_slice(&text).expect("json");
        document["keys"].as_array_mut().expect("keys").reverse();
        let reparsed = KeyRing::from_plaintext(document.to_string().as_bytes()).expect("ring");
        assert_eq!(reparsed.newest_id(), Some(3));
        let token = ring.cipher(&Purpose::SmtpPassword).expect("c").encrypt(b"p", at(1)).expect("e");
        assert!(reparsed.cipher(&Purpose::SmtpPassword).expect("c").decrypt(&token, None, at(1)).is_ok());
        assert!(!format!("{ring:?}").contains("key\""));
    }

    #[test]
    fn retiring_drops_an_old_root_and_never_the_newest() {
        let ring = KeyRing::single(root(1)).rotated(root(2));
        let token = ring.cipher(&Purpose::TotpSecret).expect("c").encrypt(b"t", at(1)).expect("e");
        let old = KeyRing::single(root(1)).cipher(&Purpose::TotpSecret).expect("c");
        let old_token = old.encrypt(b"o", at(1)).expect("e");
        let both = ring.cipher(&Purpose::TotpSecret).expect("c");
        assert_eq!(both.decrypt_identified(&old_token, None, at(1)).expect("old").0, 1);
        assert_eq!(both.decrypt_identified(&token, None, at(1)).expect("new").0, 2);
        assert!(KeyRing::single(root(1)).rotated(root(2)).without(2).is_err(), "the newest stays");
        assert!(KeyRing::single(root(1)).rotated(root(2)).without(7).is_err(), "no such root");
        let retired = ring.without(1).expect("retire 1");
        assert_eq!(retired.ids(), [2]);
        let cipher = retired.cipher(&Purpose::TotpSecret).expect("c");
        assert!(cipher.decrypt(&token, None, at(1)).is_ok());
        assert_eq!(cipher.decrypt(&old_token, None, at(1)), Err(CryptoError::InvalidToken));
    }

    #[test]
    fn malformed_rings_are_refused() {
        for bad in [
            &b"not json"[..],
            br#"{"v":2,"keys":[]}"#,
            br#"{"v":1,"keys":[]}"#,
            br#"{"v":1,"keys":[{"id":1,"key":"AAAA"}]}"#,
        ] {
            assert!(KeyRing::from_plaintext(bad).is_err());
        }
    }
}
