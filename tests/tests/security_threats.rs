//! Threat detection over real HTTP through the local gateway: the detectors, bans and their
//! escalation, the security dashboard's JSON API, and the traffic log. Attackers are loopback
//! sources such as 127.x.y.z, bannable because `scripts/test` narrows the never-ban set to
//! 127.0.0.1 and ::1.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use kavach_tests::web::WebClient;
use kavach_tests::*;
use shared::Deps;
use shared::core::clock::{Clock, SystemClock};
use shared::threats::{Detector, SecuritySettings};
use tokio::sync::RwLock;

/// The settings are one item for the whole stack: tests that count on the defaults hold this for
/// reading, the test that changes them holds it for writing.
static SETTINGS: RwLock<()> = RwLock::const_new(());

const HOME: &str = "127.0.0.1";

fn home() -> IpAddr {
    HOME.parse().expect("ip")
}

/// A key of the right shape whose secret is wrong: the id resolves, the Argon2 check fails.
fn wrong_secret(key: &str) -> String {
    let mut wrong = key.to_owned();
    let last = if wrong.ends_with('0') { '1' } else { '0' };
    wrong.pop();
    wrong.push(last);
    wrong
}

/// An administrator logged in from `source`.
async fn admin_client(deps: &Deps, gateway: SocketAddr, source: IpAddr) -> WebClient {
    WebClient::logged_in(gateway, source, &new_admin(deps).await, deps).await
}

/// A JSON POST from a logged-in client, with its session's CSRF token.
async fn admin_post(client: &mut WebClient, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let csrf = client.csrf_token().await;
    let page = client.post_with(path, form, &[("accept", "application/json"), ("x-csrf-token", &csrf)]).await;
    (page.status, page.json())
}

/// A ping from `attacker` presenting `body`, every forwarding header naming someone else: the
/// bystander, or home in `CF-Connecting-IP` on even attempts.
fn forged_ping(
    gateway: SocketAddr,
    attacker: IpAddr,
    bystander: IpAddr,
    i: usize,
    body: String,
) -> reqwest::RequestBuilder {
    client_from(attacker)
        .post(format!("http://{gateway}/api/v1/ping"))
        .header("x-forwarded-for", bystander.to_string())
        .header("x-real-ip", bystander.to_string())
        .header("cf-connecting-ip", if i.is_multiple_of(2) { HOME.to_owned() } else { bystander.to_string() })
        .body(body)
}

/// The ten bad keys the invalid-key detector tolerates, made-up keys and wrong secrets of `key` in
/// turn, with forged forwarding headers.
async fn ten_bad_keys(gateway: SocketAddr, attacker: IpAddr, bystander: IpAddr, key: &str) {
    for i in 0..10usize {
        let presented = if i.is_multiple_of(2) { format!("made-up-key-{i}") } else { wrong_secret(key) };
        let reply = post_with(forged_ping(gateway, attacker, bystander, i, ping_body(&presented))).await;
        assert_eq!((reply.status, reply.body["code"].as_str()), (403, Some("invalid_apikey")), "bad key {i}");
    }
}

/// The eleventh bad key from `attacker`, over the threshold.
async fn eleventh_bad_key(gateway: SocketAddr, attacker: IpAddr, bystander: IpAddr) -> Reply {
    post_with(forged_ping(gateway, attacker, bystander, 10, ping_body("made-up-key-10"))).await
}

/// `attacker` banned by the invalid-key detector for eleven bad keys with forged headers.
async fn banned_for_bad_keys(gateway: SocketAddr, attacker: IpAddr, bystander: IpAddr, key: &str) {
    ten_bad_keys(gateway, attacker, bystander, key).await;
    let eleventh = eleventh_bad_key(gateway, attacker, bystander).await;
    assert_eq!((eleventh.status, eleventh.body["code"].as_str()), (403, Some("ip_banned")));
}

#[tokio::test]
async fn the_11th_bad_key_bans_the_address_for_24_hours() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let (attacker, bystander) = (unique_ip(), unique_ip());
    ten_bad_keys(gateway, attacker, bystander, &key).await;
    let now = SystemClock.now();
    assert!(deps.bans.active(attacker, now).await.expect("read").is_none(), "ten bad keys are within the threshold");

    let eleventh = eleventh_bad_key(gateway, attacker, bystander).await;
    assert_eq!((eleventh.status, eleventh.body["code"].as_str()), (403, Some("ip_banned")));
    let ban = deps.bans.active(attacker, SystemClock.now()).await.expect("read").expect("banned");
    assert_eq!(ban.created_by, "api_key_detector");
    assert!(ban.reason.contains("invalid API key threshold: 11 attempts"), "{}", ban.reason);
    assert_eq!(
        ban.expires_at.map(|at| at.since(ban.banned_at)),
        Some(Duration::from_secs(24 * 3600)),
        "first offence: 24 hours"
    );
}

