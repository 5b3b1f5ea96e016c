//! The redaction property test. Redaction here is by type, not by pattern: secrets are types that
//! cannot be formatted (an [`ApiKey`] or a `SecretString` prints as redacted), and logs and traffic
//! records are built from allow-listed fields. For random secrets, this plants each one where
//! OpenAlgo leaked them (W16, W17) — JSON bodies, `k=v` bodies, headers, cookies, URLs, error chains
//! and panics — and asserts that it occurs 0 times in everything logged and recorded.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use kavach_tests::*;
use proptest::test_runner::{Config, TestRunner};
use secrecy::SecretString;
use sha2::Digest;
use shared::core::clock::{Clock, SystemClock};
use shared::core::error::AppError;
use shared::crypto::api_key::ApiKey;
use shared::store::traffic::TrafficFilter;
use shared::store::users::AuditKind;
use shared::threats::Detector;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// How many requests [`plant`] sends.
const PLANTED_REQUESTS: usize = 11;

/// A key of our format derived from `secret`, so typed keys are planted too.
fn key_like(secret: &str) -> String {
    let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    format!("kav_{}_{}", &digest[..16], hex::encode(sha2::Sha256::digest(digest.as_bytes())))
}

async fn plant(gateway: SocketAddr, ip: IpAddr, secret: &str, key: &str) {
    let client = client_from(ip);
    let url = |path: &str| format!("http://{gateway}{path}");
    let requests = [
        // JSON bodies: as the key, and as a field a handler might echo.
        client.post(url("/api/v1/ping")).body(serde_json::json!({ "apikey": secret }).to_string()),
        client.post(url("/api/v1/ping")).body(serde_json::json!({ "apikey": key }).to_string()),
        client
            .post(url("/api/v1/placeorder"))
            .body(serde_json::json!({ "apikey": key, "strategy": secret, "symbol": secret }).to_string()),
        // `k=v` bodies, where OpenAlgo's regex needed the right key name to catch them.
        client.post(url("/api/v1/ping")).body(format!("apikey={secret}&password={secret}&token={secret}")),
        client
            .post(url("/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username=redaction-probe&password={secret}")),
        // Headers and cookies.
        client
            .post(url("/api/v1/ping"))
            .header("authorization", format!("Bearer {secret}"))
            .header("x-api-key", secret)
            .header("cookie", format!("{}={secret}; session={secret}", shared::identity::sessions::COOKIE_NAME))
            .body(serde_json::json!({ "apikey": key }).to_string()),
        client.get(url("/dashboard")).header("cookie", format!("{}={secret}", shared::identity::sessions::COOKIE_NAME)),
        // URLs: query strings everywhere, and a key of ours as a path segment of an unknown route.
        client.get(url(&format!("/api/v1/ticker/NSE:SBIN?apikey={secret}&access_token={secret}"))),
        client.get(url(&format!("/no/such/page?apikey={secret}"))),
        client.get(url(&format!("/api/v1/{key}"))),
        client.get(url(&format!("/auth/reset-password/confirm?token={secret}"))),
    ];
    for request in requests {
        request.send().await.expect("gateway reachable");
    }

    // Error chains and panics carrying typed secrets, logged the way the code logs errors.
    let typed = SecretString::from(secret.to_owned());
    let parsed = ApiKey::parse(key).expect("our format");
    let chain = AppError::internal(anyhow::anyhow!("could not use {typed:?}").context(format!("key {parsed:?}")));
    tracing::error!(error = %chain, error.detail = ?chain, "planted error chain");
    tracing::warn!(secret = ?typed, key = ?parsed, "planted secret fields");
    let panicked = std::panic::catch_unwind(|| panic!("planted panic with {typed:?} and {parsed:?}"));
    assert!(panicked.is_err());
}

#[test]
fn planted_secrets_occur_zero_times_in_logs_and_traffic_records() {
    let captured = Captured::default();
    let writer = captured.clone();
    shared::core::logging::init_to(move || writer.clone());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (deps, gateway) = runtime.block_on(async {
        let deps = deps().await;
        let gateway = start_gateway(deps.clone()).await;
        (deps, gateway)
    });

    let mut runner = TestRunner::new(Config { cases: 12, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&"[A-Za-z0-9]{24,40}", |secret| {
        let key = key_like(&secret);
        let ip = unique_ip();
        let records = runtime.block_on(async {
            plant(gateway, ip, &secret, &key).await;
            // Traffic records are written after each response: wait until all are stored.
            traffic_items(&deps, ip, PLANTED_REQUESTS).await;
            let now = SystemClock.now();
            let filter = TrafficFilter { ip: Some(ip.to_string()), ..TrafficFilter::default() };
            // Exactly the planted requests: the log stops reading back once it has found them all.
            let traffic = deps.traffic.recent(&filter, PLANTED_REQUESTS, now).await.expect("traffic").records;
            let not_found = deps.trackers.list(Detector::NotFound, now).await.expect("404 records");
            let bad_keys = deps.trackers.list(Detector::InvalidApiKey, now).await.expect("key records");
            let audit = deps.identity.recent_audit(AuditKind::Login, 50).await.expect("audit");
            assert_eq!(traffic.len(), PLANTED_REQUESTS, "the requests were recorded: {traffic:?}");
            format!("{traffic:?}{not_found:?}{bad_keys:?}{audit:?}")
        });
        let logs = captured.text();
        assert!(logs.contains("planted error chain") && logs.contains("planted panic"), "the capture works");
        for planted in [secret.as_str(), key.as_str()] {
            assert_eq!(logs.matches(planted).count(), 0, "in the logs: {planted}");
            assert_eq!(records.matches(planted).count(), 0, "in the records: {planted}");
        }
        Ok(())
    });
    outcome.expect("no planted secret reached a log or a record");
}
