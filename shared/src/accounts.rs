//! Account operations shared by the operator CLI, the tests and (later) the web UI.

use crate::bootstrap::Deps;
use crate::crypto::api_key::{ApiKey, KeyId};
use crate::error::AppError;
use crate::store::identity::{ApiKeyRecord, SANDBOX_BROKER};

/// Usernames are shown in the dashboard and used in keys: keep them boring.
pub fn check_username(username: &str) -> Result<(), AppError> {
    let ok = (3..=64).contains(&username.len())
        && username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request("username must be 3–64 characters of letters, digits, `_`, `-` or `.`"))
    }
}

async fn new_key_record(deps: &Deps, username: &str) -> Result<(ApiKey, ApiKeyRecord), AppError> {
    key_record_for(deps, username, ApiKey::generate()).await
}

async fn key_record_for(deps: &Deps, username: &str, key: ApiKey) -> Result<(ApiKey, ApiKeyRecord), AppError> {
    let hasher = deps.passwords.clone();
    let secret = zeroize::Zeroizing::new(key.expose().to_owned());
    let phc = tokio::task::spawn_blocking(move || hasher.hash(secret.as_bytes()))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
    let now = deps.clock.now().secs();
    let encrypted_copy = deps.api_key_copies.encrypt(key.expose().as_bytes(), now).map_err(AppError::internal)?;
    let record = ApiKeyRecord {
        id: key.id().clone(),
        user: username.to_owned(),
        phc,
        encrypted_copy,
        broker: SANDBOX_BROKER.to_owned(),
        created_at: now,
        revoked_at: None,
        allow: Vec::new(),
    };
    Ok((key, record))
}

/// Creates a user on the sandbox broker with a first API key, which is returned once.
pub async fn create_user(deps: &Deps, username: &str) -> Result<ApiKey, AppError> {
    check_username(username)?;
    let (key, record) = new_key_record(deps, username).await?;
    deps.identity.create_user_with_key(username, &record).await?;
    Ok(key)
}

/// Creates a user whose key is given rather than generated: the fixed keys that `events/*.json`
/// carry. Only tests and fixtures call this; real keys always come from [`create_user`].
pub async fn create_user_with_key(deps: &Deps, username: &str, key: ApiKey) -> Result<ApiKey, AppError> {
    check_username(username)?;
    let (key, record) = key_record_for(deps, username, key).await?;
    deps.identity.create_user_with_key(username, &record).await?;
    Ok(key)
}

/// Issues a new key for `username` and revokes the previous one in the same transaction.
pub async fn regenerate_api_key(deps: &Deps, username: &str) -> Result<(ApiKey, Option<KeyId>), AppError> {
    check_username(username)?;
    let (key, record) = new_key_record(deps, username).await?;
    let previous = deps.identity.rotate_key(username, &record, deps.clock.now().secs()).await?;
    Ok((key, previous))
}

/// Creates a strategy webhook for an existing user; returns its secret id (shown once).
pub async fn create_webhook(deps: &Deps, webhook: &crate::webhooks::Webhook) -> Result<String, AppError> {
    check_username(&webhook.user)?;
    if !deps.identity.user_exists(&webhook.user).await? {
        return Err(AppError::bad_request(format!("no user `{}`", webhook.user)));
    }
    if webhook.strategy.trim().is_empty() || webhook.strategy.chars().count() > 256 {
        return Err(AppError::bad_request("a strategy name of 1 to 256 characters is required"));
    }
    if webhook.symbols.is_empty() || webhook.symbols.values().any(|quantity| *quantity == 0) {
        return Err(AppError::bad_request("map at least one symbol, each to a quantity of 1 or more"));
    }
    deps.webhooks.create(webhook).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for good in ["admin", "trader_1", "a.b-c"] {
            assert!(check_username(good).is_ok(), "{good}");
        }
        for bad in ["", "ab", "has space", "ünïcode", "x#y", &"a".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }
}
