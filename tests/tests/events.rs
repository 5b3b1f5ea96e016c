//! Handler tests driven by `events/*.json`: the same API Gateway payloads `cargo lambda invoke`
//! uses, loaded through `lambda_http` and passed straight to the ping handler.

use std::sync::Arc;

use kavach_tests::{cold_start, config_with, deps};
use lambda_http::{Body, Response};
use shared::core::clock::{Clock, SystemClock};
use shared::crypto::api_key::ApiKey;
use shared::store::bans::BanTerms;

fn event(name: &str) -> lambda_http::Request {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path}"));
    lambda_http::request::from_str(&text).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn json(response: &Response<Body>) -> serde_json::Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("json"),
        other => panic!("unexpected body {other:?}"),
    }
}

/// The events carry a fixed key (the one in `ping-ok.json`); make sure its user exists here.
async fn with_fixture_user(deps: &shared::Deps) {
    let body = match event("ping-ok").into_body() {
        Body::Text(text) => text,
        other => panic!("ping-ok body {other:?}"),
    };
    let apikey = serde_json::from_str::<serde_json::Value>(&body).expect("json")["apikey"].as_str().map(str::to_owned);
    let key = ApiKey::parse(&apikey.expect("apikey")).expect("fixture key format");
    match deps.accounts().create_user_with_key("events-fixture", key).await {
        Ok(_) => {}
        Err(error) if error.public_message().contains("already exists") => {}
        Err(error) => panic!("fixture user: {error}"),
    }
}

#[tokio::test]
async fn ok_event_gets_pong() {
    let deps = deps().await;
    with_fixture_user(&deps).await;
    let response = ping::handler(&deps, event("ping-ok")).await;
    assert_eq!(response.status(), 200, "{}", json(&response));
    assert_eq!(json(&response)["data"]["message"], "pong");
    assert_eq!(json(&response)["data"]["broker"], "sandbox");
}

#[tokio::test]
async fn bad_key_event_gets_403() {
    let deps = deps().await;
    with_fixture_user(&deps).await;
    let response = ping::handler(&deps, event("ping-bad-key")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(json(&response)["message"], "Invalid openalgo apikey");
}

#[tokio::test]
async fn banned_ip_event_gets_403_despite_a_forged_forwarding_header() {
    let deps = deps().await;
    with_fixture_user(&deps).await;
    let terms = BanTerms {
        reason: "events fixture".into(),
        created_by: "manual",
        duration: Some(std::time::Duration::from_secs(3600)),
    };
    // `None` when an earlier run against this emulator already banned the fixture address.
    deps.bans.impose("203.0.113.66".parse().expect("ip"), &terms, 3, SystemClock.now()).await.expect("ban");
    let response = ping::handler(&deps, event("ping-banned-ip")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(json(&response)["message"], "Access Denied: Your IP has been banned");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn malformed_body_event_gets_400() {
    let deps = deps().await;
    let response = ping::handler(&deps, event("ping-malformed-body")).await;
    assert_eq!(response.status(), 400);
    assert!(json(&response)["message"].as_str().expect("message").contains("not valid JSON"));
}

#[tokio::test]
async fn rate_limited_event_gets_429_on_the_second_call() {
    let deps = cold_start(config_with(&[("API_RATE_LIMIT", "1 per hour")]), Arc::new(SystemClock)).await;
    with_fixture_user(&deps).await;
    let _first = ping::handler(&deps, event("ping-rate-limited")).await;
    let second = ping::handler(&deps, event("ping-rate-limited")).await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn tradingview_placeorder_event_books_an_order_the_orderbook_event_lists() {
    let deps = deps().await;
    with_fixture_user(&deps).await;
    let placed = orders::handler(&deps, event("placeorder-tradingview")).await;
    assert_eq!(placed.status(), 200, "{}", json(&placed));
    let order_id = json(&placed)["orderid"].as_str().expect("orderid").to_owned();
    let book = account::handler(&deps, event("orderbook-ok")).await;
    assert_eq!(book.status(), 200, "{}", json(&book));
    let orders = json(&book)["data"]["orders"].as_array().expect("orders").clone();
    let row = orders.iter().find(|order| order["orderid"] == order_id.as_str()).expect("the new order is listed");
    assert_eq!((row["action"].as_str(), row["order_status"].as_str()), (Some("BUY"), Some("complete")));
}
