//! Account operations: the operator CLI, the pages and the test fixtures create users, keys and
//! webhooks here, and the credential forms verify passwords and TOTP codes here.

use std::sync::Arc;

use crate::core::clock::{Clock, UnixMillis};
use crate::core::error::AppError;
use crate::crypto::api_key::{ApiKey, KeyId};
use crate::crypto::one_time::{OneTimeToken, TokenHash};
use crate::crypto::password::{Checked, PasswordHasher, PhcString, check_off_thread, hash_off_thread};
use crate::crypto::totp::TotpSecret;
use crate::identity::webhooks::{MAX_WEBHOOKS_PER_USER, Webhook, WebhookStore, WebhookSummary};
use crate::identity::{Role, SANDBOX_BROKER};
use crate::limits::login::LoginAttempt;
use crate::store::app_secret::LiveCipher;
use crate::store::identity::{ApiKeyRecord, Conditional, IdentityStore};
use crate::store::users::{NewWebUser, UserRecord};

/// Consecutive failed credential checks on one account (password, TOTP code, reset,
/// re-authentication, in any mix) after which reset by TOTP code alone is locked, until the owner
/// logs in fully or the operator unlocks it. At 25 guesses an hour, a million codes would otherwise
/// fall at about a third a year; ten leaves an attacker a chance of one in 100,000.
pub const RESET_LOCK_FAILURES: u64 = 10;

/// Whether `user`'s reset by TOTP code alone is locked ([`RESET_LOCK_FAILURES`]).
pub fn reset_locked(user: &UserRecord) -> bool {
    user.failures >= RESET_LOCK_FAILURES
}

/// The longest username any account can have, in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;
/// The longest email address any account can have, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

#[derive(Clone, Copy, Debug)]
enum WebhookChange {
    Revoke,
    Rebind,
}

/// How often a write conditional on the account is retried on a fresh read before giving up with
/// 409: a person saves an allowlist or regenerates a key, so more than a couple of collisions in a
/// row means something is looping.
const CONDITIONAL_ATTEMPTS: usize = 3;

/// A username or email typed into a form as `field`, refused with 400 when it is longer than
/// `max` ([`MAX_USERNAME_BYTES`], [`MAX_EMAIL_BYTES`]), what any account's can be. It forms store and counter keys (DynamoDB refuses keys over 2 KB, which would read as an
/// outage and fire its alarm), so it is checked before any store call; no account exists that
/// is this long, so the refusal tells nobody anything.
pub fn bounded_login_name<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, AppError> {
    if value.len() > max {
        return Err(AppError::bad_request(format!("{field} must be at most {max} characters")));
    }
    Ok(value)
}

/// Usernames are shown in the dashboard and used in keys: keep them boring.
pub fn check_username(username: &str) -> Result<(), AppError> {
    let ok = (3..=MAX_USERNAME_BYTES).contains(&username.len())
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

/// What creating a web user returns, each shown once: the first API key and the TOTP secret.
#[derive(Debug)]
pub struct WebUserCreated {
    pub key: ApiKey,
    pub totp: TotpSecret,
}

/// The account services over exactly what they use: the identity and webhook stores, the keyed
/// Argon2id hasher, the Fernet keys for the API-key copy and the TOTP secret, and the clock.
#[derive(Clone, Copy, Debug)]
pub struct Accounts<'a> {
    pub identity: &'a IdentityStore,
    pub webhooks: &'a WebhookStore,
    pub passwords: &'a Arc<PasswordHasher>,
    pub api_key_copies: &'a LiveCipher,
    pub totp_secrets: &'a LiveCipher,
    pub clock: &'a dyn Clock,
}

