//! The app secret in Secrets Manager: `{"pepper": "<random>", "keyring": "<base64 KMS ciphertext>"}`.
//!
//! One `GetSecretValue` and one KMS `Decrypt` at cold start yield the pepper and every root key;
//! nothing secret is ever in an environment variable.
//!
//! CloudFormation creates the secret empty and never owns its value: [`ensure`] fills in what is
//! missing (the stack's `KeyRing` custom resource at deploy, `kavach keyring init` and the local
//! `kavach provision` all run it), and nothing ever overwrites a pepper or a ring.
//!
//! A running function keeps its purpose keys current with [`LiveCipher`], so a rotation never
//! leaves a warm container unable to read what a newer one wrote:
//! - a decryption no held key opens reloads the ring once and tries again (at most one reload per
//!   [`MISS_RELOAD_INTERVAL`] however many such misses, so a corrupt item costs no more);
//! - every encryption first reads the secret (one `GetSecretValue`; a KMS `Decrypt` only when the
//!   ring changed), so a write always uses the newest root in the store, never a root about to be
//!   retired. Writes are rare (a new user, key or TOTP enrolment, the SMTP settings) and none is on
//!   the order path, whose budget stays 0 Secrets Manager and 0 KMS calls.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::core::clock::UnixMillis;
use crate::core::config::Config;
use crate::core::error::AppError;
use crate::crypto::CryptoError;
use crate::crypto::keyring::{KeyRing, Purpose, PurposeCipher};
use crate::crypto::password::{Pepper, PepperError};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secrets Manager: could not read secret `{id}`: {detail}")]
    Read { id: String, detail: String },
    /// No current value (CloudFormation creates the secret empty), or no such secret.
    #[error("Secrets Manager: secret `{id}` has no value or does not exist: {detail}")]
    NotFound { id: String, detail: String },
    #[error("Secrets Manager: could not write secret `{id}`: {detail}")]
    Write { id: String, detail: String },
    #[error("secret `{id}`: {problem}")]
    Malformed { id: String, problem: &'static str },
    #[error("KMS: could not {action} the key ring with key `{key}`: {detail}")]
    Kms { action: &'static str, key: String, detail: String },
    #[error("key ring: {0}")]
    Ring(#[from] crate::crypto::CryptoError),
    /// A pepper is there but unusable. It is never replaced: every password and key hash depends on it.
    #[error("secret `{id}`: {source}; it is left as it is (every password and API-key hash depends on it)")]
    Pepper { id: String, source: PepperError },
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    pepper: Option<SecretString>,
    #[serde(default)]
    keyring: Option<String>,
}

/// The decoded secret, before any checks: boot decides what is acceptable.
pub struct AppSecret {
    pub pepper: Option<SecretString>,
    pub sealed_ring: Option<String>,
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSecret").field("has_pepper", &self.pepper.is_some()).finish_non_exhaustive()
    }
}

pub async fn load(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<AppSecret, SecretError> {
    let output = client.get_secret_value().secret_id(id).send().await.map_err(|error| {
        let detail = aws_detail(&error);
        match error.as_service_error().is_some_and(|service| service.is_resource_not_found_exception()) {
            true => SecretError::NotFound { id: id.into(), detail },
            false => SecretError::Read { id: id.into(), detail },
        }
    })?;
    let text =
        output.secret_string().ok_or(SecretError::Malformed { id: id.into(), problem: "has no string value" })?;
    let document: Document = serde_json::from_str(text)
        .map_err(|_| SecretError::Malformed { id: id.into(), problem: "is not a JSON object" })?;
    Ok(AppSecret { pepper: document.pepper, sealed_ring: document.keyring.filter(|ring| !ring.is_empty()) })
}

/// Stores a newly sealed ring beside the existing pepper (and any other fields), as a new version.
pub async fn store_ring(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    sealed_ring: &str,
) -> Result<(), SecretError> {
    let current = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|error| SecretError::Read { id: id.into(), detail: aws_detail(&error) })?;
    let mut document: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(current.secret_string().unwrap_or("{}"))
            .map_err(|_| SecretError::Malformed { id: id.into(), problem: "is not a JSON object" })?;
    document.insert("keyring".into(), serde_json::Value::String(sealed_ring.into()));
    put_document(client, id, document).await
}

/// Writes the secret's whole JSON document as its new value (the text zeroed once sent).
async fn put_document(
    secrets: &aws_sdk_secretsmanager::Client,
    id: &str,
    document: serde_json::Map<String, serde_json::Value>,
) -> Result<(), SecretError> {
    let text = Zeroizing::new(serde_json::Value::Object(document).to_string());
    secrets
        .put_secret_value()
        .secret_id(id)
        .secret_string(text.as_str())
        .send()
        .await
        .map_err(|error| SecretError::Write { id: id.into(), detail: aws_detail(&error) })?;
    Ok(())
}

/// What [`ensure`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// A pepper was generated (the secret had none).
    pub pepper_created: bool,
    /// A ring was created and sealed (the secret had none).
    pub ring_created: bool,
    /// The ring's root ids, newest first (empty when it did not open).
    pub root_ids: Vec<u32>,
    /// Why a ring already there, beside a pepper already there, did not open. Nothing is written
    /// then and this is no error: the secret is as it was before, the functions' cold starts count
    /// `KeyServiceFailures` until it opens, and failing here would make the upgrade that adds the
    /// custom resource roll back, which re-applies the older template's `GenerateSecretString`
    /// (a new value: a new pepper, no ring).
    pub unopened: Option<String>,
}

