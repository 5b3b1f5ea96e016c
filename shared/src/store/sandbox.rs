//! The sandbox broker's state, one partition per account (`acct#<user>`):
//!
//! - `a#funds`: funds as numbers (`avail`, `used`, `rtot`, `rtoday`, `sess`, `opened`) that an
//!   order moves by deltas with `ADD`, on the one condition that the available balance still holds
//!   the margin it blocks (`avail >= :need`). `ver` counts the writes; nothing waits on it.
//! - `a#pos#<exchange>#<symbol>#<product>`: a position as sums (`q` net quantity, `c` signed cost
//!   of the open quantity, `m` margin held) that an order opening or growing it `ADD`s to, on the
//!   condition that the position has not turned the other way; the average is derived at read
//!   time (`c / q`). An order that reduces or reverses it writes it on the condition that it is
//!   exactly as read, since its realised P&L depends on the average.
//! - `o#<order id>`: an order. Order ids start with the IST date and time, so the sort key is
//!   chronological and "today's orders" is one key range. `st` mirrors the status for conditions;
//!   `resting_acct` is present only while the order waits on the market, which makes the `resting`
//!   index sparse: the fill engine reads exactly the orders it may have to fill. `req` names the
//!   request that wrote it, so a commit whose outcome was lost can be read back.
//! - `t#<order id>`: the order's trade (the sandbox fills whole orders).
//!
//! Orders and trades are stored as one JSON document (`doc`) beside the keys and the few
//! attributes that conditions and indexes need.
//!
//! Items written before funds and positions were sums hold one JSON `doc` (and, for funds, the
//! account's old version lock `ver`). They are read as they are, and migrated by the first write
//! that touches them, on the condition that they are still exactly as read.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, Select, TransactWriteItem, Update};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Item, PK, n, number, s, string, unavailable, write};
use crate::core::error::AppError;
use crate::trading::sandbox::ledger::{
    Funds, Guard, Ledger, Order, OrderWrite, Paise, Position, PositionKey, Trade, average_of,
};

const SK: &str = "sk";
const DOC: &str = "doc";
const VERSION: &str = "ver";
const STATUS: &str = "st";
const REQUEST: &str = "req";
const RESTING_ACCOUNT: &str = "resting_acct";
pub const RESTING_INDEX: &str = "resting";
const FUNDS_SK: &str = "a#funds";
const ACCOUNT_STATE_PREFIX: &str = "a#";
const POSITION_PREFIX: &str = "a#pos#";
/// Sorts after every order and trade id.
const ID_CEILING: &str = "~";

// Funds and position attributes.
const AVAILABLE: &str = "avail";
const USED: &str = "used";
const REALIZED_TOTAL: &str = "rtot";
const REALIZED_TODAY: &str = "rtoday";
const SESSION: &str = "sess";
const OPENED: &str = "opened";
const QUANTITY: &str = "q";
const COST: &str = "c";
const MARGIN: &str = "m";
const KEY: &str = "key";
const RESETS: &str = "g";

/// Funds for an order committed without reading the account first: a balance no order reaches,
/// so that only the commit's `avail >= :need` decides.
const ASSUMED_AVAILABLE: Paise = Paise::MAX / 4;

pub fn account_pk(user: &str) -> String {
    format!("acct#{user}")
}

fn position_sk(key: &PositionKey) -> String {
    format!("{POSITION_PREFIX}{}#{}#{}", key.exchange.as_str(), key.symbol, key.product.as_str())
}

/// How the funds item was found, which decides how a commit writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FundsLayout {
    /// No funds yet: the first commit creates them.
    Missing,
    /// The old layout (one `doc`, locked by `ver`): the next commit migrates it.
    Legacy { version: u64 },
    /// Sums: commits `ADD` to them.
    Current,
    /// Not read: the commit `ADD`s as to [`FundsLayout::Current`] and fails if they are not.
    Assumed,
}

