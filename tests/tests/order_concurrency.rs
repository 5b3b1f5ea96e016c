//! One account's orders under concurrency, and a commit whose answer is lost.
//!
//! - 16 clients each placing 25 MARKET orders at once on one account (its order budget raised so
//!   the limiter refuses none) are all booked: no `account_busy`, no 5xx, every acknowledged order
//!   in the book exactly once and nothing else, and funds, trades and positions agree to the paisa.
//! - A transaction that committed but whose answer was lost (the store answering 500 after
//!   writing, or an SDK retry re-running it without its idempotency token) is read back: the
//!   caller is told the order it got, and the order is booked once.
//!
//! A correctness test: it asserts counts and balances, never times.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use kavach_tests::{Reply, call, client_from, config_with, new_user, post_with, start_gateway, unique_ip, with_key};
use serde_json::{Value, json};
use shared::core::clock::{Clock, UnixMillis};
use shared::core::ist::ist_midnight_epoch;
use shared::trading::orders::Action;
use shared::trading::sandbox::ledger::{STARTING_CAPITAL, Status};

const CLIENTS: usize = 16;
const ORDERS_PER_CLIENT: usize = 25;

/// 10:00 IST on a weekday, moving with real time: order ids carry the time to the decisecond, so a
/// frozen clock would run out of ids after a hundred orders.
#[derive(Debug)]
struct MarketHoursClock {
    start: UnixMillis,
    since: Instant,
}

impl MarketHoursClock {
    fn new() -> Arc<Self> {
        let start = UnixMillis((ist_midnight_epoch(2025, 10, 1) as u64 + 10 * 3600) * 1000);
        Arc::new(Self { start, since: Instant::now() })
    }
}

impl Clock for MarketHoursClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.start.0 + u64::try_from(self.since.elapsed().as_millis()).unwrap_or_default())
    }
}

fn market_order(symbol: &str, action: &str) -> Value {
    json!({ "strategy": "concurrency", "symbol": symbol, "exchange": "NSE", "action": action,
        "quantity": "1", "pricetype": "MARKET", "product": "MIS" })
}

/// Checks the account's stored state against itself, to the paisa: the order book is exactly
/// `acknowledged`, each order has one trade, each position is the sum of its trades, and funds
/// hold exactly what the positions hold.
async fn assert_consistent(deps: &shared::Deps, user: &str, acknowledged: &BTreeSet<String>) {
    let sandbox = deps.sandbox();
    let store = sandbox.store();
    let orders = store.orders_since(user, "0").await.expect("orders");
    let booked: BTreeSet<String> = orders.iter().map(|order| order.id.clone()).collect();
    assert_eq!(orders.len(), booked.len(), "no order id twice");
    assert_eq!(&booked, acknowledged, "the book is exactly the acknowledged orders");
    assert!(orders.iter().all(|order| order.status == Status::Complete), "MARKET orders fill");

    let trades = store.trades_since(user, "0").await.expect("trades");
    let traded: BTreeSet<String> = trades.iter().map(|trade| trade.order_id.clone()).collect();
    assert_eq!((trades.len(), &traded), (orders.len(), &booked), "one trade per order");

    let state = store.account(user).await.expect("account");
    let funds = state.funds.expect("funds");
    let mut from_trades: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for trade in &trades {
        let signed = if trade.action == Action::Buy { trade.quantity } else { -trade.quantity };
        let entry = from_trades.entry(trade.symbol.clone()).or_default();
        entry.0 += signed;
        entry.1 += signed * trade.price;
    }
    let mut held_margin = 0;
    let mut realized = 0;
    for position in &state.positions {
        let (quantity, cost) = from_trades.get(&position.key.symbol).copied().unwrap_or_default();
        assert_eq!(position.quantity, quantity, "{}: the position is the sum of its trades", position.key.symbol);
        if trades.iter().all(|trade| trade.action == Action::Buy) {
            assert_eq!(position.cost, cost, "{}: only buys, so the cost is the sum of theirs", position.key.symbol);
        }
        held_margin += position.margin;
        realized += position.realized_today;
    }
    assert_eq!(state.positions.len(), from_trades.len(), "one position per traded symbol");
    assert_eq!(funds.used_margin, held_margin, "used margin is what the positions hold");
    assert_eq!(funds.realized_total, realized, "realised P&L is the positions'");
    assert_eq!(funds.available + funds.used_margin, STARTING_CAPITAL + funds.realized_total, "nothing created or lost");
}