#[tokio::test]
async fn an_address_banned_for_bad_keys_is_refused_everywhere_without_a_valid_credential() {
    let _defaults = SETTINGS.read().await;
    let (_, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let attacker = unique_ip();
    banned_for_bad_keys(gateway, attacker, unique_ip(), &key).await;
    let (status, _) = get_text(gateway, attacker, "/auth/login").await;
    assert_eq!(status, 403, "pages too");
    // A detector's ban spares a valid credential (third_party_bans.rs has the whole rule).
    assert_eq!(post(gateway, attacker, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn forged_forwarding_headers_ban_the_sender_never_the_addresses_they_name() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let bystander = unique_ip();
    banned_for_bad_keys(gateway, unique_ip(), bystander, &key).await;
    assert_eq!(post(gateway, bystander, "/api/v1/ping", &ping_body(&key)).await.status, 200, "forged headers");
    assert_eq!(post(gateway, home(), "/api/v1/ping", &ping_body(&key)).await.status, 200);
    assert!(deps.bans.active(bystander, SystemClock.now()).await.expect("read").is_none());
}

#[tokio::test]
async fn the_invalid_key_tracker_holds_short_hashes_of_the_keys_tried_never_the_keys() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let attacker = unique_ip();
    banned_for_bad_keys(gateway, attacker, unique_ip(), &key).await;
    // The dashboard shows these hashes.
    let trackers = deps.trackers.list(Detector::InvalidApiKey, SystemClock.now()).await.expect("list");
    let record = trackers.iter().find(|tracker| tracker.ip == attacker).expect("tracked");
    assert_eq!(record.count, 11);
    assert!(record.evidence.iter().all(|hash| hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit())));
    assert!(!record.evidence.iter().any(|hash| key.contains(hash.as_str())));
}

#[tokio::test]
async fn home_is_never_counted_however_many_bad_keys_it_sends() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    // Home and its neighbours in the never-ban set are never counted, however many bad keys.
    for i in 0..12 {
        assert_eq!(post(gateway, home(), "/api/v1/ping", &ping_body(&format!("home-typo-{i}"))).await.status, 403);
    }
    assert_eq!(post(gateway, home(), "/api/v1/ping", &ping_body(&key)).await.status, 200);
    let trackers = deps.trackers.list(Detector::InvalidApiKey, SystemClock.now()).await.expect("list");
    assert!(!trackers.iter().any(|tracker| tracker.ip == home()), "no count is kept for home");
}

#[tokio::test]
async fn the_21st_404_from_one_address_bans_it() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let scanner = unique_ip();
    for i in 0..20 {
        let (status, body) = get_text(gateway, scanner, &format!("/wp-admin/probe-{i}.php?x=1")).await;
        assert_eq!(status, 404, "miss {i}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body["message"], "Not found");
    }
    assert!(deps.bans.active(scanner, SystemClock.now()).await.expect("read").is_none());
    let (status, _) = get_text(gateway, scanner, "/.env").await;
    assert_eq!(status, 403, "the 21st miss bans");
    let ban = deps.bans.active(scanner, SystemClock.now()).await.expect("read").expect("banned");
    assert_eq!(ban.created_by, "404_detector");
    assert_eq!(post(gateway, scanner, "/api/v1/ping", &ping_body("made-up")).await.status, 403);
    assert_eq!(post(gateway, scanner, "/api/v1/ping", &ping_body(&key)).await.status, 200, "a valid key passes");

    let trackers = deps.trackers.list(Detector::NotFound, SystemClock.now()).await.expect("list");
    let record = trackers.iter().find(|tracker| tracker.ip == scanner).expect("tracked");
    assert_eq!(record.count, 21);
    assert!(record.evidence.contains(&"/wp-admin/probe-7.php".to_owned()), "paths without query strings");
}

#[tokio::test]
async fn well_known_paths_are_never_counted_as_404s() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let scanner = unique_ip();
    // 24 misses on paths browsers and crawlers ask for by themselves: more than the threshold.
    for path in ["/favicon.ico", "/robots.txt", "/.well-known/security.txt", "/apple-touch-icon.png"] {
        for _ in 0..6 {
            assert_eq!(get_text(gateway, scanner, path).await.0, 404, "{path}");
        }
    }
    // Then one miss that counts, so the address has a record to read.
    assert_eq!(get_text(gateway, scanner, "/wp-admin/probe.php").await.0, 404, "not banned");
    let trackers = deps.trackers.list(Detector::NotFound, SystemClock.now()).await.expect("list");
    let record = trackers.iter().find(|tracker| tracker.ip == scanner).expect("tracked");
    assert_eq!(record.count, 1, "only the last miss counted");
    assert!(!record.evidence.iter().any(|path| path.starts_with("/favicon")));
}

#[tokio::test]
async fn a_logged_in_trader_who_mistypes_urls_is_never_counted_as_a_scanner() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let trader_ip = unique_ip();
    let trader = new_web_user(&deps).await;
    let mut browser = WebClient::logged_in(gateway, trader_ip, &trader, &deps).await;
    for i in 0..25 {
        assert_eq!(browser.get(&format!("/no-such-page-{i}")).await.status, 404);
    }
    assert_eq!(browser.get("/dashboard").await.status, 200, "still served");
    assert!(deps.bans.active(trader_ip, SystemClock.now()).await.expect("read").is_none());
}

#[tokio::test]
async fn twenty_concurrent_triggers_make_one_ban_and_one_offence() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let attacker = unique_ip();
    for i in 0..10 {
        assert_eq!(post(gateway, attacker, "/api/v1/ping", &ping_body(&format!("bad-{i}"))).await.status, 403);
    }
    let bodies: Vec<String> = (0..20).map(|i| ping_body(&format!("burst-{i}"))).collect();
    let burst = bodies.iter().map(|body| post(gateway, attacker, "/api/v1/ping", body));
    let replies = futures::future::join_all(burst).await;
    assert!(replies.iter().all(|reply| reply.status == 403));
    assert!(replies.iter().any(|reply| reply.body["code"] == "ip_banned"));
    let ban = deps.bans.active(attacker, SystemClock.now()).await.expect("read").expect("banned");
    assert_eq!(ban.ban_count, 1);
    assert_eq!(deps.bans.offences(attacker, SystemClock.now()).await.expect("offences"), 1, "escalated exactly once");
    assert!(!ban.is_permanent());
}

