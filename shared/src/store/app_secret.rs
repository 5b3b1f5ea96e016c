//! The app secret in Secrets Manager: `{"pepper": "<random>", "keyring": "<base64 KMS ciphertext>"}`.
//!
//! One `GetSecretValue` and one KMS `Decrypt` at cold start yield the pepper and every root key;
//! nothing secret is ever in an environment variable.

use std::collections::HashMap;

use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::core::config::Config;
use crate::crypto::keyring::KeyRing;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secrets Manager: could not read secret `{id}`: {detail}")]
    Read { id: String, detail: String },
    #[error("Secrets Manager: could not write secret `{id}`: {detail}")]
    Write { id: String, detail: String },
    #[error("secret `{id}`: {problem}")]
    Malformed { id: String, problem: &'static str },
    #[error("KMS: could not {action} the key ring with key `{key}`: {detail}")]
    Kms { action: &'static str, key: String, detail: String },
    #[error("key ring: {0}")]
    Ring(#[from] crate::crypto::CryptoError),
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
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|error| SecretError::Read { id: id.into(), detail: aws_detail(&error) })?;
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
    let text = Zeroizing::new(serde_json::Value::Object(document).to_string());
    client
        .put_secret_value()
        .secret_id(id)
        .secret_string(text.as_str())
        .send()
        .await
        .map_err(|error| SecretError::Write { id: id.into(), detail: aws_detail(&error) })?;
    Ok(())
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
