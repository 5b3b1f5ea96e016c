//! Password reset (`web-auth`'s `/auth/reset-password` pages), over real HTTP to the local gateway and
//! the emulator: by a link mailed to the account's address (through the local SMTP sink) and by the
//! TOTP code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kavach_tests::smtp_sink::SmtpSink;
use kavach_tests::web::{Page, WebClient};
use kavach_tests::{
    ROOMY, WebUser, cold_start, config_with, gateway_with_web_user, new_web_user, start_gateway_under, unique_ip,
};
use shared::Deps;
use shared::core::clock::{ManualClock, SystemClock, UnixMillis};
use shared::store::users::AuditKind;
use tokio::sync::{Mutex, MutexGuard};

/// The origin reset links are built from, whatever host a request names.
const BASE: &str = "https://kavach.example.in";
/// The one answer to every request for a reset link.
const EMAIL_SENT: &str = "If an account with that email exists, a reset link has been sent to it.";

/// The SMTP settings are one item for the whole stack: a test that mails through a sink of its own
/// holds this for as long as it uses it, or a test running alongside would point the stack's mail
/// at its sink instead.
static MAIL: Mutex<()> = Mutex::const_new(());

/// A gateway that mails through a sink of its own and builds links from [`BASE`], and a user with
/// an address; the stack's mail is this test's while it is held.
struct Mailing {
    _mail: MutexGuard<'static, ()>,
    sink: SmtpSink,
    deps: Arc<Deps>,
    gateway: SocketAddr,
    user: WebUser,
    email: String,
}

async fn mailing() -> Mailing {
    mailing_through(SmtpSink::start().await).await
}

async fn mailing_through(sink: SmtpSink) -> Mailing {
    mailing_under(sink, BASE, "").await
}

/// [`mailing_through`] with `PUBLIC_BASE_URL` set to `base_url` and the gateway under `stage`.
async fn mailing_under(sink: SmtpSink, base_url: &str, stage: &str) -> Mailing {
    let mail = MAIL.lock().await;
    let overrides = [ROOMY, &[("PUBLIC_BASE_URL", base_url)]].concat();
    let deps = cold_start(config_with(&overrides), Arc::new(SystemClock)).await;
    deps.mail_settings().configure(&sink.settings()).await.expect("configure SMTP");
    let gateway = start_gateway_under(deps.clone(), stage).await;
    let user = new_web_user(&deps).await;
    let email = format!("{}@example.com", user.username);
    Mailing { _mail: mail, sink, deps, gateway, user, email }
}

/// The reset link in the last message the sink received for `to`, soft line breaks undone; waits
/// for one, since mail is sent after the response.
async fn reset_link(sink: &SmtpSink, to: &str) -> String {
    let message = sink.wait_for_message_to(to).await;
    let text = message.replace("=\n", "").replace("=3D", "=");
    text.split_whitespace()
        .find(|word| word.contains("/auth/reset-password/confirm?token="))
        .expect("a link")
        .to_owned()
}

/// `visitor` asks for a reset link for `email`, as a script would (`accept` is JSON in `headers`).
async fn ask_for_link(visitor: &mut WebClient, email: &str, headers: &[(&str, &str)]) -> Page {
    visitor.post_with("/auth/reset-password", &[("method", "email"), ("email", email)], headers).await
}

/// The token of a link mailed to the user at `visitor`'s request.
async fn mailed_token(mailing: &Mailing, visitor: &mut WebClient) -> String {
    ask_for_link(visitor, &mailing.email, &[("accept", "application/json")]).await;
    let link = reset_link(&mailing.sink, &mailing.email).await;
    link.split("token=").nth(1).expect("token").to_owned()
}

/// Sets `password` with the reset `token`; the page's answer (JSON if `json`).
async fn confirm(visitor: &mut WebClient, token: &str, password: &str, json: bool) -> Page {
    let fields = [("token", token), ("password", password), ("confirm_password", password)];
    if json {
        visitor.post_json("/auth/reset-password/confirm", &fields).await
    } else {
        visitor.post("/auth/reset-password/confirm", &fields).await
    }
}

