//! The order routes (`placeorder`, `placesmartorder`, `cancelorder` and the rest) over HTTP through
//! the local gateway: OpenAlgo's validation messages, the content types TradingView sends, the
//! per-order caps, the order rate class under concurrency, the sandbox's fills, and the
//! one-transaction-per-order guarantee with a write failure injected. The account routes they book
//! into are read back to check; their own tests are in `api_account.rs`.
//! Every test runs on a frozen clock at 10:00 IST on a weekday, so nothing depends on market hours.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use futures::StreamExt;
use kavach_tests::{
    Reply, call, client_from, config_with, gateway_with_user, market_morning, new_user, post, post_with, start_gateway,
    unique_ip, with_key,
};
use serde_json::{Value, json};
use shared::core::clock::Clock;

fn sbin(extra: Value) -> Value {
    let mut body = json!({ "strategy": "test", "symbol": "SBIN", "exchange": "NSE", "action": "BUY", "quantity": "1" });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

#[tokio::test]
async fn openalgo_validation_messages_are_400_with_errors_keyed_by_field() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let cases = [
        (sbin(json!({ "quantity": "0" })), "quantity", "Quantity must be a positive number."),
        (
            sbin(json!({ "quantity": "1.5" })),
            "quantity",
            "Fractional quantity (1.5) is not allowed for non-crypto exchanges.",
        ),
        (sbin(json!({ "quantity": "abc" })), "quantity", "Not a valid number."),
        (sbin(json!({ "action": "Buy" })), "action", "Must be one of: BUY, SELL, buy, sell."),
        (
            sbin(json!({ "exchange": "NASDAQ" })),
            "exchange",
            "Must be one of: NSE, NFO, CDS, BSE, BFO, BCD, MCX, NCDEX, NCO, NSE_INDEX, BSE_INDEX, MCX_INDEX, GLOBAL_INDEX, CRYPTO.",
        ),
        (sbin(json!({ "pricetype": "STOP" })), "pricetype", "Must be one of: MARKET, LIMIT, SL, SL-M."),
        (sbin(json!({ "price": "-1" })), "price", "Must be greater than or equal to 0."),
        (sbin(json!({ "target": "5" })), "target", "Unknown field."),
        (
            json!({ "strategy": "test", "exchange": "NSE", "action": "BUY", "quantity": "1" }),
            "symbol",
            "Missing data for required field.",
        ),
    ];
    for (body, field, message) in cases {
        let reply = call(gateway, "placeorder", &key, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.body["errors"][field], json!([message]), "{body}: {}", reply.body);
        assert!(reply.body["message"].as_str().is_some_and(|m| m.contains(message)), "{}", reply.body);
    }
}

/// A TradingView alert for `placesmartorder` as TradingView sends it: `text/plain`, numbers as
/// strings, and a signed decimal target position of -2.
fn tradingview_alert(gateway: SocketAddr, key: &str) -> reqwest::RequestBuilder {
    let body = json!({ "strategy": "TradingView Strategy", "symbol": "SBIN", "exchange": "NSE", "action": "sell",
        "pricetype": "MARKET", "product": "MIS", "quantity": "2", "position_size": "-2.0" });
    client_from(unique_ip())
        .post(format!("http://{gateway}/api/v1/placesmartorder"))
        .header("content-type", "text/plain; charset=utf-8")
        .body(with_key(key, body))
}

/// The MIS position in SBIN the sandbox holds for `key`.
async fn sbin_position(gateway: SocketAddr, key: &str) -> Value {
    let body = json!({ "strategy": "x", "symbol": "SBIN", "exchange": "NSE", "product": "MIS" });
    call(gateway, "openposition", key, body).await.body["quantity"].clone()
}

#[tokio::test]
async fn tradingview_text_plain_bodies_with_string_numbers_and_signed_decimal_position_sizes_work() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let reply = post_with(tradingview_alert(gateway, &key)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body["orderid"].as_str().is_some_and(|id| id.len() == 14));
    assert_eq!(sbin_position(gateway, &key).await, -2);
}

#[tokio::test]
async fn a_smart_order_for_the_position_already_held_is_matched_without_trading() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    // The same alert twice: the first reaches the target position, the second finds it reached.
    assert_eq!(post_with(tradingview_alert(gateway, &key)).await.status, 200);
    let reply = post_with(tradingview_alert(gateway, &key)).await;
    assert_eq!(reply.body["message"], "Positions Already Matched. No Action needed.");
    assert_eq!(sbin_position(gateway, &key).await, -2);
}

#[tokio::test]
async fn malformed_and_empty_bodies_are_400_never_500() {
    let (_, gateway, _) = gateway_with_user(&[], market_morning()).await;
    for body in ["", "{", "[1,2]", "null", "{\"apikey\":"] {
        let reply = post(gateway, unique_ip(), "/api/v1/placeorder", body).await;
        assert_eq!(reply.status, 400, "{body:?}: {}", reply.body);
        assert_eq!(reply.body["status"], "error");
    }
}

