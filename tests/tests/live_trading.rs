//! Live trading over HTTP through the local gateway, against the local Kite stub: a linked account
//! switched out of analyzer mode sends OpenAlgo's order routes to Kite and reads its books from
//! Kite, in OpenAlgo's live shapes (no `"mode":"analyze"`); switched back, it trades on the
//! sandbox again. An order whose answer is lost is found in Kite's book, never sent twice. A
//! session that ended (at Kite, by Kavach's expiry, by a disconnect) is 403
//! `broker_session_expired`, never `invalid_apikey`.

use std::sync::Arc;
use std::time::Duration;

use kavach_tests::kite_stub::{API_KEY, API_SECRET, KiteStub};
use kavach_tests::{call, config_with, market_morning, new_user, query_param, start_gateway};
use serde_json::{Value, json};
use shared::Deps;
use shared::app::aws::AwsClients;
use shared::broker::BrokerId;
use shared::broker::links::AppCredentials;
use shared::core::clock::ManualClock;
use shared::core::metrics::MetricSink;

/// A gateway whose Kite is the stub, an API user whose Zerodha link is complete, and the stub.
struct Live {
    deps: Arc<Deps>,
    clock: Arc<ManualClock>,
    gateway: std::net::SocketAddr,
    stub: KiteStub,
    user: String,
    key: String,
    /// The metric lines this stack emitted.
    metrics: Arc<std::sync::Mutex<Vec<String>>>,
}

/// The session hash the link's one-time state is bound to: any page session of the user's would
/// do; the API path never sees it.
const LINKING_SESSION: &str = "live-trading-test-session";

impl Live {
    /// Linked, still in analyzer mode.
    async fn linked() -> Self {
        Self::linked_on(market_morning()).await
    }

    /// Linked on `clock`, still in analyzer mode.
    async fn linked_on(clock: Arc<ManualClock>) -> Self {
        let stub = KiteStub::start().await;
        // One test places a score of orders in a second: roomier budgets than a trader's default.
        let config = config_with(&[
            ("KITE_API_ROOT", &stub.root),
            ("KITE_LOGIN_ROOT", &stub.root),
            ("ORDER_RATE_LIMIT", "1000 per minute"),
            ("API_RATE_LIMIT", "1000 per minute"),
        ]);
        let aws = AwsClients::from_env().await;
        let metrics = Arc::new(std::sync::Mutex::new(Vec::new()));
        let deps = shared::app::bootstrap::init_with(config, clock.clone(), aws, MetricSink::Memory(metrics.clone()))
            .await
            .expect("cold start");
        let gateway = start_gateway(deps.clone()).await;
        let (user, key) = new_user(&deps).await;
        link(&deps, &stub, &user).await;
        Self { deps, clock, gateway, stub, user, key, metrics }
    }

    /// Another account on the same stack and stub, linked now and switched to live: its key.
    async fn another_trader(&self) -> (String, String) {
        let (user, key) = new_user(&self.deps).await;
        link(&self.deps, &self.stub, &user).await;
        let switched = call(self.gateway, "analyzer/toggle", &key, json!({ "mode": false })).await;
        assert_eq!(switched.status, 200, "{}", switched.body);
        (user, key)
    }

    /// Linked and switched to live.
    async fn trading() -> Self {
        let live = Self::linked().await;
        let switched = live.ok("analyzer/toggle", json!({ "mode": false })).await;
        assert_eq!(switched["data"]["mode"], "live", "{switched}");
        live
    }

    async fn call(&self, route: &str, body: Value) -> kavach_tests::Reply {
        call(self.gateway, route, &self.key, body).await
    }

    /// `route` answered 200 with `"status":"success"`.
    async fn ok(&self, route: &str, body: Value) -> Value {
        let reply = self.call(route, body).await;
        assert_eq!((reply.status, reply.body["status"].as_str()), (200, Some("success")), "{route}: {}", reply.body);
        reply.body
    }

    async fn orders_sent(&self) -> usize {
        self.stub.calls("/orders/regular*").await.iter().filter(|call| call["method"] == "POST").count()
    }

    /// The order as the stub holds it.
    async fn at_kite(&self, order_id: &str) -> Value {
        let orders = self.stub.control("GET", "orders", json!(null)).await;
        orders
            .as_array()
            .expect("orders")
            .iter()
            .find(|order| order["order_id"] == order_id)
            .cloned()
            .unwrap_or_else(|| panic!("order {order_id} is not at Kite: {orders}"))
    }
}