#[tokio::test]
async fn bans_escalate_to_permanent_at_the_third_offence() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let operator_ip = unique_ip();
    let mut operator = admin_client(&deps, gateway, operator_ip).await;
    let offender = unique_ip();
    let target = offender.to_string();

    // An address is banned once at a time: each ban but the last is lifted to make the next.
    for offence in 1..=3u64 {
        let (status, body) = admin_post(
            &mut operator,
            "/security/ban",
            &[("ip_address", &target), ("reason", "testing escalation"), ("duration_hours", "48")],
        )
        .await;
        assert_eq!(status, 200, "ban {offence}: {body}");
        assert_eq!(post(gateway, offender, "/api/v1/ping", &ping_body(&key)).await.status, 403);
        let ban = deps.bans.active(offender, SystemClock.now()).await.expect("read").expect("banned");
        assert_eq!((ban.ban_count, ban.created_by.as_str()), (offence, "manual"));
        if offence < 3 {
            assert_eq!(
                ban.expires_at.map(|at| at.since(ban.banned_at)),
                Some(Duration::from_secs(48 * 3600)),
                "offence {offence}: as asked"
            );
            let (status, body) = admin_post(&mut operator, "/security/unban", &[("ip_address", &target)]).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(post(gateway, offender, "/api/v1/ping", &ping_body(&key)).await.status, 200, "at once");
        } else {
            assert!(ban.is_permanent(), "the third offence is permanent");
            assert!(body["message"].as_str().expect("message").contains("permanently"));
        }
    }
    // The dashboard lists it, permanent, with the times in IST.
    let data = operator.get_json("/security/api/data").await.json();
    let listed = data["banned_ips"].as_array().expect("bans").iter().find(|ban| ban["ip_address"] == target).cloned();
    let listed = listed.expect("listed");
    assert_eq!((listed["is_permanent"].as_bool(), listed["ban_count"].as_u64()), (Some(true), Some(3)));
    assert!(listed["banned_at"].as_str().expect("time").ends_with("IST"));
}

#[tokio::test]
async fn unbanning_a_permanent_ban_restores_access_at_once() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let offender = unique_ip();
    let target = offender.to_string();
    // The form's duration 0 is permanent, as the third offence makes it.
    let (status, body) =
        admin_post(&mut operator, "/security/ban", &[("ip_address", &target), ("duration_hours", "0")]).await;
    assert_eq!(status, 200, "{body}");
    let ban = deps.bans.active(offender, SystemClock.now()).await.expect("read").expect("banned");
    assert!(ban.is_permanent());
    assert_eq!(post(gateway, offender, "/api/v1/ping", &ping_body(&key)).await.status, 403);

    assert_eq!(admin_post(&mut operator, "/security/unban", &[("ip_address", &target)]).await.0, 200);
    assert_eq!(post(gateway, offender, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn unbanning_an_address_that_is_not_banned_is_a_named_404() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let target = unique_ip().to_string();
    // Banned and unbanned, so the address has an offender history but no ban.
    assert_eq!(admin_post(&mut operator, "/security/ban", &[("ip_address", &target)]).await.0, 200);
    assert_eq!(admin_post(&mut operator, "/security/unban", &[("ip_address", &target)]).await.0, 200);
    let (status, body) = admin_post(&mut operator, "/security/unban", &[("ip_address", &target)]).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("IP not found in ban list")));
}

#[tokio::test]
async fn manual_bans_are_validated() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let operator_ip = unique_ip();
    let mut operator = admin_client(&deps, gateway, operator_ip).await;
    let refusals = [
        ("not-an-ip", "Invalid IP address format"),
        (&operator_ip.to_string() as &str, "Cannot ban your own IP address"),
        (HOME, "never-ban"),
        ("::1", "never-ban"),
    ];
    for (ip, message) in refusals {
        let (status, body) = admin_post(&mut operator, "/security/ban", &[("ip_address", ip)]).await;
        assert_eq!(status, 400, "{ip}: {body}");
        assert!(body["message"].as_str().expect("message").contains(message), "{ip}: {body}");
    }
    let (status, body) =
        admin_post(&mut operator, "/security/ban", &[("ip_address", "198.18.0.1"), ("duration_hours", "9000")]).await;
    assert_eq!(status, 400, "{body}");
    let target = unique_ip().to_string();
    assert_eq!(admin_post(&mut operator, "/security/ban", &[("ip_address", &target)]).await.0, 200);
    let (status, body) = admin_post(&mut operator, "/security/ban", &[("ip_address", &target)]).await;
    assert_eq!(status, 400, "already banned: {body}");
    assert_eq!(admin_post(&mut operator, "/security/unban", &[("ip_address", &target)]).await.0, 200);
}

/// The dashboard's pages and JSON, and the traffic log's.
const ADMIN_PATHS: [&str; 4] = ["/security", "/security/api/data", "/logs", "/logs/export"];

