//! The web identity layer from the outside, over real HTTP to the local gateway and the emulator:
//! sessions, CSRF, fetch metadata, TOTP replay, login limits, daily expiry, reset tokens, key rotation.

use std::sync::Arc;
use std::time::Duration;

use kavach_tests::web::WebClient;
use kavach_tests::{
    ROOMY, cold_start, config_with, gateway_with_web_user, new_web_user, ping_body, post, start_gateway, unique_ip,
};
use shared::core::clock::{ManualClock, SystemClock, UnixMillis};
use shared::store::users::{AuditKind, AuditOutcome};

const PROTECTED: &[&str] = &["/dashboard", "/apikey", "/auth/sessions"];

#[tokio::test]
async fn cross_site_logout_is_refused_and_the_session_survives() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let csrf = browser.get("/dashboard").await.csrf();

    for site in ["cross-site", "same-site"] {
        let refused = browser
            .post_with(
                "/auth/logout",
                &[("csrf_token", &csrf)],
                &[("sec-fetch-site", site), ("accept", "application/json")],
            )
            .await;
        assert_eq!(refused.status, 403, "{site}: {}", refused.text);
        assert_eq!(refused.json()["error"], "Access Denied");
    }
    let still = browser.get("/dashboard").await;
    assert_eq!(still.status, 200, "the session must survive a refused cross-site logout");

    let same_origin =
        browser.post_with("/auth/logout", &[("csrf_token", &csrf)], &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!((same_origin.status, same_origin.location()), (303, "/auth/login?bye"));
}

#[tokio::test]
async fn state_changes_without_the_csrf_token_are_refused() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let key_before = deps.identity.user(&user.username).await.expect("read").expect("user").api_key_id;

    for (path, form) in [
        ("/apikey", vec![]),
        ("/apikey", vec![("csrf_token", "forged")]),
        ("/auth/logout", vec![]),
        ("/apikey/allowlist", vec![("allowlist", "203.0.113.9")]),
    ] {
        let refused = browser.post_json(path, &form).await;
        assert_eq!(refused.status, 400, "{path}: {}", refused.text);
        let body = refused.json();
        assert_eq!(body["error"], "CSRF validation failed");
        assert_eq!(body["message"], "Security token expired or invalid. Please refresh the page and try again.");
    }
    let user_after = deps.identity.user(&user.username).await.expect("read").expect("user");
    assert_eq!(user_after.api_key_id, key_before, "no key was regenerated");
    assert!(user_after.allow.is_empty(), "no allowlist was written");
    assert_eq!(browser.get("/dashboard").await.status, 200, "no logout happened");

    // The header form of the token works for script callers.
    let token = browser.csrf_token().await;
    let accepted = browser.post_with("/apikey", &[], &[("x-csrf-token", &token), ("accept", "application/json")]).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
}

#[tokio::test]
async fn a_replayed_totp_code_is_refused_and_twenty_concurrent_submissions_admit_one() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let code = user.code(&deps);

    // Five browsers (the per-user session cap) past the password step submit the same code four
    // times each, all twenty at once.
    let mut pending = Vec::new();
    for _ in 0..5 {
        let mut browser = WebClient::new(gateway, unique_ip());
        let step1 = browser.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
        assert_eq!(step1.status, 303, "{}", step1.text);
        let csrf = browser.get("/auth/login/totp").await.csrf();
        pending.push((browser.cookie.clone(), csrf));
    }
    let template = WebClient::new(gateway, unique_ip());
    let submissions = (0..20).map(|n| {
        let (cookie, csrf) = pending[n % 5].clone();
        let mut browser = template.with_cookie(cookie);
        let code = code.clone();
        async move {
            let page = browser.post_json("/auth/login/totp", &[("totp_code", &code), ("csrf_token", &csrf)]).await;
            (page.status, page.json()["code"].as_str().unwrap_or("ok").to_owned())
        }
    });
    let outcomes = futures::future::join_all(submissions).await;
    let admitted = outcomes.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(admitted, 1, "exactly one admitted: {outcomes:?}");
    // The rest: the code was used, or their pending login was replaced by the winner's session.
    assert!(
        outcomes
            .iter()
            .filter(|(status, _)| *status != 200)
            .all(|(status, code)| *status == 401 && (code == "invalid_totp" || code == "no_pending_login")),
        "{outcomes:?}"
    );

    // And later, the same code again from a fresh login: refused.
    let mut late = WebClient::new(gateway, unique_ip());
    late.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    let csrf = late.get("/auth/login/totp").await.csrf();
    let replay = late.post_json("/auth/login/totp", &[("totp_code", &code), ("csrf_token", &csrf)]).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.json()["message"], "Invalid TOTP code.");
}

