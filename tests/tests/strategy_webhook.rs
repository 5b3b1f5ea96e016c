//! The strategy webhook, `POST /strategy/webhook/{id}`: a TradingView alert trades on the owner's
//! account by the secret URL alone, with its own rate class. Every test runs on a frozen clock at
//! 10:00 IST on a weekday, so nothing depends on market hours.

use std::net::{IpAddr, SocketAddr};

use kavach_tests::{Reply, call, gateway_with_user, market_morning, new_user, ping_body, post, unique_ip};
use serde_json::{Value, json};
use shared::Deps;

/// A new user's long-only MIS strategy "Breakout" trading 5 SBIN per signal: the owner and the
/// webhook's secret id.
async fn breakout_webhook(deps: &Deps) -> (String, String) {
    let (user, _) = new_user(deps).await;
    let id = kavach_tests::sbin_webhook(deps, &user, "Breakout", 5).await;
    assert_eq!(id.len(), 32);
    (user, id)
}

async fn signal(gateway: SocketAddr, ip: IpAddr, id: &str, body: Value) -> Reply {
    post(gateway, ip, &format!("/strategy/webhook/{id}"), &body.to_string()).await
}

/// The owner's order book, read with a key the test gets by regenerating the owner's (the webhook
/// needs none, so the owner was never given one to keep).
async fn owners_orders(deps: &Deps, gateway: SocketAddr, owner: &str) -> (String, Value) {
    let owner_key = deps.accounts().regenerate_api_key(owner).await.expect("key").0;
    let orders = call(gateway, "orderbook", owner_key.expose(), json!({})).await.body["data"]["orders"].clone();
    (owner_key.expose().to_owned(), orders)
}

#[tokio::test]
async fn signals_to_the_secret_url_trade_on_the_owners_account_only() {
    let (deps, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let (user, id) = breakout_webhook(&deps).await;
    let ip = unique_ip();

    let entry = signal(gateway, ip, &id, json!({ "symbol": "SBIN", "action": "buy" })).await;
    assert_eq!((entry.status, entry.body["message"].as_str()), (200, Some("Order placed for SBIN")), "{}", entry.body);
    let exit = signal(gateway, ip, &id, json!({ "symbol": "SBIN", "action": "SELL" })).await;
    assert_eq!(exit.status, 200, "{}", exit.body);

    // The owner's book has the entry and the exit; the API caller's account is untouched.
    let (owner_key, orders) = owners_orders(&deps, gateway, &user).await;
    assert_eq!(orders.as_array().map(Vec::len), Some(2));
    assert_eq!(orders[0]["strategy"], "Breakout");
    let positions = call(
        gateway,
        "openposition",
        &owner_key,
        json!({ "strategy": "x", "symbol": "SBIN", "exchange": "NSE", "product": "MIS" }),
    )
    .await;
    assert_eq!(positions.body["quantity"], 0, "the SELL signal exited the long");
    let untouched = call(gateway, "orderbook", &key, json!({})).await.body["data"]["orders"].clone();
    assert_eq!(untouched.as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_signal_for_a_symbol_the_strategy_does_not_map_is_400_and_books_nothing() {
    let (deps, gateway, _) = gateway_with_user(&[], market_morning()).await;
    let (user, id) = breakout_webhook(&deps).await;
    let unmapped = signal(gateway, unique_ip(), &id, json!({ "symbol": "INFY", "action": "BUY" })).await;
    assert_eq!(
        (unmapped.status, unmapped.body["message"].as_str()),
        (400, Some("Symbol INFY is not mapped to strategy Breakout"))
    );
    let (_, orders) = owners_orders(&deps, gateway, &user).await;
    assert_eq!(orders.as_array().map(Vec::len), Some(0), "a refused signal books nothing");
}

#[tokio::test]
async fn an_unknown_webhook_id_is_404() {
    let (_, gateway, _) = gateway_with_user(&[], market_morning()).await;
    let forged = signal(
        gateway,
        unique_ip(),
        &hex::encode(shared::crypto::random_bytes::<16>()),
        json!({ "symbol": "SBIN", "action": "BUY" }),
    )
    .await;
    assert_eq!(forged.status, 404);
}

#[tokio::test]
async fn signals_spend_their_own_ids_budget_in_a_class_of_their_own() {
    let (deps, gateway, key) = gateway_with_user(&[("WEBHOOK_RATE_LIMIT", "3 per minute")], market_morning()).await;
    let (_, id) = breakout_webhook(&deps).await;
    let ip = unique_ip();
    for action in ["BUY", "SELL", "BUY"] {
        let reply = signal(gateway, ip, &id, json!({ "symbol": "SBIN", "action": action })).await;
        assert_eq!(reply.status, 200, "{action}: {}", reply.body);
    }
    // Over the id's budget, the signal is refused before its body is read: 429, whatever it says.
    let over = signal(gateway, unique_ip(), &id, json!({ "symbol": "SBIN" })).await;
    assert_eq!(over.status, 429, "the id's fourth signal in a minute, from any address, is over its budget");
    // The address's API budget is another class, unspent by its signals.
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await.status, 200);
    // A made-up id has no budget of the id's to spend: it is a failure of its address (404).
    let forged = signal(
        gateway,
        ip,
        &hex::encode(shared::crypto::random_bytes::<16>()),
        json!({ "symbol": "SBIN", "action": "BUY" }),
    )
    .await;
    assert_eq!(forged.status, 404);
}
