//! Linking Zerodha in headless Chromium: the Broker page, Kite's consent page (the local stub),
//! the callback, the linked status, disconnect. The browser enforces what an HTTP client does
//! not: the page's CSP must let its Connect form lead to Kite's login, and the session cookie
//! must come back on the redirect from Kite.

use std::sync::Arc;

use kavach_tests::kite_stub::KiteStub;
use kavach_tests::web::WebClient;
use kavach_tests::webdriver::Browser;
use kavach_tests::{ROOMY, cold_start, config_with, new_web_user, start_gateway};
use serde_json::json;
use shared::core::clock::SystemClock;
use shared::identity::sessions::COOKIE_NAME;

#[tokio::test]
async fn connect_consent_callback_linked_and_disconnect_in_a_real_browser() {
    let stub = KiteStub::start().await;
    let overrides = [ROOMY, &[("KITE_API_ROOT", stub.root.as_str()), ("KITE_LOGIN_ROOT", stub.root.as_str())]].concat();
    let deps = cold_start(config_with(&overrides), Arc::new(SystemClock)).await;
    let gateway = start_gateway(deps.clone()).await;
    let site = format!("http://127.0.0.1:{}", gateway.port());
    // The trader's Kite app, registered with this gateway's callback as its redirect URL.
    let (app_key, app_secret) = ("browserkiteapp01", "browser-kite-app-secret-0123456789");
    let app = json!({ "api_key": app_key, "api_secret": app_secret, "redirect_url": format!("{site}/broker/callback/zerodha") });
    stub.control("POST", "apps", app).await;
    let user = new_web_user(&deps).await;
    let browser = Browser::start().await;

    // Logged in over HTTP (the login pages have their own browser test, which needs a stack with
    // no administrator yet and so must not share one with this), the session carried on here.
    let http = WebClient::logged_in(gateway, "127.0.0.1".parse().expect("ip"), &user, &deps).await;
    browser.goto(&format!("{site}/auth/csrf-token")).await;
    browser.add_cookie(COOKIE_NAME, http.cookie.as_deref().expect("a session")).await;
    browser.goto(&format!("{site}/dashboard")).await;
    browser.wait_text("h1", "Dashboard").await;

    browser.click(r#"nav a[href="/broker"]"#).await;
    browser.wait_text("h1", "Broker").await;
    browser.wait_text("#status-zerodha", "not linked").await;
    assert_eq!(browser.text("#redirect-zerodha").await, "/broker/callback/zerodha");
    browser.screenshot("broker-01-not-linked").await;
    browser.type_into("#api_key-zerodha", app_key).await;
    browser.type_into("#api_secret-zerodha", app_secret).await;
    browser.click("#connect-zerodha").await;

    // Kite's consent page, on Kite's origin.
    browser.wait_text("h1", "Kite by Zerodha (stub)").await;
    assert!(browser.url().await.starts_with(&format!("{}/connect/login?v=3&api_key={app_key}", stub.root)));
    browser.screenshot("broker-02-kite-consent").await;
    browser.click("#authorize").await;

    // Back on the Broker page, linked.
    browser.wait_text("#notice", "Zerodha (Kite Connect) is linked.").await;
    assert_eq!(browser.url().await, format!("{site}/broker?linked=zerodha"));
    assert_eq!(browser.text("#status-zerodha").await, "linked");
    assert_eq!(browser.text("#user-zerodha").await, "AB1234");
    assert_eq!(browser.text("#key-zerodha").await, "…pp01");
    assert!(!browser.visible_text().await.contains(app_secret), "the secret is never shown again");
    browser.screenshot("broker-03-linked").await;

    browser.click("#disconnect-zerodha").await;
    browser.wait_text("#notice", "Disconnected.").await;
    assert_eq!(browser.text("#status-zerodha").await, "revoked");
    let sessions = stub.control("GET", "sessions", json!({})).await;
    let ours: Vec<_> = sessions.as_array().expect("sessions").iter().filter(|s| s["api_key"] == app_key).collect();
    assert_eq!(ours.len(), 1, "{sessions}");
    assert_eq!(ours[0]["revoked"], true, "ended at Kite: {sessions}");
    browser.screenshot("broker-04-disconnected").await;
    browser.quit().await;
}