#[tokio::test]
async fn a_trader_who_is_not_the_administrator_gets_403_from_the_dashboard() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let trader = new_web_user(&deps).await;
    let mut browser = WebClient::logged_in(gateway, unique_ip(), &trader, &deps).await;
    for path in ADMIN_PATHS {
        assert_eq!(browser.get_json(path).await.status, 403, "{path}");
    }
    let target = unique_ip().to_string();
    let (status, _) = admin_post(&mut browser, "/security/unban", &[("ip_address", &target)]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_visitor_without_a_session_gets_401_from_the_dashboard() {
    let _defaults = SETTINGS.read().await;
    let (_, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    for path in ADMIN_PATHS {
        assert_eq!(WebClient::new(gateway, unique_ip()).get_json(path).await.status, 401, "{path}");
    }
}

#[tokio::test]
async fn a_dashboard_write_without_the_sessions_csrf_token_is_400() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let page = operator.post_json("/security/ban", &[("ip_address", "198.18.0.9")]).await;
    assert_eq!(page.status, 400, "no CSRF token");
}

#[tokio::test]
async fn settings_out_of_range_are_refused_naming_the_range() {
    let _exclusive = SETTINGS.write().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let threshold = admin_post(&mut operator, "/security/settings", &[("404_threshold", "0")]).await;
    let duration = admin_post(&mut operator, "/security/settings", &[("api_ban_duration", "9000")]).await;

    // Restore before asserting, so a failure here cannot leave other suites with these settings.
    deps.trackers.save_settings(&SecuritySettings::default()).await.expect("restore defaults");

    let (status, body) = threshold;
    assert_eq!((status, body["message"].as_str()), (400, Some("404 threshold must be between 1 and 1000")));
    let (status, body) = duration;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Ban duration must be Permanent (0) or between 1 hour and 1 year"))
    );
}

#[tokio::test]
async fn a_settings_change_applies_to_the_next_request() {
    let _exclusive = SETTINGS.write().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;

    let (status, body) =
        admin_post(&mut operator, "/security/settings", &[("api_threshold", "2"), ("api_ban_duration", "0")]).await;
    let attacker = unique_ip();
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses
            .push(post(gateway, attacker, "/api/v1/ping", &ping_body(&format!("x-{i}"))).await.body["code"].clone());
    }
    let ban = deps.bans.active(attacker, SystemClock.now()).await.expect("read");

    // Restore before asserting, so a failure here cannot leave other suites with these settings.
    deps.trackers.save_settings(&SecuritySettings::default()).await.expect("restore defaults");

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["api_threshold"], 2);
    assert_eq!(
        statuses,
        ["invalid_apikey", "invalid_apikey", "ip_banned"],
        "the third bad key is over a threshold of 2"
    );
    assert!(ban.expect("banned").is_permanent(), "a duration of 0 is permanent");
}

#[tokio::test]
async fn with_auto_ban_off_offenders_are_counted_but_not_banned() {
    let _exclusive = SETTINGS.write().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    // A threshold of 2, so the five bad keys below would ban were auto-ban on.
    let (status, body) = admin_post(&mut operator, "/security/settings", &[("api_threshold", "2")]).await;
    let (off_status, _) = admin_post(&mut operator, "/security/settings", &[("auto_ban_enabled", "false")]).await;
    let quiet = unique_ip();
    for i in 0..5 {
        post(gateway, quiet, "/api/v1/ping", &ping_body(&format!("q-{i}"))).await;
    }
    let quiet_ban = deps.bans.active(quiet, SystemClock.now()).await.expect("read");
    let counted = deps.trackers.list(Detector::InvalidApiKey, SystemClock.now()).await.expect("list");

    // Restore before asserting, so a failure here cannot leave other suites with these settings.
    deps.trackers.save_settings(&SecuritySettings::default()).await.expect("restore defaults");

    assert_eq!(status, 200, "{body}");
    assert_eq!(off_status, 200);
    assert!(quiet_ban.is_none(), "auto-ban off: counted, not banned");
    let record = counted.iter().find(|tracker| tracker.ip == quiet).expect("counted");
    assert_eq!(record.count, 5);
}

/// A traffic table of the test's own, with the template's key schema: what the log tests read then
/// does not grow with every request the rest of the suite makes in the same hour.
async fn own_traffic_table() -> String {
    kavach_tests::scratch_table(&deps().await.aws, "traffic", &["pk", "sk"]).await
}

/// A ping and a 404 with a secret in its query from a new address, both in the traffic log: the
/// address.
async fn logged_traffic(deps: &Deps, gateway: SocketAddr, key: &str) -> IpAddr {
    let caller = unique_ip();
    assert_eq!(post(gateway, caller, "/api/v1/ping", &ping_body(key)).await.status, 200);
    assert_eq!(get_text(gateway, caller, "/no-such-thing?apikey=secret-in-query").await.0, 404);
    // Records are written after the response: wait until both are stored.
    traffic_items(deps, caller, 2).await;
    caller
}

#[tokio::test]
async fn the_traffic_log_lists_an_addresss_requests_newest_first_without_query_strings() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) =
        gateway_with_user(&[("TRAFFIC_TABLE", &own_traffic_table().await)], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let caller = logged_traffic(&deps, gateway, &key).await;

    let logs = operator.get_json(&format!("/logs?ip={caller}")).await.json();
    let logs = logs["logs"].as_array().expect("logs").clone();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0]["path"], "/no-such-thing", "newest first, no query string");
    assert_eq!((logs[0]["status_code"].as_u64(), logs[0]["method"].as_str()), (Some(404), Some("GET")));
    assert_eq!((logs[1]["path"].as_str(), logs[1]["status_code"].as_u64()), (Some("/api/v1/ping"), Some(200)));
    assert!(logs[1]["user"].as_str().is_some_and(|user| !user.is_empty()), "the key's user");
    assert!(logs[0]["timestamp"].as_str().expect("time").ends_with("IST"));
}

