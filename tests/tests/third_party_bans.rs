//! No third party can get a legitimate sender refused (security review, item 1), over real HTTP:
//! - a relay shared with strangers (TradingView's addresses, here a loopback address configured as
//!   `SHARED_SENDERS`) is never banned by a detector, and strangers' failures through it never
//!   refuse the trader's key or webhook;
//! - a detector's ban refuses only requests without a valid credential; a manual ban refuses all;
//! - requests another site's page makes the trader's browser send are never counted;
//! - webhook budgets are per id, with the address's failures as a backstop, and unknown ids from
//!   an ordinary address feed the 404 detector;
//! - a known key id with random secrets forces a bounded number of Argon2 verifications (item 19).

use std::net::{IpAddr, SocketAddr};

use kavach_tests::web::WebClient;
use kavach_tests::*;
use serde_json::json;
use shared::Deps;
use shared::threats::{Detector, ManualBan};

/// A key of the right shape whose secret is wrong: the id resolves, the Argon2 check fails.
fn wrong_secret(key: &str, variant: usize) -> String {
    let stem = &key[..key.len() - 4];
    (variant..).map(|n| format!("{stem}{:04x}", n % 0x10000)).find(|wrong| wrong != key).expect("a wrong secret")
}

/// A long-only webhook for a new user: its secret id.
async fn webhook_of_new_user(deps: &Deps) -> String {
    let (user, _) = new_user(deps).await;
    sbin_webhook(deps, &user, "Breakout", 1).await
}

async fn alert(gateway: SocketAddr, source: IpAddr, id: &str) -> Reply {
    post(gateway, source, &format!("/strategy/webhook/{id}"), &json!({ "symbol": "SBIN", "action": "BUY" }).to_string())
        .await
}

/// A well-formed id no webhook has, new on every call: a made-up id's own budget is shared by every
/// test that sends it in the same window (the clocks are frozen at one instant).
fn made_up_webhook_id(_: usize) -> String {
    hex::encode(shared::crypto::random_bytes::<16>())
}

async fn is_banned(deps: &Deps, ip: IpAddr) -> bool {
    deps.bans.active(ip, deps.clock.now()).await.expect("read bans").is_some()
}

/// What a stranger's own TradingView alerts can send through the relay: more bad keys than the
/// invalid-key detector tolerates, more unknown paths and unknown webhook ids than the 404
/// detector does.
async fn strangers_abuse_through(gateway: SocketAddr, relay: IpAddr, key: &str) {
    for i in 0..15 {
        let presented = if i % 2 == 0 { format!("made-up-{i}") } else { wrong_secret(key, i) };
        let reply = post(gateway, relay, "/api/v1/ping", &ping_body(&presented)).await;
        assert_eq!(reply.status, 403, "bad key {i}: {}", reply.body);
        assert_eq!(reply.body["code"], "invalid_apikey", "bad key {i}: never a ban");
    }
    for i in 0..25 {
        assert_eq!(get_text(gateway, relay, &format!("/wp-admin/probe-{i}.php")).await.0, 404, "unknown path {i}");
        assert_eq!(alert(gateway, relay, &made_up_webhook_id(i)).await.status, 404, "unknown webhook id {i}");
    }
}

