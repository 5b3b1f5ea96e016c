//! Password reset (`web-auth`'s `/auth/reset-password` pages), over real HTTP to the local gateway and
//! the emulator: by a link mailed to the account's address (through the local SMTP sink) and by the
//! TOTP code.

use std::sync::Arc;
use std::time::Duration;

use kavach_tests::web::WebClient;
use kavach_tests::{ROOMY, cold_start, config_with, gateway_with_web_user, new_web_user, start_gateway, unique_ip};
use shared::core::clock::{ManualClock, SystemClock, UnixMillis};

/// The reset link in the last message the sink received for `to`, soft line breaks undone.
fn reset_link(sink: &kavach_tests::smtp_sink::SmtpSink, to: &str) -> String {
    let message = sink.messages().into_iter().rev().find(|m| m.contains(to)).expect("a reset message was sent");
    let text = message.replace("=\n", "").replace("=3D", "=");
    text.split_whitespace()
        .find(|word| word.contains("/auth/reset-password/confirm?token="))
        .expect("a link")
        .to_owned()
}

#[tokio::test]
async fn reset_by_email_builds_links_from_the_configured_origin_and_tokens_work_once() {
    let sink = kavach_tests::smtp_sink::SmtpSink::start().await;
    let base = "https://kavach.example.in";
    let overrides = [ROOMY, &[("PUBLIC_BASE_URL", base)]].concat();
    let deps = cold_start(config_with(&overrides), Arc::new(SystemClock)).await;
    deps.mail_settings().configure(&sink.settings()).await.expect("configure SMTP");
    let gateway = start_gateway(deps.clone()).await;
    let user = new_web_user(&deps).await;
    let email = format!("{}@example.com", user.username);

    // A session from before the reset, which the reset must end.
    let mut before = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;

    let mut visitor = WebClient::new(gateway, unique_ip());
    let forged = [("host", "evil.example"), ("x-forwarded-host", "evil.example"), ("accept", "application/json")];
    let known = visitor.post_with("/auth/reset-password", &[("method", "email"), ("email", &email)], &forged).await;
    let unknown = visitor
        .post_with("/auth/reset-password", &[("method", "email"), ("email", "nobody@example.com")], &forged)
        .await;
    assert_eq!(
        (known.status, &known.text),
        (unknown.status, &unknown.text),
        "same answer whether or not the account exists"
    );
    assert_eq!(known.status, 200);

    let link = reset_link(&sink, &email);
    assert!(link.starts_with(&format!("{base}/auth/reset-password/confirm?token=")), "{link}");
    assert!(!sink.messages().iter().any(|m| m.contains("evil.example")), "the forged Host never reaches a link");
    assert_eq!(sink.messages().len(), 1, "nothing is sent for an unknown address");

    let token = link.split("token=").nth(1).expect("token").to_owned();
    let form = visitor.get(&format!("/auth/reset-password/confirm?token={token}")).await;
    assert_eq!(form.status, 200, "{}", form.text);
    let weak = visitor
        .post("/auth/reset-password/confirm", &[("token", &token), ("password", "weak"), ("confirm_password", "weak")])
        .await;
    assert_eq!(weak.status, 400, "a weak password is refused without using the token up");
    let new_password = "N3w!password";
    let fields = [("token", token.as_str()), ("password", new_password), ("confirm_password", new_password)];
    let done = visitor.post("/auth/reset-password/confirm", &fields).await;
    assert_eq!((done.status, done.location()), (303, "/auth/login?reset"), "{}", done.text);
    let again = visitor.post_json("/auth/reset-password/confirm", &fields).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["message"], "Invalid or expired reset token.");

    assert_eq!(before.get_json("/dashboard").await.status, 401, "the reset ended every session");
    let mut after = WebClient::new(gateway, unique_ip());
    let old = after.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!(old.status, 401, "the old password is gone");
    let new = after.post("/auth/login", &[("username", &user.username), ("password", new_password)]).await;
    assert_eq!((new.status, new.location()), (303, "/auth/login/totp"));
}

#[tokio::test]
async fn reset_by_totp_issues_a_single_use_token() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_970_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut visitor = WebClient::new(gateway, unique_ip());
    let wrong = visitor
        .post_json("/auth/reset-password", &[("method", "totp"), ("username", &user.username), ("totp_code", "000000")])
        .await;
    let nobody = visitor
        .post_json("/auth/reset-password", &[("method", "totp"), ("username", "no-such-user"), ("totp_code", "000000")])
        .await;
    assert_eq!((wrong.status, &wrong.text), (nobody.status, &nobody.text));
    assert_eq!(wrong.json()["message"], "Invalid TOTP code. Please try again.");

    let verified = visitor
        .post_json(
            "/auth/reset-password",
            &[("method", "totp"), ("username", &user.username), ("totp_code", &user.code(&deps))],
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let token = verified.json()["token"].as_str().expect("token").to_owned();
    let fields = [("token", token.as_str()), ("password", "An0ther!pass"), ("confirm_password", "An0ther!pass")];
    assert_eq!(visitor.post("/auth/reset-password/confirm", &fields).await.status, 303);
    assert_eq!(visitor.post("/auth/reset-password/confirm", &fields).await.status, 400, "used once only");

    // An unused token dies after 15 minutes even if TTL has not removed it.
    clock.advance(Duration::from_secs(30));
    let second = visitor
        .post_json(
            "/auth/reset-password",
            &[("method", "totp"), ("username", &user.username), ("totp_code", &user.code(&deps))],
        )
        .await;
    let token = second.json()["token"].as_str().expect("token").to_owned();
    clock.advance(Duration::from_secs(15 * 60 + 1));
    let late = visitor
        .post(
            "/auth/reset-password/confirm",
            &[("token", &token), ("password", "Late1!pass"), ("confirm_password", "Late1!pass")],
        )
        .await;
    assert_eq!(late.status, 400);
}