/// An account's funds and positions as read, with what a commit needs to know about how they are
/// stored.
#[derive(Clone, Debug)]
pub struct AccountState {
    pub funds: Option<Funds>,
    pub funds_layout: FundsLayout,
    pub positions: Vec<Position>,
    /// The old-layout positions' documents, as read: their migration is conditional on them.
    legacy_positions: BTreeMap<PositionKey, String>,
}

impl AccountState {
    /// The state an opening order is first tried against without reading anything: funds that do
    /// not limit it and no position. The commit's conditions then check what this assumed (funds
    /// in the current layout holding the margin; the position absent or in the order's direction).
    pub fn assumed(now: crate::core::clock::UnixMillis) -> Self {
        let funds = Funds { available: ASSUMED_AVAILABLE, ..Funds::fresh(now) };
        Self {
            funds: Some(funds),
            funds_layout: FundsLayout::Assumed,
            positions: Vec::new(),
            legacy_positions: BTreeMap::new(),
        }
    }
}

/// A commit's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    /// Written (possibly by an earlier attempt whose answer was lost: read back to be sure).
    Done,
    /// A condition failed: nothing was written. Read the account again and retry.
    Stale,
    /// The new order's id was taken by another request's order: nothing was written; retry with
    /// another id.
    IdTaken,
}

/// The request a commit belongs to: its `req` mark on every order it writes, and the attempt,
/// which with it derives the transaction's `ClientRequestToken`.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    pub request: &'a str,
    pub number: u32,
}

impl Attempt<'_> {
    /// At most 36 characters, as DynamoDB requires; the same for every send of this attempt, so
    /// a resend of a transaction that did commit is answered with its first outcome.
    fn token(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{}:{}", self.request, self.number).as_bytes());
        hex::encode(&digest[..16])
    }
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

fn int(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn signed(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(|value| value.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or_default()
}

fn corrupt(what: &'static str) -> AppError {
    AppError::internal(anyhow::anyhow!("sandbox record without {what}"))
}

fn decode_funds(item: &Item) -> Result<(Funds, FundsLayout), AppError> {
    if !item.contains_key(AVAILABLE) {
        let version = number(item, VERSION).unwrap_or_default();
        return Ok((decode(item)?, FundsLayout::Legacy { version }));
    }
    let funds = Funds {
        available: signed(item, AVAILABLE),
        used_margin: signed(item, USED),
        realized_total: signed(item, REALIZED_TOTAL),
        realized_today: signed(item, REALIZED_TODAY),
        session: number(item, SESSION).unwrap_or_default(),
        opened_at: number(item, OPENED).unwrap_or_default(),
    };
    Ok((funds, FundsLayout::Current))
}

/// A position in either layout; `Some(doc)` for the old one.
fn decode_position(item: &Item) -> Result<(Position, Option<String>), AppError> {
    if !item.contains_key(QUANTITY) {
        return Ok((decode(item)?, string(item, DOC)));
    }
    let key: PositionKey = serde_json::from_str(&string(item, KEY).ok_or_else(|| corrupt("a position key"))?)
        .map_err(|error| AppError::internal(anyhow::Error::new(error).context("sandbox position key")))?;
    let (quantity, cost) = (signed(item, QUANTITY), signed(item, COST));
    let position = Position {
        key,
        quantity,
        cost,
        average_price: average_of(cost, quantity),
        resets: number(item, RESETS).unwrap_or_default(),
        margin: signed(item, MARGIN),
        realized_today: signed(item, REALIZED_TODAY),
        session: number(item, SESSION).unwrap_or_default(),
    };
    Ok((position, None))
}

/// An `UpdateItem` in a transaction, assembled clause by clause.
///
/// Every attribute is named through a `#name` placeholder and every value through a `:name_role`
/// one, so no attribute can collide with a reserved word. The clauses are written straight into
/// their expressions, and the placeholders collected into maps that go to the SDK once: a
/// placeholder is formatted once, where going through the SDK's builder for each would copy it
/// again and grow its maps step by step.
struct UpdateBuilder {
    set: String,
    add: String,
    remove: String,
    conditions: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    builder: aws_sdk_dynamodb::types::builders::UpdateBuilder,
}

/// Room for the most placeholders one update of the ledger uses (a position written whole, with
/// its guard), so the maps never grow on the way.
const UPDATE_PLACEHOLDERS: usize = 12;

/// Appends `separator` first unless `clause` is still empty.
fn clause<'a>(clause: &'a mut String, separator: &str) -> &'a mut String {
    if !clause.is_empty() {
        clause.push_str(separator);
    }
    clause
}