#[tokio::test]
async fn the_sixth_login_in_a_minute_gets_429() {
    // The default budget, 5 per minute, against a frozen clock so the window cannot roll over.
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_900_000_000)));
    let deps = cold_start(config_with(&[]), clock).await;
    let gateway = start_gateway(deps.clone()).await;
    let source = unique_ip();
    let mut statuses = Vec::new();
    for attempt in 0..6 {
        // Different usernames: the per-IP counter is the one that trips.
        let mut browser = WebClient::new(gateway, source);
        let page = browser
            .post_json("/auth/login", &[("username", &format!("nobody{attempt}")), ("password", "Wrong1!pass")])
            .await;
        statuses.push(page.status);
        if attempt == 5 {
            assert_eq!(page.json()["message"], "Rate limit exceeded. Please slow down your requests.");
            assert!(page.headers.get("retry-after").is_some());
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);

    // Per username too: five tries at one account from five addresses, the sixth is refused.
    let mut per_user = Vec::new();
    for _ in 0..6 {
        let mut browser = WebClient::new(gateway, unique_ip());
        per_user.push(
            browser.post("/auth/login", &[("username", "victim-account"), ("password", "Wrong1!pass")]).await.status,
        );
    }
    assert_eq!(per_user.last(), Some(&429), "{per_user:?}");
}

#[tokio::test]
async fn after_logout_the_old_cookie_gets_401_everywhere() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let stolen = browser.cookie.clone();
    let csrf = browser.get("/dashboard").await.csrf();
    let bye = browser.post_json("/auth/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(bye.status, 200);
    assert_eq!(bye.json()["message"], "Logged out successfully");
    assert_eq!(browser.cookie, None, "the cookie is cleared");

    let mut replay = browser.with_cookie(stolen);
    for path in PROTECTED {
        let page = replay.get_json(path).await;
        assert_eq!(page.status, 401, "{path}");
        assert_eq!(page.json()["error"], "session_expired", "{path}");
        // A browser (no JSON) is sent to the login page instead.
        let page = replay.get(path).await;
        assert_eq!((page.status, page.location()), (303, "/auth/login"), "{path}");
    }
    for path in ["/apikey", "/apikey/reveal", "/auth/logout", "/auth/logout-all", "/auth/change-password"] {
        let page = replay.post_json(path, &[("csrf_token", &csrf)]).await;
        assert_eq!(page.status, 401, "POST {path}: {}", page.text);
    }
}