#[tokio::test]
async fn a_bad_body_with_a_bad_key_is_400_as_the_schema_is_checked_before_the_key() {
    // As OpenAlgo: the body is validated first, so a bad key is not what the caller hears about.
    let (_, gateway, _) = gateway_with_user(&[], market_morning()).await;
    let reply =
        post(gateway, unique_ip(), "/api/v1/placeorder", &json!({ "apikey": "bad", "quantity": "x" }).to_string())
            .await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn an_unknown_symbol_is_400_naming_the_symbol_and_its_exchange() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let reply = call(gateway, "placeorder", &key, sbin(json!({ "symbol": "NOPE" }))).await;
    assert_eq!((reply.status, reply.body["message"].as_str()), (400, Some("Symbol NOPE not found on NSE")));
}

#[tokio::test]
async fn per_order_caps_refuse_with_the_setting_named() {
    let overrides = [("MAX_ORDER_QUANTITY", "500"), ("MAX_ORDER_VALUE", "100000")];
    let (_, gateway, key) = gateway_with_user(&overrides, market_morning()).await;
    let reply = call(gateway, "placeorder", &key, sbin(json!({ "quantity": "501", "product": "CNC" }))).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["message"], "Quantity 501 exceeds the per-order cap of 500 (MAX_ORDER_QUANTITY)");
    let reply = call(gateway, "placeorder", &key, sbin(json!({ "quantity": "200", "product": "CNC" }))).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("exceeds the per-order cap of ₹100000 (MAX_ORDER_VALUE)"))
    );
    let funds = call(gateway, "funds", &key, json!({})).await;
    assert_eq!(funds.body["data"]["availablecash"], 10_000_000.0, "refused orders block nothing");
}

#[tokio::test]
async fn twenty_concurrent_placeorders_on_a_10_per_second_limit_admit_10_and_book_exactly_those() {
    let (_, gateway, key) = gateway_with_user(&[("ORDER_RATE_LIMIT", "10 per second")], market_morning()).await;
    let client = client_from(unique_ip());
    let body = with_key(&key, sbin(json!({ "product": "MIS" })));
    let requests =
        (0..20).map(|_| post_with(client.post(format!("http://{gateway}/api/v1/placeorder")).body(body.clone())));
    let replies: Vec<Reply> = futures::stream::iter(requests).buffer_unordered(20).collect().await;
    let admitted: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!((admitted.len(), limited), (10, 10), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());

    let book = call(gateway, "orderbook", &key, json!({})).await;
    let orders = book.body["data"]["orders"].as_array().expect("orders").clone();
    assert_eq!(orders.len(), 10, "every admitted order is booked once");
    let positions = call(gateway, "positionbook", &key, json!({})).await;
    assert_eq!(positions.body["data"][0]["quantity"], 10);
    // Margin blocked equals the sum over the fills: no lost update between concurrent writers.
    let margin: f64 = orders.iter().map(|o| (o["price"].as_f64().unwrap_or(0.0) * 100.0 / 5.0).ceil() / 100.0).sum();
    let funds = call(gateway, "funds", &key, json!({})).await;
    let used = funds.body["data"]["utiliseddebits"].as_f64().expect("used");
    assert!((used - margin).abs() < 0.011, "used {used}, blocked {margin}");
    let available = funds.body["data"]["availablecash"].as_f64().expect("available");
    assert!((available + used - 10_000_000.0).abs() < 0.001, "nothing created or lost: {available} + {used}");
}

#[tokio::test]
async fn resting_orders_fill_when_the_fill_engine_finds_the_market_at_their_limit() {
    let clock = market_morning();
    let (deps, gateway, key) = gateway_with_user(&[], clock.clone()).await;
    let instrument = shared::trading::market::instrument("SBIN", shared::trading::orders::Exchange::Nse).expect("SBIN");
    let now = clock.now();
    let (low_at, low) = (1..3_600)
        .map(|s| now.plus(std::time::Duration::from_secs(s)))
        .map(|at| (at, instrument.price_at(at)))
        .fold((now, f64::MAX), |best, x| if x.1 < best.1 { x } else { best });
    assert!(low < instrument.price_at(now));
    let placed = call(
        gateway,
        "placeorder",
        &key,
        sbin(json!({ "pricetype": "LIMIT", "price": low.to_string(), "product": "CNC" })),
    )
    .await;
    let order_id = placed.body["orderid"].as_str().expect("orderid").to_owned();
    let status = |gateway, key: String, order_id: String| async move {
        call(gateway, "orderstatus", &key, json!({ "strategy": "x", "orderid": order_id })).await.body["data"]["order_status"].clone()
    };
    assert_eq!(status(gateway, key.clone(), order_id.clone()).await, "open");

    let engine = fill_engine::FillEngine::new(&deps.config, &deps.aws, clock.clone());
    clock.set(low_at);
    engine.run_once().await.expect("fill pass");
    assert_eq!(status(gateway, key.clone(), order_id.clone()).await, "complete");
    let trades = call(gateway, "tradebook", &key, json!({})).await;
    assert_eq!(trades.body["data"][0]["price"], json!(low), "a resting limit fills at its limit");
}

