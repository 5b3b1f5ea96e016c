//! Users and API keys in the identity table.
//!
//! - `user#<username>`: the account. `broker` is the broker its orders go to (`sandbox` until one is
//!   linked).
//! - `apikey#<key id>`: one key. `phc` verifies it, `copy` is its Fernet-encrypted plaintext under the
//!   API-key purpose key, `user` and `broker` are denormalised so that the gate's single `GetItem`
//!   yields everything authentication needs. `revoked_at` is set when the key is regenerated or
//!   revoked; the record stays so that the refusal can say why.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::{Item, PK, cancelled_by_condition, epoch, instant, s, string, string_set, unavailable, write};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::crypto::api_key::KeyId;
use crate::crypto::password::PhcString;
use crate::identity::SANDBOX_BROKER;

pub use super::Conditional;

/// The allowlist attribute, on the user (the setting) and copied onto its current key (what the gate
/// reads).
pub(crate) const ALLOW: &str = "allow";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub user: String,
    pub phc: PhcString,
    pub encrypted_copy: String,
    pub broker: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    /// The key's IP allowlist (SEBI static IP), as CIDR ranges; empty means any address.
    pub allow: Vec<String>,
}

impl ApiKeyRecord {
    pub(crate) fn from_item(item: &Item) -> Option<Self> {
        let id = string(item, PK)?.strip_prefix("apikey#").and_then(KeyId::parse)?;
        Some(Self {
            id,
            user: string(item, "user")?,
            phc: PhcString::from_stored(string(item, "phc")?),
            encrypted_copy: string(item, "copy").unwrap_or_default(),
            broker: string(item, "broker").unwrap_or_else(|| SANDBOX_BROKER.into()),
            created_at: instant(item, "created_at").unwrap_or_default(),
            revoked_at: instant(item, "revoked_at"),
            allow: string_set(item, ALLOW),
        })
    }
}

pub(crate) fn key_pk(id: &KeyId) -> String {
    format!("apikey#{id}")
}

pub(crate) fn user_pk(username: &str) -> String {
    format!("user#{username}")
}

/// A strategy webhook's item, by the SHA-256 of its id (`crate::identity::webhooks`).
pub(crate) fn webhook_pk(hash: &str) -> String {
    format!("webhook#{hash}")
}

/// The account item's attribute indexing one of its webhooks: `webhook#<hash>` = the strategy.
pub(crate) const WEBHOOK_INDEX_PREFIX: &str = "webhook#";

pub(crate) fn webhook_index_attribute(hash: &str) -> String {
    format!("{WEBHOOK_INDEX_PREFIX}{hash}")
}

#[derive(Clone, Debug)]
pub struct IdentityStore {
    pub(crate) client: Client,
    pub(crate) table: String,
}

impl IdentityStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// The key record by id: one consistent `GetItem`, whatever the number of keys stored.
    pub async fn api_key(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, AppError> {
        Ok(self.item(key_pk(id), "read API key").await?.as_ref().and_then(ApiKeyRecord::from_item))
    }

    /// The read [`IdentityStore::api_key`] makes, for a batch of the gate's reads; its item parses
    /// with [`ApiKeyRecord::from_item`].
    pub(crate) fn api_key_read(&self, id: &KeyId) -> super::PointRead {
        super::PointRead { table: self.table.clone(), pk: key_pk(id) }
    }

    pub async fn user_exists(&self, username: &str) -> Result<bool, AppError> {
        Ok(self.item(user_pk(username), "read user").await?.is_some())
    }

    /// One consistent `GetItem` by partition key.
    pub async fn item(&self, pk: String, operation: &'static str) -> Result<Option<Item>, AppError> {
        super::get_by_pk(&self.client, &self.table, pk, operation).await
    }

    pub(crate) fn put_key(&self, record: &ApiKeyRecord) -> Result<TransactWriteItem, AppError> {
        let mut put = Put::builder();
        if !record.allow.is_empty() {
            put = put.item(ALLOW, AttributeValue::Ss(record.allow.clone()));
        }
        let put = put
            .table_name(&self.table)
            .item(PK, s(key_pk(&record.id)))
            .item("user", s(&record.user))
            .item("phc", s(record.phc.as_str()))
            .item("copy", s(&record.encrypted_copy))
            .item("broker", s(&record.broker))
            .item("created_at", epoch(record.created_at))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(AppError::internal)?;
        Ok(write(put))
    }

    /// Creates an account together with its first key, in one transaction: both or neither.
    pub async fn create_user_with_key(&self, username: &str, record: &ApiKeyRecord) -> Result<(), AppError> {
        let user = Put::builder()
            .table_name(&self.table)
            .item(PK, s(user_pk(username)))
            .item("username", s(username))
            .item("broker", s(&record.broker))
            .item("api_key_id", s(record.id.as_str()))
            .item("created_at", epoch(record.created_at))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(AppError::internal)?;
        self.client
            .transact_write_items()
            .transact_items(write(user))
            .transact_items(self.put_key(record)?)
            .send()
            .await
            .map_err(|error| {
                // Only a failed `attribute_not_exists` means the user exists; a cancellation for a
                // concurrent transaction is a transient conflict.
                if cancelled_by_condition(&error) {
                    AppError::bad_request(format!("user `{username}` already exists"))
                } else {
                    AppError::Unavailable(anyhow::Error::new(error).context("create user"))
                }
            })?;
        Ok(())
    }

    /// Replaces a password's hash after a parameter upgrade, only if nobody changed it meanwhile:
    /// a login that verified the old password must not undo a password change that raced it.
    pub async fn upgrade_password_hash(
        &self,
        username: &str,
        old_phc: &PhcString,
        new_phc: &PhcString,
    ) -> Result<(), AppError> {
        self.replace_phc(user_pk(username), old_phc, new_phc, "upgrade password hash").await
    }

    async fn replace_phc(
        &self,
        pk: String,
        old_phc: &PhcString,
        new_phc: &PhcString,
        operation: &'static str,
    ) -> Result<(), AppError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .update_expression("SET phc = :new")
            .condition_expression("phc = :old")
            .expression_attribute_values(":new", s(new_phc.as_str()))
            .expression_attribute_values(":old", s(old_phc.as_str()))
            .send()
            .await
            .map_err(unavailable(operation))?;
        Ok(())
    }
}
