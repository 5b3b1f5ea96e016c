//! The web identity of users, in the identity table beside their API keys.
//!
//! - `user#<username>` gains `role`, `phc` (Argon2id of the password), `email`, `totp` (the TOTP
//!   secret, Fernet-encrypted under the TOTP purpose key), `totp_step` (the last step accepted: the
//!   replay guard) and `sessions` (a map of session hash → login time, so that "log out everywhere"
//!   and the 5-session cap find every session with one consistent read).
//! - `admin`: exists once the first-run setup has created the administrator; setup is conditional
//!   on its absence, so two racing setups cannot both win.
//! - `setup#token`: SHA-256 of the one-time setup token that provisioning printed.
//! - `email#<lower-case address>`: the user an address belongs to (password reset by email).
//! - `reset#<sha256>`: a password-reset token, single use, 15-minute TTL.
//! - `audit#<millis>#<random>`: one login attempt, key reveal or reset, listed by the `audit` index.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, Update};

use super::identity::{
    ALLOW, ApiKeyRecord, Conditional, IdentityStore, WEBHOOK_INDEX_PREFIX, key_pk, user_pk, webhook_pk,
};
use super::{
    EXPIRES_AT, Item, PK, cancelled_by_condition, conditional, epoch, instant, n, number, s, string, string_set,
    unavailable, unless_condition_failed, write,
};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::crypto::api_key::KeyId;
use crate::crypto::one_time::TokenHash;
use crate::crypto::password::PhcString;
use crate::identity::{Role, SANDBOX_BROKER};

const ADMIN_PK: &str = "admin";
const SETUP_TOKEN_PK: &str = "setup#token";
/// Login audit records are kept this long.
const AUDIT_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// The user's failed-credential counter ([`UserRecord::failures`]).
const FAILURES: &str = "failures";
/// A setup token printed and never used must not stay a way in: it works for an hour.
pub const SETUP_TOKEN_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub role: Role,
    pub email: String,
    /// Argon2id PHC of the password; `None` for API-only users made by the operator CLI.
    pub phc: Option<PhcString>,
    /// Fernet token of the TOTP secret; `None` when TOTP is not enrolled.
    pub totp: Option<String>,
    pub totp_step: Option<u64>,
    /// Session hash → login time (epoch ms).
    pub sessions: BTreeMap<String, u64>,
    pub api_key_id: Option<String>,
    /// Where the account's orders go: [`SANDBOX_BROKER`] (analyzer mode) or a linked broker's
    /// name (live). Copied onto its current key, which is what the gate reads.
    pub broker: String,
    pub allow: Vec<String>,
    /// When the password was last set (a change or a reset): reset tokens issued before it are void.
    pub password_set_at: Option<UnixMillis>,
    /// [`KEY_STATE_VERSION`]: `None` until the key, the allowlist or the webhooks first change.
    pub key_state_version: Option<u64>,
    /// The account's strategy webhooks: the hash of each id → its strategy.
    pub webhooks: BTreeMap<String, String>,
    /// Failed credential checks (password, TOTP code, reset, re-authentication) since the last full
    /// login or the operator's unlock: the account's lockout counter.
    pub failures: u64,
}

impl UserRecord {
    fn from_item(item: &Item) -> Option<Self> {
        let sessions = item
            .get("sessions")
            .and_then(|value| value.as_m().ok())
            .map(|map| {
                map.iter().filter_map(|(hash, at)| Some((hash.clone(), at.as_n().ok()?.parse().ok()?))).collect()
            })
            .unwrap_or_default();
        Some(Self {
            username: string(item, "username")?,
            role: Role::from_stored(&string(item, "role").unwrap_or_default()),
            email: string(item, "email").unwrap_or_default(),
            phc: string(item, "phc").map(PhcString::from_stored),
            totp: string(item, "totp"),
            totp_step: number(item, "totp_step"),
            sessions,
            api_key_id: string(item, "api_key_id"),
            broker: string(item, BROKER).unwrap_or_else(|| SANDBOX_BROKER.into()),
            allow: string_set(item, ALLOW),
            password_set_at: instant(item, "password_set_at"),
            key_state_version: number(item, KEY_STATE_VERSION),
            webhooks: item
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.strip_prefix(WEBHOOK_INDEX_PREFIX)?.to_owned(), value.as_s().ok()?.clone()))
                })
                .collect(),
            failures: number(item, FAILURES).unwrap_or_default(),
        })
    }
}

