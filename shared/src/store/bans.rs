//! IP bans: `pk = ban#<ip>`. A permanent ban has no `expires_at`, so TTL never removes it.

use std::net::IpAddr;

use aws_sdk_dynamodb::Client;

use super::{EXPIRES_AT, Item, PK, n, number, s, string, unavailable};
use crate::clock::UnixMillis;
use crate::error::AppError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    pub reason: String,
    /// `manual`, `404_detector`, `api_key_detector`, `login_detector`.
    pub created_by: String,
    pub banned_at: u64,
    /// Epoch seconds; `None` is permanent.
    pub expires_at: Option<u64>,
    pub ban_count: u64,
}

impl Ban {
    pub fn is_active(&self, now: UnixMillis) -> bool {
        self.expires_at.is_none_or(|expires| expires > now.secs())
    }

    fn from_item(ip: IpAddr, item: &Item) -> Self {
        Self {
            ip,
            reason: string(item, "reason").unwrap_or_default(),
            created_by: string(item, "created_by").unwrap_or_default(),
            banned_at: number(item, "banned_at").unwrap_or_default(),
            expires_at: number(item, EXPIRES_AT),
            ban_count: number(item, "ban_count").unwrap_or(1),
        }
    }
}

fn key(ip: IpAddr) -> String {
    format!("ban#{ip}")
}

#[derive(Clone, Debug)]
pub struct BanStore {
    client: Client,
    table: String,
}

impl BanStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// The ban in force for `ip`, if any. Strongly consistent: a ban written a moment ago by
    /// another container is enforced by this one's very next request.
    pub async fn active(&self, ip: IpAddr, now: UnixMillis) -> Result<Option<Ban>, AppError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(key(ip)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable("read ban"))?;
        Ok(output.item().map(|item| Ban::from_item(ip, item)).filter(|ban| ban.is_active(now)))
    }

    /// Writes (or replaces) a ban, counting how many times this IP has been banned.
    pub async fn put(&self, ban: &Ban) -> Result<Ban, AppError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key(ban.ip)))
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_values(":reason", s(&ban.reason))
            .expression_attribute_values(":by", s(&ban.created_by))
            .expression_attribute_values(":at", n(ban.banned_at))
            .expression_attribute_values(":one", n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        update = match ban.expires_at {
            Some(expires) => update
                .update_expression(
                    "SET #reason = :reason, created_by = :by, banned_at = :at, expires_at = :exp ADD ban_count :one",
                )
                .expression_attribute_values(":exp", n(expires)),
            None => update.update_expression(
                "SET #reason = :reason, created_by = :by, banned_at = :at ADD ban_count :one REMOVE expires_at",
            ),
        };
        let output = update.send().await.map_err(unavailable("write ban"))?;
        Ok(output.attributes().map_or_else(|| ban.clone(), |item| Ban::from_item(ban.ip, item)))
    }

    /// Lifts a ban. Returns whether one existed.
    pub async fn remove(&self, ip: IpAddr) -> Result<bool, AppError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(key(ip)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable("delete ban"))?;
        Ok(output.attributes().is_some())
    }

    /// Every ban in force (an operator view; a scan is fine at one trader's scale).
    pub async fn list_active(&self, now: UnixMillis) -> Result<Vec<Ban>, AppError> {
        let pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :prefix)")
            .expression_attribute_values(":prefix", s("ban#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        let mut bans = Vec::new();
        for item in pages {
            let item = item.map_err(unavailable("list bans"))?;
            let ip = string(&item, PK).and_then(|pk| pk.strip_prefix("ban#").and_then(|ip| ip.parse().ok()));
            if let Some(ip) = ip {
                bans.push(Ban::from_item(ip, &item));
            }
        }
        bans.retain(|ban| ban.is_active(now));
        bans.sort_by_key(|ban| std::cmp::Reverse(ban.banned_at));
        Ok(bans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(expires_at: Option<u64>) -> Ban {
        Ban {
            ip: "203.0.113.9".parse().expect("ip"),
            reason: "test".into(),
            created_by: "manual".into(),
            banned_at: 0,
            expires_at,
            ban_count: 1,
        }
    }

    #[test]
    fn expiry_is_exclusive_and_permanent_never_expires() {
        let now = UnixMillis::from_secs(1_000);
        assert!(ban(Some(1_001)).is_active(now));
        assert!(!ban(Some(1_000)).is_active(now));
        assert!(!ban(Some(10)).is_active(now));
        assert!(ban(None).is_active(UnixMillis::from_secs(u64::MAX / 1000)));
    }
}
