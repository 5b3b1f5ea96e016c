//! The login pages (`web-auth`) and the session they start, over real HTTP to the local gateway and
//! the emulator: the password and TOTP steps, CSRF and fetch metadata on the session's pages, login
//! limits, logout and the daily expiry, and the broker OAuth `state` bound to a session.

use std::sync::Arc;
use std::time::Duration;

use kavach_tests::web::{Page, WebClient};
use kavach_tests::{ROOMY, cold_start, config_with, gateway_with_web_user, start_gateway, unique_ip, unique_name};
use shared::Deps;
use shared::core::clock::{Clock, ManualClock, SystemClock, UnixMillis};
use shared::identity::sessions::MAX_SESSIONS_PER_USER;
use shared::store::users::AuditKind;

const PROTECTED: &[&str] = &["/dashboard", "/apikey", "/auth/sessions"];

#[tokio::test]
async fn cross_site_logout_is_refused_and_the_session_survives() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    // The session's own token: only the fetch metadata is wrong (the same-origin test below sends
    // the same request from the same origin and is logged out).
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
}

#[tokio::test]
async fn a_same_origin_logout_with_the_sessions_token_logs_out() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let csrf = browser.get("/dashboard").await.csrf();
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
}

#[tokio::test]
async fn the_csrf_token_is_accepted_in_the_x_csrf_token_header() {
    // Script callers fetch the token and send it as a header rather than a form field.
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let token = browser.csrf_token().await;
    let accepted = browser.post_with("/apikey", &[], &[("x-csrf-token", &token), ("accept", "application/json")]).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
}

#[tokio::test]
async fn twenty_concurrent_submissions_of_one_totp_code_admit_one() {
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
}

#[tokio::test]
async fn a_used_totp_code_is_refused_at_a_later_login() {
    // A frozen clock, so the later login is in the same 30 s step: the code is refused for having
    // been used, not for having aged out of the window.
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_910_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock).await;
    let code = user.code(&deps);
    WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;

    let mut late = WebClient::new(gateway, unique_ip());
    late.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    let csrf = late.get("/auth/login/totp").await.csrf();
    let replay = late.post_json("/auth/login/totp", &[("totp_code", &code), ("csrf_token", &csrf)]).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.json()["message"], "Invalid TOTP code.");
}

/// The default login budgets (5 per minute) on a gateway whose clock is frozen, so the window
/// cannot roll over mid-test.
async fn default_login_budgets() -> std::net::SocketAddr {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_900_000_000)));
    let deps = cold_start(config_with(&[]), clock).await;
    start_gateway(deps).await
}

#[tokio::test]
async fn the_sixth_login_from_one_address_in_a_minute_gets_429() {
    let gateway = default_login_budgets().await;
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
}

#[tokio::test]
async fn the_sixth_login_to_one_username_in_a_minute_gets_429() {
    let gateway = default_login_budgets().await;
    // Five tries at one account from five addresses, the sixth is refused. A name of this test's
    // own, so no other run's tries count.
    let victim = unique_name("victim-account");
    let mut per_user = Vec::new();
    for _ in 0..6 {
        let mut browser = WebClient::new(gateway, unique_ip());
        per_user.push(browser.post("/auth/login", &[("username", &victim), ("password", "Wrong1!pass")]).await.status);
    }
    assert_eq!(per_user.last(), Some(&429), "{per_user:?}");
}

/// Logs `browser` out with its session's token: the answer, and the token (which a replay of the
/// old cookie presents).
async fn log_out(browser: &mut WebClient) -> (Page, String) {
    let csrf = browser.get("/dashboard").await.csrf();
    (browser.post_json("/auth/logout", &[("csrf_token", &csrf)]).await, csrf)
}

#[tokio::test]
async fn a_logout_says_so_and_clears_the_cookie() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let (bye, _) = log_out(&mut browser).await;
    assert_eq!(bye.status, 200);
    assert_eq!(bye.json()["message"], "Logged out successfully");
    assert_eq!(browser.cookie, None, "the cookie is cleared");
}

#[tokio::test]
async fn after_logout_the_old_cookie_gets_401_everywhere() {
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let stolen = browser.cookie.clone();
    let (bye, csrf) = log_out(&mut browser).await;
    assert_eq!(bye.status, 200, "{}", bye.text);

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

/// A cold start on a frozen clock, for the broker OAuth `state` store. There are no broker callbacks
/// yet, so the store is driven directly.
async fn oauth_store() -> (Arc<Deps>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_980_000_000)));
    (cold_start(config_with(&[]), clock.clone()).await, clock)
}