/// On the user and its current key: where orders go ([`UserRecord::broker`]).
pub(crate) const BROKER: &str = "broker";

/// On the user: a counter bumped by every change of its key pointer or allowlist. Writes that
/// depend on both ([`IdentityStore::rotate_key`], `set_allowlist`) are conditional on it, so two
/// of them racing cannot leave the current key without the allowlist the user has.
pub const KEY_STATE_VERSION: &str = "key_state_version";

/// `update`, bumping the user's key-state version, conditional on it being what `seen` read.
pub(crate) fn unchanged_key_state(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    seen: &UserRecord,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    let next = seen.key_state_version.unwrap_or(0) + 1;
    let update = update
        .expression_attribute_names("#version", KEY_STATE_VERSION)
        .expression_attribute_values(":next", AttributeValue::N(next.to_string()));
    match seen.key_state_version {
        Some(version) => update
            .condition_expression("#version = :seen")
            .expression_attribute_values(":seen", AttributeValue::N(version.to_string())),
        None => update.condition_expression("attribute_exists(pk) AND attribute_not_exists(#version)"),
    }
}

/// The id of `seen`'s current key, which the settings copied onto it are written to.
fn current_key_id(seen: &UserRecord) -> Result<KeyId, AppError> {
    let key_id = seen.api_key_id.as_deref().ok_or_else(|| AppError::bad_request("This account has no API key"))?;
    KeyId::parse(key_id).ok_or_else(|| AppError::internal(anyhow::anyhow!("stored api_key_id is malformed")))
}

/// A user who can log in to the pages, written in one transaction with its first key.
#[derive(Debug)]
pub struct NewWebUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub role: Role,
    pub phc: &'a PhcString,
    pub encrypted_totp: &'a str,
    pub key: &'a ApiKeyRecord,
}

/// What an audit record is about; stored as its name, the `audit` index's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    /// A password or TOTP step of a login.
    Login,
    /// A re-authentication to show the API key.
    Reveal,
    /// A password reset, by TOTP or by email.
    Reset,
    /// A password change.
    Password,
    /// A key regeneration or an allowlist change.
    ApiKey,
}

impl AuditKind {
    pub const ALL: [AuditKind; 5] =
        [AuditKind::Login, AuditKind::Reveal, AuditKind::Reset, AuditKind::Password, AuditKind::ApiKey];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuditKind::Login => "login",
            AuditKind::Reveal => "reveal",
            AuditKind::Reset => "reset",
            AuditKind::Password => "password",
            AuditKind::ApiKey => "apikey",
        }
    }
}

/// How an audited event ended; stored as its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    Success,
    Failed,
}

impl AuditOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failed => "failed",
        }
    }

    pub fn from_stored(text: &str) -> Option<Self> {
        [AuditOutcome::Success, AuditOutcome::Failed].into_iter().find(|outcome| outcome.as_str() == text)
    }
}

/// Why an audited event failed or how it succeeded: the fixed vocabulary the pages write, and the
/// allowlist an `apikey` change saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditDetail {
    InvalidCredentials,
    InvalidTotp,
    RateLimited,
    /// The password was right and the TOTP step is owed.
    PasswordOkTotpRequired,
    /// Logged in with the password alone (no TOTP enrolled).
    Password,
    /// Logged in, or reset, with a TOTP code.
    Totp,
    ReauthFailed,
    ApiKeyShown,
    Regenerated,
    /// The allowlist saved, its entries normalised.
    Allowlist(Vec<String>),
    /// A strategy webhook revoked, by its handle.
    WebhookRevoked(String),
    /// A suspended strategy webhook bound to the current key, by its handle.
    WebhookRebound(String),
    /// A password change.
    Changed,
    EmailSent,
    /// A reset mail was asked for within 15 minutes of the last one: none was sent.
    EmailWithheld,
    PasswordSet,
    /// The account's failures reached the lockout threshold: reset by TOTP is locked.
    ResetLocked,
    /// The operator unlocked the account, or reset its password or TOTP enrolment.
    Unlocked,
}

