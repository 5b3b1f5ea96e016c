//! IP bans and the offender history behind their escalation.
//!
//! - `ban#<ip>`: the ban in force. A temporary ban's `expires_at` is its end (TTL removes it later);
//!   a permanent ban has none.
//! - `offender#<ip>`: how many times the IP has been banned. It outlives every ban (a year after the
//!   last offence), so escalation does not depend on a ban row still existing — OpenAlgo deleted the
//!   row on expiry and with it the count, so repeat offenders were rarely escalated.
//!
//! A ban is on the dashboard's list `ban` of the listed index (newest first); the offender
//! history is not listed.
//!
//! A ban is *claimed* with one conditional write that succeeds only when no ban is in force, so any
//! number of concurrent triggers for one IP create one ban and count one offence.

use std::net::IpAddr;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;

use super::{
    EXPIRES_AT, Item, LISTING, PK, epoch, instant, n, number, s, string, unavailable, unless_condition_failed,
};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::core::net::accountable;

/// The `created_by` of a ban an operator imposed (dashboard or CLI).
pub const MANUAL_BAN: &str = "manual";

/// The offender history is kept this long after the last offence.
const OFFENDER_MEMORY: Duration = Duration::from_secs(365 * 86_400);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    pub reason: String,
    /// `manual`, `404_detector`, `api_key_detector`, `login_detector`.
    pub created_by: String,
    pub banned_at: UnixMillis,
    /// `None` is permanent.
    pub expires_at: Option<UnixMillis>,
    /// Which offence of this IP's this ban is (1 for the first).
    pub ban_count: u64,
}

impl Ban {
    pub fn is_active(&self, now: UnixMillis) -> bool {
        self.expires_at.is_none_or(|expires| expires > now)
    }

    pub fn is_permanent(&self) -> bool {
        self.expires_at.is_none()
    }

    /// A manual ban refuses everything from the address. A detector's ban refuses only requests
    /// without a valid credential: a detector counts what anyone can send from an address (a relay
    /// shared with strangers, a page's `<img>` tags in the trader's browser), so its ban must not
    /// refuse the trader's own key, session or webhook from there.
    pub fn refuses_credentials(&self) -> bool {
        self.created_by == MANUAL_BAN
    }

    fn from_item(ip: IpAddr, item: &Item) -> Self {
        Self {
            ip,
            reason: string(item, "reason").unwrap_or_default(),
            created_by: string(item, "created_by").unwrap_or_default(),
            banned_at: instant(item, "banned_at").unwrap_or_default(),
            expires_at: instant(item, EXPIRES_AT),
            ban_count: number(item, "ban_count").unwrap_or(1),
        }
    }
}

/// What a new ban should be, before escalation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanTerms {
    pub reason: String,
    pub created_by: &'static str,
    /// How long it lasts; `None` is permanent.
    pub duration: Option<Duration>,
}

/// The dashboard's list of bans in the security table's listed index.
const BAN_LISTING: &str = "ban";
/// What claiming a ban sets: its terms, and its place in the dashboard's list.
const CLAIM: &str = "#reason = :reason, created_by = :by, banned_at = :at, #listing = :listing, listed_at = :at";

// Keyed by the accountable address: an IPv6 ban covers its /64.
fn ban_key(ip: IpAddr) -> String {
    format!("ban#{}", accountable(ip))
}

