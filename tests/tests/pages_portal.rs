//! The portal pages (`web-portal`) of a logged-in trader, over real HTTP to the local gateway and the
//! emulator: API key regeneration, the allowlist, the reveal with re-authentication, the session
//! cap and logging out everywhere.

use std::sync::Arc;
use std::time::Duration;

use kavach_tests::web::WebClient;
use kavach_tests::{ROOMY, gateway_with_web_user, ping_body, post, unique_ip};
use shared::core::clock::{ManualClock, SystemClock, UnixMillis};
use shared::store::users::{AuditKind, AuditOutcome};

#[tokio::test]
async fn a_regenerated_keys_predecessor_gets_403() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let source = unique_ip();
    assert_eq!(post(gateway, source, "/api/v1/ping", &ping_body(&user.api_key)).await.status, 200);

    let mut browser = WebClient::logged_in(gateway, source, &user, &deps).await;
    let csrf = browser.get("/apikey").await.csrf();
    let page = browser.post("/apikey", &[("csrf_token", &csrf)]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let new_key = page.element_text("api-key").expect("the new key is shown once");
    assert_ne!(new_key, user.api_key);

    let old = post(gateway, source, "/api/v1/ping", &ping_body(&user.api_key)).await;
    assert_eq!(old.status, 403, "{:?}", old.body);
    assert_eq!(old.body["code"], "revoked_apikey");
    assert_eq!(post(gateway, source, "/api/v1/ping", &ping_body(&new_key)).await.status, 200);
    assert!(
        !browser.get("/apikey").await.text.contains(&new_key),
        "the key is not shown again without re-authentication"
    );
}

#[tokio::test]
async fn the_allowlist_admits_only_listed_addresses() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let (home, elsewhere) = (unique_ip(), unique_ip());
    let mut browser = WebClient::logged_in(gateway, home, &user, &deps).await;
    let csrf = browser.get("/apikey").await.csrf();
    let bad = browser.post("/apikey/allowlist", &[("csrf_token", &csrf), ("allowlist", "not-an-ip")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("`not-an-ip` is not an IP address or CIDR range"));
    let saved = browser.post("/apikey/allowlist", &[("csrf_token", &csrf), ("allowlist", &home.to_string())]).await;
    assert_eq!((saved.status, saved.location()), (303, "/apikey"));

    assert_eq!(post(gateway, home, "/api/v1/ping", &ping_body(&user.api_key)).await.status, 200);
    let refused = post(gateway, elsewhere, "/api/v1/ping", &ping_body(&user.api_key)).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (403, Some("ip_not_allowed")));
}

#[tokio::test]
async fn reveal_needs_recent_reauthentication_rotates_the_session_and_is_audited() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_950_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    clock.advance(Duration::from_secs(6 * 60));
    // A later login on another device: its session is the user's newest.
    WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;

    let csrf = browser.get("/apikey").await.csrf();
    let wrong = browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", "Wrong1!pass")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.element_text("api-key").is_none());
    let before = browser.cookie.clone();
    let shown = browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", &user.password)]).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.element_text("api-key").as_deref(), Some(user.api_key.as_str()));
    assert_ne!(browser.cookie, before, "re-authentication rotates the session id");
    assert_eq!(browser.with_cookie(before).get_json("/dashboard").await.status, 401, "the old id is dead");
    // The revealed page's forms carry the rotated session's token: they work with the new cookie.
    let allow = browser.post("/apikey/allowlist", &[("csrf_token", &shown.csrf()), ("allowlist", "")]).await;
    assert_eq!(allow.status, 303, "{}", allow.text);

    let audit = deps.identity.recent_audit(AuditKind::Reveal, 50).await.expect("audit");
    assert!(audit.iter().any(|event| event.username == user.username && event.outcome == AuditOutcome::Success));
    assert!(audit.iter().any(|event| event.username == user.username && event.outcome == AuditOutcome::Failed));
}

#[tokio::test]
async fn at_most_five_sessions_and_log_out_everywhere() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_960_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut browsers = Vec::new();
    for _ in 0..6 {
        // Each login needs a fresh TOTP step: the previous one has been used.
        clock.advance(Duration::from_secs(30));
        let browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
        browsers.push(browser);
    }
    assert_eq!(browsers[0].get_json("/dashboard").await.status, 401, "the oldest of six was ended");
    for browser in &mut browsers[1..] {
        assert_eq!(browser.get_json("/dashboard").await.status, 200);
    }
    let listed = browsers[5].get_json("/auth/sessions").await.json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(5));

    let csrf = browsers[5].get("/auth/sessions").await.csrf();
    assert_eq!(browsers[5].post("/auth/logout-all", &[("csrf_token", &csrf)]).await.status, 303);
    for browser in &mut browsers[1..5] {
        assert_eq!(browser.get_json("/dashboard").await.status, 401);
    }
}