#[tokio::test]
async fn cancelling_an_unknown_order_is_404_naming_the_order() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let missing = call(gateway, "cancelorder", &key, json!({ "strategy": "x", "orderid": "25100100000000" })).await;
    assert_eq!((missing.status, missing.body["message"].as_str()), (404, Some("Order 25100100000000 not found")));
}

/// Rewrites a `TransactWriteItems` so that its last item (the position) names a table that does
/// not exist: DynamoDB then refuses the whole transaction after the funds, order and trade items.
#[derive(Debug, Default, Clone)]
struct BreakLastTransactItem(Arc<AtomicBool>);

impl Intercept for BreakLastTransactItem {
    fn name(&self) -> &'static str {
        "BreakLastTransactItem"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let transact = request.headers().get("x-amz-target").is_some_and(|t| t.ends_with("TransactWriteItems"));
        if !transact || !self.0.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut body: Value = serde_json::from_slice(request.body().bytes().unwrap_or_default())?;
        let items = body["TransactItems"].as_array_mut().ok_or("no TransactItems")?;
        let last = items.last_mut().ok_or("empty transaction")?;
        last["Put"]["TableName"] = json!("kavach-injected-failure");
        let bytes = serde_json::to_vec(&body)?;
        request.headers_mut().insert("content-length", bytes.len().to_string());
        *request.body_mut() = SdkBody::from(bytes);
        Ok(())
    }
}

#[tokio::test]
async fn a_write_failure_mid_order_leaves_no_order_no_trade_and_no_debit() {
    let sabotage = BreakLastTransactItem::default();
    let mut aws = shared::app::aws::AwsClients::from_env().await;
    let config = aws.dynamodb.config().to_builder().interceptor(sabotage.clone()).build();
    aws.dynamodb = aws_sdk_dynamodb::Client::from_conf(config);
    let deps = shared::app::bootstrap::init_with(
        config_with(&[]),
        market_morning(),
        aws,
        shared::core::metrics::MetricSink::Memory(Default::default()),
    )
    .await
    .expect("cold start");
    let (_, key) = new_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;

    let first = call(gateway, "placeorder", &key, sbin(json!({ "product": "CNC" }))).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let funds_before = call(gateway, "funds", &key, json!({})).await.body["data"].clone();

    sabotage.0.store(true, Ordering::SeqCst);
    let failed = call(gateway, "placeorder", &key, sbin(json!({ "product": "CNC" }))).await;
    sabotage.0.store(false, Ordering::SeqCst);
    assert_eq!((failed.status, failed.body["message"].as_str()), (503, Some("Service Unavailable")), "{}", failed.body);

    let orders = call(gateway, "orderbook", &key, json!({})).await.body["data"]["orders"].clone();
    assert_eq!(orders.as_array().map(Vec::len), Some(1), "no order from the failed write: {orders}");
    let trades = call(gateway, "tradebook", &key, json!({})).await.body["data"].clone();
    assert_eq!(trades.as_array().map(Vec::len), Some(1), "no trade from the failed write");
    let funds_after = call(gateway, "funds", &key, json!({})).await.body["data"].clone();
    assert_eq!(funds_after["availablecash"], funds_before["availablecash"], "no debit from the failed write");
    assert_eq!(funds_after["utiliseddebits"], funds_before["utiliseddebits"]);
    let positions = call(gateway, "positionbook", &key, json!({})).await.body["data"].clone();
    assert_eq!(positions[0]["quantity"], 1);
    // And the account still trades afterwards.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(call(gateway, "placeorder", &key, sbin(json!({ "product": "CNC" }))).await.status, 200);
}

/// A basket's and a split's orders each spend the order budget, as placeorders would; one that
/// needs more than is left is refused whole, before any order is placed.
#[tokio::test]
async fn baskets_and_splits_spend_the_order_budget_by_their_orders_all_or_none() {
    let overrides = [("ORDER_RATE_LIMIT", "5 per hour")];
    let (_, gateway, key) = gateway_with_user(&overrides, market_morning()).await;
    let leg = json!({ "symbol": "SBIN", "exchange": "NSE", "action": "BUY", "quantity": "1", "pricetype": "MARKET", "product": "CNC" });
    let six = json!({ "strategy": "test", "orders": vec![leg.clone(); 6] });
    let refused = call(gateway, "basketorder", &key, six).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (429, Some("rate_limited")), "{:?}", refused.body);
    let book = call(gateway, "orderbook", &key, json!({})).await;
    assert_eq!(book.body["data"]["orders"].as_array().map(Vec::len), Some(0), "nothing was booked: {:?}", book.body);

    let split = sbin(json!({ "quantity": "9", "splitsize": "3", "product": "CNC" }));
    assert_eq!(call(gateway, "splitorder", &key, split).await.status, 200, "three children");
    let two = json!({ "strategy": "test", "orders": vec![leg; 2] });
    assert_eq!(call(gateway, "basketorder", &key, two).await.status, 200, "two more: five in all");
    let sixth = call(gateway, "placeorder", &key, sbin(json!({ "product": "CNC" }))).await;
    assert_eq!(sixth.status, 429, "the budget is shared with placeorder: {:?}", sixth.body);
}
