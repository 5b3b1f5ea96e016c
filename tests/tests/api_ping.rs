//! `POST /api/v1/ping` over real HTTP through the local gateway, one test per row of the pipeline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kavach_tests::*;
use shared::core::clock::{Clock, ManualClock, SystemClock};
use shared::http::SECURITY_HEADERS;
use shared::store::bans::BanTerms;

/// Sends `count` pings in sequence, each of which must be admitted.
async fn spend_budget(gateway: SocketAddr, ip: IpAddr, key: &str, count: u32) {
    for n in 1..=count {
        assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(key)).await.status, 200, "request {n}");
    }
}

fn assert_security_headers(reply: &Reply) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(reply.headers.get(*name).and_then(|v| v.to_str().ok()), Some(*value), "{name} on {}", reply.status);
    }
}

#[tokio::test]
async fn a_valid_key_gets_pong_with_or_without_a_trailing_slash() {
    let deps = deps().await;
    let (_, key) = new_user(&deps).await;
    let gateway = start_gateway(deps).await;
    let ip = unique_ip();
    for path in ["/api/v1/ping", "/api/v1/ping/"] {
        let reply = post(gateway, ip, path, &ping_body(&key)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.body["status"], "success");
        assert_eq!(reply.body["data"]["message"], "pong");
        assert_eq!(reply.body["data"]["broker"], "sandbox");
        assert_security_headers(&reply);
    }
}

#[tokio::test]
async fn a_valid_key_gets_pong_whatever_the_content_type() {
    // TradingView sends its alerts as text/plain and other clients label JSON in other ways: the
    // body is read as JSON whatever the header says.
    let deps = deps().await;
    let (_, key) = new_user(&deps).await;
    let gateway = start_gateway(deps).await;
    let ip = unique_ip();
    for content_type in ["text/plain", "application/json", "application/x-www-form-urlencoded"] {
        let request = client_from(ip)
            .post(format!("http://{gateway}/api/v1/ping"))
            .header("content-type", content_type)
            .body(ping_body(&key));
        assert_eq!(post_with(request).await.status, 200, "{content_type}");
    }
}

