//! DynamoDB adapters. Every check-then-act is one conditional write; every read treats an item past
//! its `expires_at` (epoch seconds) as absent, because TTL deletion runs up to days late.

pub mod app_secret;
pub mod bans;
pub mod broker_links;
pub mod identity;
pub mod oauth_state;
pub mod rate_limit;
pub mod sandbox;
pub mod sessions;
pub mod trackers;
pub mod traffic;
pub mod users;

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use crate::core::clock::UnixMillis;
use crate::core::error::AppError;

pub type Item = HashMap<String, AttributeValue>;

/// The partition key attribute of every table.
pub const PK: &str = "pk";
/// The TTL attribute of every table, in epoch seconds.
pub const EXPIRES_AT: &str = "expires_at";

pub fn string(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|value| value.as_s().ok()).cloned()
}

pub fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name).and_then(|value| value.as_n().ok()).and_then(|n| n.parse().ok())
}

/// A string set; absent (DynamoDB has no empty sets) reads as empty.
pub(crate) fn string_set(item: &Item, name: &str) -> Vec<String> {
    item.get(name).and_then(|value| value.as_ss().ok()).cloned().unwrap_or_default()
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// An instant as the tables store it: epoch seconds, the unit of every `expires_at` (TTL) and of
/// the other times in our items.
pub(crate) fn epoch(at: UnixMillis) -> AttributeValue {
    n(at.secs())
}

/// An instant stored by [`epoch`].
pub(crate) fn instant(item: &Item, name: &str) -> Option<UnixMillis> {
    number(item, name).map(UnixMillis::from_secs)
}

/// Any storage failure on the request path: fail closed with 503, keep the detail for the log.
pub fn unavailable<E>(operation: &'static str) -> impl FnOnce(E) -> AppError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |error| AppError::Unavailable(anyhow::Error::new(error).context(operation))
}

/// One strongly consistent `GetItem` by partition key, for the tables keyed by `pk` alone.
pub(crate) async fn get_by_pk(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: String,
    operation: &'static str,
) -> Result<Option<Item>, AppError> {
    let output = client
        .get_item()
        .table_name(table)
        .key(PK, s(pk))
        .consistent_read(true)
        .send()
        .await
        .map_err(unavailable(operation))?;
    Ok(output.item)
}

/// One item a [`get_all`] reads: a table keyed by `pk` alone, and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PointRead {
    pub table: String,
    pub pk: String,
}

/// Why a [`get_all`] failed: DynamoDB answered with an error, which may concern one table only (a
/// missing table, a denied action), or it could not be reached at all, which no other read of the
/// same moment would get past either.
#[derive(Debug)]
pub(crate) enum BatchFailure {
    Answered(AppError),
    Unreachable(AppError),
}

/// How many times [`get_all`] asks again for keys DynamoDB left unprocessed (throttling) before
/// failing: each one is a further round trip, so it is bounded.
const UNPROCESSED_RETRIES: usize = 2;

/// Strongly consistent reads of every item in `reads` in one `BatchGetItem` (one round trip where
/// separate `GetItem`s would each cost a call), in the order of `reads`. The keys must be
/// distinct: DynamoDB refuses a batch that names one twice.
pub(crate) async fn get_all(
    client: &aws_sdk_dynamodb::Client,
    reads: &[PointRead],
    operation: &'static str,
) -> Result<Vec<Option<Item>>, BatchFailure> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    // A gate reads three or four items from one or two tables: a scan over them is cheaper than
    // maps keyed by copies of their names.
    let mut by_table: Vec<(&str, Vec<Item>)> = Vec::with_capacity(2);
    for read in reads {
        let key = HashMap::from([(PK.to_owned(), s(&read.pk))]);
        match by_table.iter_mut().find(|(table, _)| *table == read.table) {
            Some((_, keys)) => keys.push(key),
            None => by_table.push((&read.table, vec![key])),
        }
    }
    let mut pending = by_table
        .into_iter()
        .map(|(table, keys)| {
            let keys = KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build();
            keys.map(|keys| (table.to_owned(), keys))
        })
        .collect::<Result<HashMap<_, _>, _>>()
        .map_err(|error| BatchFailure::Answered(unavailable(operation)(error)))?;
    let mut found: Vec<Option<Item>> = vec![None; reads.len()];
    for _ in 0..=UNPROCESSED_RETRIES {
        let output = client.batch_get_item().set_request_items(Some(pending)).send().await.map_err(|error| {
            let answered = matches!(error, SdkError::ServiceError(_));
            let error = unavailable(operation)(error);
            if answered { BatchFailure::Answered(error) } else { BatchFailure::Unreachable(error) }
        })?;
        for (table, items) in output.responses.unwrap_or_default() {
            for item in items {
                let Some(AttributeValue::S(pk)) = item.get(PK) else { continue };
                if let Some(slot) = reads.iter().position(|read| read.table == table && read.pk == *pk) {
                    found[slot] = Some(item);
                }
            }
        }
        pending = output.unprocessed_keys.unwrap_or_default();
        if pending.values().all(|keys| keys.keys().is_empty()) {
            return Ok(found);
        }
    }
    Err(BatchFailure::Unreachable(AppError::Unavailable(anyhow::anyhow!(
        "{operation}: keys still unprocessed after {UNPROCESSED_RETRIES} retries"
    ))))
}

