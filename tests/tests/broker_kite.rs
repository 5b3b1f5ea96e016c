//! The Kite Connect adapter against the local Kite stub (`tests/brokers/kite_stub.py`, itself
//! checked with Zerodha's own client): the session exchange with its checksum, a MARKET order with
//! market protection, the error mapping, and the rule that an order whose answer was lost is
//! looked up by its tag and never sent twice.

use std::sync::Arc;

use kavach_tests::kite_stub::{API_KEY, API_SECRET, KiteStub};
use secrecy::SecretString;
use serde_json::json;
use shared::broker::http::BrokerHttp;
use shared::broker::kite::Kite;
use shared::broker::{Broker, BrokerId, BrokerSession, place_once};
use shared::trading::orders::{Action, Exchange, OrderLeg, PriceType, Product};

fn market_buy(symbol: &str) -> OrderLeg {
    OrderLeg {
        exchange: Exchange::Nse,
        symbol: symbol.into(),
        action: Action::Buy,
        quantity: 1.0,
        price_type: PriceType::Market,
        product: Product::Mis,
        price: 0.0,
        trigger_price: 0.0,
        disclosed_quantity: 0,
    }
}

/// A stub, the adapter pointed at it, and a live session obtained the way the callback will.
async fn linked() -> (KiteStub, Arc<Kite>, BrokerSession) {
    let stub = KiteStub::start().await;
    let kite = Arc::new(Kite::new(BrokerHttp::new(), &stub.root));
    let token = stub.request_token().await;
    let grant = kite.create_session(API_KEY, &token, &SecretString::from(API_SECRET)).await.expect("session");
    let session =
        BrokerSession { broker: BrokerId::Zerodha, app_key: API_KEY.into(), access_token: grant.access_token };
    (stub, kite, session)
}

#[tokio::test]
async fn a_request_token_becomes_a_session_once_and_only_with_the_right_secret() {
    let stub = KiteStub::start().await;
    let kite = Kite::new(BrokerHttp::new(), &stub.root);
    let token = stub.request_token().await;
    let wrong = kite.create_session(API_KEY, &token, &SecretString::from("not-the-secret")).await;
    assert_eq!(wrong.expect_err("a wrong checksum").code(), "broker_session_expired");
    let token = stub.request_token().await;
    let grant = kite.create_session(API_KEY, &token, &SecretString::from(API_SECRET)).await.expect("session");
    assert_eq!(grant.user_id, "AB1234");
    let again = kite.create_session(API_KEY, &token, &SecretString::from(API_SECRET)).await;
    assert!(again.is_err(), "a request token is single-use");
    assert!(!format!("{grant:?}").contains(secrecy::ExposeSecret::expose_secret(&grant.access_token)));
}

#[tokio::test]
async fn a_market_order_is_placed_with_market_protection_and_found_in_the_book() {
    let (stub, kite, session) = linked().await;
    let placed = place_once(kite.as_ref(), &session, &market_buy("SBIN"), "kv0001").await.expect("placed");
    let book = kite.order_book(&session).await.expect("book");
    assert!(book.iter().any(|order| order.order_id == placed.order_id && order.tag.as_deref() == Some("kv0001")));
    let orders = stub.control("GET", "orders", json!(null)).await;
    let order = orders.as_array().expect("orders").iter().find(|o| o["order_id"] == placed.order_id.as_str()).cloned();
    assert_eq!(order.expect("at the stub")["status"], "COMPLETE", "a MARKET order fills at once");
}

#[tokio::test]
async fn an_order_whose_answer_is_lost_is_found_by_its_tag_and_sent_once() {
    let (stub, kite, session) = linked().await;
    // Kite takes the order, then the answer never arrives in time.
    let lost = json!({ "method": "POST", "path": "/orders/*", "when": "after", "latency_ms": 7000 });
    stub.control("POST", "inject", lost).await;
    let placed = place_once(kite.as_ref(), &session, &market_buy("INFY"), "kv0002").await.expect("found");
    let sent = stub.calls("/orders/regular").await;
    let posts = sent.iter().filter(|call| call["method"] == "POST").count();
    assert_eq!(posts, 1, "sent exactly once: {sent:?}");
    let book = kite.order_book(&session).await.expect("book");
    assert_eq!(book.iter().filter(|order| order.tag.as_deref() == Some("kv0002")).count(), 1);
    assert!(book.iter().any(|order| order.order_id == placed.order_id));
}

#[tokio::test]
async fn kites_refusals_arrive_as_the_four_broker_errors() {
    let (stub, kite, session) = linked().await;
    stub.control("POST", "inject", json!({ "method": "POST", "path": "/orders/*", "reject": "Insufficient funds" }))
        .await;
    let insufficient = place_once(kite.as_ref(), &session, &market_buy("SBIN"), "kv0003").await;
    let refused = kite.order_book(&session).await.expect("book");
    match insufficient {
        // Kite accepts, then rejects: the order is placed (and REJECTED in the book), as at Kite.
        Ok(placed) => assert!(refused.iter().any(|order| order.order_id == placed.order_id)),
        Err(error) => assert_eq!(error.code(), "broker_rejected"),
    }
    stub.control(
        "POST",
        "apps",
        json!({ "api_key": API_KEY, "api_secret": API_SECRET,
        "redirect_url": "http://127.0.0.1:9/broker/callback/zerodha", "allowed_ips": ["203.0.113.7"] }),
    )
    .await;
    let unregistered = place_once(kite.as_ref(), &session, &market_buy("SBIN"), "kv0004").await;
    assert_eq!(unregistered.expect_err("not our IP").code(), "broker_ip_not_registered");
    stub.control(
        "POST",
        "apps",
        json!({ "api_key": API_KEY, "api_secret": API_SECRET,
        "redirect_url": "http://127.0.0.1:9/broker/callback/zerodha" }),
    )
    .await;
    stub.control("POST", "expire_sessions", json!({})).await;
    let expired = place_once(kite.as_ref(), &session, &market_buy("SBIN"), "kv0005").await;
    assert_eq!(expired.expect_err("expired").code(), "broker_session_expired");
}

#[tokio::test]
async fn a_revoked_session_is_refused_as_expired() {
    let (_stub, kite, session) = linked().await;
    kite.revoke(&session).await.expect("revoked at Kite");
    let after = kite.order_book(&session).await;
    assert_eq!(after.expect_err("revoked").code(), "broker_session_expired");
}