/// Appends `#attribute` (no role) or `:attribute_role` to `expression`, without the formatting
/// machinery: a ledger's commit writes some forty of these.
fn refer(expression: &mut String, sigil: char, attribute: &str, role: &str) {
    expression.push(sigil);
    expression.push_str(attribute);
    if !role.is_empty() {
        expression.push('_');
        expression.push_str(role);
    }
}

/// The placeholder [`refer`] writes, on its own.
fn placeholder(sigil: char, attribute: &str, role: &str) -> String {
    let mut text = String::with_capacity(2 + attribute.len() + role.len());
    refer(&mut text, sigil, attribute, role);
    text
}

impl UpdateBuilder {
    fn new(table: &str, pk: &str, sk: &str) -> Self {
        let builder = Update::builder().table_name(table).key(PK, s(pk)).key(SK, s(sk));
        Self {
            set: String::with_capacity(160),
            add: String::with_capacity(80),
            remove: String::new(),
            conditions: String::with_capacity(80),
            names: HashMap::with_capacity(UPDATE_PLACEHOLDERS),
            values: HashMap::with_capacity(UPDATE_PLACEHOLDERS),
            builder,
        }
    }

    /// Names `attribute` as `#attribute` (once, however many clauses use it).
    fn name(&mut self, attribute: &str) {
        if !self.names.values().any(|named| named == attribute) {
            self.names.insert(placeholder('#', attribute, ""), attribute.to_owned());
        }
    }

    /// `:attribute_role` for `value`; the role keeps one attribute's values in different clauses apart.
    fn value(&mut self, attribute: &str, role: &str, value: AttributeValue) {
        self.values.insert(placeholder(':', attribute, role), value);
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        self.name(attribute);
        self.value(attribute, "set", value);
        let set = clause(&mut self.set, ", ");
        refer(set, '#', attribute, "");
        set.push_str(" = ");
        refer(set, ':', attribute, "set");
        self
    }

    fn set_if_absent(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        self.name(attribute);
        self.value(attribute, "init", value);
        let set = clause(&mut self.set, ", ");
        refer(set, '#', attribute, "");
        set.push_str(" = if_not_exists(");
        refer(set, '#', attribute, "");
        set.push_str(", ");
        refer(set, ':', attribute, "init");
        set.push(')');
        self
    }

    fn add(&mut self, attribute: &str, delta: i64) -> &mut Self {
        self.name(attribute);
        self.value(attribute, "add", int(delta));
        let add = clause(&mut self.add, ", ");
        refer(add, '#', attribute, "");
        add.push(' ');
        refer(add, ':', attribute, "add");
        self
    }

    fn remove(&mut self, attribute: &str) -> &mut Self {
        self.name(attribute);
        refer(clause(&mut self.remove, ", "), '#', attribute, "");
        self
    }