#[tokio::test]
async fn bad_keys_get_403_invalid_openalgo_apikey() {
    let deps = deps().await;
    let (_, key) = new_user(&deps).await;
    let gateway = start_gateway(deps).await;
    let ip = unique_ip();
    let wrong_secret = format!("{}{}", &key[..key.len() - 1], if key.ends_with('0') { '1' } else { '0' });
    let unknown_id = format!("kav_{}_{}", "0".repeat(16), "a".repeat(64));
    for bad in [wrong_secret.as_str(), unknown_id.as_str(), "not-a-kavach-key", &"f".repeat(64)] {
        let reply = post(gateway, ip, "/api/v1/ping", &ping_body(bad)).await;
        assert_eq!(reply.status, 403, "{bad}");
        assert_eq!(reply.body["message"], "Invalid openalgo apikey");
        assert_eq!(reply.body["code"], "invalid_apikey");
        assert_security_headers(&reply);
    }
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_problem() {
    let deps = deps().await;
    let gateway = start_gateway(deps).await;
    let ip = unique_ip();
    let cases = [
        ("", "empty"),
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ("{}", "apikey: Missing data for required field."),
        (r#"{"apikey":""}"#, "apikey: Length must be between 1 and 256."),
        (r#"{"apikey":"k","symbol":"SBIN"}"#, "symbol: Unknown field."),
        (r#"{"apikey":7}"#, "apikey: Not a valid string."),
    ];
    for (body, needle) in cases {
        let reply = post(gateway, ip, "/api/v1/ping", body).await;
        assert_eq!(reply.status, 400, "{body}");
        let message = reply.body["message"].as_str().expect("message");
        assert!(message.contains(needle), "{body}: {message}");
        assert_security_headers(&reply);
    }
    let reply = post(gateway, ip, "/api/v1/ping", r#"{"apikey":"k","symbol":"SBIN"}"#).await;
    assert_eq!(reply.body["errors"]["symbol"][0], "Unknown field.");
}

#[tokio::test]
async fn a_body_over_64_kib_gets_413_naming_the_limit() {
    let gateway = start_gateway(deps().await).await;
    let ip = unique_ip();
    let huge = format!(r#"{{"apikey":"{}"}}"#, "a".repeat(70_000));
    let reply = post(gateway, ip, "/api/v1/ping", &huge).await;
    assert_eq!(reply.status, 413);
    assert!(reply.body["message"].as_str().expect("message").contains("65536 bytes"));
}

/// A user's key, a newly banned address, and a gateway on a cold start of its own: a function that
/// has never seen the address, so whatever it enforces it read from the ban store.
async fn banned_address_on_a_fresh_function() -> (String, IpAddr, SocketAddr) {
    let deps = deps().await;
    let (_, key) = new_user(&deps).await;
    let attacker = unique_ip();
    let now = SystemClock.now();
    let terms = BanTerms { reason: "test".into(), created_by: "manual", duration: Some(Duration::from_secs(3600)) };
    deps.bans.impose(attacker, &terms, 3, now).await.expect("ban").expect("a new ban");
    let gateway = start_gateway(kavach_tests::deps().await).await;
    (key, attacker, gateway)
}

#[tokio::test]
async fn a_banned_ip_gets_403_on_a_fresh_function_whatever_its_body() {
    // A function that has never seen this IP before enforces the ban on its first request.
    let (key, attacker, gateway) = banned_address_on_a_fresh_function().await;
    for body in [ping_body(&key), "{".to_owned(), String::new()] {
        let reply = post(gateway, attacker, "/api/v1/ping", &body).await;
        assert_eq!(reply.status, 403, "banned before the body is considered: {body}");
        assert_eq!(reply.body["message"], "Access Denied: Your IP has been banned");
        assert_eq!(reply.body["code"], "ip_banned");
        assert_security_headers(&reply);
    }
}

#[tokio::test]
async fn a_ban_leaves_other_addresses_unaffected() {
    let (key, _, gateway) = banned_address_on_a_fresh_function().await;
    let bystander = unique_ip();
    assert_eq!(post(gateway, bystander, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn forwarding_headers_neither_lift_a_ban_nor_move_it_to_the_address_they_name() {
    let (key, attacker, gateway) = banned_address_on_a_fresh_function().await;
    let bystander = unique_ip();
    // Forwarding headers are the client's word, not the client's address.
    let spoof = |from, claimed: &str| {
        client_from(from)
            .post(format!("http://{gateway}/api/v1/ping"))
            .header("x-forwarded-for", claimed)
            .header("x-real-ip", claimed)
            .header("cf-connecting-ip", claimed)
            .body(ping_body(&key))
    };
    assert_eq!(post_with(spoof(attacker, &bystander.to_string())).await.status, 403);
    assert_eq!(post_with(spoof(bystander, &attacker.to_string())).await.status, 200);
}

#[tokio::test]
async fn expired_ban_still_physically_present_is_ignored() {
    let deps = deps().await;
    let (_, key) = new_user(&deps).await;
    let ip = unique_ip();
    let now = SystemClock.now();
    // Banned for an hour, two hours ago.
    let terms = BanTerms { reason: "expired".into(), created_by: "manual", duration: Some(Duration::from_secs(3600)) };
    let two_hours_ago = shared::core::clock::UnixMillis::from_secs(now.secs() - 7200);
    deps.bans.impose(ip, &terms, 3, two_hours_ago).await.expect("ban").expect("a new ban");
    let raw = deps
        .aws
        .dynamodb
        .get_item()
        .table_name(&deps.config.tables.security)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("ban#{ip}")))
        .consistent_read(true)
        .send()
        .await
        .expect("raw read");
    assert!(raw.item().is_some(), "the expired item is physically present (TTL deletion is lazy)");

    let gateway = start_gateway(deps).await;
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn the_51st_request_in_a_window_gets_429_with_retry_after() {
    // A one-hour window keeps the test exact however slow the machine is.
    let (_, gateway, key) = gateway_with_user(&[("API_RATE_LIMIT", "50 per hour")], Arc::new(SystemClock)).await;
    let ip = unique_ip();
    spend_budget(gateway, ip, &key, 50).await;
    let reply = post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body["message"], "Rate limit exceeded. Please slow down your requests.");
    let retry_after: u64 = reply.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=3600).contains(&retry_after));
    assert_eq!(reply.body["retry_after"], retry_after);
    assert_security_headers(&reply);
}

#[tokio::test]
async fn default_limit_admits_50_in_one_second_and_refuses_the_51st() {
    // The injected clock stands still, so all 51 requests fall in one 1-second window of the
    // default `50 per second` however long the machine takes to send them.
    let frozen = Arc::new(ManualClock::at(SystemClock.now()));
    let deps = cold_start(config_with(&[]), frozen.clone()).await;
    assert_eq!(deps.config.rate_limit(shared::limits::LimitedAction::Api).to_string(), "50 per second");
    let (_, key) = new_user(&deps).await;
    let gateway = start_gateway(deps).await;
    let ip = unique_ip();
    spend_budget(gateway, ip, &key, 50).await;
    let reply = post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "1");
    // The next window admits again.
    frozen.advance(Duration::from_secs(1));
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn five_hundred_concurrent_requests_against_a_limit_of_50_admit_exactly_50() {
    let (deps, gateway, key) = gateway_with_user(&[("API_RATE_LIMIT", "50 per hour")], Arc::new(SystemClock)).await;
    let ip = unique_ip();
    let client = client_from(ip);
    let body = ping_body(&key);
    let before = deps.aws.stats.snapshot();
    // 20 workers: T20's floor, and as many as the single-threaded emulator answers within the
    // SDK's attempt timeout.
    let requests = (0..500).map(|_| post_with(client.post(format!("http://{gateway}/api/v1/ping")).body(body.clone())));
    let replies = futures::stream::iter(requests).buffer_unordered(20).collect::<Vec<_>>().await;
    let retries = deps.aws.stats.snapshot().retries - before.retries;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    let others: Vec<String> = replies
        .iter()
        .filter(|r| r.status != 200 && r.status != 429)
        .map(|r| format!("{} {}", r.status, r.body))
        .take(3)
        .collect();
    assert!(others.is_empty(), "only 200 and 429: {others:?}");
    assert_eq!(admitted + limited, 500);
    // Never over-admit. An SDK retry of a timed-out `ADD` may count twice (AWS documents counters as
    // not idempotent), which can only deny: each retry costs at most one admission.
    assert!(admitted <= 50, "over-admitted: {admitted}");
    if retries == 0 {
        assert_eq!(admitted, 50, "exact when no call was retried");
    } else {
        assert!(admitted as u64 + retries >= 50, "{admitted} admitted with {retries} retries");
    }
}

/// A gateway that has served `old_key` (so the key is in its cache), the key then regenerated: the
/// gateway, the old key and the new one.
async fn key_regenerated_after_use() -> (SocketAddr, IpAddr, String, String) {
    let deps = deps().await;
    let (username, old_key) = new_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;
    let ip = unique_ip();
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&old_key)).await.status, 200, "warm the cache");
    let (new_key, _) = deps.accounts().regenerate_api_key(&username).await.expect("regenerate");
    (gateway, ip, old_key, new_key.expose().to_owned())
}

#[tokio::test]
async fn a_regenerated_keys_predecessor_gets_403_revoked_though_it_was_cached() {
    let (gateway, ip, old_key, _) = key_regenerated_after_use().await;
    let reply = post(gateway, ip, "/api/v1/ping", &ping_body(&old_key)).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body["code"], "revoked_apikey");
}

#[tokio::test]
async fn a_regenerated_key_works_at_once() {
    let (gateway, ip, _, new_key) = key_regenerated_after_use().await;
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&new_key)).await.status, 200);
}