impl AuditDetail {
    /// The stored text: `invalid_credentials`, …, `allowlist:<entries joined by commas>`.
    pub fn to_stored(&self) -> String {
        let name = match self {
            AuditDetail::InvalidCredentials => "invalid_credentials",
            AuditDetail::InvalidTotp => "invalid_totp",
            AuditDetail::RateLimited => "rate_limited",
            AuditDetail::PasswordOkTotpRequired => "password_ok_totp_required",
            AuditDetail::Password => "password",
            AuditDetail::Totp => "totp",
            AuditDetail::ReauthFailed => "reauth_failed",
            AuditDetail::ApiKeyShown => "api_key_shown",
            AuditDetail::Regenerated => "regenerated",
            AuditDetail::Allowlist(entries) => return format!("allowlist:{}", entries.join(",")),
            AuditDetail::WebhookRevoked(handle) => return format!("webhook_revoked:{handle}"),
            AuditDetail::WebhookRebound(handle) => return format!("webhook_rebound:{handle}"),
            AuditDetail::Changed => "changed",
            AuditDetail::EmailSent => "email_sent",
            AuditDetail::EmailWithheld => "email_withheld",
            AuditDetail::PasswordSet => "password_set",
            AuditDetail::ResetLocked => "reset_locked",
            AuditDetail::Unlocked => "unlocked",
        };
        name.to_owned()
    }
}

/// One audited event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub kind: AuditKind,
    pub at: UnixMillis,
    pub username: String,
    pub ip: String,
    pub user_agent: String,
    pub outcome: AuditOutcome,
    /// An [`AuditDetail`] as stored: read back as text, so a record of any age reads the same.
    pub detail: String,
}

impl IdentityStore {
    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>, AppError> {
        Ok(self.item(user_pk(username), "read user").await?.as_ref().and_then(UserRecord::from_item))
    }

    /// Whether the first-run setup has happened.
    pub async fn admin_exists(&self) -> Result<bool, AppError> {
        Ok(self.item(ADMIN_PK.into(), "read admin marker").await?.is_some())
    }

    /// The SHA-256 (hex) of the pending setup token, if setup has not happened yet and the token
    /// has not expired ([`SETUP_TOKEN_TTL`]). A token from before TTLs were written never expires
    /// here; issuing a new one replaces it.
    pub async fn setup_token_hash(&self, now: UnixMillis) -> Result<Option<TokenHash>, AppError> {
        let item = self.item(SETUP_TOKEN_PK.into(), "read setup token").await?;
        Ok(item
            .filter(|item| instant(item, EXPIRES_AT).is_none_or(|expires| expires > now))
            .and_then(|item| string(&item, "hash"))
            .map(TokenHash::from_stored))
    }

    /// Stores a new setup token's hash, replacing any earlier one, unless an admin already exists.
    pub async fn put_setup_token(&self, hash: &TokenHash, now: UnixMillis) -> Result<(), AppError> {
        if self.admin_exists().await? {
            return Err(AppError::bad_request("setup is already complete: an administrator exists"));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(SETUP_TOKEN_PK))
            .item("hash", s(hash.as_str()))
            .item("created_at", epoch(now))
            .item(EXPIRES_AT, epoch(now.plus(SETUP_TOKEN_TTL)))
            .send()
            .await
            .map_err(unavailable("store setup token"))?;
        Ok(())
    }

