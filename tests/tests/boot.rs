//! Cold start against the emulator: what it refuses, and what it costs.

use std::sync::Arc;

use kavach_tests::{config_with, deps, new_user, ping_body, unique_ip, unique_name};
use shared::app::aws::AwsClients;
use shared::app::bootstrap::{self, BootError};
use shared::core::clock::SystemClock;
use shared::core::config::Config;
use shared::crypto::keyring::{KeyRing, Purpose};
use shared::store::app_secret;

/// Creates a secret holding `document`, sealing the stack's real key ring into it when asked.
async fn secret_with(aws: &AwsClients, config: &Config, pepper: Option<&str>, with_ring: bool) -> String {
    let mut document = serde_json::Map::new();
    if let Some(pepper) = pepper {
        document.insert("pepper".into(), pepper.into());
    }
    if with_ring {
        let ring = KeyRing::single(app_secret::new_root(&aws.kms, config).await.expect("root"));
        document.insert("keyring".into(), app_secret::seal_ring(&aws.kms, config, &ring).await.expect("seal").into());
    }
    let name = unique_name("boot-test");
    aws.secrets
        .create_secret()
        .name(&name)
        .secret_string(serde_json::Value::Object(document).to_string())
        .send()
        .await
        .expect("create secret");
    name
}

async fn boot_with_secret(pepper: Option<&str>, with_ring: bool) -> Result<(), BootError> {
    boot_counting(pepper, with_ring).await.0
}

/// The cold start's outcome and the EMF lines it printed.
async fn boot_counting(pepper: Option<&str>, with_ring: bool) -> (Result<(), BootError>, Vec<String>) {
    let aws = AwsClients::from_env().await;
    let base = config_with(&[]);
    let secret = secret_with(&aws, &base, pepper, with_ring).await;
    boot_with_id(aws, &secret).await
}

async fn boot_with_id(aws: AwsClients, secret: &str) -> (Result<(), BootError>, Vec<String>) {
    let config = config_with(&[("APP_SECRET_ID", secret)]);
    let lines: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let booted = bootstrap::init_with(
        config,
        Arc::new(SystemClock),
        aws,
        shared::core::metrics::MetricSink::Memory(lines.clone()),
    )
    .await
    .map(|_| ());
    let lines = lines.lock().expect("metric lines").clone();
    (booted, lines)
}

/// Whether the lines count one `KeyServiceFailures`, the metric the alarm of that name watches.
fn counted_key_service_failure(lines: &[String]) -> bool {
    lines.iter().any(|line| line.contains("\"KeyServiceFailures\":1"))
}

/// The remedy a missing pepper or ring names: the deploy makes them, once.
fn names_the_remedy(error: &str) -> bool {
    ["KeyRing custom resource", "stack events", "sam deploy", "kavach keyring init"]
        .iter()
        .all(|part| error.contains(part))
        && !error.contains("post-deploy step")
}

const GOOD_PEPPER: &str = "Q7mZ2kR9vX4pL8tN3wS6yB1cF5hJ0dG2aE7uK4iO9rT3";

#[tokio::test]
async fn a_valid_secret_boots() {
    boot_with_secret(Some(GOOD_PEPPER), true).await.expect("boots");
}

#[tokio::test]
async fn boot_refuses_a_missing_pepper_naming_the_secret() {
    let error = boot_with_secret(None, true).await.expect_err("no pepper").to_string();
    assert!(error.contains("boot-test") && error.contains("pepper is missing"), "{error}");
}

#[tokio::test]
async fn boot_refuses_a_short_pepper() {
    let error = boot_with_secret(Some("only-31-bytes-of-pepper-abcdefg"), true).await.expect_err("short").to_string();
    assert!(error.contains("31 bytes") && error.contains("at least 32"), "{error}");
}

#[tokio::test]
async fn boot_refuses_a_placeholder_pepper() {
    let error = boot_with_secret(Some("OPENALGO_PLACEHOLDER_API_KEY_PEPPER_REGENERATE_BEFORE_USE"), true)
        .await
        .expect_err("placeholder")
        .to_string();
    assert!(error.contains("placeholder"), "{error}");
}