/// Links `user` to Zerodha at `stub` as the Broker page does: Connect, Kite's Authorize, the callback.
async fn link(deps: &Deps, stub: &KiteStub, user: &str) {
    let links = deps.broker_links().expect("broker links");
    let credentials = AppCredentials::from_form(API_KEY, API_SECRET).expect("credentials");
    let login = links.start(user, LINKING_SESSION, BrokerId::Zerodha, Some(credentials)).await.expect("start");
    let back = stub.authorize(&login).await;
    let (state, token) = (query_param(&back, "state"), query_param(&back, "request_token"));
    links.complete(user, LINKING_SESSION, BrokerId::Zerodha, state.as_deref(), token.as_deref()).await.expect("linked");
}

fn order(symbol: &str, action: &str, quantity: u64, extra: Value) -> Value {
    let mut body = json!({
        "strategy": "live", "exchange": "NSE", "symbol": symbol, "action": action,
        "quantity": quantity, "pricetype": "MARKET", "product": "MIS",
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[tokio::test]
async fn a_live_account_trades_at_kite_and_an_analyzer_one_on_the_sandbox() {
    let live = Live::trading().await;
    let status = live.ok("analyzer", json!({})).await;
    assert_eq!(
        (status["data"]["mode"].as_str(), status["data"]["analyze_mode"].as_bool()),
        (Some("live"), Some(false))
    );

    // placeorder: at Kite, with Kite's id, the MARKET order carrying market protection.
    let placed = live.ok("placeorder", order("SBIN", "BUY", 10, json!({}))).await;
    assert!(placed.get("mode").is_none(), "a live answer carries no analyzer mode: {placed}");
    let order_id = placed["orderid"].as_str().expect("orderid").to_owned();
    let at_kite = live.at_kite(&order_id).await;
    assert_eq!((at_kite["status"].as_str(), at_kite["quantity"].as_u64()), (Some("COMPLETE"), Some(10)), "{at_kite}");
    assert_ne!(at_kite["market_protection"], json!(0), "{at_kite}");
    assert!(at_kite["tag"].as_str().is_some_and(|tag| tag.starts_with("kv") && tag.len() == 20), "{at_kite}");

    // The books are Kite's, in OpenAlgo's shapes.
    let book = live.ok("orderbook", json!({})).await;
    let row = &book["data"]["orders"][0];
    assert_eq!((row["orderid"].as_str(), row["order_status"].as_str()), (Some(order_id.as_str()), Some("complete")));
    assert_eq!(
        (row["symbol"].as_str(), row["action"].as_str(), row["pricetype"].as_str()),
        (Some("SBIN"), Some("BUY"), Some("MARKET"))
    );
    assert_eq!(book["data"]["statistics"]["total_completed_orders"], 1);
    let trades = live.ok("tradebook", json!({})).await;
    assert_eq!(
        (trades["data"][0]["orderid"].as_str(), trades["data"][0]["quantity"].as_f64()),
        (Some(order_id.as_str()), Some(10.0))
    );
    let positions = live.ok("positionbook", json!({})).await;
    assert_eq!(
        (positions["data"][0]["symbol"].as_str(), positions["data"][0]["quantity"].as_i64()),
        (Some("SBIN"), Some(10))
    );
    let open = live
        .ok("openposition", json!({ "strategy": "live", "symbol": "SBIN", "exchange": "NSE", "product": "MIS" }))
        .await;
    assert_eq!(open["quantity"], 10);
    let status = live.ok("orderstatus", json!({ "strategy": "live", "orderid": order_id })).await;
    assert_eq!(status["data"]["order_status"], "complete");
    let holdings = live.ok("holdings", json!({})).await;
    assert_eq!(
        holdings["data"]["holdings"].as_array().map(Vec::len),
        Some(2),
        "the stub's seeded holdings: {holdings}"
    );
    let funds = live.ok("funds", json!({})).await;
    assert_eq!(funds["data"]["utiliseddebits"], "8000.00", "10 × ₹800 bought: {funds}");

    // A resting LIMIT order is modified and cancelled at Kite.
    let limit = live.ok("placeorder", order("INFY", "BUY", 1, json!({ "pricetype": "LIMIT", "price": "1400" }))).await;
    let limit_id = limit["orderid"].as_str().expect("orderid").to_owned();
    assert_eq!(live.at_kite(&limit_id).await["status"], "OPEN");
    let modify = json!({ "strategy": "live", "orderid": limit_id, "exchange": "NSE", "symbol": "INFY", "action": "BUY",
        "product": "MIS", "pricetype": "LIMIT", "price": "1410", "quantity": "2", "disclosed_quantity": "0", "trigger_price": "0" });
    live.ok("modifyorder", modify).await;
    let modified = live.at_kite(&limit_id).await;
    assert_eq!((modified["price"].as_f64(), modified["quantity"].as_u64()), (Some(1410.0), Some(2)), "{modified}");
    live.ok("cancelorder", json!({ "strategy": "live", "orderid": limit_id })).await;
    assert_eq!(live.at_kite(&limit_id).await["status"], "CANCELLED");

    // cancel-all cancels what is open; close flattens the SBIN position with a SELL.
    let resting = live.ok("placeorder", order("TCS", "BUY", 1, json!({ "pricetype": "LIMIT", "price": "3000" }))).await;
    let cancelled = live.ok("cancelallorder", json!({ "strategy": "live" })).await;
    assert_eq!(cancelled["canceled_orders"], json!([resting["orderid"]]), "{cancelled}");
    let closed = live.ok("closeposition", json!({ "strategy": "live" })).await;
    assert_eq!(closed["closed_positions"], 1, "{closed}");
    let close_order = live.at_kite(closed["orderids"][0].as_str().expect("id")).await;
    assert_eq!((close_order["transaction_type"].as_str(), close_order["quantity"].as_u64()), (Some("SELL"), Some(10)));

    // A smart order reads Kite's position: flat now, so position_size 5 buys 5.
    let smart = live.ok("placesmartorder", order("SBIN", "BUY", 5, json!({ "position_size": "5" }))).await;
    assert_eq!(live.at_kite(smart["orderid"].as_str().expect("id")).await["quantity"], 5);
    let matched = live.ok("placesmartorder", order("SBIN", "BUY", 5, json!({ "position_size": "5" }))).await;
    assert_eq!(matched["message"], "Positions Already Matched. No Action needed.");

    // Basket and split: each child its own order at Kite.
    let sent_before = live.orders_sent().await;
    let basket = json!({ "strategy": "live", "orders": [
        { "exchange": "NSE", "symbol": "INFY", "action": "SELL", "quantity": "1", "pricetype": "MARKET", "product": "MIS" },
        { "exchange": "NSE", "symbol": "RELIANCE", "action": "BUY", "quantity": "1", "pricetype": "MARKET", "product": "MIS" },
    ]});
    let basket = live.ok("basketorder", basket).await;
    assert_eq!(basket["results"][0]["symbol"], "RELIANCE", "BUY legs first: {basket}");
    let split = live.ok("splitorder", order("SBIN", "SELL", 5, json!({ "splitsize": "2" }))).await;
    assert_eq!(split["results"].as_array().map(Vec::len), Some(3), "{split}");
    assert_eq!(live.orders_sent().await, sent_before + 5);

    // Back to analyzer mode: orders go to the sandbox, nothing more reaches Kite.
    let switched = live.ok("analyzer/toggle", json!({ "mode": true })).await;
    assert_eq!(switched["data"]["message"], "Analyzer mode switched to analyze");
    let paper = live.ok("placeorder", order("SBIN", "BUY", 1, json!({}))).await;
    assert_eq!(paper["mode"], "analyze", "{paper}");
    assert_eq!(live.orders_sent().await, sent_before + 5, "nothing sent to Kite in analyzer mode");
}

#[tokio::test]
async fn a_live_account_is_quoted_by_kite_equities_and_indices_alike() {
    let live = Live::trading().await;
    let quote = live.ok("quotes", json!({ "symbol": "SBIN", "exchange": "NSE" })).await;
    let data = &quote["data"];
    // The stub quotes SBIN at ₹800 with a 5-paise book around it; the sandbox would not.
    assert_eq!(
        (data["ltp"].as_f64(), data["bid"].as_f64(), data["ask"].as_f64()),
        (Some(800.0), Some(799.95), Some(800.05)),
        "{quote}"
    );
    assert!(quote.get("mode").is_none(), "{quote}");
    let index = live.ok("quotes", json!({ "symbol": "NIFTY", "exchange": "NSE_INDEX" })).await;
    assert_eq!(index["data"]["ltp"], 24000.0, "OpenAlgo's NIFTY is Kite's NIFTY 50: {index}");
    let depth = live.ok("depth", json!({ "symbol": "INFY", "exchange": "NSE" })).await;
    assert_eq!(
        (depth["data"]["bids"].as_array().map(Vec::len), depth["data"]["asks"][0]["price"].as_f64()),
        (Some(5), Some(1500.05)),
        "{depth}"
    );
    assert_eq!(depth["data"]["totalbuyqty"], 1500);
    let symbols = json!({ "symbols": [
        { "symbol": "SBIN", "exchange": "NSE" }, { "symbol": "NOSUCH", "exchange": "NSE" }, { "symbol": "INFY", "exchange": "BSE" },
    ]});
    let quotes_before = live.stub.calls("/quote").await.len();
    let many = live.ok("multiquotes", symbols).await;
    assert_eq!(live.stub.calls("/quote").await.len(), quotes_before + 1, "one call to Kite for all three");
    let results = many["results"].as_array().expect("results");
    assert_eq!(results[0]["data"]["ltp"], 800.0, "{many}");
    assert_eq!(results[1]["error"], "Symbol NOSUCH not found on NSE", "{many}");
    assert_eq!(results[2]["data"]["ltp"], 1500.5, "{many}");
    let unknown = live.call("quotes", json!({ "symbol": "NOSUCH", "exchange": "NSE" })).await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
}

/// The `openalgo` SDK from PyPI (the repository's `.venv`, which `scripts/test` makes) plays the
/// contract's 21 REST steps in live mode against a Zerodha-linked account on the Kite stub.
#[tokio::test]
async fn the_openalgo_sdk_plays_its_21_steps_live_at_kite() {
    let live = Live::linked().await;
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/openalgo_compat.py");
    let host = format!("http://{}", live.gateway);
    let run = tokio::process::Command::new(python)
        .args([script, "--host", &host, "--key", &live.key, "--live"])
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run {python} (run scripts/test once): {error}"));
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{printed}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(printed.contains("openalgo SDK: 21 passed, 0 failed"), "{printed}");
    assert!(live.orders_sent().await >= 10, "the SDK's orders went to Kite");
}

/// The daily rollover (W5): past the boundary, a token linked before it is ended at Kite and
/// dropped here, and its key gets `broker_session_expired`; a trader who linked after the boundary
/// keeps trading; a revoke Kite cannot hear still drops the token here and is metered. A run on a clock of its own, years before the other suites' links, so its
/// rollover can reach none of theirs in the shared table.
#[tokio::test]
async fn the_rollover_ends_tokens_from_before_the_boundary_and_keeps_one_linked_after_it() {
    let early = Arc::new(ManualClock::at(shared::core::clock::UnixMillis(
        (shared::core::ist::ist_midnight_epoch(2020, 5, 1) as u64 + 10 * 3600) * 1000,
    )));
    let live = Live::linked_on(early).await;
    live.ok("analyzer/toggle", json!({ "mode": false })).await;
    live.ok("placeorder", order("SBIN", "BUY", 1, json!({ "product": "CNC" }))).await;
    // The next morning, after SESSION_EXPIRY_TIME (03:00 IST): a second trader links.
    live.clock.advance(Duration::from_secs(20 * 3600));
    let (late_user, late_key) = live.another_trader().await;

    let rollover = live.deps.for_function(rollover::SECRETS);
    let done = kavach_gateway::rollover_pass(&rollover).await.expect("rollover");
    assert!(done.revoked >= 1 && done.not_heard == 0, "{done:?}");
    let deletes = live.stub.calls("/session/token").await;
    assert_eq!(deletes.iter().filter(|c| c["method"] == "DELETE" && c["status"] == 200).count(), 1, "ended at Kite");
    let early_link = live.deps.identity.broker_link(&live.user, BrokerId::Zerodha).await.expect("read").expect("link");
    assert_eq!(early_link.state, shared::store::broker_links::LinkState::Revoked);
    assert!(early_link.encrypted_token.is_none());
    let expired = live.call("placeorder", order("SBIN", "BUY", 1, json!({ "product": "CNC" }))).await;
    assert_eq!(
        (expired.status, expired.body["code"].as_str()),
        (403, Some("broker_session_expired")),
        "{}",
        expired.body
    );

    let late_link = live.deps.identity.broker_link(&late_user, BrokerId::Zerodha).await.expect("read").expect("link");
    assert_eq!(late_link.state, shared::store::broker_links::LinkState::Linked, "linked after the boundary: kept");
    let late = call(live.gateway, "placeorder", &late_key, order("SBIN", "BUY", 1, json!({ "product": "CNC" }))).await;
    assert_eq!(late.status, 200, "{}", late.body);
    let again = kavach_gateway::rollover_pass(&rollover).await.expect("rollover");
    assert_eq!(again.revoked, 0, "nothing more to end: {again:?}");

    // A rollover Kite cannot hear still drops the token here, and meters it for the alarm. (One
    // test: a second one's rollover, on its own early clock, could reach this one's links.)
    let outage = json!({ "method": "DELETE", "path": "/session/token", "preset": "network", "times": 5 });
    live.stub.control("POST", "inject", outage).await;
    live.clock.advance(Duration::from_secs(24 * 3600));
    let unheard = kavach_gateway::rollover_pass(&rollover).await.expect("rollover");
    assert!(unheard.revoked >= 1 && unheard.not_heard >= 1, "{unheard:?}");
    let late_link = live.deps.identity.broker_link(&late_user, BrokerId::Zerodha).await.expect("read").expect("link");
    assert!(late_link.encrypted_token.is_none(), "dropped here all the same");
    let last_error = late_link.last_error.unwrap_or_default();
    assert!(last_error.contains("Not revoked at the broker"), "{last_error}");
    let lines = live.metrics.lock().expect("metric lines").clone();
    assert!(lines.iter().any(|line| line.contains("\"BrokerRevokeFailures\":1")), "{lines:?}");
}

#[tokio::test]
async fn an_order_whose_answer_is_lost_is_answered_from_kites_book_and_sent_once() {
    let live = Live::trading().await;
    let lost = json!({ "method": "POST", "path": "/orders/*", "when": "after", "latency_ms": 7000 });
    live.stub.control("POST", "inject", lost).await;
    let placed = live.ok("placeorder", order("INFY", "BUY", 1, json!({}))).await;
    assert_eq!(live.orders_sent().await, 1, "sent exactly once");
    let order_id = placed["orderid"].as_str().expect("found in the book");
    assert_eq!(live.at_kite(order_id).await["status"], "COMPLETE");
    let book = live.ok("orderbook", json!({})).await;
    assert_eq!(book["data"]["orders"].as_array().map(Vec::len), Some(1), "one order, not two: {book}");
}

#[tokio::test]
async fn an_ended_session_is_403_broker_session_expired_and_nothing_is_sent() {
    let live = Live::trading().await;
    // Ended at Kite (its 06:00 boundary, a logout elsewhere): Kite's TokenException.
    live.stub.control("POST", "expire_sessions", json!({})).await;
    let expired = live.call("placeorder", order("SBIN", "BUY", 1, json!({}))).await;
    assert_eq!(
        (expired.status, expired.body["code"].as_str()),
        (403, Some("broker_session_expired")),
        "{}",
        expired.body
    );
    assert_eq!(live.orders_sent().await, 1, "Kite refused the one attempt");

    // Past Kavach's own expiry for the token: refused here, before any call to Kite.
    let calls = live.stub.calls("/*").await.len();
    live.clock.advance(Duration::from_secs(24 * 3600));
    for route in ["placeorder", "funds", "orderbook"] {
        let body = if route == "placeorder" { order("SBIN", "BUY", 1, json!({})) } else { json!({}) };
        let refused = live.call(route, body).await;
        assert_eq!((refused.status, refused.body["code"].as_str()), (403, Some("broker_session_expired")), "{route}");
    }
    assert_eq!(live.stub.calls("/*").await.len(), calls, "nothing reached Kite");
    // Still live: analyzer mode is the trader's choice, not the session's. Going live again needs a
    // fresh login.
    let again = live.call("analyzer/toggle", json!({ "mode": false })).await;
    assert_eq!(again.body["code"], "broker_session_expired", "{}", again.body);
    live.ok("analyzer/toggle", json!({ "mode": true })).await;
}

#[tokio::test]
async fn a_disconnected_account_is_refused_live_and_a_derivative_is_refused_before_it_is_sent() {
    let live = Live::trading().await;
    let future = order("NIFTY26DECFUT", "BUY", 75, json!({ "exchange": "NFO", "product": "NRML" }));
    let refused = live.call("placeorder", future).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body["message"].as_str().is_some_and(|m| m.contains("NFO")), "{}", refused.body);
    assert_eq!(live.orders_sent().await, 0);

    let links = live.deps.broker_links().expect("links");
    links.disconnect(&live.user, BrokerId::Zerodha).await.expect("disconnected");
    let after = live.call("placeorder", order("SBIN", "BUY", 1, json!({}))).await;
    assert_eq!((after.status, after.body["code"].as_str()), (403, Some("broker_session_expired")), "{}", after.body);
    assert_eq!(live.orders_sent().await, 0);
}