impl Ensured {
    /// Whether the secret was written.
    pub fn changed(&self) -> bool {
        self.pepper_created || self.ring_created
    }
}

/// Makes sure the app secret holds a pepper and a key ring sealed for this stack, creating only
/// what is missing and never replacing what is there: an upgraded stack keeps its pepper (every
/// password and key hash) and its ring (every ciphertext). A ring already there is opened, so a
/// ring this stack cannot open is reported here rather than at the first cold start. Idempotent:
/// run again, it finds both and writes nothing.
///
/// The pepper is 256 bits from the operating system's CSPRNG as 64 hex characters (the length of
/// the one CloudFormation used to generate); the ring's first root comes from KMS
/// (`GenerateDataKey`), sealed under the stack's encryption context. Both land in one
/// `PutSecretValue`, beside any other fields the secret holds.
pub async fn ensure(
    secrets: &aws_sdk_secretsmanager::Client,
    kms: &aws_sdk_kms::Client,
    config: &Config,
) -> Result<Ensured, SecretError> {
    let id = config.secret_id.as_str();
    let mut document = current_document(secrets, id).await?.unwrap_or_default();
    let field = |document: &serde_json::Map<String, serde_json::Value>, name: &str| match document.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) if text.is_empty() => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(Zeroizing::new(text.clone()))),
        Some(_) => Err(SecretError::Malformed {
            id: id.into(),
            problem: if name == "pepper" {
                "field `pepper` is not a string"
            } else {
                "field `keyring` is not a string"
            },
        }),
    };

    let pepper_created = match field(&document, "pepper")? {
        Some(pepper) => {
            Pepper::new(pepper.as_bytes().to_vec()).map_err(|source| SecretError::Pepper { id: id.into(), source })?;
            false
        }
        None => {
            let pepper = Zeroizing::new(hex::encode(crate::crypto::random_bytes::<32>()));
            Pepper::new(pepper.as_bytes().to_vec()).map_err(|source| SecretError::Pepper { id: id.into(), source })?;
            document.insert("pepper".into(), serde_json::Value::String(pepper.to_string()));
            true
        }
    };

    let mut unopened = None;
    let (ring_created, root_ids) = match field(&document, "keyring")? {
        Some(sealed) => match open_ring(kms, config, &sealed).await {
            Ok(ring) => (false, ring.ids()),
            Err(error) if !pepper_created => {
                unopened = Some(error.to_string());
                (false, Vec::new())
            }
            Err(error) => return Err(error),
        },
        None => {
            let ring = KeyRing::single(new_root(kms, config).await?);
            document.insert("keyring".into(), serde_json::Value::String(seal_ring(kms, config, &ring).await?));
            (true, ring.ids())
        }
    };

    let ensured = Ensured { pepper_created, ring_created, root_ids, unopened };
    if ensured.changed() {
        put_document(secrets, id, document).await?;
    }
    Ok(ensured)
}

