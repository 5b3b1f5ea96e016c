//! Key-ring rotation while containers live, re-encryption and retirement. Each test runs on a stack
//! of its own (its own secret, key ring and tables), since rotating and retiring change what every
//! container of the stack reads; the operator commands are the real `kavach` binary.

use std::collections::BTreeMap;
use std::sync::Arc;

use kavach_tests::web::WebClient;
use kavach_tests::{cold_start, new_web_user, provision_stack, required_env, start_gateway, unique_ip};
use shared::core::clock::SystemClock;
use shared::core::config::Config;

async fn own_stack(name: &str) -> (BTreeMap<String, String>, Config) {
    let env = provision_stack(&format!("{name}-{}", std::process::id()), &[]).await;
    let config = Config::from_lookup(|variable| env.get(variable).cloned()).expect("the stack's configuration");
    (env, config)
}

/// Runs `kavach args…` against the stack `env` describes: whether it succeeded, and what it printed.
async fn kavach(env: &BTreeMap<String, String>, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(args)
        .envs(env)
        .output()
        .await
        .expect("run kavach");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn a_warm_container_reads_what_a_container_started_after_a_rotation_wrote() {
    let (env, config) = own_stack("ring-warm").await;
    // Warm before the rotation: its ring holds root 1 only.
    let warm = cold_start(config.clone(), Arc::new(SystemClock)).await;
    let warm_gateway = start_gateway(warm.clone()).await;
    assert_eq!(warm.totp_secrets.root_ids(), [1]);

    let (rotated, text) = kavach(&env, &["keyring", "rotate"]).await;
    assert!(rotated, "{text}");
    // Started after it: writes the user's TOTP secret and key copy under root 2.
    let newer = cold_start(config, Arc::new(SystemClock)).await;
    assert_eq!(newer.totp_secrets.root_ids(), [2, 1]);
    let user = new_web_user(&newer).await;

    // The warm container logs the user in over HTTP: the TOTP step decrypts the secret root 2
    // sealed, after one reload of the ring.
    let mut browser = WebClient::logged_in(warm_gateway, unique_ip(), &user, &warm).await;
    assert_eq!(browser.get("/dashboard").await.status, 200);
    assert_eq!(warm.totp_secrets.root_ids(), [2, 1], "the warm container reloaded the ring");

    // And what the warm container writes now is under the newest root: a ring of root 2 alone
    // (root 1 retired) still reads it.
    let later = new_web_user(&warm).await;
    let (reencrypted, text) = kavach(&env, &["keyring", "reencrypt"]).await;
    assert!(reencrypted, "{text}");
    let (retired, text) = kavach(&env, &["keyring", "retire", "1"]).await;
    assert!(retired, "{text}");
    let (_, status) = kavach(&env, &["keyring", "status"]).await;
    assert!(status.contains("Roots (newest first): [2]"), "{status}");
    let mut later_browser = WebClient::logged_in(warm_gateway, unique_ip(), &later, &warm).await;
    assert_eq!(later_browser.get("/dashboard").await.status, 200);
}

#[tokio::test]
async fn reencryption_cut_short_resumes_and_retirement_waits_until_nothing_is_left_under_the_root() {
    let (env, config) = own_stack("ring-retire").await;
    let deps = cold_start(config.clone(), Arc::new(SystemClock)).await;
    // Four users: four TOTP secrets and four key copies under root 1.
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(new_web_user(&deps).await);
    }
    let (rotated, text) = kavach(&env, &["keyring", "rotate"]).await;
    assert!(rotated, "{text}");

    let (refused, text) = kavach(&env, &["keyring", "retire", "2"]).await;
    assert!(!refused && text.contains("newest root cannot be retired"), "{text}");

    // Stopped after three items, as a kill midway would leave it.
    let (cut, text) = kavach(&env, &["keyring", "reencrypt", "--limit", "3"]).await;
    assert!(cut && text.contains("Re-encrypted 3 item(s)") && text.contains("Stopped at the limit"), "{text}");
    let (refused, text) = kavach(&env, &["keyring", "retire", "1"]).await;
    assert!(!refused && text.contains("5 item(s) are still encrypted under root 1"), "{text}");

    // Run again: it goes on with what is left and skips what is done.
    let (resumed, text) = kavach(&env, &["keyring", "reencrypt"]).await;
    assert!(resumed && text.contains("Re-encrypted 5 item(s)"), "{text}");
    let (again, text) = kavach(&env, &["keyring", "reencrypt"]).await;
    assert!(again && text.contains("Re-encrypted 0 item(s)") && text.contains("{2: 8}"), "{text}");

    let (retired, text) = kavach(&env, &["keyring", "retire", "1"]).await;
    assert!(retired && text.contains("now [2]"), "{text}");

    // A container started now holds root 2 alone, and every user still logs in over HTTP.
    let fresh = cold_start(config, Arc::new(SystemClock)).await;
    assert_eq!(fresh.totp_secrets.root_ids(), [2]);
    let gateway = start_gateway(fresh.clone()).await;
    for user in &users {
        let mut browser = WebClient::logged_in(gateway, unique_ip(), user, &fresh).await;
        assert_eq!(browser.get("/dashboard").await.status, 200);
    }
}
