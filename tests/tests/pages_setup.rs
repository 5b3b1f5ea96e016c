//! First-run setup (`web-setup`) on a stack of its own, since the shared stack has its
//! administrator: the one-time setup token works for an hour.

use std::sync::Arc;
use std::time::Duration;

use kavach_tests::web::WebClient;
use kavach_tests::{provision_stack, start_gateway, unique_ip};
use shared::core::clock::{Clock, ManualClock, SystemClock};
use shared::core::config::Config;

fn setup_form(token: &str) -> [(&'static str, &str); 5] {
    [
        ("setup_token", token),
        ("username", "founder"),
        ("email", "founder@example.in"),
        ("password", "F0under!pass"),
        ("confirm_password", "F0under!pass"),
    ]
}

#[tokio::test]
async fn a_setup_token_unused_for_an_hour_no_longer_opens_setup() {
    let stack = format!("setup-ttl-{}-{}", std::process::id(), SystemClock.now().0);
    let environment = provision_stack(
        &stack,
        &[("NeverBanCidrs", "127.0.0.1/32,::1/128"), ("LoginRateLimitMinute", "100 per minute")],
    )
    .await;
    let config = Config::from_lookup(|name| environment.get(name).cloned()).expect("provisioned config");
    let clock = Arc::new(ManualClock::at(SystemClock.now()));
    let deps = kavach_tests::cold_start(config, clock.clone()).await;
    let gateway = start_gateway(deps.clone()).await;
    let mut visitor = WebClient::new(gateway, unique_ip());

    let stale = deps.accounts().issue_setup_token().await.expect("setup token");
    clock.advance(Duration::from_secs(3601));
    let refused = visitor.post_json("/setup", &setup_form(stale.expose())).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.json()["message"], "Invalid setup token");
    assert!(!deps.identity.admin_exists().await.expect("read"), "no administrator was created");

    let fresh = deps.accounts().issue_setup_token().await.expect("a new setup token");
    let done = visitor.post_json("/setup", &setup_form(fresh.expose())).await;
    assert_eq!((done.status, done.json()["message"].as_str()), (200, Some("Setup complete")), "{}", done.text);
}