/// Sends `per_client` orders from each of `clients` clients at once; returns every reply.
async fn burst(
    gateway: std::net::SocketAddr,
    key: &str,
    clients: usize,
    order: impl Fn(usize, usize) -> Value,
) -> Vec<Reply> {
    let tasks: Vec<_> = (0..clients)
        .map(|client_index| {
            let bodies: Vec<String> = (0..ORDERS_PER_CLIENT).map(|n| with_key(key, order(client_index, n))).collect();
            tokio::spawn(async move {
                let client = client_from(unique_ip());
                let mut replies = Vec::with_capacity(bodies.len());
                for body in bodies {
                    let request = client.post(format!("http://{gateway}/api/v1/placeorder")).body(body);
                    replies.push(post_with(request).await);
                }
                replies
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.extend(task.await.expect("client task"));
    }
    replies
}

fn tally(replies: &[Reply]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        let label = match reply.body["code"].as_str() {
            Some(code) => format!("{} {code}", reply.status),
            None => reply.status.to_string(),
        };
        *counts.entry(label).or_insert(0) += 1;
    }
    counts
}

fn acknowledged(replies: &[Reply]) -> BTreeSet<String> {
    replies.iter().filter(|r| r.status == 200).filter_map(|r| r.body["orderid"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn sixteen_clients_placing_25_market_orders_on_one_account_are_all_booked_exactly_once() {
    let overrides = [("ORDER_RATE_LIMIT", "100000 per minute"), ("API_RATE_LIMIT", "100000 per minute")];
    let deps = kavach_tests::cold_start(config_with(&overrides), MarketHoursClock::new()).await;
    let (user, key) = new_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;

    // Opening orders on two symbols: every one of them grows a position.
    let buys = burst(gateway, &key, CLIENTS, |client, n| {
        market_order(if (client + n) % 2 == 0 { "SBIN" } else { "INFY" }, "BUY")
    })
    .await;
    // What was answered is what happened, whatever the answers were; then the answers.
    let mut acknowledged_ids = acknowledged(&buys);
    assert_consistent(&deps, &user, &acknowledged_ids).await;
    let counts = tally(&buys);
    assert_eq!(counts.get("200").copied(), Some(CLIENTS * ORDERS_PER_CLIENT), "every order acknowledged: {counts:?}");
    assert_eq!(acknowledged_ids.len(), CLIENTS * ORDERS_PER_CLIENT, "distinct order ids");

    // Then sells that close the SBIN position (200 held, 200 sold) beside buys that grow INFY: the
    // sells realise P&L at the average they read, and commute with each other as long as none
    // of them closes or reverses the position and nothing grows it meanwhile.
    let mixed = burst(gateway, &key, CLIENTS, |client, _| {
        if client % 2 == 0 { market_order("SBIN", "SELL") } else { market_order("INFY", "BUY") }
    })
    .await;
    acknowledged_ids.extend(acknowledged(&mixed));
    assert_consistent(&deps, &user, &acknowledged_ids).await;
    let counts = tally(&mixed);
    assert_eq!(counts.get("200").copied(), Some(CLIENTS * ORDERS_PER_CLIENT), "every order acknowledged: {counts:?}");
    assert_eq!(acknowledged_ids.len(), 2 * CLIENTS * ORDERS_PER_CLIENT, "distinct order ids");

    // The HTTP views agree with the store.
    let funds = call(gateway, "funds", &key, json!({})).await;
    let (available, used) =
        (funds.body["data"]["availablecash"].as_f64(), funds.body["data"]["utiliseddebits"].as_f64());
    let realized = funds.body["data"]["m2mrealized"].as_f64().unwrap_or_default();
    let total = available.unwrap_or_default() + used.unwrap_or_default() - realized;
    assert!((total - 10_000_000.0).abs() < 0.011, "available + used − realised = start: {}", funds.body);
}

/// Loses the answer of sandbox commits: forwards the transaction, then turns the first
/// `answers_to_lose` answers into a 500, as a store that committed and then failed to say so.
/// With `strip_token`, it also removes the transaction's `ClientRequestToken`, as a store without
/// DynamoDB's idempotency would behave: an SDK retry then runs the transaction again.
#[derive(Debug, Default, Clone)]
struct LoseCommitAnswers {
    answers_to_lose: Arc<AtomicU32>,
    strip_token: Arc<AtomicBool>,
    lost: Arc<AtomicU32>,
}

fn is_sandbox_commit(request: &aws_smithy_runtime_api::http::Request) -> bool {
    let transact = request.headers().get("x-amz-target").is_some_and(|t| t.ends_with("TransactWriteItems"));
    let body = request.body().bytes().unwrap_or_default();
    transact && String::from_utf8_lossy(body).contains("\"o#")
}

/// Marks, in the operation's config bag, a request that is a sandbox commit: by the time its
/// answer arrives the request has been sent and is no longer in the context.
#[derive(Debug, Clone)]
struct SandboxCommit;

impl Storable for SandboxCommit {
    type Storer = StoreReplace<Self>;
}

impl Intercept for LoseCommitAnswers {
    fn name(&self) -> &'static str {
        "LoseCommitAnswers"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        if !is_sandbox_commit(request) {
            return Ok(());
        }
        cfg.interceptor_state().store_put(SandboxCommit);
        if !self.strip_token.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut body: Value = serde_json::from_slice(request.body().bytes().unwrap_or_default())?;
        body.as_object_mut().ok_or("not an object")?.remove("ClientRequestToken");
        let bytes = serde_json::to_vec(&body)?;
        request.headers_mut().insert("content-length", bytes.len().to_string());
        *request.body_mut() = SdkBody::from(bytes);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<SandboxCommit>().is_none() {
            return Ok(());
        }
        let lose = self.answers_to_lose.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if !lose {
            return Ok(());
        }
        self.lost.fetch_add(1, Ordering::SeqCst);
        let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected: committed, answer lost"}"#;
        let response = context.response_mut();
        *response.status_mut() = 500.try_into()?;
        response.headers_mut().insert("content-length", body.len().to_string());
        *response.body_mut() = SdkBody::from(&body[..]);
        Ok(())
    }
}

async fn gateway_losing_answers() -> (Arc<shared::Deps>, std::net::SocketAddr, String, String, LoseCommitAnswers) {
    let fault = LoseCommitAnswers::default();
    let mut aws = shared::app::aws::AwsClients::from_env().await;
    let config = aws.dynamodb.config().to_builder().interceptor(fault.clone()).build();
    aws.dynamodb = aws_sdk_dynamodb::Client::from_conf(config);
    let deps = shared::app::bootstrap::init_with(
        config_with(&[]),
        MarketHoursClock::new(),
        aws,
        shared::core::metrics::MetricSink::Memory(Default::default()),
    )
    .await
    .expect("cold start");
    let (user, key) = new_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;
    (deps, gateway, user, key, fault)
}

#[tokio::test]
async fn a_commit_whose_every_answer_is_lost_is_read_back_and_acknowledged_once() {
    let (deps, gateway, user, key, fault) = gateway_losing_answers().await;
    // Every answer while armed: the SDK's retries and the resend all get a 500, though the first
    // send committed (the emulator answers the token's repeats with that first outcome).
    fault.answers_to_lose.store(1_000, Ordering::SeqCst);
    let reply = call(gateway, "placeorder", &key, market_order("SBIN", "BUY")).await;
    fault.answers_to_lose.store(0, Ordering::SeqCst);
    assert!(fault.lost.load(Ordering::SeqCst) >= 2, "the fault fired on the SDK's retries");
    assert_eq!(reply.status, 200, "the order was booked, so the caller is told so: {}", reply.body);
    let order_id = reply.body["orderid"].as_str().expect("orderid").to_owned();
    assert_consistent(&deps, &user, &BTreeSet::from([order_id])).await;
}

#[tokio::test]
async fn an_sdk_retry_that_reruns_a_committed_transaction_books_nothing_twice() {
    let (deps, gateway, user, key, fault) = gateway_losing_answers().await;
    // The first answer is lost and the retry runs the transaction again (no token): it finds its
    // own order already there, which is read back as the success it is.
    fault.strip_token.store(true, Ordering::SeqCst);
    fault.answers_to_lose.store(1, Ordering::SeqCst);
    let reply = call(gateway, "placeorder", &key, market_order("SBIN", "BUY")).await;
    assert_eq!(fault.lost.load(Ordering::SeqCst), 1, "one answer lost");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let first = reply.body["orderid"].as_str().expect("orderid").to_owned();
    // A SELL goes through the read-first path: the same holds there.
    fault.answers_to_lose.store(1, Ordering::SeqCst);
    let reply = call(gateway, "placeorder", &key, market_order("SBIN", "SELL")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let second = reply.body["orderid"].as_str().expect("orderid").to_owned();
    assert_consistent(&deps, &user, &BTreeSet::from([first, second])).await;
}

/// An account written before funds and positions were sums (one JSON `doc` each, funds locked by
/// `ver`) reads as it did, and its next order migrates what it touches.
#[tokio::test]
async fn an_account_in_the_old_layout_is_read_and_migrated_by_its_next_order() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let deps = kavach_tests::cold_start(config_with(&[]), MarketHoursClock::new()).await;
    let (user, key) = new_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;
    let table = deps.config.tables.sandbox.clone();
    let pk = format!("acct#{user}");
    let session = shared::core::ist::last_boundary(deps.clock.now(), 3 * 3600).0;
    let item = |sk: &str, doc: Value, version: Option<u64>| {
        let mut request = deps
            .aws
            .dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(pk.clone()))
            .item("sk", AttributeValue::S(sk.to_owned()))
            .item("doc", AttributeValue::S(doc.to_string()));
        if let Some(version) = version {
            request = request.item("ver", AttributeValue::N(version.to_string()));
        }
        request.send()
    };
    // 10 SBIN MIS bought at ₹500, ₹1,000 of margin held.
    let funds = json!({ "available": STARTING_CAPITAL - 100_000, "used_margin": 100_000, "realized_total": 0,
        "realized_today": 0, "session": session, "opened_at": session });
    item("a#funds", funds, Some(7)).await.expect("old funds");
    let position = json!({ "key": { "exchange": "NSE", "symbol": "SBIN", "product": "MIS" }, "quantity": 10,
        "average_price": 50_000, "margin": 100_000, "realized_today": 0, "session": session });
    item("a#pos#NSE#SBIN#MIS", position, None).await.expect("old position");

    let funds = call(gateway, "funds", &key, json!({})).await.body["data"].clone();
    assert_eq!((funds["availablecash"].as_f64(), funds["utiliseddebits"].as_f64()), (Some(9_999_000.0), Some(1_000.0)));
    let positions = call(gateway, "positionbook", &key, json!({})).await.body["data"].clone();
    assert_eq!((positions[0]["quantity"].as_i64(), positions[0]["average_price"].as_f64()), (Some(10), Some(500.0)));

    // A BUY first tries the funds as sums, finds the old layout, and migrates it on the read path.
    let buy = call(gateway, "placeorder", &key, market_order("SBIN", "BUY")).await;
    assert_eq!(buy.status, 200, "{}", buy.body);
    let sell = call(gateway, "placeorder", &key, market_order("SBIN", "SELL")).await;
    assert_eq!(sell.status, 200, "{}", sell.body);
    let state = deps.sandbox().store().account(&user).await.expect("account");
    assert_eq!(state.funds_layout, shared::store::sandbox::FundsLayout::Current, "funds migrated");
    assert_eq!(state.positions[0].quantity, 10);
    let stored = |sk: &'static str| {
        let (dynamodb, table, pk) = (deps.aws.dynamodb.clone(), table.clone(), pk.clone());
        async move {
            let output = dynamodb
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(sk.to_owned()))
                .consistent_read(true)
                .send()
                .await
                .expect("get");
            output.item.expect("item")
        }
    };
    for sk in ["a#funds", "a#pos#NSE#SBIN#MIS"] {
        assert!(!stored(sk).await.contains_key("doc"), "{sk} migrated");
    }
    let funds = state.funds.expect("funds");
    assert_eq!(funds.available + funds.used_margin, STARTING_CAPITAL + funds.realized_total, "nothing created or lost");
    assert_eq!(funds.used_margin, state.positions[0].margin);
}