#[tokio::test]
async fn boot_refuses_a_secret_without_a_key_ring_counting_it_and_naming_the_remedy() {
    let (booted, lines) = boot_counting(Some(GOOD_PEPPER), false).await;
    let error = booted.expect_err("no ring").to_string();
    assert!(error.contains("no `keyring`") && names_the_remedy(&error), "{error}");
    assert!(counted_key_service_failure(&lines), "KeyServiceFailures counted: {lines:?}");
}

#[tokio::test]
async fn boot_refuses_a_secret_without_a_pepper_counting_it_and_naming_the_remedy() {
    let (booted, lines) = boot_counting(None, true).await;
    let error = booted.expect_err("no pepper").to_string();
    assert!(error.contains("pepper is missing") && names_the_remedy(&error), "{error}");
    assert!(counted_key_service_failure(&lines), "KeyServiceFailures counted: {lines:?}");
}

/// The secret as CloudFormation creates it, before the KeyRing custom resource filled it (or after
/// it failed).
#[tokio::test]
async fn boot_refuses_a_secret_without_a_value_counting_it_and_naming_the_remedy() {
    let aws = AwsClients::from_env().await;
    let name = unique_name("boot-test-empty");
    aws.secrets.create_secret().name(&name).send().await.expect("create an empty secret");
    let (booted, lines) = boot_with_id(aws, &name).await;
    let error = booted.expect_err("no value").to_string();
    assert!(error.contains(&name) && error.contains("empty") && names_the_remedy(&error), "{error}");
    assert!(counted_key_service_failure(&lines), "KeyServiceFailures counted: {lines:?}");
}

#[tokio::test]
async fn a_ring_that_does_not_open_counts_a_key_service_failure() {
    let aws = AwsClients::from_env().await;
    let other_key = aws.kms.create_key().send().await.expect("key").key_metadata.expect("metadata").key_id;
    let lines: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let booted = bootstrap::init_with(
        config_with(&[("KMS_KEY_ID", other_key.as_str())]),
        Arc::new(SystemClock),
        aws,
        shared::core::metrics::MetricSink::Memory(lines.clone()),
    )
    .await;
    assert!(booted.is_err(), "a ring sealed under another key does not open");
    assert!(counted_key_service_failure(&lines.lock().expect("lines")), "KeyServiceFailures counted");
}

#[tokio::test]
async fn boot_refuses_a_missing_secret_naming_it() {
    let aws = AwsClients::from_env().await;
    let config = config_with(&[("APP_SECRET_ID", "kavach/does-not-exist")]);
    let error = bootstrap::init_with(
        config,
        Arc::new(SystemClock),
        aws,
        shared::core::metrics::MetricSink::Memory(Default::default()),
    )
    .await
    .expect_err("missing")
    .to_string();
    assert!(error.contains("kavach/does-not-exist"), "{error}");
}

#[tokio::test]
async fn boot_refuses_a_kms_key_other_than_the_one_that_sealed_the_ring() {
    let aws = AwsClients::from_env().await;
    let other_key = aws.kms.create_key().send().await.expect("key").key_metadata.expect("metadata").key_id;
    let config = config_with(&[("KMS_KEY_ID", other_key.as_str())]);
    let error = bootstrap::init_with(
        config,
        Arc::new(SystemClock),
        aws,
        shared::core::metrics::MetricSink::Memory(Default::default()),
    )
    .await
    .expect_err("wrong key")
    .to_string();
    assert!(error.contains("KMS") && error.contains(&other_key), "{error}");
}

#[tokio::test]
async fn a_ring_sealed_for_another_stack_does_not_open() {
    let aws = AwsClients::from_env().await;
    let ours = config_with(&[]);
    let ring = KeyRing::single(app_secret::new_root(&aws.kms, &ours).await.expect("root"));
    let sealed = app_secret::seal_ring(&aws.kms, &ours, &ring).await.expect("seal");
    let theirs = config_with(&[("STACK_NAME", "someone-else")]);
    assert!(app_secret::open_ring(&aws.kms, &theirs, &sealed).await.is_err(), "encryption context binds the stack");
    assert!(app_secret::open_ring(&aws.kms, &ours, &sealed).await.is_ok());
}