#[tokio::test]
async fn a_reset_request_gets_the_same_answer_whether_or_not_the_account_exists() {
    let mailing = mailing().await;
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    let json = [("accept", "application/json")];
    let known = ask_for_link(&mut visitor, &mailing.email, &json).await;
    let unknown = ask_for_link(&mut visitor, "nobody@example.com", &json).await;
    assert_eq!(
        (known.status, &known.text),
        (unknown.status, &unknown.text),
        "same answer whether or not the account exists"
    );
    assert_eq!(known.status, 200);
}

#[tokio::test]
async fn a_reset_request_for_an_unknown_address_mails_nothing() {
    let mailing = mailing().await;
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    let json = [("accept", "application/json")];
    ask_for_link(&mut visitor, "nobody@example.com", &json).await;
    // Then a known address: once its message has arrived, the unknown one's would have too.
    ask_for_link(&mut visitor, &mailing.email, &json).await;
    reset_link(&mailing.sink, &mailing.email).await;
    assert_eq!(mailing.sink.messages().len(), 1, "nothing is sent for an unknown address");
}

#[tokio::test]
async fn reset_links_are_built_from_the_configured_origin_whatever_host_the_request_names() {
    let mailing = mailing().await;
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    let forged = [("host", "evil.example"), ("x-forwarded-host", "evil.example"), ("accept", "application/json")];
    ask_for_link(&mut visitor, &mailing.email, &forged).await;
    let link = reset_link(&mailing.sink, &mailing.email).await;
    assert!(link.starts_with(&format!("{BASE}/auth/reset-password/confirm?token=")), "{link}");
    assert!(
        !mailing.sink.messages().iter().any(|m| m.contains("evil.example")),
        "the forged Host never reaches a link"
    );
}

