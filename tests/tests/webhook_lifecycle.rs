//! Strategy webhooks can be listed and revoked, and they stop with the key they were issued beside
//! (security review, item 17): regenerating the owner's key suspends every webhook of the account
//! until the owner re-binds it, at the same URL. Over HTTP through the key page, and with the real
//! `kavach` binary.

use std::net::SocketAddr;

use kavach_tests::web::WebClient;
use kavach_tests::*;
use serde_json::json;
use shared::Deps;

/// A long-only webhook on `username`'s account: its secret id and its handle.
async fn webhook_for(deps: &Deps, username: &str) -> (String, String) {
    let id = sbin_webhook(deps, username, "Breakout", 1).await;
    let handle = shared::identity::webhooks::handle_of(&id);
    (id, handle)
}

async fn alert(gateway: SocketAddr, id: &str) -> Reply {
    let body = json!({ "symbol": "SBIN", "action": "BUY" }).to_string();
    post(gateway, unique_ip(), &format!("/strategy/webhook/{id}"), &body).await
}

async fn kavach(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(args)
        .output()
        .await
        .expect("run the kavach binary (KAVACH_ADMIN_BIN)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn regenerating_the_key_suspends_the_accounts_webhooks_until_the_owner_rebinds_them() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, market_morning()).await;
    let (id, handle) = webhook_for(&deps, &user.username).await;
    assert_eq!(alert(gateway, &id).await.status, 200, "a new webhook trades");

    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let csrf = browser.get("/apikey").await.csrf();
    assert_eq!(browser.post("/apikey", &[("csrf_token", &csrf)]).await.status, 200, "regenerated");
    let suspended = alert(gateway, &id).await;
    assert_eq!(
        (suspended.status, suspended.body["code"].as_str()),
        (403, Some("webhook_suspended")),
        "{}",
        suspended.body
    );

    let page = browser.get("/apikey").await;
    assert_eq!(page.element_text(&format!("state-{handle}")).as_deref(), Some("suspended"), "listed as suspended");
    assert!(page.text.contains("Breakout"), "with its strategy");
    let rebound = browser.post("/apikey/webhooks/rebind", &[("csrf_token", &page.csrf()), ("handle", &handle)]).await;
    assert_eq!((rebound.status, rebound.location()), (303, "/apikey"), "{}", rebound.text);
    assert_eq!(alert(gateway, &id).await.status, 200, "the same URL trades again, on the new key");
    let state = browser.get("/apikey").await.element_text(&format!("state-{handle}"));
    assert_eq!(state.as_deref(), Some("active"));
}

#[tokio::test]
async fn a_webhook_revoked_on_the_key_page_is_refused_and_no_longer_listed() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, market_morning()).await;
    let (id, handle) = webhook_for(&deps, &user.username).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let page = browser.get("/apikey").await;
    assert!(page.element_text(&format!("webhook-{handle}")).is_some(), "listed before");

    let revoked = browser.post("/apikey/webhooks/revoke", &[("csrf_token", &page.csrf()), ("handle", &handle)]).await;
    assert_eq!((revoked.status, revoked.location()), (303, "/apikey"), "{}", revoked.text);
    assert_eq!(alert(gateway, &id).await.status, 404, "its URL is refused");
    let page = browser.get("/apikey").await;
    assert!(page.element_text(&format!("webhook-{handle}")).is_none() && page.element_text("no-webhooks").is_some());

    // Another account's webhook cannot be revoked from this one's page: handles are per account.
    let other = new_web_user(&deps).await;
    let (other_id, other_handle) = webhook_for(&deps, &other.username).await;
    let refused =
        browser.post_json("/apikey/webhooks/revoke", &[("csrf_token", &page.csrf()), ("handle", &other_handle)]).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.json()["message"].as_str().expect("message").contains("No webhook"), "{}", refused.text);
    assert_eq!(alert(gateway, &other_id).await.status, 200, "untouched");
}

#[tokio::test]
async fn the_operator_lists_revokes_and_rebinds_webhooks_with_the_kavach_command() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, market_morning()).await;
    let (id, handle) = webhook_for(&deps, &user.username).await;
    let (kept_id, kept_handle) = webhook_for(&deps, &user.username).await;

    let (ok, listed) = kavach(&["webhook", "list", &user.username]).await;
    assert!(ok, "{listed}");
    assert!(listed.contains(&format!("{handle}\tactive\tBreakout")), "{listed}");
    assert!(listed.contains("2 webhook(s)."), "{listed}");
    assert!(!listed.contains(&id), "the list never shows a secret id");

    let (ok, output) = kavach(&["apikey", "regenerate", &user.username]).await;
    assert!(ok, "{output}");
    assert_eq!(alert(gateway, &kept_id).await.body["code"], "webhook_suspended");
    let (_, listed) = kavach(&["webhook", "list", &user.username]).await;
    assert!(listed.contains(&format!("{kept_handle}\tsuspended")), "{listed}");

    let (ok, output) = kavach(&["webhook", "revoke", &user.username, &handle]).await;
    assert!(ok, "{output}");
    assert_eq!(alert(gateway, &id).await.status, 404);
    let (ok, output) = kavach(&["webhook", "rebind", &user.username, &kept_handle]).await;
    assert!(ok, "{output}");
    assert_eq!(alert(gateway, &kept_id).await.status, 200);
    let (ok, output) = kavach(&["webhook", "revoke", &user.username, "000000000000"]).await;
    assert!(!ok && output.contains("No webhook `000000000000`"), "{output}");
}
