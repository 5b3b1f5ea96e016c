//! An allowlist save and a key regeneration racing each other (security review, item 16): the key
//! in force must always carry the allowlist the account has. Against the emulator, with the losing
//! interleaving forced: a save made from a read of the account taken before its key was rotated.
//! (Posting both forms at once over HTTP almost never lands in the few milliseconds between the
//! save's read and its write, so it could not show the race; this test does, every time.)

use std::sync::Arc;

use kavach_tests::{ROOMY, gateway_with_web_user};
use shared::Deps;
use shared::core::clock::SystemClock;
use shared::crypto::api_key::KeyId;
use shared::store::identity::Conditional;

/// The account's allowlist and its current key's, as stored.
async fn allowlists(deps: &Deps, username: &str) -> (Vec<String>, Vec<String>) {
    let user = deps.identity.user(username).await.expect("read").expect("user");
    let key_id = user.api_key_id.as_deref().and_then(KeyId::parse).expect("current key");
    let key = deps.identity.api_key(&key_id).await.expect("read").expect("key record");
    let (mut account, mut current_key) = (user.allow, key.allow);
    account.sort();
    current_key.sort();
    (account, current_key)
}

#[tokio::test]
async fn a_save_from_a_read_older_than_the_keys_rotation_never_leaves_the_new_key_without_it() {
    let (deps, _, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let seen_before_rotation = deps.identity.user(&user.username).await.expect("read").expect("user");
    deps.accounts().regenerate_api_key(&user.username).await.expect("regenerate");

    // The save the portal would make from its earlier read of the account.
    let _ = deps.identity.set_allowlist(&seen_before_rotation, &["203.0.113.7/32".to_owned()]).await;
    let (account, current_key) = allowlists(&deps, &user.username).await;
    assert_eq!(current_key, account, "the key in force has exactly the account's allowlist");

    // Through the service, which reads afresh and retries, the save lands on the new key.
    deps.accounts().set_allowlist(&user.username, &["203.0.113.7/32".to_owned()]).await.expect("save");
    assert_eq!(
        allowlists(&deps, &user.username).await,
        (vec!["203.0.113.7/32".to_owned()], vec!["203.0.113.7/32".to_owned()])
    );
}

#[tokio::test]
async fn a_rotation_from_a_read_older_than_an_allowlist_save_is_stale_and_writes_nothing() {
    let (deps, _, user) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let seen_before_save = deps.identity.user(&user.username).await.expect("read").expect("user");
    deps.accounts().set_allowlist(&user.username, &["198.51.100.4/32".to_owned()]).await.expect("save");

    let (_, record) = deps.accounts().new_key_record(&user.username).await.expect("key record");
    let rotated = deps.identity.rotate_key(&seen_before_save, &record, deps.clock.now()).await.expect("rotate");
    assert_eq!(rotated, Conditional::Stale, "the account changed since it was read");
    assert!(deps.identity.api_key(&record.id).await.expect("read").is_none(), "no key was written");

    // The service reads afresh: the new key carries the list saved meanwhile.
    deps.accounts().regenerate_api_key(&user.username).await.expect("regenerate");
    let listed = vec!["198.51.100.4/32".to_owned()];
    assert_eq!(allowlists(&deps, &user.username).await, (listed.clone(), listed));
}