#[tokio::test]
async fn a_reset_link_asked_for_under_the_stage_carries_it_once() {
    // `PUBLIC_BASE_URL` pasted from the stack's ApiUrl output, stage and all; the page under /prod.
    let mailing = mailing_under(SmtpSink::start().await, &format!("{BASE}/prod"), "prod").await;
    let mut visitor = WebClient::under(mailing.gateway, unique_ip(), "/prod");
    ask_for_link(&mut visitor, &mailing.email, &[("accept", "application/json")]).await;
    let link = reset_link(&mailing.sink, &mailing.email).await;
    assert!(link.starts_with(&format!("{BASE}/prod/auth/reset-password/confirm?token=")), "{link}");
    let token = link.split("token=").nth(1).expect("token");
    let form = visitor.get(&format!("/auth/reset-password/confirm?token={token}")).await;
    assert_eq!(form.status, 200, "the mailed link opens the form: {}", form.text);
    assert!(form.text.contains(r#"action="/prod/auth/reset-password/confirm""#), "{}", form.text);
}

#[tokio::test]
async fn a_mailed_reset_token_works_once() {
    let mailing = mailing().await;
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    let token = mailed_token(&mailing, &mut visitor).await;
    let form = visitor.get(&format!("/auth/reset-password/confirm?token={token}")).await;
    assert_eq!(form.status, 200, "{}", form.text);
    let done = confirm(&mut visitor, &token, "N3w!password", false).await;
    assert_eq!((done.status, done.location()), (303, "/auth/login?reset"), "{}", done.text);
    let again = confirm(&mut visitor, &token, "N3w!password", true).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["message"], "Invalid or expired reset token.");
}

#[tokio::test]
async fn a_weak_new_password_is_refused_without_using_the_reset_token_up() {
    let mailing = mailing().await;
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    let token = mailed_token(&mailing, &mut visitor).await;
    let weak = visitor
        .post("/auth/reset-password/confirm", &[("token", &token), ("password", "weak"), ("confirm_password", "weak")])
        .await;
    assert_eq!(weak.status, 400, "a weak password is refused without using the token up");
    let done = confirm(&mut visitor, &token, "N3w!password", false).await;
    assert_eq!((done.status, done.location()), (303, "/auth/login?reset"), "{}", done.text);
}

#[tokio::test]
async fn a_reset_ends_every_session() {
    let mailing = mailing().await;
    let mut before = WebClient::logged_in(mailing.gateway, unique_ip(), &mailing.user, &mailing.deps).await;
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    let token = mailed_token(&mailing, &mut visitor).await;
    let done = confirm(&mut visitor, &token, "N3w!password", false).await;
    assert_eq!((done.status, done.location()), (303, "/auth/login?reset"), "{}", done.text);
    assert_eq!(before.get_json("/dashboard").await.status, 401, "the reset ended every session");
}

#[tokio::test]
async fn after_a_reset_only_the_new_password_logs_in() {
    let mailing = mailing().await;
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    let token = mailed_token(&mailing, &mut visitor).await;
    let new_password = "N3w!password";
    let done = confirm(&mut visitor, &token, new_password, false).await;
    assert_eq!((done.status, done.location()), (303, "/auth/login?reset"), "{}", done.text);

    let user = &mailing.user;
    let mut after = WebClient::new(mailing.gateway, unique_ip());
    let old = after.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!(old.status, 401, "the old password is gone");
    let new = after.post("/auth/login", &[("username", &user.username), ("password", new_password)]).await;
    assert_eq!((new.status, new.location()), (303, "/auth/login/totp"));
}

/// A reset token for `user`, issued for the code their authenticator shows now.
async fn totp_token(visitor: &mut WebClient, user: &WebUser, deps: &Deps) -> String {
    let verified = visitor
        .post_json(
            "/auth/reset-password",
            &[("method", "totp"), ("username", &user.username), ("totp_code", &user.code(deps))],
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    verified.json()["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn a_totp_reset_with_a_wrong_code_gets_the_same_refusal_as_an_unknown_user() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_970_000_000)));
    let (_, gateway, user) = gateway_with_web_user(ROOMY, clock).await;
    let mut visitor = WebClient::new(gateway, unique_ip());
    let wrong = visitor
        .post_json("/auth/reset-password", &[("method", "totp"), ("username", &user.username), ("totp_code", "000000")])
        .await;
    let nobody = visitor
        .post_json("/auth/reset-password", &[("method", "totp"), ("username", "no-such-user"), ("totp_code", "000000")])
        .await;
    assert_eq!((wrong.status, &wrong.text), (nobody.status, &nobody.text));
    assert_eq!(wrong.json()["message"], "Invalid TOTP code. Please try again.");
}

#[tokio::test]
async fn a_reset_token_issued_for_the_totp_code_works_once() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_970_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock).await;
    let mut visitor = WebClient::new(gateway, unique_ip());
    let token = totp_token(&mut visitor, &user, &deps).await;
    let fields = [("token", token.as_str()), ("password", "An0ther!pass"), ("confirm_password", "An0ther!pass")];
    assert_eq!(visitor.post("/auth/reset-password/confirm", &fields).await.status, 303);
    assert_eq!(visitor.post("/auth/reset-password/confirm", &fields).await.status, 400, "used once only");
}

#[tokio::test]
async fn an_unused_reset_token_dies_after_15_minutes() {
    // Even if the table's TTL has not removed the record yet.
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_970_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut visitor = WebClient::new(gateway, unique_ip());
    let token = totp_token(&mut visitor, &user, &deps).await;
    clock.advance(Duration::from_secs(15 * 60 + 1));
    let late = visitor
        .post(
            "/auth/reset-password/confirm",
            &[("token", &token), ("password", "Late1!pass"), ("confirm_password", "Late1!pass")],
        )
        .await;
    assert_eq!(late.status, 400);
}

/// As for logins: a reset's username or address is checked before it forms any key.
#[tokio::test]
async fn an_overlong_username_or_email_in_a_reset_is_400_not_an_outage() {
    let (_, gateway, _) = gateway_with_web_user(ROOMY, Arc::new(SystemClock)).await;
    let mut browser = WebClient::new(gateway, unique_ip());
    let long = "u".repeat(3000);
    let by_totp = browser
        .post_json("/auth/reset-password", &[("method", "totp"), ("username", &long), ("totp_code", "000000")])
        .await;
    assert_eq!(by_totp.status, 400, "{}", by_totp.text);
    assert_eq!(by_totp.json()["message"], "username must be at most 64 characters");
    let address = format!("{long}@example.com");
    let by_email = browser.post_json("/auth/reset-password", &[("method", "email"), ("email", &address)]).await;
    assert_eq!(by_email.status, 400, "{}", by_email.text);
    assert_eq!(by_email.json()["message"], "email must be at most 254 characters");
}

/// Every outstanding reset token dies with the password it was meant to replace: after a reset
/// (or a change), a token issued before it no longer works.
#[tokio::test]
async fn a_reset_voids_the_users_other_outstanding_reset_tokens() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_970_500_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut visitor = WebClient::new(gateway, unique_ip());
    let first = totp_token(&mut visitor, &user, &deps).await;
    // A second request in the next TOTP step, as an attacker holding another token would make.
    clock.advance(Duration::from_secs(30));
    let second = totp_token(&mut visitor, &user, &deps).await;
    clock.advance(Duration::from_secs(30));
    let reset = [("token", first.as_str()), ("password", "An0ther!pass"), ("confirm_password", "An0ther!pass")];
    assert_eq!(visitor.post("/auth/reset-password/confirm", &reset).await.status, 303);
    let stale = [("token", second.as_str()), ("password", "Att4cker!pass"), ("confirm_password", "Att4cker!pass")];
    let refused = visitor.post("/auth/reset-password/confirm", &stale).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
}

