//! The sandbox broker's state, one partition per account (`acct#<user>`):
//!
//! - `a#funds`: funds, with `ver`, the account's optimistic lock. Every commit rewrites it on the
//!   condition that `ver` is unchanged, so two writers on one account can never interleave.
//! - `a#pos#<exchange>#<symbol>#<product>`: a position.
//! - `o#<order id>`: an order. Order ids start with the IST date and time, so the sort key is
//!   chronological and "today's orders" is one key range. `st` mirrors the status for conditions;
//!   `resting_acct` is present only while the order waits on the market, which makes the `resting`
//!   index sparse: the fill engine reads exactly the orders it may have to fill.
//! - `t#<order id>`: the order's trade (the sandbox fills whole orders).
//!
//! Records are stored as one JSON document (`doc`) beside the keys and the few attributes that
//! conditions and indexes need.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Put, Select};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Item, PK, cancelled_by_condition, n, number, s, string, unavailable, write};
use crate::core::error::AppError;
use crate::trading::sandbox::ledger::{Funds, Ledger, Order, OrderWrite, Position, PositionKey, Trade};

const SK: &str = "sk";
const DOC: &str = "doc";
const VERSION: &str = "ver";
const STATUS: &str = "st";
const RESTING_ACCOUNT: &str = "resting_acct";
pub const RESTING_INDEX: &str = "resting";
const FUNDS_SK: &str = "a#funds";
const ACCOUNT_STATE_PREFIX: &str = "a#";
/// Sorts after every order and trade id.
const ID_CEILING: &str = "~";

pub fn account_pk(user: &str) -> String {
    format!("acct#{user}")
}

fn position_sk(key: &PositionKey) -> String {
    format!("a#pos#{}#{}#{}", key.exchange.as_str(), key.symbol, key.product.as_str())
}

/// An account's funds and positions as read, with the version a commit must still find.
#[derive(Clone, Debug)]
pub struct AccountState {
    pub funds: Option<Funds>,
    pub version: u64,
    pub positions: Vec<Position>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another writer changed the account (or an order id clashed): reload and try again.
    #[error("the account changed since it was read")]
    Conflict,
    #[error(transparent)]
    Store(#[from] AppError),
}

#[derive(Clone, Debug)]
pub struct SandboxStore {
    client: Client,
    table: String,
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, AppError> {
    let doc = string(item, DOC).unwrap_or_default();
    serde_json::from_str(&doc).map_err(|error| AppError::internal(anyhow::Error::new(error).context("sandbox record")))
}

fn encode<T: Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(AppError::internal)
}

impl SandboxStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Funds and every position: one consistent query over the account's `a#` items.
    pub async fn account(&self, user: &str) -> Result<AccountState, AppError> {
        let items = self.query(&account_pk(user), ACCOUNT_STATE_PREFIX, None, true).await?;
        let mut state = AccountState { funds: None, version: 0, positions: Vec::new() };
        for item in &items {
            match string(item, SK).as_deref() {
                Some(FUNDS_SK) => {
                    state.funds = Some(decode(item)?);
                    state.version = number(item, VERSION).unwrap_or_default();
                }
                Some(sk) if sk.starts_with("a#pos#") => state.positions.push(decode(item)?),
                _ => {}
            }
        }
        Ok(state)
    }