#[tokio::test]
async fn key_ring_rotation_through_kms_keeps_old_ciphertext_readable() {
    let aws = AwsClients::from_env().await;
    let config = config_with(&[]);
    let ring = KeyRing::single(app_secret::new_root(&aws.kms, &config).await.expect("root"));
    let old_tokens: Vec<String> = (0..100u8)
        .map(|i| ring.cipher(&Purpose::ApiKeyCopy).expect("cipher").encrypt(&[i], at(1_000)).expect("encrypt"))
        .collect();
    let old_sealed = app_secret::seal_ring(&aws.kms, &config, &ring).await.expect("seal");

    let rotated = ring.rotated(app_secret::new_root(&aws.kms, &config).await.expect("root"));
    let sealed = app_secret::seal_ring(&aws.kms, &config, &rotated).await.expect("seal");
    let reopened = app_secret::open_ring(&aws.kms, &config, &sealed).await.expect("open");
    assert_eq!(reopened.len(), 2);
    let cipher = reopened.cipher(&Purpose::ApiKeyCopy).expect("cipher");
    for (i, token) in old_tokens.iter().enumerate() {
        assert_eq!(cipher.decrypt(token, None, at(1_000)).expect("old token").as_slice(), &[i as u8]);
    }
    let new_token = cipher.encrypt(b"new", at(1_000)).expect("encrypt");
    let old_ring = app_secret::open_ring(&aws.kms, &config, &old_sealed).await.expect("open old");
    assert!(
        old_ring.cipher(&Purpose::ApiKeyCopy).expect("c").decrypt(&new_token, None, at(1_000)).is_err(),
        "new writes use the new root"
    );
}

#[tokio::test]
async fn warm_ping_makes_no_kms_or_secrets_calls_and_one_dynamodb_round_trip_before_responding() {
    let deps = deps().await;
    let boot = deps.aws.stats.snapshot();
    assert_eq!(boot.for_service("KMS"), 1, "one Decrypt at cold start: {boot:?}");
    assert_eq!(boot.for_service("Secrets Manager"), 1, "one secret read at cold start: {boot:?}");

    let (_, key) = new_user(&deps).await;
    let event = |ip: &str| {
        let text = serde_json::json!({
            "resource": "/api/v1/ping", "path": "/api/v1/ping", "httpMethod": "POST", "headers": {},
            "requestContext": {
                "identity": { "sourceIp": ip }, "resourcePath": "/api/v1/ping", "httpMethod": "POST", "requestId": "r"
            },
            "body": ping_body(&key), "isBase64Encoded": false
        });
        lambda_http::request::from_str(&text.to_string()).expect("event")
    };
    let ip = unique_ip().to_string();
    assert_eq!(ping::handler(&deps, event(&ip)).await.status(), 200, "warm-up verifies the key once");
    deps.flush_traffic().await;

    let before = deps.aws.stats.snapshot();
    for _ in 0..10 {
        assert_eq!(ping::handler(&deps, event(&ip)).await.status(), 200);
    }
    let answered = deps.aws.stats.snapshot();
    let delta = |after: &shared::app::aws::CallCounts, op: &str| {
        after.by_operation.get(op).copied().unwrap_or(0) - before.by_operation.get(op).copied().unwrap_or(0)
    };
    // Against `before`: creating the user above encrypted its key copy, and every encryption reads
    // the secret first (so it uses the newest root); the warm ping itself reads neither.
    assert_eq!(answered.for_service("KMS"), before.for_service("KMS"), "no KMS on the warm path");
    assert_eq!(answered.for_service("Secrets Manager"), before.for_service("Secrets Manager"));
    assert_eq!(before.for_service("KMS"), boot.for_service("KMS"), "nor when the ring did not change");
    // Gate: one BatchGetItem (the ban, the IP's failures, the key's record) beside the key
    // counter's UpdateItem, concurrently.
    assert_eq!(delta(&answered, "DynamoDB.BatchGetItem"), 10);
    assert_eq!(delta(&answered, "DynamoDB.GetItem"), 0);
    assert_eq!(delta(&answered, "DynamoDB.UpdateItem"), 10);
    assert_eq!(delta(&answered, "DynamoDB.PutItem"), 0, "the traffic record waits until after the response");
    assert_eq!(answered.round_trips - before.round_trips, 10, "one round trip per request before responding");

    deps.flush_traffic().await;
    let flushed = deps.aws.stats.snapshot();
    assert_eq!(delta(&flushed, "DynamoDB.PutItem"), 10, "then one record per request");
}