    /// Creates a web user with password, TOTP, email and first key in one transaction; no user,
    /// key or email of the same name may exist. With `setup_token_hash` it is the first-run setup:
    /// the stored setup token must still be that one (it is consumed) and no admin may exist yet.
    /// Any condition failing writes nothing.
    pub async fn create_web_user(
        &self,
        admin: &NewWebUser<'_>,
        setup_token_hash: Option<&TokenHash>,
    ) -> Result<(), AppError> {
        let mut transaction = self.client.transact_write_items();
        if let Some(hash) = setup_token_hash {
            let consume_token = Delete::builder()
                .table_name(&self.table)
                .key(PK, s(SETUP_TOKEN_PK))
                .condition_expression("#hash = :hash")
                .expression_attribute_names("#hash", "hash")
                .expression_attribute_values(":hash", s(hash.as_str()))
                .build()
                .map_err(AppError::internal)?;
            let marker = Put::builder()
                .table_name(&self.table)
                .item(PK, s(ADMIN_PK))
                .item("user", s(admin.username))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(AppError::internal)?;
            transaction = transaction.transact_items(write(consume_token)).transact_items(write(marker));
        }
        let user = Put::builder()
            .table_name(&self.table)
            .item(PK, s(user_pk(admin.username)))
            .item("username", s(admin.username))
            .item("role", s(admin.role.as_str()))
            .item("email", s(admin.email))
            .item("phc", s(admin.phc.as_str()))
            .item("totp", s(admin.encrypted_totp))
            .item("sessions", AttributeValue::M(Default::default()))
            .item("broker", s(&admin.key.broker))
            .item("api_key_id", s(admin.key.id.as_str()))
            .item("created_at", epoch(admin.key.created_at))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(AppError::internal)?;
        let email = Put::builder()
            .table_name(&self.table)
            .item(PK, s(email_pk(admin.email)))
            .item("user", s(admin.username))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(AppError::internal)?;
        transaction
            .transact_items(write(user))
            .transact_items(write(email))
            .transact_items(self.put_key(admin.key)?)
            .send()
            .await
            .map_err(|error| match (cancelled_by_condition(&error), setup_token_hash) {
                (true, Some(_)) => AppError::bad_request(
                    "Setup is no longer available, or the username or email is taken: the setup token is invalid or already used",
                ),
                (true, None) => AppError::bad_request(format!("user `{}` or its email already exists", admin.username)),
                (false, _) => AppError::Unavailable(anyhow::Error::new(error).context("create web user")),
            })?;
        Ok(())
    }

