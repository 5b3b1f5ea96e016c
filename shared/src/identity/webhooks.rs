//! OpenAlgo's strategy webhook (`POST /strategy/webhook/<id>`): the id in the URL is the only
//! credential, as in OpenAlgo, but it is a 128-bit random secret rather than a UUID4, only its
//! SHA-256 is stored (a leaked table does not leak live URLs), and the stored hash is compared in
//! constant time.
//!
//! A webhook belongs to one user and one strategy, and maps each allowed symbol to the quantity an
//! entry signal trades. Its mode decides what a signal does (OpenAlgo's LONG / SHORT / BOTH):
//!
//! | mode  | BUY                        | SELL                        |
//! |-------|----------------------------|-----------------------------|
//! | long  | buy the symbol's quantity  | exit: target position 0     |
//! | short | exit: target position 0    | sell the symbol's quantity  |
//! | both  | target `position_size`     | target `position_size`      |
//!
//! A webhook is bound to the API key its owner held when it was created. Regenerating the key
//! suspends every webhook of the account in the same transaction (a suspended one answers 403
//! `webhook_suspended`), so a leaked URL does not outlive the key it was issued beside; the owner
//! re-binds a webhook to the current key explicitly (the API-key page or `kavach webhook rebind`),
//! keeping its URL. The account item indexes its webhooks (`webhook#<hash>` = strategy, at most
//! [`MAX_WEBHOOKS_PER_USER`]) so they can be listed, revoked and suspended without a scan.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::crypto::{ct_eq, random_bytes};
use crate::store::identity::{Conditional, user_pk, webhook_index_attribute as index_attribute, webhook_pk};
use crate::store::users::{UserRecord, unchanged_key_state};
use crate::store::{Item, PK, conditional, instant, s, string, unavailable, write};
use crate::trading::orders::{Exchange, Product};

/// A key rotation suspends every webhook of the account in one transaction (DynamoDB allows 100
/// writes in one), so the number per account is bounded.
pub const MAX_WEBHOOKS_PER_USER: usize = 20;

/// How many hex characters of a webhook's hash name it in lists and commands: enough to be
/// unique within one account, and not the secret.
pub const HANDLE_LEN: usize = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Long,
    Short,
    Both,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub user: String,
    pub strategy: String,
    pub exchange: Exchange,
    pub product: Product,
    pub mode: Mode,
    /// Allowed symbols and the quantity an entry signal trades.
    pub symbols: BTreeMap<String, u64>,
    /// Since the owner's key was regenerated, until the owner re-binds it (not part of the stored
    /// document: a separate attribute the rotation sets).
    #[serde(skip)]
    pub suspended_at: Option<UnixMillis>,
}

/// One of an account's webhooks, as its lists show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSummary {
    /// The first [`HANDLE_LEN`] hex characters of the id's hash.
    pub handle: String,
    pub strategy: String,
    pub suspended_at: Option<UnixMillis>,
}