/// An instant `secs` after the epoch.
fn at(secs: u64) -> shared::core::clock::UnixMillis {
    shared::core::clock::UnixMillis::from_secs(secs)
}

/// A function's cold start reads only the secrets it uses (issue 11, item 10): the catch-all none,
/// an API function the app secret for its pepper but no KMS, a portal-like one both; and what it was
/// not given fails closed on use instead of being derived later.
#[tokio::test]
async fn a_cold_start_reads_and_derives_only_the_secrets_its_function_uses() {
    use shared::app::bootstrap::Secrets;
    let config = config_with(&[]);
    let cases = [(Secrets::NONE, 0, 0), (Secrets::PEPPER, 1, 0), (Secrets::ALL, 1, 1)];
    for (secrets, secret_reads, decrypts) in cases {
        let aws = AwsClients::from_env().await;
        let stats = aws.stats.clone();
        let deps = bootstrap::init_with_secrets(
            config.clone(),
            Arc::new(SystemClock),
            aws,
            shared::core::metrics::MetricSink::Memory(Default::default()),
            secrets,
        )
        .await
        .expect("boots");
        let counts = stats.snapshot();
        assert_eq!(
            (counts.for_service("Secrets Manager"), counts.for_service("KMS")),
            (secret_reads, decrypts),
            "{secrets:?}: {counts:?}"
        );
        let now = shared::core::clock::UnixMillis(1);
        assert_eq!(deps.totp_secrets.encrypt(b"x", now).await.is_ok(), secrets.totp_secrets, "{secrets:?}");
        assert_eq!(deps.passwords.hash(b"x").is_ok(), secrets.pepper, "{secrets:?}");
        if !secrets.pepper {
            let error = deps.passwords.hash(b"x").expect_err("withheld");
            assert_eq!(error.to_string(), "this function holds no pepper");
        }
    }
}

/// Set in the child process that [`a_functions_clients_take_lambdas_environment_and_not_the_default_chain`] runs.
const CHILD: &str = "KAVACH_BOOT_CHILD";

/// A function's clients reach the emulator with the credentials and region Lambda puts in the
/// environment; and with those unset they fail, rather than find a profile the default chain would
/// (a function never needs the chain, and not linking it keeps every bootstrap smaller). The
/// second half runs in a child process, since a test cannot change its own environment safely.
#[tokio::test]
async fn a_functions_clients_take_lambdas_environment_and_not_the_default_chain() {
    let reached = AwsClients::for_lambda().dynamodb.list_tables().send().await;
    if std::env::var_os(CHILD).is_some() {
        assert!(reached.is_err(), "a function's clients found credentials outside Lambda's environment");
        let chained = AwsClients::from_env().await.dynamodb.list_tables().send().await;
        assert!(chained.is_ok(), "the default chain should find the profile: {chained:?}");
        return;
    }
    reached.expect("Lambda's environment reaches the emulator");
    let profile = std::env::temp_dir().join(unique_name("boot-credentials"));
    std::fs::write(&profile, "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        .expect("profile");
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "a_functions_clients_take_lambdas_environment_and_not_the_default_chain", "--nocapture"])
        .env(CHILD, "1")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &profile)
        .output()
        .expect("run the child");
    let _ = std::fs::remove_file(&profile);
    let output = String::from_utf8_lossy(&child.stdout).into_owned() + &String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success() && output.contains("1 passed"), "the child failed:\n{output}");
}
