//! The portal pages (`web-portal`) of a logged-in trader, over real HTTP to the local gateway and the
//! emulator: API key regeneration, the allowlist, the reveal with re-authentication, the session
//! cap and logging out everywhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kavach_tests::web::WebClient;
use kavach_tests::{ROOMY, WebUser, gateway_with_web_user, ping_body, post, unique_ip};
use shared::Deps;
use shared::core::clock::{ManualClock, SystemClock, UnixMillis};
use shared::store::users::{AuditKind, AuditOutcome};

/// Regenerates the key from the key page: the new key it shows.
async fn regenerate(browser: &mut WebClient) -> String {
    let csrf = browser.get("/apikey").await.csrf();
    let page = browser.post("/apikey", &[("csrf_token", &csrf)]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    page.element_text("api-key").expect("the new key is shown once")
}

#[tokio::test]
async fn a_regenerated_key_is_shown_once() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let new_key = regenerate(&mut browser).await;
    assert_ne!(new_key, user.api_key);
    assert!(
        !browser.get("/apikey").await.text.contains(&new_key),
        "the key is not shown again without re-authentication"
    );
}

#[tokio::test]
async fn a_regenerated_keys_predecessor_gets_403() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let source = unique_ip();
    // Used once first, so whatever a function caches about the key is stale after regenerating.
    assert_eq!(post(gateway, source, "/api/v1/ping", &ping_body(&user.api_key)).await.status, 200);

    let mut browser = WebClient::logged_in(gateway, source, &user, &deps).await;
    regenerate(&mut browser).await;
    let old = post(gateway, source, "/api/v1/ping", &ping_body(&user.api_key)).await;
    assert_eq!(old.status, 403, "{:?}", old.body);
    assert_eq!(old.body["code"], "revoked_apikey");
}

#[tokio::test]
async fn a_regenerated_key_is_admitted_at_once() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let source = unique_ip();
    let mut browser = WebClient::logged_in(gateway, source, &user, &deps).await;
    let new_key = regenerate(&mut browser).await;
    assert_eq!(post(gateway, source, "/api/v1/ping", &ping_body(&new_key)).await.status, 200);
}

#[tokio::test]
async fn an_allowlist_entry_that_is_not_an_address_or_range_is_refused_naming_it() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let csrf = browser.get("/apikey").await.csrf();
    let bad = browser.post("/apikey/allowlist", &[("csrf_token", &csrf), ("allowlist", "not-an-ip")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("`not-an-ip` is not an IP address or CIDR range"));
}

#[tokio::test]
async fn the_allowlist_admits_only_listed_addresses() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let (home, elsewhere) = (unique_ip(), unique_ip());
    let mut browser = WebClient::logged_in(gateway, home, &user, &deps).await;
    let csrf = browser.get("/apikey").await.csrf();
    let saved = browser.post("/apikey/allowlist", &[("csrf_token", &csrf), ("allowlist", &home.to_string())]).await;
    assert_eq!((saved.status, saved.location()), (303, "/apikey"));

    assert_eq!(post(gateway, home, "/api/v1/ping", &ping_body(&user.api_key)).await.status, 200);
    let refused = post(gateway, elsewhere, "/api/v1/ping", &ping_body(&user.api_key)).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (403, Some("ip_not_allowed")));
}

/// A trader's browser six minutes after its login, past the re-authentication window, so a reveal
/// asks for the password; and a later login on another device, whose session is the user's newest
/// (a rotation must replace the revealing session, not whichever is newest). The key page's token.
async fn past_the_reauthentication_window() -> (Arc<Deps>, WebUser, WebClient, String) {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_950_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    clock.advance(Duration::from_secs(6 * 60));
    WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let csrf = browser.get("/apikey").await.csrf();
    (deps, user, browser, csrf)
}

#[tokio::test]
async fn past_the_reauthentication_window_a_reveal_with_a_wrong_password_is_refused() {
    let (_, _, mut browser, csrf) = past_the_reauthentication_window().await;
    let wrong = browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", "Wrong1!pass")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.element_text("api-key").is_none());
}

#[tokio::test]
async fn past_the_reauthentication_window_a_reveal_with_the_password_shows_the_key() {
    let (_, user, mut browser, csrf) = past_the_reauthentication_window().await;
    let shown = browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", &user.password)]).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.element_text("api-key").as_deref(), Some(user.api_key.as_str()));
}

#[tokio::test]
async fn reauthenticating_to_reveal_gives_the_session_a_new_id() {
    let (_, user, mut browser, csrf) = past_the_reauthentication_window().await;
    let before = browser.cookie.clone();
    let shown = browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", &user.password)]).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_ne!(browser.cookie, before, "re-authentication rotates the session id");
    assert_eq!(browser.with_cookie(before).get_json("/dashboard").await.status, 401, "the old id is dead");
}

#[tokio::test]
async fn the_revealed_pages_forms_carry_the_rotated_sessions_token() {
    let (_, user, mut browser, csrf) = past_the_reauthentication_window().await;
    let shown = browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", &user.password)]).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    // They work with the new cookie the reveal set.
    let allow = browser.post("/apikey/allowlist", &[("csrf_token", &shown.csrf()), ("allowlist", "")]).await;
    assert_eq!(allow.status, 303, "{}", allow.text);
}