/// `visitor` fails `times` resets by TOTP for `user`, each refused as a wrong code.
async fn fail_totp_resets(visitor: &mut WebClient, user: &WebUser, times: usize) {
    for n in 0..times {
        let page = visitor
            .post_json(
                "/auth/reset-password",
                &[("method", "totp"), ("username", &user.username), ("totp_code", "000000")],
            )
            .await;
        assert_eq!(
            (page.status, page.json()["message"].as_str()),
            (400, Some("Invalid TOTP code. Please try again.")),
            "failure {n}"
        );
    }
}

/// The answer to a reset by TOTP for `user` with the code their authenticator shows now.
async fn reset_with_the_right_code(visitor: &mut WebClient, user: &WebUser, deps: &Deps) -> Page {
    visitor
        .post_json(
            "/auth/reset-password",
            &[("method", "totp"), ("username", &user.username), ("totp_code", &user.code(deps))],
        )
        .await
}

#[tokio::test]
async fn after_ten_failed_totp_resets_even_the_right_code_is_refused() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_971_000_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock).await;
    let mut attacker = WebClient::new(gateway, unique_ip());
    fail_totp_resets(&mut attacker, &user, 10).await;
    // From anywhere, and answered as a wrong code is, so the lock tells a guesser nothing.
    let mut anyone = WebClient::new(gateway, unique_ip());
    let right = reset_with_the_right_code(&mut anyone, &user, &deps).await;
    assert_eq!(right.status, 400, "the right code is refused once the account is locked: {}", right.text);
    assert_eq!(right.json()["message"], "Invalid TOTP code. Please try again.");
    assert!(right.json().get("token").is_none());
}

#[tokio::test]
async fn nine_failed_totp_resets_leave_the_right_code_working() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_971_100_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock).await;
    let mut visitor = WebClient::new(gateway, unique_ip());
    fail_totp_resets(&mut visitor, &user, 9).await;
    assert_eq!(reset_with_the_right_code(&mut visitor, &user, &deps).await.status, 200);
}

#[tokio::test]
async fn the_owners_full_login_unlocks_the_totp_reset() {
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(1_971_200_000)));
    let (deps, gateway, user) = gateway_with_web_user(ROOMY, clock.clone()).await;
    let mut attacker = WebClient::new(gateway, unique_ip());
    fail_totp_resets(&mut attacker, &user, 10).await;
    WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    // The next step's code: the login used this one.
    clock.advance(Duration::from_secs(30));
    let unlocked = reset_with_the_right_code(&mut attacker, &user, &deps).await;
    assert_eq!(unlocked.status, 200, "a full login clears the lock: {}", unlocked.text);
}