#[tokio::test]
async fn the_traffic_log_filters_by_status() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) =
        gateway_with_user(&[("TRAFFIC_TABLE", &own_traffic_table().await)], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let caller = logged_traffic(&deps, gateway, &key).await;
    let only_404 = operator.get_json(&format!("/logs?ip={caller}&status=404")).await.json();
    assert_eq!(only_404["logs"].as_array().expect("logs").len(), 1);
}

#[tokio::test]
async fn the_traffic_log_filters_by_path() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) =
        gateway_with_user(&[("TRAFFIC_TABLE", &own_traffic_table().await)], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let caller = logged_traffic(&deps, gateway, &key).await;
    let by_path = operator.get_json(&format!("/logs?ip={caller}&path=ping")).await.json();
    assert_eq!(by_path["logs"].as_array().expect("logs").len(), 1);
}

#[tokio::test]
async fn the_traffic_log_refuses_a_malformed_filter_with_400() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    assert_eq!(operator.get_json("/logs?status=abc").await.status, 400);
    assert_eq!(operator.get_json("/logs?ip=nope").await.status, 400);
}

#[tokio::test]
async fn the_traffic_log_exports_csv_without_query_strings() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) =
        gateway_with_user(&[("TRAFFIC_TABLE", &own_traffic_table().await)], Arc::new(SystemClock)).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let caller = logged_traffic(&deps, gateway, &key).await;
    let csv = operator.get(&format!("/logs/export?ip={caller}")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"].to_str().expect("type").starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "timestamp_ist,timestamp_utc_ms,client_ip,method,path,status_code,duration_ms,user,route");
    assert_eq!(lines.len(), 3);
    assert!(lines[1].contains("/no-such-thing") && !csv.text.contains("secret-in-query"));
}

/// A gateway whose security table (bans, detector counts, settings) does not exist, on
/// `STORE_OUTAGE_READS` = `policy` when given, and a user's key.
async fn security_table_unreachable(policy: Option<&str>) -> (SocketAddr, String) {
    let deps = deps().await;
    let (_, key) = new_user(&deps).await;
    let mut overrides = vec![("SECURITY_TABLE", "kavach-no-such-table")];
    overrides.extend(policy.map(|policy| ("STORE_OUTAGE_READS", policy)));
    let gateway = start_gateway(cold_start(config_with(&overrides), Arc::new(SystemClock)).await).await;
    (gateway, key)
}

#[tokio::test]
async fn with_the_security_table_unreachable_requests_are_refused_with_503_by_default() {
    let (refuse, key) = security_table_unreachable(None).await;
    let ip = unique_ip();
    assert_eq!(post(refuse, ip, "/api/v1/ping", &ping_body(&key)).await.status, 503, "default: refuse");
    assert_eq!(post(refuse, ip, "/api/v1/funds", &ping_body(&key)).await.status, 503);
}

#[tokio::test]
async fn with_the_security_table_unreachable_and_store_outage_reads_serve_reads_go_on() {
    let (serve, key) = security_table_unreachable(Some("serve")).await;
    let ip = unique_ip();
    assert_eq!(post(serve, ip, "/api/v1/ping", &ping_body(&key)).await.status, 200, "serve: reads go on");
    assert_eq!(post(serve, ip, "/api/v1/funds", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn with_the_security_table_unreachable_and_store_outage_reads_serve_a_bad_key_still_fails() {
    let (serve, _) = security_table_unreachable(Some("serve")).await;
    assert_eq!(
        post(serve, unique_ip(), "/api/v1/ping", &ping_body("made-up")).await.status,
        503,
        "a bad key still fails"
    );
}

#[tokio::test]
async fn with_the_security_table_unreachable_orders_fail_closed_whatever_store_outage_reads_says() {
    let (serve, key) = security_table_unreachable(Some("serve")).await;
    let order = serde_json::json!({
        "apikey": key, "strategy": "outage", "symbol": "SBIN", "exchange": "NSE", "action": "BUY",
        "quantity": "1", "pricetype": "MARKET", "product": "MIS"
    })
    .to_string();
    assert_eq!(post(serve, unique_ip(), "/api/v1/placeorder", &order).await.status, 503, "orders always fail closed");
}

#[tokio::test]
async fn logins_refused_by_the_address_budget_ban_the_address() {
    let _defaults = SETTINGS.read().await;
    // The short budget over an hour rather than a minute: a fixed minute window can close between
    // spending a budget and probing it on a slow machine, and the test would see a fresh budget.
    let (deps, gateway, _) =
        gateway_with_web_user(&[("LOGIN_RATE_LIMIT_MIN", "5 per hour")], Arc::new(SystemClock)).await;
    let sprayer = unique_ip();
    // 5 attempts per address are admitted; the 11th refusal after them bans.
    let mut codes = Vec::new();
    for i in 0..16 {
        let mut browser = WebClient::new(gateway, sprayer);
        let page =
            browser.post_json("/auth/login", &[("username", &format!("nobody-{i}")), ("password", "Wr0ng!pass")]).await;
        codes.push(page.status);
    }
    assert_eq!(&codes[..5], [401; 5], "{codes:?}");
    assert_eq!(&codes[5..15], [429; 10], "{codes:?}");
    assert_eq!(codes[15], 403, "the 11th refusal bans: {codes:?}");
    let ban = deps.bans.active(sprayer, SystemClock.now()).await.expect("read").expect("banned");
    assert_eq!(ban.created_by, "login_detector");
}

#[tokio::test]
async fn a_spent_username_budget_refuses_the_users_logins_without_banning_their_address() {
    let _defaults = SETTINGS.read().await;
    // An hour's budget, as above, so the window cannot close mid-test.
    let (deps, gateway, victim) =
        gateway_with_web_user(&[("LOGIN_RATE_LIMIT_MIN", "5 per hour")], Arc::new(SystemClock)).await;
    // Someone hammering the trader's username from many addresses spends the username's budget,
    // which refuses the trader's own logins for a while, but never bans the trader's address.
    for _ in 0..6 {
        let mut other = WebClient::new(gateway, unique_ip());
        other.post("/auth/login", &[("username", &victim.username), ("password", "Wr0ng!pass")]).await;
    }
    let trader_ip = unique_ip();
    for _ in 0..5 {
        let mut trader = WebClient::new(gateway, trader_ip);
        let page = trader.post("/auth/login", &[("username", &victim.username), ("password", &victim.password)]).await;
        assert_eq!(page.status, 429, "the username's budget is spent");
    }
    let counted = deps.trackers.list(Detector::LoginAbuse, SystemClock.now()).await.expect("list");
    assert!(!counted.iter().any(|tracker| tracker.ip == trader_ip), "refusals for the username are not the address's");
    assert!(deps.bans.active(trader_ip, SystemClock.now()).await.expect("read").is_none());
}

/// The current `openalgo` SDK calls routes Kavach does not serve yet. A trader's own server making
/// those calls with its valid key must never be taken for a scanner.
#[tokio::test]
async fn a_traders_sdk_calling_openalgo_routes_kavach_lacks_is_told_so_and_never_banned() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let trader = unique_ip();
    for i in 0..25 {
        let route = ["symbol", "search", "expiry", "margin", "market/holidays"][i % 5];
        let reply = post(gateway, trader, &format!("/api/v1/{route}"), &ping_body(&key)).await;
        assert_eq!((reply.status, reply.body["code"].as_str()), (404, Some("route_not_supported")), "{route}");
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("/api/v1/{route}")), "the answer names the route: {message}");
    }
    assert_eq!(post(gateway, trader, "/api/v1/ping", &ping_body(&key)).await.status, 200, "still served");
    assert!(deps.bans.active(trader, SystemClock.now()).await.expect("read").is_none());
    let trackers = deps.trackers.list(Detector::NotFound, SystemClock.now()).await.expect("list");
    assert!(!trackers.iter().any(|tracker| tracker.ip == trader), "not one miss counted");
}