    /// Claims TOTP step `step` for `username`: succeeds only if no step at or after it has been
    /// accepted before. This conditional write is the replay guard: of any number of concurrent
    /// submissions of one code, exactly one succeeds.
    pub async fn claim_totp_step(&self, username: &str, step: u64) -> Result<bool, AppError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_pk(username)))
            .update_expression("SET totp_step = :step")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(totp_step) OR totp_step < :step)")
            .expression_attribute_values(":step", n(step))
            .send()
            .await;
        Ok(unless_condition_failed(outcome, "claim TOTP step")?.is_some())
    }

    /// Replaces the password hash. Ending the user's sessions is the caller's next step.
    pub async fn set_password(&self, username: &str, phc: &PhcString, now: UnixMillis) -> Result<(), AppError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_pk(username)))
            .update_expression("SET phc = :phc, password_set_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":phc", s(phc.as_str()))
            .expression_attribute_values(":now", epoch(now))
            .send()
            .await
            .map_err(unavailable("set password"))?;
        Ok(())
    }

    /// Replaces the user's current key with `record` and revokes the old one, atomically: the old
    /// key is refused by every container on its next request because the gate reads the record.
    ///
    /// Conditional on the account as `seen`: its key state (the key pointer, the allowlist and the
    /// webhooks, [`KEY_STATE_VERSION`]) must be unchanged, so the new key inherits the allowlist
    /// that is in force when it is written, never one a concurrent save has just replaced, and every
    /// webhook of the account is suspended with the old key.
    pub async fn rotate_key(
        &self,
        seen: &UserRecord,
        record: &ApiKeyRecord,
        now: UnixMillis,
    ) -> Result<Conditional<Option<KeyId>>, AppError> {
        let previous = seen.api_key_id.as_deref().and_then(KeyId::parse);
        // The allowlist and the trading mode are the user's settings: the new key inherits them.
        let record = &ApiKeyRecord { allow: seen.allow.clone(), broker: seen.broker.clone(), ..record.clone() };
        let point_user = unchanged_key_state(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(user_pk(&seen.username)))
                .update_expression("SET api_key_id = :new, #version = :next")
                .expression_attribute_values(":new", s(record.id.as_str())),
            seen,
        );
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(write(point_user.build().map_err(AppError::internal)?))
            .transact_items(self.put_key(record)?);
        if let Some(old) = &previous {
            let revoke = Update::builder()
                .table_name(&self.table)
                .key(PK, s(key_pk(old)))
                .update_expression("SET revoked_at = :now")
                .expression_attribute_values(":now", epoch(now))
                .build()
                .map_err(AppError::internal)?;
            transaction = transaction.transact_items(write(revoke));
        }
        // The account's webhooks were issued beside the old key: they stop with it, until the owner
        // re-binds them. One that was deleted meanwhile fails its condition: the rotation is stale.
        for hash in seen.webhooks.keys() {
            let suspend = Update::builder()
                .table_name(&self.table)
                .key(PK, s(webhook_pk(hash)))
                .update_expression("SET suspended_at = :now")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":now", epoch(now))
                .build()
                .map_err(AppError::internal)?;
            transaction = transaction.transact_items(write(suspend));
        }
        Ok(conditional(transaction.send().await, "rotate API key")?.map(|()| previous))
    }

    /// Counts one failed credential check against `username`'s lockout counter: the count now, or
    /// `None` when no such user exists (nothing is written for a name nobody has).
    pub async fn count_failure(&self, username: &str) -> Result<Option<u64>, AppError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_pk(username)))
            .update_expression("ADD #failures :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#failures", FAILURES)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        Ok(unless_condition_failed(outcome, "count failed login")?
            .map(|output| output.attributes.as_ref().and_then(|item| number(item, FAILURES)).unwrap_or(1)))
    }

    /// Clears `username`'s lockout counter (a full login, or the operator's unlock); whether the
    /// user exists.
    pub async fn clear_failures(&self, username: &str) -> Result<bool, AppError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_pk(username)))
            .update_expression("REMOVE #failures")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#failures", FAILURES)
            .send()
            .await;
        Ok(unless_condition_failed(outcome, "clear failed logins")?.is_some())
    }

    /// Claims the user's reset-mail slot at `now`: succeeds only if no reset mail was sent to them
    /// within `interval` (the conditional write on `reset_mail_at`), so of any number of requests
    /// at once, one mails.
    pub async fn claim_reset_mail(
        &self,
        username: &str,
        now: UnixMillis,
        interval: Duration,
    ) -> Result<bool, AppError> {
        let cutoff = UnixMillis(now.0.saturating_sub(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX)));
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_pk(username)))
            .update_expression("SET reset_mail_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(reset_mail_at) OR reset_mail_at <= :cutoff)",
            )
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":cutoff", n(cutoff.0))
            .send()
            .await;
        Ok(unless_condition_failed(outcome, "claim reset mail")?.is_some())
    }

    /// Replaces the TOTP secret (the operator's re-enrolment). The replay guard stays: steps only
    /// move forward, whatever the secret.
    pub async fn set_totp(&self, username: &str, encrypted_totp: &str) -> Result<(), AppError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_pk(username)))
            .update_expression("SET totp = :totp")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":totp", s(encrypted_totp))
            .send()
            .await
            .map_err(unavailable("set TOTP secret"))?;
        Ok(())
    }

    /// Sets the IP allowlist on the user (the setting) and on its current key (what the gate reads),
    /// together. An empty list removes both. Conditional on the account as `seen`
    /// ([`KEY_STATE_VERSION`]): a key rotated since would otherwise miss the new list.
    pub async fn set_allowlist(&self, seen: &UserRecord, allow: &[String]) -> Result<Conditional<()>, AppError> {
        let key_id = current_key_id(seen)?;
        let with_allow = |builder: aws_sdk_dynamodb::types::builders::UpdateBuilder, set: &str, remove: &str| {
            let builder = if allow.is_empty() {
                builder.update_expression(remove)
            } else {
                builder.update_expression(set).expression_attribute_values(":allow", AttributeValue::Ss(allow.to_vec()))
            };
            builder.expression_attribute_names("#allow", ALLOW)
        };
        let user = unchanged_key_state(
            with_allow(
                Update::builder().table_name(&self.table).key(PK, s(user_pk(&seen.username))),
                "SET #allow = :allow, #version = :next",
                "REMOVE #allow SET #version = :next",
            ),
            seen,
        );
        let key = with_allow(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(key_pk(&key_id)))
                .condition_expression("attribute_exists(pk)"),
            "SET #allow = :allow",
            "REMOVE #allow",
        );
        self.update_user_and_key(user, key, "set IP allowlist").await
    }

    /// The user's update and its current key's, in one transaction.
    async fn update_user_and_key(
        &self,
        user: aws_sdk_dynamodb::types::builders::UpdateBuilder,
        key: aws_sdk_dynamodb::types::builders::UpdateBuilder,
        operation: &'static str,
    ) -> Result<Conditional<()>, AppError> {
        let sent = self
            .client
            .transact_write_items()
            .transact_items(write(user.build().map_err(AppError::internal)?))
            .transact_items(write(key.build().map_err(AppError::internal)?))
            .send()
            .await;
        conditional(sent, operation)
    }

    /// Sets where `seen`'s orders go ([`UserRecord::broker`]) on the user and on its current key,
    /// together, conditional on the account as `seen` ([`KEY_STATE_VERSION`]): a key rotated
    /// meanwhile would otherwise keep trading where the account no longer does.
    pub async fn set_order_destination(&self, seen: &UserRecord, broker: &str) -> Result<Conditional<()>, AppError> {
        let key_id = current_key_id(seen)?;
        let user = unchanged_key_state(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(user_pk(&seen.username)))
                .update_expression("SET #broker = :broker, #version = :next")
                .expression_attribute_names("#broker", BROKER)
                .expression_attribute_values(":broker", s(broker)),
            seen,
        );
        let key = Update::builder()
            .table_name(&self.table)
            .key(PK, s(key_pk(&key_id)))
            .update_expression("SET #broker = :broker")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#broker", BROKER)
            .expression_attribute_values(":broker", s(broker));
        self.update_user_and_key(user, key, "set order destination").await
    }

    /// The user an email address belongs to.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<String>, AppError> {
        Ok(self.item(email_pk(email), "read email index").await?.and_then(|item| string(&item, "user")))
    }

    /// Stores a reset token's hash for `username`, valid until `expires_at`.
    pub async fn put_reset_token(
        &self,
        hash: &TokenHash,
        username: &str,
        now: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<(), AppError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(reset_pk(hash)))
            .item("user", s(username))
            .item("created_at", epoch(now))
            .item(EXPIRES_AT, epoch(expires_at))
            .send()
            .await
            .map_err(unavailable("store reset token"))?;
        Ok(())
    }

    /// The user a live reset token belongs to, without using it up (the form that asks for the
    /// new password is shown first).
    pub async fn peek_reset_token(&self, hash: &TokenHash, now: UnixMillis) -> Result<Option<String>, AppError> {
        let item = self.item(reset_pk(hash), "read reset token").await?;
        Ok(item
            .filter(|item| instant(item, EXPIRES_AT).is_some_and(|at| at > now))
            .and_then(|item| string(&item, "user")))
    }

    /// Uses a reset token up: one conditional delete, so a token works once however many
    /// requests race with it, and never after its expiry even if TTL has not removed it yet.
    /// The token's user, unless the password was set again after the token was issued (another
    /// reset or a change): every outstanding token dies with the password it was meant to replace.
    pub async fn take_reset_token(&self, hash: &TokenHash, now: UnixMillis) -> Result<Option<String>, AppError> {
        let Some(item) = self.take_live_item(reset_pk(hash), now, "use reset token").await? else { return Ok(None) };
        let (Some(username), issued) = (string(&item, "user"), instant(&item, "created_at")) else { return Ok(None) };
        let user = self.user(&username).await?;
        let superseded = user.and_then(|user| user.password_set_at).is_some_and(|set| issued.is_none_or(|at| at < set));
        Ok((!superseded).then_some(username))
    }

    /// Deletes a single-use item if it exists and has not expired, returning what it held: the one
    /// conditional write behind every one-time token.
    pub(crate) async fn take_live_item(
        &self,
        pk: String,
        now: UnixMillis,
        operation: &'static str,
    ) -> Result<Option<Item>, AppError> {
        let outcome = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .condition_expression("attribute_exists(pk) AND #exp > :now")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":now", epoch(now))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        Ok(unless_condition_failed(outcome, operation)?.and_then(|output| output.attributes))
    }

    pub async fn audit(&self, event: &AuditEvent) -> Result<(), AppError> {
        let suffix = hex::encode(crate::crypto::random_bytes::<6>());
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(format!("audit#{}#{suffix}", event.at.0)))
            .item("audit_kind", s(event.kind.as_str()))
            .item("at", n(event.at.0))
            .item("username", s(&event.username))
            .item("ip", s(&event.ip))
            .item("user_agent", s(&event.user_agent))
            .item("outcome", s(event.outcome.as_str()))
            .item("detail", s(&event.detail))
            .item(EXPIRES_AT, epoch(event.at.plus(AUDIT_RETENTION)))
            .send()
            .await
            .map_err(unavailable("write audit record"))?;
        Ok(())
    }

    /// The latest `limit` audit events of one kind, newest first (the `audit` index).
    pub async fn recent_audit(&self, kind: AuditKind, limit: i32) -> Result<Vec<AuditEvent>, AppError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("audit")
            .key_condition_expression("audit_kind = :kind")
            .expression_attribute_values(":kind", s(kind.as_str()))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(unavailable("read audit"))?;
        Ok(output
            .items()
            .iter()
            .filter_map(|item| {
                // Every record is written with one of the two outcomes; one without is not an event.
                let outcome = string(item, "outcome").as_deref().and_then(AuditOutcome::from_stored)?;
                Some(AuditEvent {
                    kind,
                    at: UnixMillis(number(item, "at").unwrap_or_default()),
                    username: string(item, "username").unwrap_or_default(),
                    ip: string(item, "ip").unwrap_or_default(),
                    user_agent: string(item, "user_agent").unwrap_or_default(),
                    outcome,
                    detail: string(item, "detail").unwrap_or_default(),
                })
            })
            .collect())
    }
}