/// 32 lowercase hex characters; anything else cannot be a webhook id.
pub fn is_well_formed(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn id_hash(id: &str) -> String {
    crate::crypto::sha256_hex(id.as_bytes())
}

/// The handle lists and commands name the webhook with `id` by (never the id itself).
pub fn handle_of(id: &str) -> String {
    handle(&id_hash(id))
}

fn handle(hash: &str) -> String {
    hash.chars().take(HANDLE_LEN).collect()
}

/// The hash a presented id's record and budget are keyed by, when the id is well formed.
pub fn presented_hash(id: &str) -> Option<String> {
    is_well_formed(id).then(|| id_hash(id))
}

#[derive(Clone, Debug)]
pub struct WebhookStore {
    client: Client,
    table: String,
}

impl WebhookStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Stores `webhook` under a fresh id, bound to the key the account holds as `seen`, and indexes
    /// it on the account; returns the id: shown once, never stored.
    pub async fn create(&self, webhook: &Webhook, seen: &UserRecord) -> Result<Conditional<String>, AppError> {
        let key_id = seen.api_key_id.as_deref().ok_or_else(|| AppError::bad_request("This account has no API key"))?;
        let id = hex::encode(random_bytes::<16>());
        let hash = id_hash(&id);
        let doc = serde_json::to_string(webhook).map_err(AppError::internal)?;
        let put = Put::builder()
            .table_name(&self.table)
            .item(PK, s(webhook_pk(&hash)))
            .item("secret_hash", s(&hash))
            .item("user", s(&webhook.user))
            .item("key_id", s(key_id))
            .item("doc", s(doc))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(AppError::internal)?;
        let index = self
            .account_update(seen, "SET #index = :strategy, #version = :next")
            .expression_attribute_names("#index", index_attribute(&hash))
            .expression_attribute_values(":strategy", s(&webhook.strategy));
        self.transact(vec![write(put), write(index.build().map_err(AppError::internal)?)], "store webhook").await.map(
            |written| match written {
                Conditional::Written(()) => Conditional::Written(id),
                Conditional::Stale => Conditional::Stale,
            },
        )
    }

    /// Deletes the webhook with `hash` and its index entry on the account as `seen`.
    pub async fn revoke(&self, seen: &UserRecord, hash: &str) -> Result<Conditional<()>, AppError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(PK, s(webhook_pk(hash)))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(AppError::internal)?;
        let index = self
            .account_update(seen, "REMOVE #index SET #version = :next")
            .expression_attribute_names("#index", index_attribute(hash));
        self.transact(vec![write(delete), write(index.build().map_err(AppError::internal)?)], "revoke webhook").await
    }

    /// Binds the webhook with `hash` to the key the account holds as `seen`, lifting a suspension.
    pub async fn rebind(&self, seen: &UserRecord, hash: &str) -> Result<Conditional<()>, AppError> {
        let key_id = seen.api_key_id.as_deref().ok_or_else(|| AppError::bad_request("This account has no API key"))?;
        let bind = Update::builder()
            .table_name(&self.table)
            .key(PK, s(webhook_pk(hash)))
            .update_expression("SET key_id = :key REMOVE suspended_at")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":key", s(key_id))
            .build()
            .map_err(AppError::internal)?;
        let account = self.account_update(seen, "SET #version = :next").build().map_err(AppError::internal)?;
        self.transact(vec![write(bind), write(account)], "re-bind webhook").await
    }

    /// The account's webhooks as `seen`, each with whether it is suspended (one read each, at once).
    pub async fn list(&self, seen: &UserRecord) -> Result<Vec<WebhookSummary>, AppError> {
        let reads = seen.webhooks.iter().map(|(hash, strategy)| async move {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(PK, s(webhook_pk(hash)))
                .consistent_read(true)
                .send()
                .await
                .map_err(unavailable("read webhook"))?;
            Ok::<_, AppError>(item.item().map(|item| WebhookSummary {
                handle: handle(hash),
                strategy: strategy.clone(),
                suspended_at: instant(item, "suspended_at"),
            }))
        });
        Ok(futures::future::try_join_all(reads).await?.into_iter().flatten().collect())
    }

    /// The hash of the account's webhook that `handle` names.
    pub fn resolve<'u>(seen: &'u UserRecord, handle: &str) -> Result<&'u str, AppError> {
        let handle = handle.trim();
        let mut matches = seen.webhooks.keys().filter(|hash| handle.len() == HANDLE_LEN && hash.starts_with(handle));
        match (matches.next(), matches.next()) {
            (Some(hash), None) => Ok(hash),
            _ => Err(AppError::bad_request(format!("No webhook `{handle}` on this account"))),
        }
    }

    fn account_update(&self, seen: &UserRecord, expression: &str) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        unchanged_key_state(
            Update::builder().table_name(&self.table).key(PK, s(user_pk(&seen.username))).update_expression(expression),
            seen,
        )
    }

    async fn transact(
        &self,
        writes: Vec<TransactWriteItem>,
        operation: &'static str,
    ) -> Result<Conditional<()>, AppError> {
        conditional(self.client.transact_write_items().set_transact_items(Some(writes)).send().await, operation)
    }

    /// The webhook for a presented id's hash ([`presented_hash`]), or `None`. One `GetItem` by the
    /// hash, then a constant-time comparison of the stored hash.
    pub async fn find(&self, hash: &str) -> Result<Option<Webhook>, AppError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(webhook_pk(hash)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable("read webhook"))?;
        let Some(item) = output.item() else { return Ok(None) };
        let stored = string(item, "secret_hash").unwrap_or_default();
        if !ct_eq(stored.as_bytes(), hash.as_bytes()) {
            return Ok(None);
        }
        decode(item).map(Some)
    }
}

fn decode(item: &Item) -> Result<Webhook, AppError> {
    let doc = string(item, "doc").unwrap_or_default();
    let webhook: Webhook = serde_json::from_str(&doc)
        .map_err(|error| AppError::internal(anyhow::Error::new(error).context("webhook record")))?;
    Ok(Webhook { suspended_at: instant(item, "suspended_at"), ..webhook })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_bit_lowercase_hex() {
        assert!(is_well_formed(&"a1".repeat(16)));
        for bad in ["", "A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1", "a1a1", "../../etc/passwd", &"g".repeat(32)] {
            assert!(!is_well_formed(bad), "{bad}");
        }
        assert_ne!(id_hash("a"), id_hash("b"));
        assert_eq!(id_hash("x").len(), 64);
    }
}