#[tokio::test]
async fn misses_that_carry_a_valid_api_key_are_never_counted() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let trader = unique_ip();
    for i in 0..25 {
        let reply = post(gateway, trader, &format!("/api/v1/a-route-of-the-future-{i}"), &ping_body(&key)).await;
        assert_eq!((reply.status, reply.body["code"].as_str()), (404, Some("not_found")));
    }
    assert_eq!(post(gateway, trader, "/api/v1/ping", &ping_body(&key)).await.status, 200, "still served");
    assert!(deps.bans.active(trader, SystemClock.now()).await.expect("read").is_none());
}

#[tokio::test]
async fn misses_with_a_made_up_key_still_count_and_ban() {
    let _defaults = SETTINGS.read().await;
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let scanner = unique_ip();
    // Well-formed, so the catch-all looks it up, but no such key exists.
    let made_up = shared::crypto::api_key::ApiKey::generate();
    for i in 0..20 {
        let reply = post(gateway, scanner, &format!("/probe-{i}.php"), &ping_body(made_up.expose())).await;
        assert_eq!(reply.status, 404, "miss {i}");
    }
    assert_eq!(
        post(gateway, scanner, "/probe-20.php", &ping_body(made_up.expose())).await.status,
        403,
        "the 21st bans"
    );
    assert_eq!(post(gateway, scanner, "/api/v1/ping", &ping_body(made_up.expose())).await.status, 403);
    assert_eq!(post(gateway, scanner, "/api/v1/ping", &ping_body(&key)).await.status, 200, "a detector's ban");
    assert!(deps.bans.active(scanner, SystemClock.now()).await.expect("read").is_some());
}

/// A ping event from `source`, as API Gateway delivers it: IPv6 sources cannot be made on a
/// laptop's loopback, so these tests call the function's handler with the event directly.
fn ping_event_from(source: &str, key: &str) -> lambda_http::Request {
    let text = serde_json::json!({
        "resource": "/api/v1/ping", "path": "/api/v1/ping", "httpMethod": "POST", "headers": {},
        "requestContext": {
            "identity": { "sourceIp": source }, "resourcePath": "/api/v1/ping", "httpMethod": "POST", "requestId": "r"
        },
        "body": ping_body(key), "isBase64Encoded": false
    });
    lambda_http::request::from_str(&text.to_string()).expect("event")
}

/// One subscriber's IPv6 network is one address: a ban on any address of a /64 holds for all of
/// it, so rotating through its 2^64 addresses escapes nothing; the next /64 is someone else.
#[tokio::test]
async fn an_ipv6_ban_holds_for_the_whole_64() {
    let _defaults = SETTINGS.read().await;
    let deps = deps().await;
    let (_, key) = new_user(&deps).await;
    // A block of its own per run: the emulator keeps bans between runs of one stack.
    let (a, b) = (std::process::id() % 0xffff, SystemClock.now().0 % 0xfffe);
    let (block, next_block) = (format!("2001:db8:{a:x}:{b:x}"), format!("2001:db8:{a:x}:{:x}", b + 1));
    let banned: std::net::IpAddr = format!("{block}::a").parse().expect("ip");
    let manual = shared::threats::ManualBan::new(banned, Some(1), "ipv6 test", &deps.config.never_ban, None)
        .expect("a valid ban");
    deps.threats().ban(&manual, SystemClock.now()).await.expect("ban");

    let same_network = ping::handler(&deps, ping_event_from(&format!("{block}:ffff:ffff:ffff:fffe"), &key)).await;
    assert_eq!(same_network.status(), 403, "another address of the same /64");
    let next_network = ping::handler(&deps, ping_event_from(&format!("{next_block}::a"), &key)).await;
    assert_eq!(next_network.status(), 200, "another /64");
}

