//! Rate-limit counters, in a table of their own: one atomic `UpdateItem … ADD hits :1` per request
//! and counter, returning the new count. The keys, budgets and verdicts are the limiter's
//! (`crate::limits::limiter`).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{EXPIRES_AT, PK, epoch, n, number, s, unavailable};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;

#[derive(Clone, Debug)]
pub struct RateLimitStore {
    client: Client,
    table: String,
}

impl RateLimitStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Adds one to the counter `key`, which TTL may remove after `expires_at`, and returns the new
    /// count.
    pub async fn add_one(&self, key: &str, expires_at: UnixMillis) -> Result<u64, AppError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key))
            .update_expression("ADD hits :one SET #exp = if_not_exists(#exp, :exp)")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", epoch(expires_at))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable("count request"))?;
        // A count the store did not return is treated as over every budget.
        Ok(output.attributes().and_then(|item| number(item, "hits")).unwrap_or(u64::MAX))
    }

    /// Adds `count` to the counter `key` only if it then stays within `limit`: one conditional write, so
    /// concurrent reservations can never overshoot. The new count, or `None` when there was no room
    /// (and nothing was added).
    pub async fn add_if_room(
        &self,
        key: &str,
        count: u64,
        limit: u64,
        expires_at: UnixMillis,
    ) -> Result<Option<u64>, AppError> {
        let Some(room_before) = limit.checked_sub(count) else { return Ok(None) };
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key))
            .update_expression("ADD hits :n SET #exp = if_not_exists(#exp, :exp)")
            .condition_expression("attribute_not_exists(hits) OR hits <= :room")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":n", n(count))
            .expression_attribute_values(":room", n(room_before))
            .expression_attribute_values(":exp", epoch(expires_at))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let updated = super::unless_condition_failed(outcome, "reserve requests")?;
        Ok(updated.map(|output| output.attributes().and_then(|item| number(item, "hits")).unwrap_or(u64::MAX)))
    }

    /// Takes back one hit counted in `key`, leaving no item when it was the only one: a banned
    /// request's hit, counted concurrently with the ban read (see `crate::pipeline::gate`), or a
    /// reservation given back.
    ///
    /// Never more than the one hit this request added, so a counter shared with others (a key id
    /// used from several addresses) keeps their hits: deleting whenever the count was ours would let
    /// a banned address reset a key's budget for its other addresses.
    pub async fn take_back(&self, key: &str) -> Result<(), AppError> {
        // Ours was the only hit: the item goes. (Its count includes ours, so 1 means ours alone.)
        let only = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(key))
            .condition_expression("hits = :one")
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        if super::unless_condition_failed(only, "take back a hit")?.is_some() {
            return Ok(());
        }
        // Others counted too: subtract ours. `attribute_exists` so a counter TTL already removed is
        // not recreated at -1.
        let subtracted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key))
            .update_expression("ADD hits :minus")
            .condition_expression("attribute_exists(hits)")
            .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let Some(output) = super::unless_condition_failed(subtracted, "take back a hit")? else { return Ok(()) };
        if output.attributes().and_then(|item| number(item, "hits")) == Some(0) {
            // Concurrent banned requests each subtracted theirs: the last leaves no item behind.
            let empty = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(key))
                .condition_expression("hits = :zero")
                .expression_attribute_values(":zero", n(0))
                .send()
                .await;
            super::unless_condition_failed(empty, "take back a hit")?;
        }
        Ok(())
    }

    /// The counter `key` so far, 0 when absent.
    pub async fn read(&self, key: &str) -> Result<u64, AppError> {
        let item = super::get_by_pk(&self.client, &self.table, key.to_owned(), "read request count").await?;
        Ok(Self::count_in(item.as_ref()))
    }

    /// The read [`RateLimitStore::read`] makes, for a batch of the gate's reads.
    pub(crate) fn read_of(&self, key: String) -> super::PointRead {
        super::PointRead { table: self.table.clone(), pk: key }
    }

    /// The count in `item`, the item [`RateLimitStore::read_of`] names.
    pub(crate) fn count_in(item: Option<&super::Item>) -> u64 {
        item.and_then(|item| number(item, "hits")).unwrap_or(0)
    }
}
