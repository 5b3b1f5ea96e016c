//! Key-ring rotation while containers live, re-encryption and retirement. Each test runs on a stack
//! of its own (its own secret, key ring and tables), since rotating and retiring change what every
//! container of the stack reads; the operator commands are the real `kavach` binary.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use kavach_tests::web::WebClient;
use kavach_tests::{cold_start, new_web_user, provision_stack, required_env, start_gateway, unique_ip};
use shared::broker::BrokerId;
use shared::core::clock::{Clock, SystemClock};
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
    // Four users: four TOTP secrets and four key copies under root 1, and the first one's Zerodha
    // link: its app credentials and its token, under Zerodha's own key.
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(new_web_user(&deps).await);
    }
    let linked = &users[0].username;
    let zerodha = deps.broker_ciphers.of(BrokerId::Zerodha);
    let now = SystemClock.now();
    let credentials = zerodha.encrypt(br#"{"api_key":"kitekey","api_secret":"kitesecret"}"#, now).await.expect("e");
    deps.identity.save_broker_credentials(linked, BrokerId::Zerodha, &credentials, "…tkey", now).await.expect("save");
    let token = zerodha.encrypt(b"kite-access-token", now).await.expect("encrypt");
    let expires = now.plus(std::time::Duration::from_secs(3600));
    let recorded =
        deps.identity.record_broker_token(linked, BrokerId::Zerodha, &credentials, &token, "AB1234", now, expires);
    assert!(recorded.await.expect("record"));
    let (rotated, text) = kavach(&env, &["keyring", "rotate"]).await;
    assert!(rotated, "{text}");

    let (refused, text) = kavach(&env, &["keyring", "retire", "2"]).await;
    assert!(!refused && text.contains("newest root cannot be retired"), "{text}");

    // Stopped after three items, as a kill midway would leave it.
    let (cut, text) = kavach(&env, &["keyring", "reencrypt", "--limit", "3"]).await;
    assert!(cut && text.contains("Re-encrypted 3 value(s)") && text.contains("Stopped at the limit"), "{text}");
    let (refused, text) = kavach(&env, &["keyring", "retire", "1"]).await;
    assert!(!refused && text.contains("7 value(s) are still encrypted under root 1"), "{text}");

    // Run again: it goes on with what is left and skips what is done.
    let (resumed, text) = kavach(&env, &["keyring", "reencrypt"]).await;
    assert!(resumed && text.contains("Re-encrypted 7 value(s)"), "{text}");
    let (again, text) = kavach(&env, &["keyring", "reencrypt"]).await;
    assert!(again && text.contains("Re-encrypted 0 value(s)") && text.contains("{2: 10}"), "{text}");

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
    // The broker link opens with root 2 alone: both of its ciphertexts were re-encrypted.
    let link = fresh.identity.broker_link(linked, BrokerId::Zerodha).await.expect("read").expect("link");
    let zerodha = fresh.broker_ciphers.of(BrokerId::Zerodha);
    let now = SystemClock.now();
    let opened = zerodha.decrypt(&link.encrypted_credentials, None, now).await.expect("credentials under root 2");
    assert_eq!(&opened[..], br#"{"api_key":"kitekey","api_secret":"kitesecret"}"#);
    let opened = zerodha.decrypt(link.encrypted_token.as_deref().expect("token"), None, now).await.expect("token");
    assert_eq!(&opened[..], b"kite-access-token");
}

/// Items whose ciphertext each root holds, among the `apikey#planted-…` items: (root 1, root 2).
async fn planted_per_root(deps: &shared::Deps, cipher: &shared::crypto::keyring::PurposeCipher) -> (usize, usize) {
    let planted = ("begins_with(pk, :planted)", ":planted", AttributeValue::S("apikey#planted-".into()));
    let items = kavach_tests::scan_where(deps, &deps.config.tables.identity, Some(planted)).await;
    let now = SystemClock.now();
    let mut counts = (0, 0);
    for item in items {
        let token = item["copy"].as_s().expect("copy");
        match cipher.decrypt_identified(token, None, now).expect("readable").0 {
            1 => counts.0 += 1,
            _ => counts.1 += 1,
        }
    }
    counts
}

#[tokio::test]
async fn reencryption_killed_midway_is_completed_by_running_it_again() {
    use shared::crypto::keyring::Purpose;
    use shared::store::app_secret;
    const PLANTED: usize = 2000;
    let (env, config) = own_stack("ring-kill").await;
    let deps = cold_start(config.clone(), Arc::new(SystemClock)).await;
    // Many key copies under root 1, planted directly (no Argon2 per item), so the walk takes long
    // enough to be killed in the middle.
    let secret = app_secret::load(&deps.aws.secrets, &config.secret_id).await.expect("secret");
    let ring = app_secret::open_ring(&deps.aws.kms, &config, &secret.sealed_ring.expect("ring")).await.expect("open");
    let old = ring.cipher(&Purpose::ApiKeyCopy).expect("cipher");
    let now = SystemClock.now();
    let requests: Vec<WriteRequest> = (0..PLANTED)
        .map(|n| {
            let item = [
                ("pk".to_owned(), AttributeValue::S(format!("apikey#planted-{n}"))),
                ("copy".to_owned(), AttributeValue::S(old.encrypt(format!("key-{n}").as_bytes(), now).expect("e"))),
            ];
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item.into())).build().expect("put"))
                .build()
        })
        .collect();
    for batch in requests.chunks(25) {
        let mut pending = batch.to_vec();
        while !pending.is_empty() {
            let output = deps
                .aws
                .dynamodb
                .batch_write_item()
                .request_items(&config.tables.identity, pending)
                .send()
                .await
                .expect("plant");
            pending = output
                .unprocessed_items
                .and_then(|mut items| items.remove(&config.tables.identity))
                .unwrap_or_default();
        }
    }
    let (rotated, text) = kavach(&env, &["keyring", "rotate"]).await;
    assert!(rotated, "{text}");
    let secret = app_secret::load(&deps.aws.secrets, &config.secret_id).await.expect("secret");
    let both = app_secret::open_ring(&deps.aws.kms, &config, &secret.sealed_ring.expect("ring"))
        .await
        .expect("open")
        .cipher(&Purpose::ApiKeyCopy)
        .expect("cipher");

    // Killed (SIGKILL) once it has rewritten some and not all.
    let mut child = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(["keyring", "reencrypt"])
        .envs(&env)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn kavach");
    let midway = loop {
        let (under_old, under_new) = planted_per_root(&deps, &both).await;
        assert!(under_old > 0, "the walk finished before it could be killed: plant more items");
        if under_new > 0 {
            child.kill().await.expect("kill");
            break planted_per_root(&deps, &both).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(midway.0 > 0 && midway.1 > 0, "killed midway: {midway:?}");
    let (refused, text) = kavach(&env, &["keyring", "retire", "1"]).await;
    assert!(!refused && text.contains("still encrypted under root 1"), "{text}");

    let (resumed, text) = kavach(&env, &["keyring", "reencrypt"]).await;
    assert!(resumed && text.contains(&format!("Re-encrypted {} value(s)", midway.0)), "{midway:?}: {text}");
    assert_eq!(planted_per_root(&deps, &both).await, (0, PLANTED));
    let (retired, text) = kavach(&env, &["keyring", "retire", "1"]).await;
    assert!(retired, "{text}");
    // Every value reads back as it was written, under root 2 alone.
    let only_new = app_secret::open_ring(
        &deps.aws.kms,
        &config,
        &app_secret::load(&deps.aws.secrets, &config.secret_id).await.expect("secret").sealed_ring.expect("ring"),
    )
    .await
    .expect("open");
    assert_eq!(only_new.ids(), [2]);
    let item = deps
        .aws
        .dynamodb
        .get_item()
        .table_name(&config.tables.identity)
        .key("pk", AttributeValue::S("apikey#planted-7".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    let copy = item["copy"].as_s().expect("copy");
    let plaintext = only_new.cipher(&Purpose::ApiKeyCopy).expect("c").decrypt(copy, None, now).expect("reads");
    assert_eq!(plaintext.as_slice(), b"key-7");
}
