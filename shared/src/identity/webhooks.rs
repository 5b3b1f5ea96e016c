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

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use crate::core::error::AppError;
use crate::crypto::{ct_eq, random_bytes};
use crate::store::{Item, PK, s, string, unavailable};
use crate::trading::orders::{Exchange, Product};

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
}

/// 32 lowercase hex characters; anything else cannot be a webhook id.
pub fn is_well_formed(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn id_hash(id: &str) -> String {
    crate::crypto::sha256_hex(id.as_bytes())
}

/// The hash a presented id's record and budget are keyed by, when the id is well formed.
pub fn presented_hash(id: &str) -> Option<String> {
    is_well_formed(id).then(|| id_hash(id))
}

fn webhook_pk(hash: &str) -> String {
    format!("webhook#{hash}")
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

    /// Stores `webhook` under a fresh id and returns the id: shown once, never stored.
    pub async fn create(&self, webhook: &Webhook) -> Result<String, AppError> {
        let id = hex::encode(random_bytes::<16>());
        let hash = id_hash(&id);
        let doc = serde_json::to_string(webhook).map_err(AppError::internal)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(webhook_pk(&hash)))
            .item("secret_hash", s(&hash))
            .item("user", s(&webhook.user))
            .item("doc", s(doc))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(unavailable("store webhook"))?;
        Ok(id)
    }

    /// The webhook for a presented id, or `None`. One `GetItem` by the id's hash, then a
    /// constant-time comparison of the stored hash.
    pub async fn find(&self, presented: &str) -> Result<Option<Webhook>, AppError> {
        if !is_well_formed(presented) {
            return Ok(None);
        }
        let hash = id_hash(presented);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(webhook_pk(&hash)))
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
    serde_json::from_str(&doc).map_err(|error| AppError::internal(anyhow::Error::new(error).context("webhook record")))
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
