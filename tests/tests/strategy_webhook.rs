//! The strategy webhook, `POST /strategy/webhook/{id}`: a TradingView alert trades on the owner's
//! account by the secret URL alone, with its own rate class. Every test runs on a frozen clock at
//! 10:00 IST on a weekday, so nothing depends on market hours.

use kavach_tests::{call, gateway_with_user, market_morning, new_user, post, unique_ip};
use serde_json::{Value, json};

#[tokio::test]
async fn strategy_webhooks_trade_by_secret_url_refuse_unknown_ids_and_have_their_own_rate_class() {
    let clock = market_morning();
    let (deps, gateway, key) = gateway_with_user(&[("WEBHOOK_RATE_LIMIT", "3 per minute")], clock).await;
    let (user, _) = new_user(&deps).await;
    let webhook = shared::identity::webhooks::Webhook {
        user: user.clone(),
        strategy: "Breakout".into(),
        exchange: shared::trading::orders::Exchange::Nse,
        product: shared::trading::orders::Product::Mis,
        mode: shared::identity::webhooks::Mode::Long,
        symbols: [("SBIN".to_owned(), 5)].into(),
    };
    let id = deps.accounts().create_webhook(&webhook).await.expect("webhook");
    assert_eq!(id.len(), 32);
    let ip = unique_ip();
    let signal = |path: String, body: Value| async move { post(gateway, ip, &path, &body.to_string()).await };
    let url = format!("/strategy/webhook/{id}");

    let entry = signal(url.clone(), json!({ "symbol": "SBIN", "action": "buy" })).await;
    assert_eq!((entry.status, entry.body["message"].as_str()), (200, Some("Order placed for SBIN")), "{}", entry.body);
    let exit = signal(url.clone(), json!({ "symbol": "SBIN", "action": "SELL" })).await;
    assert_eq!(exit.status, 200, "{}", exit.body);
    let unmapped = signal(url.clone(), json!({ "symbol": "INFY", "action": "BUY" })).await;
    assert_eq!(
        (unmapped.status, unmapped.body["message"].as_str()),
        (400, Some("Symbol INFY is not mapped to strategy Breakout"))
    );
    let forged =
        signal(format!("/strategy/webhook/{}", "0".repeat(32)), json!({ "symbol": "SBIN", "action": "BUY" })).await;
    assert_eq!(forged.status, 429, "the fourth signal from one IP in a minute is over the webhook budget");

    let other_ip = unique_ip();
    let forged = post(
        gateway,
        other_ip,
        &format!("/strategy/webhook/{}", "0".repeat(32)),
        &json!({ "symbol": "SBIN", "action": "BUY" }).to_string(),
    )
    .await;
    assert_eq!(forged.status, 404);
    // The owner's book has the entry and the exit; the API caller's account is untouched.
    let owner_key = deps.accounts().regenerate_api_key(&user).await.expect("key").0;
    let orders = call(gateway, "orderbook", owner_key.expose(), json!({})).await.body["data"]["orders"].clone();
    assert_eq!(orders.as_array().map(Vec::len), Some(2));
    assert_eq!(orders[0]["strategy"], "Breakout");
    let positions = call(
        gateway,
        "openposition",
        owner_key.expose(),
        json!({ "strategy": "x", "symbol": "SBIN", "exchange": "NSE", "product": "MIS" }),
    )
    .await;
    assert_eq!(positions.body["quantity"], 0, "the SELL signal exited the long");
    let untouched = call(gateway, "orderbook", &key, json!({})).await.body["data"]["orders"].clone();
    assert_eq!(untouched.as_array().map(Vec::len), Some(0));
}