impl Accounts<'_> {
    /// Argon2id (keyed by the pepper) of a new password or key, off the async workers.
    pub async fn hash_secret(self, secret: &str) -> Result<PhcString, AppError> {
        hash_off_thread(self.passwords, secret).await
    }

    /// Checks a password for a user who may not exist, spending the `attempt` that the login
    /// budget granted. An unknown user, a user without a password and a wrong password cost the
    /// same Argon2 work and give the same `false` (W15). A right password under old parameters is
    /// re-hashed on the way.
    pub async fn verify_password(
        self,
        user: Option<&UserRecord>,
        password: &str,
        attempt: LoginAttempt,
    ) -> Result<bool, AppError> {
        attempt.spend();
        let phc = user.and_then(|user| user.phc.as_ref());
        match (check_off_thread(self.passwords, password, phc).await?, user, phc) {
            (Checked::Valid, Some(_), _) => Ok(true),
            (Checked::Rehashed(upgraded), Some(user), Some(old)) => {
                // Only if the hash is still the one just verified: a password changed meanwhile stays.
                if let Err(error) = self.identity.upgrade_password_hash(&user.username, old, &upgraded).await {
                    tracing::warn!(error = %error, "password hash upgrade failed");
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Whether `code` is a valid, never-used code for `user`, spending the `attempt` that the login
    /// budget granted. The step it matches is claimed with a conditional write, so a code works
    /// once even under concurrent submissions.
    pub async fn accept_totp(
        self,
        user: &UserRecord,
        code: &str,
        now: UnixMillis,
        attempt: LoginAttempt,
    ) -> Result<bool, AppError> {
        attempt.spend();
        let Some(secret) = self.totp_secret(user, now).await? else { return Ok(false) };
        match secret.matching_step(code, now) {
            Some(step) => self.identity.claim_totp_step(&user.username, step).await,
            None => Ok(false),
        }
    }

    /// As [`Accounts::accept_totp`], for the reset path that a TOTP code alone opens: refused
    /// without looking at the code once the account has [`RESET_LOCK_FAILURES`] failures, so a
    /// locked account's code is not even claimed.
    pub async fn accept_totp_for_reset(
        self,
        user: &UserRecord,
        code: &str,
        now: UnixMillis,
        attempt: LoginAttempt,
    ) -> Result<bool, AppError> {
        if reset_locked(user) {
            attempt.spend();
            return Ok(false);
        }
        self.accept_totp(user, code, now, attempt).await
    }

    /// Counts a failed credential check against `username`: whether this failure is the one that
    /// locked its TOTP reset (exactly one failure is, however many race, so the alarm and the mail
    /// go once). An unknown name counts nothing.
    pub async fn count_failure(self, username: &str) -> Result<bool, AppError> {
        Ok(self.identity.count_failure(username).await? == Some(RESET_LOCK_FAILURES))
    }

    /// A full login or the operator's unlock: the failure count starts again; whether the user exists.
    pub async fn clear_failures(self, username: &str) -> Result<bool, AppError> {
        self.identity.clear_failures(username).await
    }

    /// The operator's recovery of a password: a new random one (shown once, by the caller), every
    /// session ended, every outstanding reset token void, the failure count cleared. The owner
    /// changes it on the dashboard after logging in with it.
    pub async fn operator_reset_password(self, username: &str) -> Result<secrecy::SecretString, AppError> {
        let user = self.web_user(username).await?;
        // 120 random bits, and one character of each class the strength rules ask for.
        let password = format!("{}-Aa1!", &crate::crypto::random_token()[..20]);
        check_password_strength(&password)?;
        let phc = self.hash_secret(&password).await?;
        self.identity.set_password(&user.username, &phc, self.clock.now()).await?;
        self.identity.end_all_sessions(&user.username).await?;
        self.identity.clear_failures(&user.username).await?;
        Ok(secrecy::SecretString::from(password))
    }

    /// The operator's re-enrolment of TOTP: a fresh secret (shown once, by the caller, to be handed
    /// to the owner), the old authenticator's codes refused from now on, every session ended, the
    /// failure count cleared. There is never a moment in which the password alone logs in.
    pub async fn operator_reset_totp(self, username: &str) -> Result<TotpSecret, AppError> {
        let user = self.web_user(username).await?;
        let totp = TotpSecret::generate();
        let encrypted = self.totp_secrets.encrypt(totp.expose_bytes(), self.clock.now()).await?;
        self.identity.set_totp(&user.username, &encrypted).await?;
        self.identity.end_all_sessions(&user.username).await?;
        self.identity.clear_failures(&user.username).await?;
        Ok(totp)
    }

    /// A user who logs in to the pages, or a 400 naming the problem.
    async fn web_user(self, username: &str) -> Result<UserRecord, AppError> {
        check_username(username)?;
        let user = self
            .identity
            .user(username)
            .await?
            .ok_or_else(|| AppError::bad_request(format!("no user `{username}`")))?;
        if user.phc.is_none() {
            return Err(AppError::bad_request(format!(
                "`{username}` is an API-only user: it has no password to reset"
            )));
        }
        Ok(user)
    }

    /// Whether `presented` is the stack's current one-time setup token, spending the `attempt`
    /// that the login budget granted. Only hashes are compared, in constant time.
    pub async fn setup_token_matches(self, presented: &OneTimeToken, attempt: LoginAttempt) -> Result<bool, AppError> {
        attempt.spend();
        let stored = self.identity.setup_token_hash(self.clock.now()).await?;
        Ok(stored.is_some_and(|stored| stored.matches(&presented.hash())))
    }

    /// The user's TOTP secret, decrypted; `None` when not enrolled.
    pub async fn totp_secret(self, user: &UserRecord, now: UnixMillis) -> Result<Option<TotpSecret>, AppError> {
        let Some(token) = &user.totp else { return Ok(None) };
        let bytes = self.totp_secrets.decrypt(token, None, now).await?;
        TotpSecret::from_bytes(&bytes)
            .map(Some)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("stored TOTP secret has the wrong length")))
    }

    pub async fn new_key_record(self, username: &str) -> Result<(ApiKey, ApiKeyRecord), AppError> {
        self.key_record_for(username, ApiKey::generate()).await
    }

    async fn key_record_for(self, username: &str, key: ApiKey) -> Result<(ApiKey, ApiKeyRecord), AppError> {
        let phc = self.hash_secret(key.expose()).await?;
        let now = self.clock.now();
        let encrypted_copy = self.api_key_copies.encrypt(key.expose().as_bytes(), now).await?;
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
    pub async fn create_user(self, username: &str) -> Result<ApiKey, AppError> {
        check_username(username)?;
        let (key, record) = self.new_key_record(username).await?;
        self.identity.create_user_with_key(username, &record).await?;
        Ok(key)
    }

    /// Creates a user whose key is given rather than generated: the fixed keys that `events/*.json`
    /// carry. Only tests and fixtures call this; real keys always come from [`Accounts::create_user`].
    pub async fn create_user_with_key(self, username: &str, key: ApiKey) -> Result<ApiKey, AppError> {
        check_username(username)?;
        let (key, record) = self.key_record_for(username, key).await?;
        self.identity.create_user_with_key(username, &record).await?;
        Ok(key)
    }

    /// Issues a new key for `username` and revokes the previous one in the same transaction. The
    /// new key inherits the allowlist in force when it is written (a concurrent save makes the
    /// write stale, and it is retried on a fresh read).
    pub async fn regenerate_api_key(self, username: &str) -> Result<(ApiKey, Option<KeyId>), AppError> {
        check_username(username)?;
        let (key, record) = self.new_key_record(username).await?;
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let seen = self.existing_user(username).await?;
            if let Conditional::Written(previous) = self.identity.rotate_key(&seen, &record, self.clock.now()).await? {
                return Ok((key, previous));
            }
        }
        Err(AppError::ConcurrentChange)
    }

    /// Sets `username`'s IP allowlist on the account and on its current key, retried on a fresh
    /// read when the key was rotated meanwhile, so the key in force always carries it.
    pub async fn set_allowlist(self, username: &str, allow: &[String]) -> Result<(), AppError> {
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let seen = self.existing_user(username).await?;
            if let Conditional::Written(()) = self.identity.set_allowlist(&seen, allow).await? {
                return Ok(());
            }
        }
        Err(AppError::ConcurrentChange)
    }

    async fn existing_user(self, username: &str) -> Result<UserRecord, AppError> {
        self.identity
            .user(username)
            .await?
            .ok_or_else(|| AppError::bad_request(format!("user `{username}` does not exist")))
    }

    /// Creates a user who can log in to the pages: checked username, email and password (OpenAlgo's
    /// rules), a fresh TOTP secret stored encrypted, and a first API key, all in one transaction.
    /// With a setup token hash this is the first-run setup and the user is the administrator.
    pub async fn create_web_user(
        self,
        username: &str,
        email: &str,
        password: &str,
        setup_token_hash: Option<&TokenHash>,
    ) -> Result<WebUserCreated, AppError> {
        check_username(username)?;
        if email.len() > MAX_EMAIL_BYTES
            || email.split_once('@').is_none_or(|(local, domain)| local.is_empty() || !domain.contains('.'))
        {
            return Err(AppError::bad_request("A valid email address is required"));
        }
        check_password_strength(password)?;
        let totp = TotpSecret::generate();
        let encrypted_totp = self.totp_secrets.encrypt(totp.expose_bytes(), self.clock.now()).await?;
        let phc = self.hash_secret(password).await?;
        let (key, record) = self.new_key_record(username).await?;
        let role = if setup_token_hash.is_some() { Role::Admin } else { Role::User };
        let user = NewWebUser { username, email, role, phc: &phc, encrypted_totp: &encrypted_totp, key: &record };
        self.identity.create_web_user(&user, setup_token_hash).await?;
        Ok(WebUserCreated { key, totp })
    }

    /// A fresh one-time setup token for `/setup`, replacing any earlier one; refused once an admin
    /// exists. Only its hash is stored; the token is returned to be printed once.
    pub async fn issue_setup_token(self) -> Result<OneTimeToken, AppError> {
        let token = OneTimeToken::generate();
        self.identity.put_setup_token(&token.hash(), self.clock.now()).await?;
        Ok(token)
    }

    /// Creates a strategy webhook for an existing user; returns its secret id (shown once).
    pub async fn create_webhook(self, webhook: &Webhook) -> Result<String, AppError> {
        check_username(&webhook.user)?;
        if webhook.strategy.trim().is_empty() || webhook.strategy.chars().count() > 256 {
            return Err(AppError::bad_request("a strategy name of 1 to 256 characters is required"));
        }
        if webhook.symbols.is_empty() || webhook.symbols.values().any(|quantity| *quantity == 0) {
            return Err(AppError::bad_request("map at least one symbol, each to a quantity of 1 or more"));
        }
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let seen = self.existing_user(&webhook.user).await?;
            if seen.webhooks.len() >= MAX_WEBHOOKS_PER_USER {
                return Err(AppError::bad_request(format!(
                    "`{}` already has {MAX_WEBHOOKS_PER_USER} webhooks, the most one account may have; revoke one first",
                    webhook.user
                )));
            }
            if let Conditional::Written(id) = self.webhooks.create(webhook, &seen).await? {
                return Ok(id);
            }
        }
        Err(AppError::ConcurrentChange)
    }

    /// `username`'s webhooks, each with its handle and whether it is suspended.
    pub async fn webhooks(self, username: &str) -> Result<Vec<WebhookSummary>, AppError> {
        self.webhooks.list(&self.existing_user(username).await?).await
    }

    /// Deletes the webhook `handle` names: its URL is refused from the next alert on.
    pub async fn revoke_webhook(self, username: &str, handle: &str) -> Result<(), AppError> {
        self.change_webhook(username, handle, WebhookChange::Revoke).await
    }

    /// Binds the webhook `handle` names to the account's current key, lifting its suspension.
    pub async fn rebind_webhook(self, username: &str, handle: &str) -> Result<(), AppError> {
        self.change_webhook(username, handle, WebhookChange::Rebind).await
    }

    async fn change_webhook(self, username: &str, handle: &str, change: WebhookChange) -> Result<(), AppError> {
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let seen = self.existing_user(username).await?;
            let hash = WebhookStore::resolve(&seen, handle)?;
            let written = match change {
                WebhookChange::Revoke => self.webhooks.revoke(&seen, hash).await?,
                WebhookChange::Rebind => self.webhooks.rebind(&seen, hash).await?,
            };
            if written == Conditional::Written(()) {
                return Ok(());
            }
        }
        Err(AppError::ConcurrentChange)
    }
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