#[tokio::test]
async fn a_broker_oauth_state_presented_by_another_session_is_refused_and_spent() {
    let (deps, _) = oauth_store().await;
    let now = deps.clock.now();
    let store = &deps.identity;
    let state = store.issue_oauth_state("session-a", "zerodha", now).await.expect("issue");
    assert!(!store.consume_oauth_state(&state, "session-b", "zerodha", now).await.expect("other session"));
    assert!(!store.consume_oauth_state(&state, "session-a", "zerodha", now).await.expect("consumed by the failed try"));
}

#[tokio::test]
async fn a_broker_oauth_state_presented_for_another_broker_is_refused() {
    let (deps, _) = oauth_store().await;
    let now = deps.clock.now();
    let store = &deps.identity;
    let state = store.issue_oauth_state("session-a", "zerodha", now).await.expect("issue");
    assert!(!store.consume_oauth_state(&state, "session-a", "dhan", now).await.expect("other broker"));
}

#[tokio::test]
async fn a_broker_oauth_state_is_accepted_once() {
    let (deps, _) = oauth_store().await;
    let now = deps.clock.now();
    let store = &deps.identity;
    let state = store.issue_oauth_state("session-a", "zerodha", now).await.expect("issue");
    assert!(store.consume_oauth_state(&state, "session-a", "zerodha", now).await.expect("right one"));
    assert!(!store.consume_oauth_state(&state, "session-a", "zerodha", now).await.expect("replay"));
}

#[tokio::test]
async fn a_broker_oauth_state_expires_after_its_ttl() {
    let (deps, clock) = oauth_store().await;
    let store = &deps.identity;
    let state = store.issue_oauth_state("session-a", "zerodha", deps.clock.now()).await.expect("issue");
    clock.advance(shared::store::oauth_state::STATE_TTL + Duration::from_secs(1));
    assert!(!store.consume_oauth_state(&state, "session-a", "zerodha", deps.clock.now()).await.expect("expired"));
}

#[tokio::test]
async fn a_made_up_broker_oauth_state_is_refused() {
    let (deps, _) = oauth_store().await;
    let store = &deps.identity;
    assert!(!store.consume_oauth_state("made-up", "session-a", "zerodha", deps.clock.now()).await.expect("unknown"));
}

/// A name that forms a store key is checked before any store call: DynamoDB refuses keys over
/// 2 KB, which used to answer 503 and fire the "DynamoDB unreachable" alarm.
#[tokio::test]
async fn an_overlong_username_is_400_naming_the_limit_not_an_outage() {
    let (_, gateway, _) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::new(gateway, unique_ip());
    let long = "u".repeat(3000);
    let page = browser.post_json("/auth/login", &[("username", &long), ("password", "Wrong1!pass")]).await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert_eq!(page.json()["message"], "username must be at most 64 characters");
}

/// A user created where the clock ran ahead (an operator's laptop, another container) has a TOTP
/// secret stamped in our future; stored secrets have no TTL, so it reads, and the login works.
#[tokio::test]
async fn a_user_created_by_a_clock_that_ran_ahead_can_log_in() {
    let now = SystemClock.now();
    let ahead = Arc::new(ManualClock::at(now.plus(Duration::from_secs(3600))));
    let operator = cold_start(config_with(ROOMY), ahead).await;
    let user = kavach_tests::new_web_user(&operator).await;
    let deps = cold_start(config_with(ROOMY), Arc::new(SystemClock)).await;
    let gateway = start_gateway(deps.clone()).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    assert_eq!(browser.get("/dashboard").await.status, 200);
}

/// Only full sessions count toward the five-session cap: someone who has the password but not the
/// authenticator starts ten pending logins, and every one of the owner's five sessions stays. The
/// cap itself still holds for full sessions: a sixth full login ends the oldest.
#[tokio::test]
async fn pending_logins_do_not_end_the_owners_full_sessions() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_915_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut owner = Vec::new();
    for _ in 0..MAX_SESSIONS_PER_USER {
        owner.push(WebClient::logged_in(gateway, unique_ip(), &user, &deps).await);
        // A new TOTP step for each login: a code works once.
        clock.advance(Duration::from_secs(30));
    }
    for n in 0..10 {
        let mut attacker = WebClient::new(gateway, unique_ip());
        let step1 = attacker.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
        assert_eq!((step1.status, step1.location()), (303, "/auth/login/totp"), "pending login {n}: {}", step1.text);
        clock.advance(Duration::from_secs(1));
    }
    for (n, browser) in owner.iter_mut().enumerate() {
        let page = browser.get_json("/dashboard").await;
        assert_eq!(page.status, 200, "the owner's session {n} survived ten pending logins: {}", page.text);
    }
    clock.advance(Duration::from_secs(30));
    let mut sixth = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    assert_eq!(sixth.get_json("/dashboard").await.status, 200);
    assert_eq!(owner[0].get_json("/dashboard").await.status, 401, "the oldest full session ended at the sixth");
    for (n, browser) in owner.iter_mut().enumerate().skip(1) {
        assert_eq!(browser.get_json("/dashboard").await.status, 200, "full session {n} stays");
    }
}

