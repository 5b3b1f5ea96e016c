//! API keys: `kav_<16 hex id>_<64 hex secret>`.
//!
//! The id is public and is the DynamoDB key, so a lookup is one `GetItem`, never a scan of every
//! stored hash (OpenAlgo's W1). The secret carries 256 bits and is verified with Argon2id. The
//! prefix lets secret scanners recognise a leaked key. The format is permanent once keys are out.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "kav_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;
pub const KEY_LEN: usize = PREFIX.len() + ID_HEX + 1 + SECRET_HEX;

/// The public half of a key: safe to log, store and show.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == ID_HEX && is_lower_hex(text)).then(|| Self(text.to_owned()))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A whole key as a client presented it. Its `Debug` shows only the id.
pub struct ApiKey {
    id: KeyId,
    whole: SecretString,
    /// SHA-256 of `whole`, computed once: a request names its key in its cache lookup and in each
    /// of its rate-limit counters.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}, **redacted**)", self.id)
    }
}

impl ApiKey {
    /// A new random key.
    pub fn generate() -> Self {
        let id = hex::encode(super::random_bytes::<{ ID_HEX / 2 }>());
        let secret = hex::encode(super::random_bytes::<{ SECRET_HEX / 2 }>());
        let whole = SecretString::from(format!("{PREFIX}{id}_{secret}"));
        Self::new(KeyId(id), whole)
    }

    /// Recognises the format without touching storage; anything else is simply not a key of ours.
    pub fn parse(presented: &str) -> Option<Self> {
        let rest = presented.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if presented.len() != KEY_LEN || !is_lower_hex(secret) || secret.len() != SECRET_HEX {
            return None;
        }
        Some(Self::new(KeyId::parse(id)?, SecretString::from(presented.to_owned())))
    }

    fn new(id: KeyId, whole: SecretString) -> Self {
        let fingerprint = Sha256::digest(whole.expose_secret().as_bytes()).into();
        Self { id, whole, fingerprint }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The bytes that are hashed with Argon2: the whole key, so the id is bound to the secret.
    pub fn expose(&self) -> &str {
        self.whole.expose_secret()
    }

    /// SHA-256 of the whole key: the warm-container cache key, so the cache never holds the key.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_are_unique() {
        let key = ApiKey::generate();
        assert_eq!(key.expose().len(), KEY_LEN);
        assert!(key.expose().starts_with("kav_"));
        let parsed = ApiKey::parse(key.expose()).expect("own format");
        assert_eq!(parsed.id(), key.id());
        assert_eq!(parsed.fingerprint(), key.fingerprint());
        assert_ne!(ApiKey::generate().expose(), key.expose());
    }

    #[test]
    fn rejects_other_shapes() {
        let key = ApiKey::generate();
        let good = key.expose().to_owned();
        let cases = [
            String::new(),
            "a".repeat(64),
            good.replacen("kav_", "kav-", 1),
            good.to_uppercase(),
            format!("{good}0"),
            good[..good.len() - 1].to_owned(),
            good.replacen('_', "", 2),
            format!("kav_{}_{}", "g".repeat(16), "0".repeat(64)),
        ];
        for bad in cases {
            assert!(ApiKey::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_shows_only_the_id() {
        let key = ApiKey::generate();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.id().as_str()));
        assert!(!shown.contains(&key.expose()[21..]));
    }
}