#[tokio::test]
async fn every_request_leaves_one_traffic_record_without_secrets() {
    let deps = deps().await;
    let (username, key) = new_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;
    let ip = unique_ip();
    let reply =
        post_with(client_from(ip).post(format!("http://{gateway}/api/v1/ping?apikey={key}")).body(ping_body(&key)))
            .await;
    assert_eq!(reply.status, 200);
    // The record is written after the response: wait for it.
    let items = traffic_items(&deps, ip, 1).await;
    assert_eq!(items.len(), 1, "exactly one record per request");
    let record = format!("{:?}", items[0]);
    assert!(record.contains("/api/v1/ping"), "{record}");
    assert!(record.contains(&username), "{record}");
    assert!(!record.contains(&key[21..]), "no secret in the traffic record: {record}");
    assert!(!record.contains("apikey"), "{record}");
    let expires: u64 = items[0]["expires_at"].as_n().expect("ttl").parse().expect("seconds");
    let now = SystemClock.now().secs();
    assert!((now + 13 * 86_400..=now + 15 * 86_400).contains(&expires), "14-day TTL in seconds, got {expires}");
}

#[tokio::test]
async fn spraying_made_up_keys_from_one_ip_is_throttled_per_ip() {
    // A budget below the invalid-key detector's threshold (10), so the throttle is seen before a ban.
    let (_, gateway, key) = gateway_with_user(&[("API_RATE_LIMIT", "8 per hour")], Arc::new(SystemClock)).await;
    let sprayer = unique_ip();
    for n in 0..8u32 {
        let made_up = format!("kav_{:016x}_{}", n, "b".repeat(64));
        assert_eq!(post(gateway, sprayer, "/api/v1/ping", &ping_body(&made_up)).await.status, 403, "attempt {n}");
    }
    let made_up = format!("kav_{:016x}_{}", 99, "b".repeat(64));
    assert_eq!(post(gateway, sprayer, "/api/v1/ping", &ping_body(&made_up)).await.status, 429);
    // The IP's budget is spent, whatever key it presents next; other IPs are untouched.
    assert_eq!(post(gateway, sprayer, "/api/v1/ping", &ping_body(&key)).await.status, 429);
    assert_eq!(post(gateway, unique_ip(), "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

/// A malformed key is charged to its address once: the gate charges a request without a
/// well-formed key to its IP, and the failure is not charged again (it used to be, halving the
/// budget of a client with a typo in its key).
#[tokio::test]
async fn a_malformed_key_is_charged_to_the_address_once() {
    let (_, gateway, _) = gateway_with_user(&[("API_RATE_LIMIT", "4 per hour")], Arc::new(SystemClock)).await;
    let typo = unique_ip();
    for n in 0..4u32 {
        let reply = post(gateway, typo, "/api/v1/ping", &ping_body(&format!("not-a-key-{n}"))).await;
        assert_eq!((reply.status, reply.body["code"].as_str()), (403, Some("invalid_apikey")), "attempt {n}");
    }
    assert_eq!(post(gateway, typo, "/api/v1/ping", &ping_body("not-a-key-4")).await.status, 429, "the fifth");
}