/// The default login budgets (5 per minute per address and per username) on a frozen clock at the
/// start of a minute, so a test can move to the next TOTP step (30 s) inside one budget window.
async fn default_budgets_with_a_user() -> (Arc<Deps>, std::net::SocketAddr, kavach_tests::WebUser, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_900_000_020)));
    let (deps, gateway, user) = gateway_with_web_user(&[], clock.clone()).await;
    (deps, gateway, user, clock)
}

/// `times` wrong passwords for `username`, each from `browser`'s address; their statuses.
async fn wrong_passwords(browser: &mut WebClient, username: &str, times: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..times {
        statuses.push(
            browser.post_json("/auth/login", &[("username", username), ("password", "Wrong1!pass")]).await.status,
        );
    }
    statuses
}

#[tokio::test]
async fn successful_logins_never_spend_the_username_budget() {
    let (_, gateway, user, _) = default_budgets_with_a_user().await;
    for n in 0..7 {
        let mut browser = WebClient::new(gateway, unique_ip());
        let page = browser.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
        assert_eq!((page.status, page.location()), (303, "/auth/login/totp"), "right password {n}: {}", page.text);
    }
}

/// OWASP's device cookies: an attacker who spends the username's budget with wrong passwords does
/// not lock out the browser its owner logged in with before, from whatever address; a browser
/// without one (or with a forged one) waits out the window: the documented trade-off.
#[tokio::test]
async fn a_spent_username_budget_does_not_lock_out_the_owners_browser() {
    let (deps, gateway, user, clock) = default_budgets_with_a_user().await;
    let home = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    assert_eq!(home.devices.len(), 1, "a full login leaves a device cookie");

    let mut attacker = WebClient::new(gateway, unique_ip());
    assert_eq!(wrong_passwords(&mut attacker, &user.username, 5).await, [401; 5]);
    let mut second = WebClient::new(gateway, unique_ip());
    assert_eq!(wrong_passwords(&mut second, &user.username, 1).await, [429], "the username's budget is spent");
    // A made-up device cookie under the account's cookie name is no device cookie.
    let mut forger = WebClient::new(gateway, unique_ip());
    forger.devices = vec![(home.devices[0].0.clone(), "made-up.99999999999999.AAAA".into())];
    let forged = forger.post_json("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!(forged.status, 429, "{}", forged.text);

    // The owner's browser, even on another network, logs in all the way.
    clock.advance(Duration::from_secs(30));
    let code = user.code(&deps);
    let mut owner = home.same_browser_from(gateway, unique_ip());
    let step1 = owner.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!((step1.status, step1.location()), (303, "/auth/login/totp"), "{}", step1.text);
    let csrf = owner.get("/auth/login/totp").await.csrf();
    let step2 = owner.post("/auth/login/totp", &[("totp_code", &code), ("csrf_token", &csrf)]).await;
    assert_eq!((step2.status, step2.location()), (303, "/dashboard"), "{}", step2.text);

    // A browser that never logged in to the account is held to its spent budget.
    let mut new_browser = WebClient::new(gateway, unique_ip());
    let page =
        new_browser.post_json("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!(page.status, 429, "{}", page.text);
}

/// Failures with a device cookie are charged to that cookie alone (OWASP's device lockout): it is
/// refused after five, and the account's budget, which it never touched, still admits others.
#[tokio::test]
async fn failures_with_a_device_cookie_lock_that_cookie_not_the_account() {
    let (deps, gateway, user, _) = default_budgets_with_a_user().await;
    let home = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        // A fresh address each time, so only the cookie's budget can refuse.
        let mut same_browser = home.same_browser_from(gateway, unique_ip());
        statuses.extend(wrong_passwords(&mut same_browser, &user.username, 1).await);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "the cookie's own budget");
    let mut other = WebClient::new(gateway, unique_ip());
    let page = other.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!((page.status, page.location()), (303, "/auth/login/totp"), "the account's budget is untouched");
}