    pub async fn order(&self, user: &str, order_id: &str) -> Result<Option<Order>, AppError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(account_pk(user)))
            .key(SK, s(format!("o#{order_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable("read sandbox order"))?;
        output.item().map(decode).transpose()
    }

    /// Orders whose id sorts at or after `from_id`, newest first.
    pub async fn orders_since(&self, user: &str, from_id: &str) -> Result<Vec<Order>, AppError> {
        let items = self.query(&account_pk(user), "o#", Some(from_id), false).await?;
        items.iter().map(decode).collect()
    }

    /// Trades of orders whose id sorts at or after `from_id`, newest first.
    pub async fn trades_since(&self, user: &str, from_id: &str) -> Result<Vec<Trade>, AppError> {
        let items = self.query(&account_pk(user), "t#", Some(from_id), false).await?;
        items.iter().map(decode).collect()
    }

    /// How many orders the account has placed since `from_id`, without reading them.
    pub async fn count_orders_since(&self, user: &str, from_id: &str) -> Result<u64, AppError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(account_pk(user)))
            .expression_attribute_values(":from", s(format!("o#{from_id}")))
            .expression_attribute_values(":to", s(format!("o#{ID_CEILING}")))
            .select(Select::Count)
            .send()
            .await
            .map_err(unavailable("count sandbox orders"))?;
        Ok(u64::try_from(output.count()).unwrap_or_default())
    }

    /// The account's resting orders, from the sparse index (eventually consistent: every write
    /// that acts on one re-checks its status in the transaction).
    pub async fn resting_orders(&self, user: &str) -> Result<Vec<Order>, AppError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(RESTING_INDEX)
            .key_condition_expression("#acct = :acct")
            .expression_attribute_names("#acct", RESTING_ACCOUNT)
            .expression_attribute_values(":acct", s(account_pk(user)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(unavailable("read resting sandbox orders"))?;
        items.iter().map(decode).collect()
    }

    /// Every account's resting orders, for the fill engine: (user, order).
    pub async fn all_resting_orders(&self) -> Result<Vec<(String, Order)>, AppError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .index_name(RESTING_INDEX)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(unavailable("scan resting sandbox orders"))?;
        let mut orders = Vec::with_capacity(items.len());
        for item in &items {
            if let Some(user) = string(item, PK).and_then(|pk| pk.strip_prefix("acct#").map(str::to_owned)) {
                orders.push((user, decode(item)?));
            }
        }
        Ok(orders)
    }

    async fn query(&self, pk: &str, prefix: &str, from_id: Option<&str>, forward: bool) -> Result<Vec<Item>, AppError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .scan_index_forward(forward);
        let request = match from_id {
            Some(from) => request
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .expression_attribute_values(":from", s(format!("{prefix}{from}")))
                .expression_attribute_values(":to", s(format!("{prefix}{ID_CEILING}"))),
            None => request
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
        };
        request.into_paginator().items().send().try_collect().await.map_err(unavailable("read sandbox account"))
    }

    /// Writes everything `ledger` changed in one transaction, on the condition that the account's
    /// version is still `version` and every updated order still has the status it was read with.
    pub async fn commit(&self, user: &str, version: u64, ledger: &Ledger) -> Result<(), CommitError> {
        let pk = account_pk(user);
        let changes = &ledger.changes;
        let mut writes = Vec::with_capacity(1 + changes.orders.len() + changes.trades.len() + changes.positions.len());

        let funds = Put::builder()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(FUNDS_SK))
            .item(DOC, s(encode(&ledger.funds)?))
            .item(VERSION, n(version + 1));
        let funds = if version == 0 {
            funds.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", PK)
        } else {
            funds
                .condition_expression("#ver = :ver")
                .expression_attribute_names("#ver", VERSION)
                .expression_attribute_values(":ver", n(version))
        };
        writes.push(write(funds.build().map_err(AppError::internal)?));

        for order_write in &changes.orders {
            let (order, expected) = match order_write {
                OrderWrite::Create(order) => (order, None),
                OrderWrite::Update { order, expected } => (order, Some(*expected)),
            };
            let mut put = Put::builder()
                .table_name(&self.table)
                .item(PK, s(&pk))
                .item(SK, s(format!("o#{}", order.id)))
                .item(DOC, s(encode(order)?))
                .item(STATUS, s(order.status.as_str()));
            if order.status.is_resting() {
                put = put.item(RESTING_ACCOUNT, s(&pk));
            }
            put = match expected {
                None => put.condition_expression("attribute_not_exists(#sk)").expression_attribute_names("#sk", SK),
                Some(status) => put
                    .condition_expression("#st = :st")
                    .expression_attribute_names("#st", STATUS)
                    .expression_attribute_values(":st", s(status.as_str())),
            };
            writes.push(write(put.build().map_err(AppError::internal)?));
        }
        for trade in &changes.trades {
            let put = Put::builder()
                .table_name(&self.table)
                .item(PK, s(&pk))
                .item(SK, s(format!("t#{}", trade.order_id)))
                .item(DOC, s(encode(trade)?))
                .condition_expression("attribute_not_exists(#sk)")
                .expression_attribute_names("#sk", SK);
            writes.push(write(put.build().map_err(AppError::internal)?));
        }
        for key in &changes.positions {
            let Some(position) = ledger.positions.get(key) else { continue };
            let put = Put::builder()
                .table_name(&self.table)
                .item(PK, s(&pk))
                .item(SK, s(position_sk(key)))
                .item(DOC, s(encode(position)?));
            writes.push(write(put.build().map_err(AppError::internal)?));
        }

        match self.client.transact_write_items().set_transact_items(Some(writes)).send().await {
            Ok(_) => Ok(()),
            Err(error) if cancelled_by_condition(&error) => Err(CommitError::Conflict),
            Err(error) => Err(CommitError::Store(unavailable("commit sandbox order")(error))),
        }
    }
}