fn reset_pk(hash: &TokenHash) -> String {
    format!("reset#{}", hash.as_str())
}

fn email_pk(email: &str) -> String {
    format!("email#{}", email.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_vocabulary_is_stored_as_before() {
        let kinds = [
            (AuditKind::Login, "login"),
            (AuditKind::Reveal, "reveal"),
            (AuditKind::Reset, "reset"),
            (AuditKind::Password, "password"),
            (AuditKind::ApiKey, "apikey"),
        ];
        for (kind, stored) in kinds {
            assert_eq!(kind.as_str(), stored);
        }
        for (outcome, stored) in [(AuditOutcome::Success, "success"), (AuditOutcome::Failed, "failed")] {
            assert_eq!((outcome.as_str(), AuditOutcome::from_stored(stored)), (stored, Some(outcome)));
        }
        assert_eq!(AuditOutcome::from_stored(""), None);
        assert_eq!(AuditDetail::PasswordOkTotpRequired.to_stored(), "password_ok_totp_required");
        assert_eq!(AuditDetail::InvalidCredentials.to_stored(), "invalid_credentials");
        let allowlist = AuditDetail::Allowlist(vec!["203.0.113.9".into(), "198.51.100.0/24".into()]);
        assert_eq!(allowlist.to_stored(), "allowlist:203.0.113.9,198.51.100.0/24");
        assert_eq!(AuditDetail::Allowlist(Vec::new()).to_stored(), "allowlist:");
    }

    #[test]
    fn debug_leaves_the_password_hash_out() {
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
        let user = UserRecord {
            username: "trader".into(),
            phc: Some(PhcString::from_stored(phc.into())),
            ..UserRecord::default()
        };
        let printed = format!("{user:?}");
        assert!(!printed.contains(phc) && printed.contains("PhcString(..)"), "{printed}");
    }
}