/// Deletes the item keyed `pk`; returns whether there was one.
pub(crate) async fn delete_by_pk(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: String,
    operation: &'static str,
) -> Result<bool, AppError> {
    let output = client
        .delete_item()
        .table_name(table)
        .key(PK, s(pk))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
        .send()
        .await
        .map_err(unavailable(operation))?;
    Ok(output.attributes.is_some())
}

/// The security table's sparse index of what the dashboard lists: bans and detector records,
/// by list (`listing`), newest first by `listed_at`. Nothing else (offender history, settings) is
/// in it, and the rate-limit counters are not even in the table.
pub(crate) const LISTED_INDEX: &str = "listed";
pub(crate) const LISTING: &str = "listing";

/// Every item of one `listing` in the [`LISTED_INDEX`], newest first: a Query, which reads only
/// that list's items. Eventually consistent (indexes are): a ban appears on the dashboard a moment
/// after it is enforced, which the gate's strongly consistent read by key already does.
pub(crate) async fn query_listing(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    listing: &str,
    operation: &'static str,
) -> Result<Vec<Item>, AppError> {
    let pages = client
        .query()
        .table_name(table)
        .index_name(LISTED_INDEX)
        .key_condition_expression("#listing = :listing")
        .expression_attribute_names("#listing", LISTING)
        .expression_attribute_values(":listing", s(listing))
        .scan_index_forward(false)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    pages.into_iter().map(|item| item.map_err(unavailable(operation))).collect()
}

/// Whether a transaction was cancelled because one of its conditions failed, as opposed to a
/// transient conflict with a concurrent transaction.
pub(crate) fn cancelled_by_condition(error: &SdkError<TransactWriteItemsError>) -> bool {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            cancelled.cancellation_reasons().iter().any(|reason| reason.code() == Some("ConditionalCheckFailed"))
        }
        _ => false,
    }
}

/// A write conditional on what was read.
#[derive(Debug, PartialEq, Eq)]
pub enum Conditional<T> {
    Written(T),
    /// What the write depended on changed since it was read; nothing was written. Read it again
    /// and retry.
    Stale,
}

impl<T> Conditional<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Conditional<U> {
        match self {
            Conditional::Written(value) => Conditional::Written(f(value)),
            Conditional::Stale => Conditional::Stale,
        }
    }
}

/// A conditional transaction's outcome: a failed condition is `Stale`, any other failure means the
/// store was unavailable for `operation`.
pub(crate) fn conditional<T>(
    sent: Result<T, SdkError<TransactWriteItemsError>>,
    operation: &'static str,
) -> Result<Conditional<()>, AppError> {
    match sent {
        Ok(_) => Ok(Conditional::Written(())),
        Err(error) if cancelled_by_condition(&error) => Ok(Conditional::Stale),
        Err(error) => Err(AppError::Unavailable(anyhow::Error::new(error).context(operation))),
    }
}

/// One transaction item from a built put, update or delete.
pub(crate) fn write(item: impl Into<WriteKind>) -> TransactWriteItem {
    match item.into() {
        WriteKind::Put(put) => TransactWriteItem::builder().put(put).build(),
        WriteKind::Update(update) => TransactWriteItem::builder().update(update).build(),
        WriteKind::Delete(delete) => TransactWriteItem::builder().delete(delete).build(),
    }
}

pub(crate) enum WriteKind {
    Put(Put),
    Update(Update),
    Delete(Delete),
}

impl From<Put> for WriteKind {
    fn from(put: Put) -> Self {
        Self::Put(put)
    }
}
impl From<Update> for WriteKind {
    fn from(update: Update) -> Self {
        Self::Update(update)
    }
}
impl From<Delete> for WriteKind {
    fn from(delete: Delete) -> Self {
        Self::Delete(delete)
    }
}

/// A conditional write's outcome: `Ok(None)` when its condition failed (the expected "someone got
/// there first" or "no longer there"), `Ok(Some(output))` when it was applied, and a 503 for any
/// other failure.
pub(crate) fn unless_condition_failed<T, E, R>(
    outcome: Result<T, SdkError<E, R>>,
    operation: &'static str,
) -> Result<Option<T>, AppError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match outcome {
        Ok(output) => Ok(Some(output)),
        Err(error)
            if error.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(None)
        }
        Err(error) => Err(unavailable(operation)(error)),
    }
}