fn offender_key(ip: IpAddr) -> String {
    format!("offender#{}", accountable(ip))
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
    /// another container is enforced by this one's very next request, and an unban lifts at once.
    pub async fn active(&self, ip: IpAddr, now: UnixMillis) -> Result<Option<Ban>, AppError> {
        let item = super::get_by_pk(&self.client, &self.table, ban_key(ip), "read ban").await?;
        Ok(Self::in_force(ip, item.as_ref(), now))
    }

    /// The DynamoDB client, for a batch that reads this store's items beside others'.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The read [`BanStore::active`] makes, for a batch of the gate's reads.
    pub(crate) fn read_of(&self, ip: IpAddr) -> super::PointRead {
        super::PointRead { table: self.table.clone(), pk: ban_key(ip) }
    }

    /// The ban in force in `item`, the item [`BanStore::read_of`] names, as [`BanStore::active`] judges it.
    pub(crate) fn in_force(ip: IpAddr, item: Option<&Item>, now: UnixMillis) -> Option<Ban> {
        item.map(|item| Ban::from_item(ip, item)).filter(|ban| ban.is_active(now))
    }

    /// Bans `ip` unless a ban is already in force, counts the offence, and makes the ban permanent
    /// from the `repeat_offender_limit`-th offence on. `None` when a ban was already in force (a
    /// concurrent trigger won): nothing was written and no offence counted. Also `None` when an unban
    /// lifted the ban before its terms settled: the offence stays counted, the ban stays lifted.
    pub async fn impose(
        &self,
        ip: IpAddr,
        terms: &BanTerms,
        repeat_offender_limit: u32,
        now: UnixMillis,
    ) -> Result<Option<Ban>, AppError> {
        let expires_at = terms.duration.map(|duration| now.plus(duration));
        let mut claim = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(ban_key(ip)))
            .condition_expression("attribute_not_exists(pk) OR (attribute_exists(#exp) AND #exp <= :now)")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_names("#listing", LISTING)
            .expression_attribute_values(":listing", s(BAN_LISTING))
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(":reason", s(&terms.reason))
            .expression_attribute_values(":by", s(terms.created_by))
            .expression_attribute_values(":at", epoch(now));
        claim = match expires_at {
            Some(expires) => claim
                .update_expression(format!("SET {CLAIM}, #exp = :exp"))
                .expression_attribute_values(":exp", epoch(expires)),
            None => claim.update_expression(format!("SET {CLAIM} REMOVE #exp")),
        };
        if unless_condition_failed(claim.send().await, "claim ban")?.is_none() {
            return Ok(None);
        }

        let offences = self.record_offence(ip, now).await?;
        let permanent = expires_at.is_none() || offences >= u64::from(repeat_offender_limit.max(1));
        let mut settle = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(ban_key(ip)))
            // Without this, an unban landing between the claim and here would be undone by an
            // unconditional update recreating a bare item: a permanent ban with no reason.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":count", n(offences))
            .return_values(ReturnValue::AllNew);
        settle = if permanent {
            settle
                .update_expression("SET ban_count = :count REMOVE #exp")
                .expression_attribute_names("#exp", EXPIRES_AT)
        } else {
            settle.update_expression("SET ban_count = :count")
        };
        let settled = unless_condition_failed(settle.send().await, "settle ban")?;
        Ok(settled.and_then(|output| output.attributes).map(|item| Ban::from_item(ip, &item)))
    }

    /// Counts one offence for `ip` and returns how many it now has.
    /// A history past its `expires_at` is forgotten even while TTL has not yet removed it: the
    /// count then starts again at one instead of adding to offences older than the memory.
    async fn record_offence(&self, ip: IpAddr, now: UnixMillis) -> Result<u64, AppError> {
        let write = |expression: &str| {
            self.client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(offender_key(ip)))
                .update_expression(expression)
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", epoch(now))
                .expression_attribute_values(":exp", epoch(now.plus(OFFENDER_MEMORY)))
                .return_values(ReturnValue::UpdatedNew)
        };
        let live = write("ADD offences :one SET last_offence_at = :now, #exp = :exp")
            .condition_expression("attribute_not_exists(#exp) OR #exp > :now")
            .send()
            .await;
        let output = match unless_condition_failed(live, "record offence")? {
            Some(output) => output,
            // Expired: the first offence of a new history.
            None => write("SET offences = :one, last_offence_at = :now, #exp = :exp")
                .send()
                .await
                .map_err(unavailable("record offence"))?,
        };
        Ok(output.attributes().and_then(|item| number(item, "offences")).unwrap_or(1))
    }

    /// How many times `ip` has been banned within the offender memory.
    pub async fn offences(&self, ip: IpAddr, now: UnixMillis) -> Result<u64, AppError> {
        let item = super::get_by_pk(&self.client, &self.table, offender_key(ip), "read offender history").await?;
        Ok(item
            .filter(|item| instant(item, EXPIRES_AT).is_none_or(|expires| expires > now))
            .and_then(|item| number(&item, "offences"))
            .unwrap_or(0))
    }

    /// Lifts a ban. The offender history stays. Returns whether a ban existed.
    pub async fn remove(&self, ip: IpAddr) -> Result<bool, AppError> {
        super::delete_by_pk(&self.client, &self.table, ban_key(ip), "delete ban").await
    }

    /// Every ban in force, newest first: a Query of the bans' list, which reads no other item.
    pub async fn list_active(&self, now: UnixMillis) -> Result<Vec<Ban>, AppError> {
        let items = super::query_listing(&self.client, &self.table, BAN_LISTING, "list bans").await?;
        let mut bans: Vec<Ban> = items
            .iter()
            .filter_map(|item| {
                let ip = string(item, PK)?.strip_prefix("ban#")?.parse().ok()?;
                Some(Ban::from_item(ip, item))
            })
            .filter(|ban| ban.is_active(now))
            .collect();
        bans.sort_by_key(|ban| std::cmp::Reverse(ban.banned_at));
        Ok(bans)
    }

    /// Puts every ban that is not yet on the dashboard's list onto it, and returns how many: bans
    /// written before the list existed are enforced but would not be shown. One Scan, run once by
    /// the operator after upgrading (`kavach ban reindex`); each update is idempotent, so a run
    /// cut short is simply run again.
    pub async fn reindex(&self) -> Result<u64, AppError> {
        let pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :prefix) AND attribute_not_exists(#listing)")
            .expression_attribute_names("#listing", LISTING)
            .expression_attribute_values(":prefix", s("ban#"))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        let mut listed = 0;
        for item in pages {
            let item = item.map_err(unavailable("find unlisted bans"))?;
            let Some(pk) = string(&item, PK) else { continue };
            let banned_at = number(&item, "banned_at").unwrap_or(0);
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(pk))
                // An unban in the meantime must not be undone by recreating a bare item.
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET #listing = :listing, listed_at = :at")
                .expression_attribute_names("#listing", LISTING)
                .expression_attribute_values(":listing", s(BAN_LISTING))
                .expression_attribute_values(":at", n(banned_at))
                .send()
                .await;
            if unless_condition_failed(update, "list ban")?.is_some() {
                listed += 1;
            }
        }
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(expires_at: Option<u64>) -> Ban {
        let expires_at = expires_at.map(UnixMillis::from_secs);
        Ban {
            ip: "203.0.113.9".parse().expect("ip"),
            reason: "test".into(),
            created_by: "manual".into(),
            banned_at: UnixMillis(0),
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