    /// A condition in which `#attr` stands for the attribute and `:attr` for `value`.
    fn condition(&mut self, template: &str, attribute: &str, value: Option<AttributeValue>) -> &mut Self {
        self.name(attribute);
        let has_value = value.is_some();
        if let Some(value) = value {
            self.value(attribute, "if", value);
        }
        let condition = clause(&mut self.conditions, " AND ");
        // Every `#attr` and `:attr` in the template, however many there are. A byte scan for the
        // two sigils, not `split` or `find`: their searchers cost more than these short templates.
        let mut rest = template;
        while let Some(at) = rest.bytes().position(|byte| byte == b'#' || byte == b':') {
            condition.push_str(&rest[..at]);
            let from_sigil = &rest[at..];
            rest = if let Some(after) = from_sigil.strip_prefix("#attr") {
                refer(condition, '#', attribute, "");
                after
            } else if let Some(after) = from_sigil.strip_prefix(":attr").filter(|_| has_value) {
                refer(condition, ':', attribute, "if");
                after
            } else {
                condition.push_str(&from_sigil[..1]);
                &from_sigil[1..]
            };
        }
        condition.push_str(rest);
        self
    }

    fn build(self) -> Result<TransactWriteItem, AppError> {
        let mut expression = String::with_capacity(self.set.len() + self.add.len() + self.remove.len() + 20);
        for (verb, parts) in [("SET ", &self.set), ("ADD ", &self.add), ("REMOVE ", &self.remove)] {
            if !parts.is_empty() {
                clause(&mut expression, " ").push_str(verb);
                expression.push_str(parts);
            }
        }
        let mut builder = self
            .builder
            .update_expression(expression)
            .set_expression_attribute_names((!self.names.is_empty()).then_some(self.names))
            .set_expression_attribute_values((!self.values.is_empty()).then_some(self.values));
        if !self.conditions.is_empty() {
            builder = builder.condition_expression(self.conditions);
        }
        Ok(write(builder.build().map_err(AppError::internal)?))
    }
}

