//! Account operations shared by the operator CLI, the tests and (later) the web UI.

use crate::app::bootstrap::Deps;
use crate::crypto::api_key::{ApiKey, KeyId};
use crate::crypto::password::Checked;
use crate::core::error::AppError;
use crate::identity::{Role, SANDBOX_BROKER};
use crate::store::identity::ApiKeyRecord;
use crate::store::users::{NewWebUser, UserRecord};
use crate::crypto::totp::TotpSecret;

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

/// OpenAlgo's strength rules, checked in its order with its messages: the first failure wins.
pub fn check_password_strength(password: &str) -> Result<(), AppError> {
    let failure = if password.is_empty() {
        Some("Password is required")
    } else if password.chars().count() < 8 {
        Some("Password must be at least 8 characters long")
    } else if !password.chars().any(|c| c.is_ascii_uppercase()) {
        Some("Password must contain at least 1 uppercase letter (A-Z)")
    } else if !password.chars().any(|c| c.is_ascii_lowercase()) {
        Some("Password must contain at least 1 lowercase letter (a-z)")
    } else if !password.chars().any(|c| c.is_ascii_digit()) {
        Some("Password must contain at least 1 number (0-9)")
    } else if !password.chars().any(|c| "!@#$%^&*".contains(c)) {
        Some("Password must contain at least 1 special character (!@#$%^&*)")
    } else if password.len() > 1024 {
        // Argon2 hashes any length, but a megabyte of "password" is an attack on our CPU.
        Some("Password must be at most 1024 bytes long")
    } else {
        None
    };
    failure.map_or(Ok(()), |message| Err(AppError::bad_request(message)))
}

/// Argon2id (keyed by the pepper) of a secret, off the async workers.
pub async fn hash_secret(deps: &Deps, secret: &str) -> Result<String, AppError> {
    let hasher = deps.passwords.clone();
    let secret = zeroize::Zeroizing::new(secret.as_bytes().to_vec());
    tokio::task::spawn_blocking(move || hasher.hash(&secret))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

/// Argon2id verification of a secret against its stored hash (or the decoy when there is none),
/// with the re-hash of a secret valid under old parameters, off the async workers: Argon2 is tens
/// of ms of CPU.
pub async fn check_secret(deps: &Deps, secret: &str, phc: Option<&str>) -> Result<Checked, AppError> {
    let hasher = deps.passwords.clone();
    let secret = zeroize::Zeroizing::new(secret.as_bytes().to_vec());
    let phc = phc.map(str::to_owned);
    tokio::task::spawn_blocking(move || hasher.verify_upgrading(&secret, phc.as_deref()))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

/// Checks a password for a user who may not exist. An unknown user, a user without a password and
/// a wrong password cost the same Argon2 work and give the same `false` (W15). A right password
/// under old parameters is re-hashed on the way.
pub async fn verify_password(deps: &Deps, user: Option<&UserRecord>, password: &str) -> Result<bool, AppError> {
    let phc = user.and_then(|user| user.phc.as_deref());
    match (check_secret(deps, password, phc).await?, user, phc) {
        (Checked::Valid, Some(_), _) => Ok(true),
        (Checked::Rehashed(upgraded), Some(user), Some(old)) => {
            // Only if the hash is still the one just verified: a password changed meanwhile stays.
            if let Err(error) = deps.identity.upgrade_password_hash(&user.username, old, &upgraded).await {
                tracing::warn!(error = %error, "password hash upgrade failed");
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

pub async fn new_key_record(deps: &Deps, username: &str) -> Result<(ApiKey, ApiKeyRecord), AppError> {
    key_record_for(deps, username, ApiKey::generate()).await
}

async fn key_record_for(deps: &Deps, username: &str, key: ApiKey) -> Result<(ApiKey, ApiKeyRecord), AppError> {
    let phc = hash_secret(deps, key.expose()).await?;
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

/// What creating a web user returns, each shown once: the first API key and the TOTP secret.
#[derive(Debug)]
pub struct WebUserCreated {
    pub key: ApiKey,
    pub totp: TotpSecret,
}

/// Creates a user who can log in to the pages: checked username, email and password (OpenAlgo's
/// rules), a fresh TOTP secret stored encrypted, and a first API key, all in one transaction. With a
/// setup token hash this is the first-run setup and the user is the administrator.
pub async fn create_web_user(
    deps: &Deps,
    username: &str,
    email: &str,
    password: &str,
    setup_token_hash: Option<&str>,
) -> Result<WebUserCreated, AppError> {
    check_username(username)?;
    if email.len() > 254
        || email.split_once('@').is_none_or(|(local, domain)| local.is_empty() || !domain.contains('.'))
    {
        return Err(AppError::bad_request("A valid email address is required"));
    }
    check_password_strength(password)?;
    let totp = TotpSecret::generate();
    let encrypted_totp =
        deps.totp_secrets.encrypt(totp.expose_bytes(), deps.clock.now().secs()).map_err(AppError::internal)?;
    let phc = hash_secret(deps, password).await?;
    let (key, record) = new_key_record(deps, username).await?;
    let role = if setup_token_hash.is_some() { Role::Admin } else { Role::User };
    let user = NewWebUser { username, email, role, phc: &phc, encrypted_totp: &encrypted_totp, key: &record };
    deps.identity.create_web_user(&user, setup_token_hash).await?;
    Ok(WebUserCreated { key, totp })
}

pub use crate::crypto::token_hash;

/// A fresh one-time setup token for `/setup`, replacing any earlier one; refused once an admin
/// exists. Only its hash is stored; the token is returned to be printed once.
pub async fn issue_setup_token(deps: &Deps) -> Result<String, AppError> {
    let token = crate::crypto::random_token();
    deps.identity.put_setup_token(&token_hash(&token), deps.clock.now().secs()).await?;
    Ok(token)
}

/// Creates a strategy webhook for an existing user; returns its secret id (shown once).
pub async fn create_webhook(deps: &Deps, webhook: &crate::identity::webhooks::Webhook) -> Result<String, AppError> {
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
    fn openalgo_password_rules_in_order() {
        let cases = [
            ("", "Password is required"),
            ("Ab1!", "Password must be at least 8 characters long"),
            ("abcdefg1!", "Password must contain at least 1 uppercase letter (A-Z)"),
            ("ABCDEFG1!", "Password must contain at least 1 lowercase letter (a-z)"),
            ("Abcdefgh!", "Password must contain at least 1 number (0-9)"),
            ("Abcdefg1_", "Password must contain at least 1 special character (!@#$%^&*)"),
        ];
        for (password, message) in cases {
            assert_eq!(check_password_strength(password).expect_err(password).public_message(), message);
        }
        assert!(check_password_strength("Abcdefg1!").is_ok());
    }

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