/// The offender history is a year's memory: past its `expires_at` it is forgotten at once, even
/// while TTL (which runs up to days late) has not removed the item, so an old record cannot make a
/// new first offence the third, and permanent.
#[tokio::test]
async fn an_offender_history_past_its_year_is_forgotten_before_ttl_removes_it() {
    let _defaults = SETTINGS.read().await;
    let clock = Arc::new(shared::core::clock::ManualClock::at(SystemClock.now()));
    let deps = cold_start(config_with(&[]), clock.clone()).await;
    let ip = unique_ip();
    let manual = shared::threats::ManualBan::new(ip, Some(1), "history test", &deps.config.never_ban, None)
        .expect("a valid ban");
    for offence in 1..=2 {
        let ban = deps.threats().ban(&manual, clock.now()).await.expect("ban");
        assert_eq!(ban.ban_count, offence);
        deps.threats().unban(ip).await.expect("unban");
    }
    clock.advance(Duration::from_secs(366 * 86_400));
    let ban = deps.threats().ban(&manual, clock.now()).await.expect("ban");
    assert_eq!(ban.ban_count, 1, "a new history, not the third offence");
    assert!(!ban.is_permanent());
}

/// The rate-limit counter items whose key names `subject` (e.g. `ip#127.20.0.5`), as stored.
async fn counter_items(deps: &Deps, subject: &str) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let filter = ("contains(pk, :subject)", ":subject", AttributeValue::S(format!("#{subject}#")));
    scan_where(deps, &deps.config.tables.rate_limits, Some(filter)).await
}

#[tokio::test]
async fn a_banned_addresss_requests_leave_no_rate_limit_counter_behind() {
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let made_up = shared::crypto::api_key::ApiKey::generate();
    let made_up_subject = shared::limits::subject::Subject::ApiKey(&made_up).to_string();

    // An address that is not banned is counted, in the rate-limit table: the test looks where
    // counters are.
    let counted = unique_ip();
    assert_eq!(post(gateway, counted, "/api/v1/ping", &ping_body(made_up.expose())).await.status, 403);
    assert_eq!(get_text(gateway, counted, "/auth/login").await.0, 200);
    assert!(!counter_items(&deps, &format!("ip#{counted}")).await.is_empty(), "a page hit is counted per address");
    assert_eq!(counter_items(&deps, &made_up_subject).await.len(), 1, "a key's hit is counted per key");
    deps.aws
        .dynamodb
        .delete_item()
        .table_name(&deps.config.tables.rate_limits)
        .key("pk", counter_items(&deps, &made_up_subject).await[0]["pk"].clone())
        .send()
        .await
        .expect("forget the made-up key's counter");

    let banned = unique_ip();
    let terms = shared::store::bans::BanTerms {
        reason: "counters".into(),
        created_by: "manual",
        duration: Some(Duration::from_secs(3600)),
    };
    deps.bans.impose(banned, &terms, 3, SystemClock.now()).await.expect("ban").expect("a new ban");
    // Concurrently, every budgeted entry point: the API without a key, with a made-up key and with
    // a real one, a page, and a webhook; each refused, none leaving a counter.
    let made_up = &made_up;
    let requests = (0..8).map(|i| async move {
        let (status, what) = match i % 4 {
            0 => (post(gateway, banned, "/api/v1/ping", "{}").await.status, "keyless ping"),
            1 => (post(gateway, banned, "/api/v1/ping", &ping_body(made_up.expose())).await.status, "made-up key"),
            2 => (get_text(gateway, banned, "/auth/login").await.0, "page"),
            _ => (post(gateway, banned, "/strategy/webhook/no-such-hook", "{}").await.status, "webhook"),
        };
        assert_eq!(status, 403, "{what}");
    });
    futures::future::join_all(requests).await;
    assert_eq!(post(gateway, banned, "/api/v1/ping", &ping_body(&key)).await.status, 403, "a valid key too");

    assert_eq!(counter_items(&deps, &format!("ip#{banned}")).await, Vec::new(), "no counter for the banned address");
    assert_eq!(counter_items(&deps, &made_up_subject).await, Vec::new(), "nor for the key it made up");
}

#[tokio::test]
async fn the_dashboard_queries_its_lists_and_never_scans_nor_reads_the_counters() {
    let _defaults = SETTINGS.read().await;
    let deps = deps().await;
    deps.aws.stats.record_accesses();
    let gateway = start_gateway(deps.clone()).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let offender = unique_ip();
    let (status, body) = admin_post(&mut operator, "/security/ban", &[("ip_address", &offender.to_string())]).await;
    assert_eq!(status, 200, "{body}");
    let data = operator.get_json("/security/api/data").await.json();
    assert!(
        data["banned_ips"].as_array().expect("bans").iter().any(|ban| ban["ip_address"] == offender.to_string()),
        "the ban is listed: {data}"
    );
    assert_eq!(operator.get("/security").await.status, 200);

    let dashboard: Vec<_> =
        deps.aws.stats.accesses().into_iter().filter(|access| access.caller == "SecurityFunction").collect();
    let listed = format!("{}/index/listed", deps.config.tables.security);
    assert!(
        dashboard.iter().any(|access| access.action == "dynamodb:Query" && access.resource == listed),
        "{dashboard:#?}"
    );
    for access in &dashboard {
        assert_ne!(access.action, "dynamodb:Scan", "the dashboard scans: {access:?}");
        // The page gate charges the request's own counter, one UpdateItem by key; nothing reads them.
        if access.resource == deps.config.tables.rate_limits {
            assert_eq!(access.action, "dynamodb:UpdateItem", "the dashboard reads counters: {access:?}");
        }
    }
}