#[tokio::test]
async fn the_lock_mails_the_owner_once_at_the_stored_address() {
    let mailing = mailing().await;
    let mut attacker = WebClient::new(mailing.gateway, unique_ip());
    // The SMTP settings are the stack's, and tests that lock other accounts without mailing run
    // beside this one, so their lock mails can reach this sink too: only this account's count.
    let to_owner = |messages: Vec<String>| -> Vec<String> {
        messages.into_iter().filter(|message| message.contains(&format!("To: {}", mailing.email))).collect()
    };
    fail_totp_resets(&mut attacker, &mailing.user, 9).await;
    assert!(to_owner(mailing.sink.messages()).is_empty(), "no mail before the tenth failure");
    fail_totp_resets(&mut attacker, &mailing.user, 3).await;
    let messages = to_owner(mailing.sink.messages());
    assert_eq!(messages.len(), 1, "one mail, at the failure that locked the account: {messages:?}");
    let text = messages[0].replace("=\n", "");
    assert!(text.contains(&mailing.email), "sent to the account's address: {text}");
    assert!(text.contains(&format!("kavach user unlock {}", mailing.user.username)), "{text}");
}

/// The audit records of email resets for `username`, once one with `detail` is there (the mail
/// path runs after the response).
async fn reset_audit_with(deps: &Deps, username: &str, detail: &str) -> Vec<String> {
    for _ in 0..150 {
        let events = deps.identity.recent_audit(AuditKind::Reset, 200).await.expect("audit");
        let details: Vec<String> =
            events.into_iter().filter(|event| event.username == username).map(|event| event.detail).collect();
        if details.iter().any(|seen| seen == detail) {
            return details;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no `{detail}` reset record for {username} within 15 s")
}

#[tokio::test]
async fn a_second_reset_mail_within_15_minutes_is_withheld() {
    let mailing = mailing().await;
    let json = [("accept", "application/json")];
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    ask_for_link(&mut visitor, &mailing.email, &json).await;
    mailing.sink.wait_for(1).await;
    // Again, from elsewhere: the same answer, and no second mail.
    let mut other = WebClient::new(mailing.gateway, unique_ip());
    let again = ask_for_link(&mut other, &mailing.email, &json).await;
    assert_eq!((again.status, again.json()["message"].as_str()), (200, Some(EMAIL_SENT)));
    reset_audit_with(&mailing.deps, &mailing.user.username, "email_withheld").await;
    assert_eq!(mailing.sink.messages().len(), 1, "one mail per user per 15 minutes");
}

#[tokio::test]
async fn a_reset_mail_goes_to_the_stored_address_not_the_one_typed() {
    let mailing = mailing().await;
    let typed = mailing.email.to_ascii_uppercase();
    let mut visitor = WebClient::new(mailing.gateway, unique_ip());
    ask_for_link(&mut visitor, &typed, &[("accept", "application/json")]).await;
    let message = mailing.sink.wait_for(1).await.remove(0);
    assert!(message.contains(&format!("To: {}", mailing.email)), "sent to the stored address: {message}");
    assert!(!message.contains(&typed), "never to the address as typed: {message}");
}

/// The answer cannot wait for the mail: a relay that takes 3 s to accept it leaves the response
/// for a registered address as quick as for an unknown one (the mail arrives afterwards). The
/// margin is the point: a response path that sent the mail would take the relay's 3 s, so the
/// bound is structural, not a close timing comparison.
#[tokio::test]
async fn a_reset_request_answers_before_the_mail_is_sent() {
    let relay_delay = Duration::from_secs(3);
    let mailing = mailing_through(SmtpSink::start_with_delay(relay_delay).await).await;
    let timed = |email: String| {
        let gateway = mailing.gateway;
        async move {
            let mut visitor = WebClient::new(gateway, unique_ip());
            let started = std::time::Instant::now();
            let page = ask_for_link(&mut visitor, &email, &[("accept", "application/json")]).await;
            (page, started.elapsed())
        }
    };
    let (unknown, unknown_took) = timed(format!("nobody-{}@example.com", mailing.user.username)).await;
    let (known, known_took) = timed(mailing.email.clone()).await;
    assert_eq!((known.status, &known.text), (unknown.status, &unknown.text));
    assert!(known_took < relay_delay / 2, "the known address's answer took {known_took:?}: it waited for the mail");
    assert!(unknown_took < relay_delay / 2, "{unknown_took:?}");
    println!("reset-by-email response: unknown {unknown_took:?}, known {known_took:?}");
    assert!(mailing.sink.messages().is_empty(), "the mail is still with the slow relay when the answer arrives");
    mailing.sink.wait_for(1).await;
}
