//! The account routes (`funds`, `orderbook`, `analyzer/toggle` and the rest) over HTTP through the
//! local gateway: the error taxonomy, one distinct code per way a key or an account can be refused
//! (only `invalid_apikey` counts towards the invalid-key detector). The order tests read these
//! routes back after trading; this file is for what the account routes answer themselves.

use kavach_tests::{call, gateway_with_user, market_morning, new_user};
use serde_json::json;

#[tokio::test]
async fn an_unknown_key_is_403_invalid_apikey() {
    let (_, gateway, _) = gateway_with_user(&[], market_morning()).await;
    let bad = call(
        gateway,
        "funds",
        "kav_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
        json!({}),
    )
    .await;
    assert_eq!((bad.status, bad.body["code"].as_str()), (403, Some("invalid_apikey")));
}

#[tokio::test]
async fn going_live_without_a_linked_broker_is_403_broker_not_linked() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let live = call(gateway, "analyzer/toggle", &key, json!({ "mode": false })).await;
    assert_eq!((live.status, live.body["code"].as_str()), (403, Some("broker_not_linked")));
}

#[tokio::test]
async fn a_regenerated_keys_predecessor_is_403_revoked_apikey() {
    let (deps, gateway, _) = gateway_with_user(&[], market_morning()).await;
    let (user, old_key) = new_user(&deps).await;
    deps.accounts().regenerate_api_key(&user).await.expect("regenerate");
    let revoked = call(gateway, "funds", &old_key, json!({})).await;
    assert_eq!((revoked.status, revoked.body["code"].as_str()), (403, Some("revoked_apikey")));
}