#[tokio::test]
async fn a_session_that_crosses_0300_ist_has_expired() {
    // 2030-03-15 02:00 IST, an hour before the boundary.
    let start = shared::core::ist::ist_midnight_epoch(2030, 3, 15) + 2 * 3600;
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(u64::try_from(start).expect("positive"))));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let session = deps.identity.sessions_of(&user.username, deps.clock.now()).await.expect("sessions");
    let expires = session.first().expect("one session").expires_at;
    assert_eq!(
        expires,
        UnixMillis::from_secs(u64::try_from(start).expect("positive") + 3600),
        "expires_at is the next 03:00 IST"
    );

    clock.advance(Duration::from_secs(59 * 60));
    assert_eq!(browser.get("/dashboard").await.status, 200, "02:59 IST: still valid");
    clock.advance(Duration::from_secs(61));
    let after = browser.get_json("/dashboard").await;
    assert_eq!(after.status, 401, "03:00:01 IST: expired");
    assert_eq!(after.json()["error"], "session_expired");
}

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

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::new(gateway, unique_ip());
    let unknown = browser.post_json("/auth/login", &[("username", "no-such-user"), ("password", &user.password)]).await;
    let wrong = browser.post_json("/auth/login", &[("username", &user.username), ("password", "Wrong1!pass")]).await;
    assert_eq!((unknown.status, &unknown.text), (wrong.status, &wrong.text));
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["message"], "Invalid credentials");
    let audit = deps.identity.recent_audit(AuditKind::Login, 100).await.expect("audit");
    assert!(audit.iter().any(|event| event.username == user.username && event.detail == "invalid_credentials"));
}

/// The reset link in the last message the sink received for `to`, soft line breaks undone.
fn reset_link(sink: &kavach_tests::smtp_sink::SmtpSink, to: &str) -> String {
    let message = sink.messages().into_iter().rev().find(|m| m.contains(to)).expect("a reset message was sent");
    let text = message.replace("=\n", "").replace("=3D", "=");
    text.split_whitespace()
        .find(|word| word.contains("/auth/reset-password/confirm?token="))
        .expect("a link")
        .to_owned()
}

#[tokio::test]
async fn reset_by_email_builds_links_from_the_configured_origin_and_tokens_work_once() {
    let sink = kavach_tests::smtp_sink::SmtpSink::start().await;
    let base = "https://kavach.example.in";
    let overrides = [ROOMY, &[("PUBLIC_BASE_URL", base)]].concat();
    let deps = cold_start(config_with(&overrides), Arc::new(SystemClock)).await;
    deps.mail_settings().configure(&sink.settings()).await.expect("configure SMTP");
    let gateway = start_gateway(deps.clone()).await;
    let user = new_web_user(&deps).await;
    let email = format!("{}@example.com", user.username);

    // A session from before the reset, which the reset must end.
    let mut before = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;

    let mut visitor = WebClient::new(gateway, unique_ip());
    let forged = [("host", "evil.example"), ("x-forwarded-host", "evil.example"), ("accept", "application/json")];
    let known = visitor.post_with("/auth/reset-password", &[("method", "email"), ("email", &email)], &forged).await;
    let unknown = visitor
        .post_with("/auth/reset-password", &[("method", "email"), ("email", "nobody@example.com")], &forged)
        .await;
    assert_eq!(
        (known.status, &known.text),
        (unknown.status, &unknown.text),
        "same answer whether or not the account exists"
    );
    assert_eq!(known.status, 200);

    let link = reset_link(&sink, &email);
    assert!(link.starts_with(&format!("{base}/auth/reset-password/confirm?token=")), "{link}");
    assert!(!sink.messages().iter().any(|m| m.contains("evil.example")), "the forged Host never reaches a link");
    assert_eq!(sink.messages().len(), 1, "nothing is sent for an unknown address");

    let token = link.split("token=").nth(1).expect("token").to_owned();
    let form = visitor.get(&format!("/auth/reset-password/confirm?token={token}")).await;
    assert_eq!(form.status, 200, "{}", form.text);
    let weak = visitor
        .post("/auth/reset-password/confirm", &[("token", &token), ("password", "weak"), ("confirm_password", "weak")])
        .await;
    assert_eq!(weak.status, 400, "a weak password is refused without using the token up");
    let new_password = "N3w!password";
    let fields = [("token", token.as_str()), ("password", new_password), ("confirm_password", new_password)];
    let done = visitor.post("/auth/reset-password/confirm", &fields).await;
    assert_eq!((done.status, done.location()), (303, "/auth/login?reset"), "{}", done.text);
    let again = visitor.post_json("/auth/reset-password/confirm", &fields).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["message"], "Invalid or expired reset token.");

    assert_eq!(before.get_json("/dashboard").await.status, 401, "the reset ended every session");
    let mut after = WebClient::new(gateway, unique_ip());
    let old = after.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!(old.status, 401, "the old password is gone");
    let new = after.post("/auth/login", &[("username", &user.username), ("password", new_password)]).await;
    assert_eq!((new.status, new.location()), (303, "/auth/login/totp"));
}