#[tokio::test]
async fn strangers_alerts_through_a_shared_relay_never_get_it_banned_or_refuse_the_traders_own() {
    let relay = unique_ip();
    let shared = format!("{relay}/32");
    let (deps, gateway, key) =
        gateway_with_user(&[("SHARED_SENDERS", &shared), ("WEBHOOK_RATE_LIMIT", "10 per minute")], market_morning())
            .await;
    let id = webhook_of_new_user(&deps).await;
    strangers_abuse_through(gateway, relay, &key).await;

    assert!(!is_banned(&deps, relay).await, "a shared relay is never banned by a detector");
    for detector in [Detector::InvalidApiKey, Detector::NotFound] {
        let trackers = deps.trackers.list(detector, deps.clock.now()).await.expect("trackers");
        assert!(!trackers.iter().any(|tracker| tracker.ip == relay), "{detector:?} counted nothing for the relay");
    }
    // Strangers spent far more than the relay's webhook budget of failures; the trader's alert is
    // charged to its own id and still trades, and the trader's key still works from the relay.
    let real = alert(gateway, relay, &id).await;
    assert_eq!(real.status, 200, "{}", real.body);
    assert_eq!(post(gateway, relay, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn an_ordinary_address_is_still_banned_for_the_same_abuse() {
    let (deps, gateway, key) = gateway_with_user(&[("SHARED_SENDERS", "none")], market_morning()).await;
    let scanner = unique_ip();
    for i in 0..11 {
        post(gateway, scanner, "/api/v1/ping", &ping_body(&format!("made-up-{i}"))).await;
    }
    assert!(is_banned(&deps, scanner).await, "not on the shared-sender list: banned for bad keys");
    assert_eq!(post(gateway, scanner, "/api/v1/ping", &ping_body(&key)).await.status, 200, "a detector's ban");
}

#[tokio::test]
async fn unknown_webhook_ids_from_an_ordinary_address_feed_the_404_detector() {
    let (deps, gateway, _) = gateway_with_user(&[], market_morning()).await;
    let scanner = unique_ip();
    for i in 0..20 {
        assert_eq!(alert(gateway, scanner, &made_up_webhook_id(i)).await.status, 404, "miss {i}");
    }
    assert!(!is_banned(&deps, scanner).await, "twenty misses are within the threshold");
    let reply = alert(gateway, scanner, &made_up_webhook_id(20)).await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (403, Some("ip_banned")), "the 21st bans");
    let trackers = deps.trackers.list(Detector::NotFound, deps.clock.now()).await.expect("trackers");
    let record = trackers.iter().find(|tracker| tracker.ip == scanner).expect("tracked");
    assert_eq!(record.evidence, vec!["/strategy/webhook/{webhook_id}".to_owned()], "never the id itself");
}

#[tokio::test]
async fn webhook_budgets_are_per_id_with_the_addresss_failures_as_a_backstop() {
    let (deps, gateway, _) = gateway_with_user(&[("WEBHOOK_RATE_LIMIT", "3 per minute")], market_morning()).await;
    let (id, other_id) = (webhook_of_new_user(&deps).await, webhook_of_new_user(&deps).await);
    // One id's budget is shared by every address that sends it…
    for source in [unique_ip(), unique_ip(), unique_ip()] {
        assert_eq!(alert(gateway, source, &id).await.status, 200);
    }
    assert_eq!(alert(gateway, unique_ip(), &id).await.status, 429, "the id's fourth alert in a minute");
    // … and another id has its own, from the same addresses.
    assert_eq!(alert(gateway, unique_ip(), &other_id).await.status, 200);

    // An address's failures are the backstop: three unknown ids spend it, and then even a real id
    // from that address is refused, while the same id from elsewhere is served.
    let (deps, gateway, _) = gateway_with_user(&[("WEBHOOK_RATE_LIMIT", "3 per minute")], market_morning()).await;
    let id = webhook_of_new_user(&deps).await;
    let guesser = unique_ip();
    for i in 0..3 {
        assert_eq!(alert(gateway, guesser, &made_up_webhook_id(i)).await.status, 404);
    }
    assert_eq!(alert(gateway, guesser, &made_up_webhook_id(3)).await.status, 429, "failures over the budget");
    assert_eq!(alert(gateway, guesser, &id).await.status, 429, "the backstop holds for the guesser");
    assert_eq!(alert(gateway, unique_ip(), &id).await.status, 200, "and for nobody else");
}

#[tokio::test]
async fn a_detectors_ban_refuses_only_requests_without_a_valid_credential() {
    let (deps, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let id = webhook_of_new_user(&deps).await;
    let trader = new_web_user(&deps).await;
    let home = unique_ip();
    let mut browser = WebClient::logged_in(gateway, home, &trader, &deps).await;
    let home_banned = {
        for i in 0..21 {
            get_text(gateway, home, &format!("/wp-admin/probe-{i}.php")).await;
        }
        is_banned(&deps, home).await
    };
    assert!(home_banned, "21 misses without the session ban the address");

    // Without a valid credential: refused.
    assert_eq!(get_text(gateway, home, "/wp-admin/more.php").await.0, 403, "a miss");
    assert_eq!(get_text(gateway, home, "/auth/login").await.0, 403, "a page without a session");
    let made_up = post(gateway, home, "/api/v1/ping", &ping_body("made-up")).await;
    assert_eq!((made_up.status, made_up.body["code"].as_str()), (403, Some("ip_banned")), "a made-up key");
    let wrong = post(gateway, home, "/api/v1/ping", &ping_body(&wrong_secret(&key, 1))).await;
    assert_eq!((wrong.status, wrong.body["code"].as_str()), (403, Some("ip_banned")), "a wrong secret");
    assert_eq!(alert(gateway, home, &made_up_webhook_id(99)).await.status, 403, "an unknown webhook id");

    // With one: served.
    assert_eq!(post(gateway, home, "/api/v1/ping", &ping_body(&key)).await.status, 200, "the trader's key");
    assert_eq!(alert(gateway, home, &id).await.status, 200, "the trader's webhook");
    assert_eq!(browser.get("/dashboard").await.status, 200, "the trader's session");
}

#[tokio::test]
async fn a_manual_ban_refuses_valid_credentials_too() {
    let (deps, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let id = webhook_of_new_user(&deps).await;
    let ip = unique_ip();
    let manual = ManualBan::new(ip, Some(1), "operator's choice", &deps.config.never_ban, None).expect("manual ban");
    deps.threats().ban(&manual, deps.clock.now()).await.expect("ban");
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await.status, 403);
    assert_eq!(alert(gateway, ip, &id).await.status, 403);
    // A shared relay can be banned by hand, and then is refused like any other address.
    let relay = unique_ip();
    let (deps, gateway, key) = gateway_with_user(&[("SHARED_SENDERS", &format!("{relay}/32"))], market_morning()).await;
    let manual = ManualBan::new(relay, Some(1), "", &deps.config.never_ban, None).expect("manual ban");
    deps.threats().ban(&manual, deps.clock.now()).await.expect("ban");
    assert_eq!(post(gateway, relay, "/api/v1/ping", &ping_body(&key)).await.status, 403);
}

/// A request another site's page made the browser at `source` send, as Fetch Metadata marks it.
fn from_another_site(request: reqwest::RequestBuilder, destination: &str) -> reqwest::RequestBuilder {
    request
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
        .header("sec-fetch-dest", destination)
}

#[tokio::test]
async fn another_sites_page_cannot_get_the_traders_address_banned() {
    let (deps, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let home = unique_ip();
    let browser = client_from(home);
    // `<img src=…>` for thirty made-up paths and `fetch(…, {mode: "no-cors"})` with fifteen bad keys.
    for i in 0..30 {
        let image = from_another_site(browser.get(format!("http://{gateway}/wp-admin/x-{i}.php")), "image");
        assert_eq!(image.send().await.expect("reachable").status(), 404, "image {i}");
    }
    for i in 0..15 {
        let post = browser.post(format!("http://{gateway}/api/v1/ping")).body(ping_body(&format!("made-up-{i}")));
        let reply = post_with(from_another_site(post, "empty")).await;
        assert_eq!((reply.status, reply.body["code"].as_str()), (403, Some("invalid_apikey")), "post {i}");
    }
    assert!(!is_banned(&deps, home).await, "nothing another site caused was counted");
    for detector in [Detector::InvalidApiKey, Detector::NotFound] {
        let trackers = deps.trackers.list(detector, deps.clock.now()).await.expect("trackers");
        assert!(!trackers.iter().any(|tracker| tracker.ip == home), "{detector:?}");
    }
    assert_eq!(get_text(gateway, home, "/auth/login").await.0, 200, "the trader can still log in from home");
    assert_eq!(post(gateway, home, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn a_scanner_forging_the_cross_site_mark_is_metered_instead_of_counted() {
    let (deps, gateway, _) = gateway_with_user(&[("PAGE_RATE_LIMIT", "5 per minute")], market_morning()).await;
    let scanner = unique_ip();
    let client = client_from(scanner);
    for i in 0..5 {
        let probe = from_another_site(client.get(format!("http://{gateway}/.git/config-{i}")), "image");
        assert_eq!(probe.send().await.expect("reachable").status(), 404, "probe {i}");
    }
    let sixth = from_another_site(client.get(format!("http://{gateway}/.git/config-5")), "image");
    assert_eq!(sixth.send().await.expect("reachable").status(), 429, "over the address's page budget");
    assert!(!is_banned(&deps, scanner).await, "never banned for what it marked cross-site");
}

#[tokio::test]
async fn a_known_key_id_with_random_secrets_forces_at_most_the_failure_budget_of_verifications() {
    let overrides = [("KEY_FAILURE_RATE_LIMIT", "3 per minute")];
    let clock = market_morning();
    let (_, gateway, key) = gateway_with_user(&overrides, clock.clone()).await;
    // The owner's key, verified once by this container before the attack.
    assert_eq!(post(gateway, unique_ip(), "/api/v1/ping", &ping_body(&key)).await.status, 200);

    // Each attempt from a new address, so no address budget or detector is what stops it.
    let mut verified = 0;
    for i in 0..10 {
        let reply = post(gateway, unique_ip(), "/api/v1/ping", &ping_body(&wrong_secret(&key, i))).await;
        match (reply.status, reply.body["code"].as_str()) {
            (403, Some("invalid_apikey")) => verified += 1,
            (429, _) => assert!(reply.headers.contains_key("retry-after"), "429 says when to retry"),
            other => panic!("attempt {i}: {other:?} {}", reply.body),
        }
    }
    assert_eq!(verified, 3, "three failed verifications, then refused without verifying");

    // The owner's key goes on working where it is already verified…
    assert_eq!(post(gateway, unique_ip(), "/api/v1/ping", &ping_body(&key)).await.status, 200);
    // … a container that has not verified it yet waits for the window (the documented trade-off) …
    let cold = start_gateway(cold_start(config_with(&overrides), clock.clone()).await).await;
    assert_eq!(post(gateway, unique_ip(), "/api/v1/ping", &ping_body(&wrong_secret(&key, 77))).await.status, 429);
    assert_eq!(post(cold, unique_ip(), "/api/v1/ping", &ping_body(&key)).await.status, 429);
    // … and verifies it once the window has passed.
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(post(cold, unique_ip(), "/api/v1/ping", &ping_body(&key)).await.status, 200);
}