impl SandboxStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Funds and every position: one consistent query over the account's `a#` items.
    pub async fn account(&self, user: &str) -> Result<AccountState, AppError> {
        let items = self.query(&account_pk(user), ACCOUNT_STATE_PREFIX, None, true).await?;
        let mut state = AccountState {
            funds: None,
            funds_layout: FundsLayout::Missing,
            positions: Vec::new(),
            legacy_positions: BTreeMap::new(),
        };
        for item in &items {
            match string(item, SK).as_deref() {
                Some(FUNDS_SK) => {
                    let (funds, layout) = decode_funds(item)?;
                    state.funds = Some(funds);
                    state.funds_layout = layout;
                }
                Some(sk) if sk.starts_with(POSITION_PREFIX) => {
                    let (position, legacy) = decode_position(item)?;
                    if let Some(doc) = legacy {
                        state.legacy_positions.insert(position.key.clone(), doc);
                    }
                    state.positions.push(position);
                }
                _ => {}
            }
        }
        Ok(state)
    }

    /// The request that last wrote order `order_id` (`Some(None)` for an order written before
    /// writes were marked), or `None` if there is no such order: how a commit whose answer was
    /// lost learns whether it happened.
    pub async fn order_writer(&self, user: &str, order_id: &str) -> Result<Option<Option<String>>, AppError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(account_pk(user)))
            .key(SK, s(format!("o#{order_id}")))
            .projection_expression("#req")
            .expression_attribute_names("#req", REQUEST)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable("read back sandbox order"))?;
        Ok(output.item().map(|item| string(item, REQUEST)))
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

    /// Writes everything `ledger` changed, as read in `read`, in one transaction with a
    /// `ClientRequestToken` of `attempt`. Funds move by deltas on the condition that the available
    /// balance holds the margin blocked; positions as their [`Guard`] says; new orders and trades
    /// only if their ids are free; updated orders only if they still have the status read.
    ///
    /// When the outcome is unknown (a timeout, a dispatch failure, a 5xx after the SDK's retries,
    /// or a cancellation that a committed earlier send would also cause), the transaction is sent
    /// once more with the same token (DynamoDB answers a repeat with the first outcome) and then
    /// its first order is read back: the answer is what happened, and an error only when nothing
    /// was written.
    pub async fn commit(
        &self,
        user: &str,
        read: &AccountState,
        ledger: &Ledger,
        attempt: Attempt<'_>,
    ) -> Result<Commit, AppError> {
        let pk = account_pk(user);
        let writes = self.writes(&pk, read, ledger, attempt.request)?;
        let first_order = ledger.changes.orders.first().map(|write| match write {
            OrderWrite::Create(order) => (order.id.as_str(), true),
            OrderWrite::Update { order, .. } => (order.id.as_str(), false),
        });
        let token = attempt.token();
        let send = |writes| {
            self.client.transact_write_items().set_transact_items(Some(writes)).client_request_token(&token).send()
        };
        let error = match send(writes).await {
            Ok(_) => return Ok(Commit::Done),
            Err(error) if cancelled(&error) => return self.read_back(user, first_order, attempt.request).await,
            Err(error) => error,
        };
        tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&error), "sandbox commit outcome unknown; resending");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // The same writes again, built afresh rather than kept as a copy every commit would pay
        // for: they are a function of what was read and the ledger, so they come out identical.
        match send(self.writes(&pk, read, ledger, attempt.request)?).await {
            Ok(_) => Ok(Commit::Done),
            Err(again) if cancelled(&again) => self.read_back(user, first_order, attempt.request).await,
            Err(_) => match self.read_back(user, first_order, attempt.request).await? {
                Commit::Done => Ok(Commit::Done),
                Commit::Stale | Commit::IdTaken => Err(unavailable("commit sandbox order")(error)),
            },
        }
    }

    /// Whether `request` wrote the transaction's first order (every write of one request marks
    /// the orders it writes): `Done` if so; `IdTaken` if a new order's id is another request's.
    async fn read_back(
        &self,
        user: &str,
        first_order: Option<(&str, bool)>,
        request: &str,
    ) -> Result<Commit, AppError> {
        let Some((order_id, creates)) = first_order else { return Ok(Commit::Stale) };
        Ok(match self.order_writer(user, order_id).await? {
            Some(Some(writer)) if writer == request => Commit::Done,
            Some(_) if creates => Commit::IdTaken,
            _ => Commit::Stale,
        })
    }

    fn writes(
        &self,
        pk: &str,
        read: &AccountState,
        ledger: &Ledger,
        request: &str,
    ) -> Result<Vec<TransactWriteItem>, AppError> {
        let changes = &ledger.changes;
        let mut writes = Vec::with_capacity(1 + changes.orders.len() + changes.trades.len() + changes.positions.len());
        if changes.funds {
            writes.push(self.funds_write(pk, read, ledger)?);
        }
        for order_write in &changes.orders {
            let (order, expected) = match order_write {
                OrderWrite::Create(order) => (order, None),
                OrderWrite::Update { order, expected } => (order, Some(*expected)),
            };
            let mut put = Put::builder()
                .table_name(&self.table)
                .item(PK, s(pk))
                .item(SK, s(format!("o#{}", order.id)))
                .item(DOC, s(encode(order)?))
                .item(STATUS, s(order.status.as_str()))
                .item(REQUEST, s(request));
            if order.status.is_resting() {
                put = put.item(RESTING_ACCOUNT, s(pk));
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
                .item(PK, s(pk))
                .item(SK, s(format!("t#{}", trade.order_id)))
                .item(DOC, s(encode(trade)?))
                .condition_expression("attribute_not_exists(#sk)")
                .expression_attribute_names("#sk", SK);
            writes.push(write(put.build().map_err(AppError::internal)?));
        }
        let before: BTreeMap<&PositionKey, &Position> =
            read.positions.iter().map(|position| (&position.key, position)).collect();
        for change in &changes.positions {
            let Some(after) = ledger.positions.get(&change.key) else { continue };
            let legacy = read.legacy_positions.get(&change.key);
            writes.push(self.position_write(pk, before.get(&change.key).copied(), legacy, after, change.guard)?);
        }
        Ok(writes)
    }

    fn funds_write(&self, pk: &str, read: &AccountState, ledger: &Ledger) -> Result<TransactWriteItem, AppError> {
        let after = &ledger.funds;
        let mut update = UpdateBuilder::new(&self.table, pk, FUNDS_SK);
        let set_all = |update: &mut UpdateBuilder| {
            update
                .set(AVAILABLE, int(after.available))
                .set(USED, int(after.used_margin))
                .set(REALIZED_TOTAL, int(after.realized_total))
                .set(REALIZED_TODAY, int(after.realized_today))
                .set(SESSION, n(after.session))
                .set(OPENED, n(after.opened_at))
                .add(VERSION, 1);
        };
        match (&read.funds_layout, &read.funds) {
            (FundsLayout::Missing, _) | (_, None) => {
                set_all(&mut update);
                update.condition("attribute_not_exists(#attr)", SK, None);
            }
            (FundsLayout::Legacy { version }, Some(_)) => {
                // Migrates the old document, which the old code locked by `ver`.
                set_all(&mut update);
                update.remove(DOC).condition("#attr = :attr", VERSION, Some(n(*version)));
            }
            (FundsLayout::Current | FundsLayout::Assumed, Some(before)) => {
                let realized = after.realized_total - before.realized_total;
                update
                    .add(AVAILABLE, after.available - before.available)
                    .add(USED, after.used_margin - before.used_margin)
                    .add(VERSION, 1)
                    .condition("#attr >= :attr", AVAILABLE, Some(int(ledger.changes.blocked)));
                if realized != 0 {
                    update.add(REALIZED_TOTAL, realized);
                    if before.session == after.session {
                        update.add(REALIZED_TODAY, realized).condition(
                            "#attr = :attr",
                            SESSION,
                            Some(n(after.session)),
                        );
                    } else {
                        // The first realised P&L of a session starts its day's figure afresh.
                        update.set(REALIZED_TODAY, int(realized)).set(SESSION, n(after.session)).condition(
                            "#attr = :attr",
                            SESSION,
                            Some(n(before.session)),
                        );
                    }
                }
            }
        }
        update.build()
    }

    fn position_write(
        &self,
        pk: &str,
        before: Option<&Position>,
        legacy: Option<&String>,
        after: &Position,
        guard: Guard,
    ) -> Result<TransactWriteItem, AppError> {
        let mut update = UpdateBuilder::new(&self.table, pk, &position_sk(&after.key));
        let key = encode(&after.key)?;
        let set_all = |update: &mut UpdateBuilder| {
            update
                .set(QUANTITY, int(after.quantity))
                .set(COST, int(after.cost))
                .set(MARGIN, int(after.margin))
                .set(REALIZED_TODAY, int(after.realized_today))
                .set(SESSION, n(after.session))
                .set(RESETS, n(after.resets))
                .set(KEY, s(&key));
        };
        match (before, legacy, guard) {
            (_, Some(doc), _) => {
                set_all(&mut update);
                update.remove(DOC).condition("#attr = :attr", DOC, Some(s(doc)));
            }
            (None, None, Guard::Exact) => {
                set_all(&mut update);
                update.condition("attribute_not_exists(#attr)", SK, None);
            }
            (Some(before), None, Guard::Exact) => {
                set_all(&mut update);
                update
                    .condition("#attr = :attr", QUANTITY, Some(int(before.quantity)))
                    .condition("#attr = :attr", COST, Some(int(before.cost)))
                    .condition("#attr = :attr", MARGIN, Some(int(before.margin)));
            }
            (Some(before), None, Guard::Reduce { closed, long }) if before.session == after.session => {
                let (beyond, bound) = if long { ("#attr > :attr", closed) } else { ("#attr < :attr", -closed) };
                update
                    .add(QUANTITY, after.quantity - before.quantity)
                    .add(COST, after.cost - before.cost)
                    .add(MARGIN, after.margin - before.margin)
                    .add(REALIZED_TODAY, after.realized_today - before.realized_today)
                    .condition("#attr = :attr", RESETS, Some(n(before.resets)))
                    .condition(beyond, QUANTITY, Some(int(bound)))
                    .condition("#attr = :attr", SESSION, Some(n(after.session)));
            }
            (before, None, Guard::Reduce { .. }) => {
                // Not in the current layout's session (or not read): only exactly as read.
                set_all(&mut update);
                match before {
                    Some(before) => update
                        .condition("#attr = :attr", QUANTITY, Some(int(before.quantity)))
                        .condition("#attr = :attr", COST, Some(int(before.cost)))
                        .condition("#attr = :attr", MARGIN, Some(int(before.margin))),
                    None => update.condition("attribute_not_exists(#attr)", SK, None),
                };
            }
            (before, None, Guard::Long | Guard::Short) => {
                let (quantity, cost, margin) =
                    before.map_or((0, 0, 0), |before| (before.quantity, before.cost, before.margin));
                let direction = if guard == Guard::Long { ">=" } else { "<=" };
                update
                    .add(QUANTITY, after.quantity - quantity)
                    .add(COST, after.cost - cost)
                    .add(MARGIN, after.margin - margin)
                    .add(RESETS, 1)
                    .set_if_absent(KEY, s(&key))
                    .set_if_absent(SESSION, n(after.session))
                    .set_if_absent(REALIZED_TODAY, int(0))
                    .condition("attribute_not_exists(#attr)", DOC, None)
                    .condition(
                        &format!("(attribute_not_exists(#attr) OR #attr {direction} :attr)"),
                        QUANTITY,
                        Some(int(0)),
                    );
            }
        }
        update.build()
    }
}