#[tokio::test]
async fn reset_by_totp_issues_a_single_use_token() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_970_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut visitor = WebClient::new(gateway, unique_ip());
    let wrong = visitor
        .post_json("/auth/reset-password", &[("method", "totp"), ("username", &user.username), ("totp_code", "000000")])
        .await;
    let nobody = visitor
        .post_json("/auth/reset-password", &[("method", "totp"), ("username", "no-such-user"), ("totp_code", "000000")])
        .await;
    assert_eq!((wrong.status, &wrong.text), (nobody.status, &nobody.text));
    assert_eq!(wrong.json()["message"], "Invalid TOTP code. Please try again.");

    let verified = visitor
        .post_json(
            "/auth/reset-password",
            &[("method", "totp"), ("username", &user.username), ("totp_code", &user.code(&deps))],
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let token = verified.json()["token"].as_str().expect("token").to_owned();
    let fields = [("token", token.as_str()), ("password", "An0ther!pass"), ("confirm_password", "An0ther!pass")];
    assert_eq!(visitor.post("/auth/reset-password/confirm", &fields).await.status, 303);
    assert_eq!(visitor.post("/auth/reset-password/confirm", &fields).await.status, 400, "used once only");

    // An unused token dies after 15 minutes even if TTL has not removed it.
    clock.advance(Duration::from_secs(30));
    let second = visitor
        .post_json(
            "/auth/reset-password",
            &[("method", "totp"), ("username", &user.username), ("totp_code", &user.code(&deps))],
        )
        .await;
    let token = second.json()["token"].as_str().expect("token").to_owned();
    clock.advance(Duration::from_secs(15 * 60 + 1));
    let late = visitor
        .post(
            "/auth/reset-password/confirm",
            &[("token", &token), ("password", "Late1!pass"), ("confirm_password", "Late1!pass")],
        )
        .await;
    assert_eq!(late.status, 400);
}

#[tokio::test]
async fn broker_oauth_state_is_single_use_and_bound_to_its_session_and_broker() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_980_000_000)));
    let deps = cold_start(config_with(&[]), clock.clone()).await;
    let now = deps.clock.now();
    let store = &deps.identity;
    let state = store.issue_oauth_state("session-a", "zerodha", now).await.expect("issue");
    assert!(!store.consume_oauth_state(&state, "session-b", "zerodha", now).await.expect("other session"));
    assert!(!store.consume_oauth_state(&state, "session-a", "zerodha", now).await.expect("consumed by the failed try"));

    let state = store.issue_oauth_state("session-a", "zerodha", now).await.expect("issue");
    assert!(!store.consume_oauth_state(&state, "session-a", "dhan", now).await.expect("other broker"));
    let state = store.issue_oauth_state("session-a", "zerodha", now).await.expect("issue");
    assert!(store.consume_oauth_state(&state, "session-a", "zerodha", now).await.expect("right one"));
    assert!(!store.consume_oauth_state(&state, "session-a", "zerodha", now).await.expect("replay"));

    let state = store.issue_oauth_state("session-a", "zerodha", now).await.expect("issue");
    clock.advance(shared::store::oauth_state::STATE_TTL + Duration::from_secs(1));
    assert!(!store.consume_oauth_state(&state, "session-a", "zerodha", deps.clock.now()).await.expect("expired"));
    assert!(!store.consume_oauth_state("made-up", "session-a", "zerodha", deps.clock.now()).await.expect("unknown"));
}