/// The secret's current value as a JSON object, or `None` when it has no value yet (CloudFormation
/// creates it empty). Only "not found" means empty: any other failure (a denied read, a timeout)
/// is an error, so a pepper is never generated over one that could not be read. A secret that
/// does not exist at all reads as empty too, and its write then fails naming it.
async fn current_document(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, SecretError> {
    let output = match client.get_secret_value().secret_id(id).send().await {
        Ok(output) => output,
        Err(error) if error.as_service_error().is_some_and(|service| service.is_resource_not_found_exception()) => {
            return Ok(None);
        }
        Err(error) => return Err(SecretError::Read { id: id.into(), detail: aws_detail(&error) }),
    };
    let text =
        output.secret_string().ok_or(SecretError::Malformed { id: id.into(), problem: "has no string value" })?;
    serde_json::from_str(text)
        .map(Some)
        .map_err(|_| SecretError::Malformed { id: id.into(), problem: "is not a JSON object" })
}

/// Binds the ciphertext to this app, stack and purpose: KMS refuses to decrypt it in any other.
fn encryption_context(config: &Config) -> HashMap<String, String> {
    HashMap::from([
        ("app".to_owned(), "kavach".to_owned()),
        ("stack".to_owned(), config.stack_name.clone()),
        ("purpose".to_owned(), "key-ring".to_owned()),
    ])
}

pub async fn open_ring(kms: &aws_sdk_kms::Client, config: &Config, sealed: &str) -> Result<KeyRing, SecretError> {
    let blob = STANDARD.decode(sealed).map_err(|_| SecretError::Malformed {
        id: config.secret_id.clone(),
        problem: "field `keyring` is not base64",
    })?;
    let output = kms
        .decrypt()
        .key_id(&config.kms_key_id)
        .ciphertext_blob(Blob::new(blob))
        .set_encryption_context(Some(encryption_context(config)))
        .send()
        .await
        .map_err(|error| kms_error(config, "decrypt", aws_detail(&error)))?;
    let plaintext = Zeroizing::new(output.plaintext().map(|blob| blob.as_ref().to_vec()).unwrap_or_default());
    Ok(KeyRing::from_plaintext(&plaintext)?)
}

pub async fn seal_ring(kms: &aws_sdk_kms::Client, config: &Config, ring: &KeyRing) -> Result<String, SecretError> {
    let plaintext = ring.to_plaintext();
    let output = kms
        .encrypt()
        .key_id(&config.kms_key_id)
        .plaintext(Blob::new(plaintext.as_slice()))
        .set_encryption_context(Some(encryption_context(config)))
        .send()
        .await
        .map_err(|error| kms_error(config, "encrypt", aws_detail(&error)))?;
    let blob = output.ciphertext_blob().ok_or_else(|| kms_error(config, "encrypt", "no ciphertext returned".into()))?;
    Ok(STANDARD.encode(blob.as_ref()))
}

/// 32 bytes of key material from KMS's own entropy (`GenerateDataKey`), for a new root.
pub async fn new_root(kms: &aws_sdk_kms::Client, config: &Config) -> Result<Zeroizing<[u8; 32]>, SecretError> {
    let output = kms
        .generate_data_key()
        .key_id(&config.kms_key_id)
        .number_of_bytes(32)
        .set_encryption_context(Some(encryption_context(config)))
        .send()
        .await
        .map_err(|error| kms_error(config, "generate a root for", aws_detail(&error)))?;
    let bytes = Zeroizing::new(output.plaintext().map(|blob| blob.as_ref().to_vec()).unwrap_or_default());
    let mut root = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(kms_error(config, "generate a root for", "wrong length".into()));
    }
    root.copy_from_slice(&bytes);
    Ok(root)
}

fn kms_error(config: &Config, action: &'static str, detail: String) -> SecretError {
    SecretError::Kms { action, key: config.kms_key_id.clone(), detail }
}

/// An SDK error's code and message, without the request it failed on.
fn aws_detail<E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Display>(error: &E) -> String {
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => error.to_string(),
    }
}

/// A reload after a decryption miss happens at most this often per purpose and container.
pub const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// Where a function's ring comes from: read again when it may have changed.
#[derive(Clone, Debug)]
pub struct RingSource {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub kms: aws_sdk_kms::Client,
    pub config: Config,
}

/// One purpose's keys as derived from the ring last read (the roots themselves are not kept).
#[derive(Debug)]
struct Held {
    sealed: String,
    cipher: PurposeCipher,
}