#[tokio::test]
async fn the_traffic_log_shows_exactly_the_newest_n_and_reads_no_more_than_it_shows() {
    let _defaults = SETTINGS.read().await;
    let deps = cold_start(config_with(&[("TRAFFIC_TABLE", &own_traffic_table().await)]), Arc::new(SystemClock)).await;
    deps.aws.stats.record_accesses();
    let gateway = start_gateway(deps.clone()).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    // 60 requests from one address two hours ago, a millisecond apart, newest last: an hour of
    // their own, so what the read returns does not depend on the traffic of tests running beside.
    let caller = unique_ip();
    let start = SystemClock.now().0 - 2 * 3_600_000 - 60_000;
    let planted = (0..60u64).map(|n| shared::http::traffic::TrafficRecord {
        at: shared::core::clock::UnixMillis(start + n),
        request_id: format!("planted-{n}"),
        client_ip: Some(caller),
        method: "GET".into(),
        path: format!("/planted/{n}"),
        status: 404,
        duration_us: 1,
        user: None,
        route: "not-found",
    });
    let stored = futures::future::join_all(planted.map(|record| {
        let deps = deps.clone();
        async move { deps.traffic.put(&record).await }
    }))
    .await;
    stored.into_iter().collect::<Result<Vec<()>, _>>().expect("plant traffic records");

    let before = deps.aws.stats.items_read("SecurityFunction");
    let reply = operator.get_json(&format!("/logs?ip={caller}&limit=10")).await.json();
    let read = deps.aws.stats.items_read("SecurityFunction") - before;
    let paths: Vec<&str> =
        reply["logs"].as_array().expect("logs").iter().map(|log| log["path"].as_str().expect("path")).collect();
    let newest: Vec<String> = (50..60).rev().map(|n| format!("/planted/{n}")).collect();
    assert_eq!(paths, newest, "exactly the newest ten, newest first");
    assert_eq!((reply["limit"].as_u64(), reply["more"].as_bool()), (Some(10), Some(true)), "{reply}");
    // Ten shown and one more to know there are more; a partition split at the hour may add one
    // hour's worth of the same, never the whole hour.
    assert!(read <= 22, "the log read {read} records for a page of 10");

    let page = operator.get(&format!("/logs?ip={caller}&limit=10")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.text.matches("class=\"log\"").count(), 10);
    assert!(page.element_text("more").is_some_and(|text| text.contains("newest 10")), "{}", page.text);
}

/// A filter is applied after DynamoDB's `Limit`, so a log filtered by address over a busy hour read
/// in pages of the page it shows would take a round trip per ten records of the hour (each a full
/// read of the partition in the emulator, which serialises every other request behind it). Pages
/// grow instead: 2,000 other requests in the hour take about nine Queries, not 180.
#[tokio::test]
async fn a_filtered_log_over_a_busy_hour_takes_a_handful_of_round_trips() {
    let _defaults = SETTINGS.read().await;
    let deps = cold_start(config_with(&[("TRAFFIC_TABLE", &own_traffic_table().await)]), Arc::new(SystemClock)).await;
    let gateway = start_gateway(deps.clone()).await;
    let mut operator = admin_client(&deps, gateway, unique_ip()).await;
    let (caller, others) = (unique_ip(), unique_ip());
    let start = SystemClock.now().0 - 3 * 3_600_000;
    let record = |n: u64, ip| shared::http::traffic::TrafficRecord {
        at: shared::core::clock::UnixMillis(start + n),
        request_id: format!("busy-{n}"),
        client_ip: Some(ip),
        method: "GET".into(),
        path: format!("/busy/{n}"),
        status: 404,
        duration_us: 1,
        user: None,
        route: "not-found",
    };
    // The caller's two requests first, then 2,000 newer ones from another address.
    let planted: Vec<_> = (0..2).map(|n| record(n, caller)).chain((2..2002).map(|n| record(n, others))).collect();
    for chunk in planted.chunks(200) {
        let stored = futures::future::join_all(chunk.iter().map(|record| deps.traffic.put(record))).await;
        stored.into_iter().collect::<Result<Vec<()>, _>>().expect("plant traffic records");
    }
    let queries = || deps.aws.stats.snapshot().by_operation.get("DynamoDB.Query").copied().unwrap_or(0);
    let before = queries();
    let reply = operator.get_json(&format!("/logs?ip={caller}&limit=10")).await.json();
    let used = queries() - before;
    let logs = reply["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 2, "both of the caller's requests: {reply}");
    // Fewer matches than the page: every hour partition of the retention period is read once
    // (most are empty), and the busy hour in growing pages (2,000 records: about nine), not in
    // pages of eleven (about 180).
    let hours = deps.config.traffic_retention_days * 24 + 1;
    assert!(used <= hours + 12, "the filtered log took {used} Queries for {hours} hours");
}