/// Whether a transaction was refused as a whole (a condition, or a conflict with a concurrent
/// transaction on one of its items): nothing of this send was written.
fn cancelled(error: &SdkError<TransactWriteItemsError>) -> bool {
    matches!(error.as_service_error(), Some(TransactWriteItemsError::TransactionCanceledException(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_names_each_attribute_once_and_keeps_each_clauses_values_apart() {
        let mut update = UpdateBuilder::new("table", "u#ravi", FUNDS_SK);
        update
            .set(SESSION, n(7))
            .set_if_absent(OPENED, n(1))
            .add(AVAILABLE, -500)
            .add(USED, 500)
            .remove(DOC)
            .condition("#attr >= :attr", AVAILABLE, Some(int(500)))
            .condition("#attr = :attr", SESSION, Some(n(6)))
            .condition("attribute_not_exists(#attr)", VERSION, None)
            .condition("(attribute_not_exists(#attr) OR #attr > :attr)", QUANTITY, Some(int(0)));
        let write = update.build().expect("a complete update");
        let update = write.update.expect("an update");
        assert_eq!(
            update.update_expression,
            "SET #sess = :sess_set, #opened = if_not_exists(#opened, :opened_init) \
             ADD #avail :avail_add, #used :used_add REMOVE #doc"
        );
        assert_eq!(
            update.condition_expression.as_deref(),
            Some(
                "#avail >= :avail_if AND #sess = :sess_if AND attribute_not_exists(#ver) \
                 AND (attribute_not_exists(#q) OR #q > :q_if)"
            )
        );
        let names = update.expression_attribute_names.expect("names");
        let mut named: Vec<_> = names.iter().map(|(placeholder, name)| format!("{placeholder}={name}")).collect();
        named.sort();
        assert_eq!(
            named,
            ["#avail=avail", "#doc=doc", "#opened=opened", "#q=q", "#sess=sess", "#used=used", "#ver=ver"]
        );
        let values = update.expression_attribute_values.expect("values");
        let mut placeholders: Vec<_> = values.keys().map(String::as_str).collect();
        placeholders.sort_unstable();
        assert_eq!(
            placeholders,
            [":avail_add", ":avail_if", ":opened_init", ":q_if", ":sess_if", ":sess_set", ":used_add"]
        );
        assert_eq!(values[":avail_add"], int(-500));
        assert_eq!(values[":sess_if"], n(6));
    }
}