#[tokio::test]
async fn reveals_are_audited_whether_they_fail_or_succeed() {
    let (deps, user, mut browser, csrf) = past_the_reauthentication_window().await;
    browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", "Wrong1!pass")]).await;
    browser.post("/apikey/reveal", &[("csrf_token", &csrf), ("password", &user.password)]).await;
    let audit = deps.identity.recent_audit(AuditKind::Reveal, 50).await.expect("audit");
    assert!(audit.iter().any(|event| event.username == user.username && event.outcome == AuditOutcome::Success));
    assert!(audit.iter().any(|event| event.username == user.username && event.outcome == AuditOutcome::Failed));
}

/// `count` logged-in browsers for `user`, oldest first, each in a TOTP step of its own (a code
/// works once per user) on `clock`.
async fn browsers(
    count: usize,
    gateway: SocketAddr,
    user: &WebUser,
    deps: &Deps,
    clock: &ManualClock,
) -> Vec<WebClient> {
    let mut browsers = Vec::new();
    for _ in 0..count {
        clock.advance(Duration::from_secs(30));
        browsers.push(WebClient::logged_in(gateway, unique_ip(), user, deps).await);
    }
    browsers
}

#[tokio::test]
async fn a_sixth_login_ends_the_oldest_of_five_sessions() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_960_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut browsers = browsers(6, gateway, &user, &deps, &clock).await;
    assert_eq!(browsers[0].get_json("/dashboard").await.status, 401, "the oldest of six was ended");
    for browser in &mut browsers[1..] {
        assert_eq!(browser.get_json("/dashboard").await.status, 200);
    }
    let listed = browsers[5].get_json("/auth/sessions").await.json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn logging_out_everywhere_ends_the_users_other_sessions() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_965_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut browsers = browsers(5, gateway, &user, &deps, &clock).await;
    let csrf = browsers[4].get("/auth/sessions").await.csrf();
    assert_eq!(browsers[4].post("/auth/logout-all", &[("csrf_token", &csrf)]).await.status, 303);
    for browser in &mut browsers[..4] {
        assert_eq!(browser.get_json("/dashboard").await.status, 401);
    }
}

/// A stolen session must not mint a working key: past the window, regenerating needs the password.
#[tokio::test]
async fn past_the_reauthentication_window_regenerating_the_key_needs_the_password() {
    let (deps, user, mut browser, csrf) = past_the_reauthentication_window().await;
    let before = deps.identity.user(&user.username).await.expect("read").expect("user").api_key_id;
    let refused = browser.post_json("/apikey", &[("csrf_token", &csrf)]).await;
    assert_eq!((refused.status, refused.json()["code"].as_str()), (401, Some("reauth_failed")), "{}", refused.text);
    let after = deps.identity.user(&user.username).await.expect("read").expect("user").api_key_id;
    assert_eq!(after, before, "no key was minted");

    let page = browser.post("/apikey", &[("csrf_token", &csrf), ("password", &user.password)]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let new_key = page.element_text("api-key").expect("the new key is shown once");
    assert_ne!(new_key, user.api_key);
    let audit = deps.identity.recent_audit(AuditKind::ApiKey, 50).await.expect("audit");
    assert!(audit.iter().any(|event| event.username == user.username && event.outcome == AuditOutcome::Failed));
}

/// Nor strip the SEBI static-IP allowlist.
#[tokio::test]
async fn past_the_reauthentication_window_changing_the_allowlist_needs_the_password() {
    let (deps, user, mut browser, csrf) = past_the_reauthentication_window().await;
    let refused = browser.post_json("/apikey/allowlist", &[("csrf_token", &csrf), ("allowlist", "203.0.113.9")]).await;
    assert_eq!((refused.status, refused.json()["code"].as_str()), (401, Some("reauth_failed")), "{}", refused.text);
    assert!(deps.identity.user(&user.username).await.expect("read").expect("user").allow.is_empty());

    let saved = browser
        .post("/apikey/allowlist", &[("csrf_token", &csrf), ("allowlist", "203.0.113.9"), ("password", &user.password)])
        .await;
    assert_eq!((saved.status, saved.location()), (303, "/apikey"), "{}", saved.text);
    assert_eq!(deps.identity.user(&user.username).await.expect("read").expect("user").allow, ["203.0.113.9"]);
}

/// Ten failed re-authentications in a session count toward the account's lockout like any other
/// failure: the tenth locks the reset by TOTP code, answered as a refusal, not a server error,
/// though the portal holds no SMTP key to mail the owner with (least privilege).
#[tokio::test]
async fn the_tenth_failed_reauthentication_locks_the_totp_reset_without_a_server_error() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_950_100_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    // Mail is configured (the stack's one settings item; no other test of this suite mails).
    let sink = kavach_tests::smtp_sink::SmtpSink::start().await;
    deps.mail_settings().configure(&sink.settings()).await.expect("configure SMTP");
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    clock.advance(Duration::from_secs(6 * 60));
    let csrf = browser.csrf_token().await;
    for n in 0..10 {
        let wrong = browser.post_json("/apikey/reveal", &[("csrf_token", &csrf), ("password", "Wrong1!pass")]).await;
        assert_eq!(wrong.status, 401, "failure {n}: {}", wrong.text);
    }
    let fields = [("method", "totp"), ("username", user.username.as_str()), ("totp_code", &user.code(&deps))];
    let reset = WebClient::new(gateway, unique_ip()).post_json("/auth/reset-password", &fields).await;
    assert_eq!(reset.status, 400, "locked: {}", reset.text);
    assert!(sink.messages().is_empty(), "the portal cannot read the SMTP settings: no mail from it");
}