/// Encrypts and decrypts one purpose's values, keeping its keys current with the app secret (see
/// the module's documentation). Only the purpose's derived keys are held: a reload opens the ring,
/// derives this purpose's keys and drops the roots again.
#[derive(Debug)]
pub struct LiveCipher {
    purpose: Purpose,
    /// `None` when withheld: this function does not use the purpose, and never reloads it.
    source: Option<RingSource>,
    held: RwLock<Arc<Held>>,
    /// When a miss last reloaded; the lock also makes concurrent misses wait for one reload.
    last_miss_reload: tokio::sync::Mutex<Option<Instant>>,
}

impl LiveCipher {
    /// `purpose`'s keys from the ring the cold start opened from `sealed`, kept current from `source`.
    pub fn new(purpose: Purpose, ring: &KeyRing, sealed: String, source: RingSource) -> Result<Self, CryptoError> {
        let cipher = ring.cipher(&purpose)?;
        Ok(Self {
            purpose,
            source: Some(source),
            held: RwLock::new(Arc::new(Held { sealed, cipher })),
            last_miss_reload: tokio::sync::Mutex::new(None),
        })
    }

    /// No key, for a function that does not use this purpose: each use is [`CryptoError::Withheld`].
    pub fn withheld() -> Self {
        Self {
            purpose: Purpose::ApiKeyCopy,
            source: None,
            held: RwLock::new(Arc::new(Held { sealed: String::new(), cipher: PurposeCipher::withheld() })),
            last_miss_reload: tokio::sync::Mutex::new(None),
        }
    }

    /// The ids of the roots the held keys come from, newest first.
    pub fn root_ids(&self) -> Vec<u32> {
        self.snapshot().cipher.root_ids()
    }

    fn snapshot(&self) -> Arc<Held> {
        self.held.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads the secret and, when its ring differs from the one the held keys come from, derives
    /// this purpose's keys from the new one.
    async fn reload(&self, source: &RingSource) -> Result<(), SecretError> {
        let secret = load(&source.secrets, &source.config.secret_id).await?;
        let sealed = secret
            .sealed_ring
            .ok_or(SecretError::Malformed { id: source.config.secret_id.clone(), problem: "has no `keyring`" })?;
        if sealed == self.snapshot().sealed {
            return Ok(());
        }
        let ring = open_ring(&source.kms, &source.config, &sealed).await?;
        let cipher = ring.cipher(&self.purpose)?;
        tracing::info!(roots = ?cipher.root_ids(), "key ring reloaded");
        *self.held.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Held { sealed, cipher });
        Ok(())
    }

    /// After `seen` failed to open a token: reloads unless another miss just did (then its keys are
    /// used) or one did within [`MISS_RELOAD_INTERVAL`]. Whether there are newer keys to try.
    async fn reload_after_miss(&self, source: &RingSource, seen: &Arc<Held>) -> Result<bool, SecretError> {
        let mut last = self.last_miss_reload.lock().await;
        if !Arc::ptr_eq(seen, &self.snapshot()) {
            return Ok(true);
        }
        if last.is_some_and(|at| at.elapsed() < MISS_RELOAD_INTERVAL) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        self.reload(source).await?;
        Ok(!Arc::ptr_eq(seen, &self.snapshot()))
    }

    /// Encrypts under the newest root in the store (the secret is read first).
    pub async fn encrypt(&self, plaintext: &[u8], now: UnixMillis) -> Result<String, AppError> {
        if let Some(source) = &self.source {
            self.reload(source).await.map_err(unavailable)?;
        }
        self.snapshot().cipher.encrypt(plaintext, now).map_err(AppError::internal)
    }

    /// Decrypts with any key held; when none opens the token, reloads (bounded) and tries the new
    /// keys, so a token a newer container wrote is read.
    pub async fn decrypt(
        &self,
        token: &str,
        ttl: Option<Duration>,
        now: UnixMillis,
    ) -> Result<Zeroizing<Vec<u8>>, AppError> {
        let seen = self.snapshot();
        match (seen.cipher.decrypt(token, ttl, now), &self.source) {
            (Err(CryptoError::InvalidToken), Some(source))
                if self.reload_after_miss(source, &seen).await.map_err(unavailable)? =>
            {
                self.snapshot().cipher.decrypt(token, ttl, now).map_err(AppError::internal)
            }
            (outcome, _) => outcome.map_err(AppError::internal),
        }
    }
}

/// A storage or key-service failure while keeping the keys current: 503, detail kept for the log.
fn unavailable(error: SecretError) -> AppError {
    AppError::Unavailable(anyhow::Error::new(error).context("refresh the key ring"))
}
