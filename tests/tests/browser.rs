//! The pages in headless Chromium, driven over WebDriver: first-run setup with its token, TOTP
//! enrolment, login with TOTP, the API-key page, logout, reset by TOTP, and the administrator's
//! security dashboard (ban, unban, settings) and traffic log. Each step saves a
//! screenshot under target/screenshots/ and asserts on what is on screen.
//!
//! Setup can happen once per stack, so this suite needs the fresh stack `scripts/test` provides.

use std::sync::Arc;
use std::time::Duration;

use kavach_tests::webdriver::Browser;
use kavach_tests::{ROOMY, cold_start, config_with, ping_body, post, start_gateway_under};
use shared::core::clock::SystemClock;
use shared::crypto::totp::{STEP_SECS, TotpSecret};

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim().chars() {
        let value = u32::try_from(ALPHABET.find(c).expect("base32 letter")).expect("small");
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).expect("byte"));
        }
    }
    out
}

/// Sleeps into the next TOTP step: a step already used for a login cannot be used again.
async fn next_totp_step() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    let into_step = now.as_millis() % u128::from(STEP_SECS * 1000);
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(u128::from(STEP_SECS * 1000) - into_step).expect("small") + 200,
    ))
    .await;
}

#[tokio::test]
async fn setup_totp_login_api_key_logout_and_reset_in_a_real_browser() {
    let deps = cold_start(config_with(ROOMY), Arc::new(SystemClock)).await;
    assert!(!deps.identity.admin_exists().await.expect("read"), "the browser suite needs a fresh stack (scripts/test)");
    // Under the stage, as the deployed execute-api URL serves it: every link, form and redirect
    // the browser follows must carry the prefix, or it lands on API Gateway's 403 at the host root.
    let gateway = start_gateway_under(deps.clone(), "prod").await;
    let site = format!("http://127.0.0.1:{}/prod", gateway.port());
    let token = deps.accounts().issue_setup_token().await.expect("setup token");
    let browser = Browser::start().await;

    // A fresh stack sends visitors to setup, which wants the token.
    browser.goto(&format!("{site}/auth/login")).await;
    assert_eq!(browser.url().await, format!("{site}/setup"));
    browser.wait_text("h1", "First-run setup").await;
    browser.screenshot("01-setup-form").await;
    let (username, password) = ("admin", "Adm1n!secret");
    let fill_setup = |token: String| {
        let browser = &browser;
        async move {
            browser.type_into("#setup_token", &token).await;
            browser.type_into("#username", username).await;
            browser.type_into("#email", "admin@example.in").await;
            browser.type_into("#password", password).await;
            browser.type_into("#confirm_password", password).await;
            browser.click("#create").await;
        }
    };
    fill_setup("not-the-token".into()).await;
    browser.wait_text("#error", "Invalid setup token").await;
    browser.screenshot("02-setup-wrong-token").await;
    fill_setup(token.expose().to_owned()).await;

    // TOTP enrolment: the QR code and the secret, shown once, and the first API key.
    browser.wait_text("h1", "Setup complete").await;
    assert!(browser.has("#totp-qr svg").await, "the QR code is on the page");
    let secret = TotpSecret::from_bytes(&base32_decode(&browser.text("#totp-secret").await)).expect("a 160-bit secret");
    let first_key = browser.text("#api-key").await;
    assert!(first_key.starts_with("kav_"), "{first_key}");
    browser.screenshot("03-totp-enrolment").await;
    assert_eq!(
        post(gateway, "127.0.0.1".parse().expect("ip"), "/prod/api/v1/ping", &ping_body(&first_key)).await.status,
        200
    );

    // Setup is closed now.
    browser.goto(&format!("{site}/setup")).await;
    assert_eq!(browser.url().await, format!("{site}/auth/login"));

    // Login: password, then the authenticator's code.
    browser.type_into("#username", username).await;
    browser.type_into("#password", password).await;
    browser.click("#login").await;
    browser.wait_text("h1", "Two-factor authentication").await;
    browser.screenshot("04-login-totp").await;
    browser.type_into("#totp_code", &secret.code_at(deps.clock.now())).await;
    browser.click("#verify").await;
    browser.wait_text("h1", "Dashboard").await;
    browser.wait_text("#username", username).await;
    let cookies = browser.cookies().await;
    let session = cookies.iter().find(|c| c["name"] == "__Host-kavach_session").expect("session cookie held");
    assert_eq!((session["httpOnly"].as_bool(), session["secure"].as_bool()), (Some(true), Some(true)));
    browser.screenshot("05-dashboard").await;

    // The API-key page: reveal (the login was just now, so no re-entry), then regenerate.
    browser.click(r#"nav a[href="/prod/apikey"]"#).await;
    browser.wait_text("h1", "API key").await;
    browser.click("#reveal").await;
    browser.wait_text("#api-key", &first_key).await;
    browser.screenshot("06-apikey-revealed").await;
    browser.click("#regenerate").await;
    browser.wait_text("#key-notice", "Your new API key. It is shown once; the old key no longer works.").await;
    let second_key = browser.text("#api-key").await;
    assert!(second_key.starts_with("kav_") && second_key != first_key);
    browser.screenshot("07-apikey-regenerated").await;
    let source = "127.0.0.1".parse().expect("ip");
    assert_eq!(post(gateway, source, "/prod/api/v1/ping", &ping_body(&first_key)).await.status, 403);
    assert_eq!(post(gateway, source, "/prod/api/v1/ping", &ping_body(&second_key)).await.status, 200);

    // Logout ends the session: the dashboard sends the browser back to login.
    browser.click("#logout").await;
    browser.wait_text("#notice", "Logged out successfully.").await;
    browser.screenshot("08-logged-out").await;
    browser.goto(&format!("{site}/dashboard")).await;
    assert_eq!(browser.url().await, format!("{site}/auth/login"));

    // Reset by TOTP (a new step: the login used the last one).
    next_totp_step().await;
    browser.click("#forgot").await;
    browser.wait_text("h1", "Reset password").await;
    browser.type_into("#username", username).await;
    browser.type_into("#totp_code", &secret.code_at(deps.clock.now())).await;
    browser.screenshot("09-reset-totp").await;
    browser.click("#reset-totp").await;
    browser.wait_text("h1", "Choose a new password").await;
    let new_password = "Fr3sh!secret";
    browser.type_into("#password", new_password).await;
    browser.type_into("#confirm_password", new_password).await;
    browser.click("#set-password").await;
    browser.wait_text("#notice", "Your password has been reset successfully. Log in with the new one.").await;
    browser.screenshot("10-reset-done").await;
    browser.type_into("#username", username).await;
    browser.type_into("#password", new_password).await;
    browser.click("#login").await;
    // The new password is accepted: on to the code (a step the reset did not use).
    browser.wait_text("h1", "Two-factor authentication").await;
    next_totp_step().await;
    browser.type_into("#totp_code", &secret.code_at(deps.clock.now())).await;
    browser.click("#verify").await;
    browser.wait_text("h1", "Dashboard").await;

    // The security dashboard: a manual ban, seen in the list and enforced, then lifted.
    browser.click(r#"nav a[href="/prod/security"]"#).await;
    browser.wait_text("h1", "Security").await;
    assert_eq!(browser.text("#your-ip").await, "127.0.0.1");
    browser.screenshot("11-security").await;
    let banned = "203.0.113.50";
    browser.type_into("#ip_address", banned).await;
    browser.type_into("#reason", "browser test").await;
    browser.click(r#"#duration_hours option[value="168"]"#).await;
    browser.click("#ban").await;
    browser.wait_text("#notice", "The address is banned.").await;
    let row = browser.text(&format!(r#"tr[data-ip="{banned}"]"#)).await;
    assert!(row.contains("browser test") && row.contains("manual") && row.contains("IST"), "{row}");
    let ban = deps.bans.active(banned.parse().expect("ip"), deps.clock.now()).await.expect("read").expect("banned");
    assert_eq!(ban.expires_at.map(|at| at.since(ban.banned_at)), Some(Duration::from_secs(168 * 3600)), "1 week");
    browser.screenshot("12-banned").await;
    browser.click(&format!(r#"tr[data-ip="{banned}"] button.unban"#)).await;
    browser.wait_text("#notice", "The address is unbanned.").await;
    assert!(!browser.has(&format!(r#"tr[data-ip="{banned}"]"#)).await);
    assert!(deps.bans.active(banned.parse().expect("ip"), deps.clock.now()).await.expect("read").is_none());
    browser.screenshot("13-unbanned").await;

    // Settings: OpenAlgo's range message for a bad value; a good one is saved and in force.
    browser.type_into(r#"input[name="404_threshold"]"#, "0").await;
    browser.click("#save-settings").await;
    browser.wait_text("#error", "404 threshold must be between 1 and 1000").await;
    browser.screenshot("14-settings-refused").await;
    browser.goto(&format!("{site}/security")).await;
    browser.type_into(r#"input[name="404_threshold"]"#, "30").await;
    browser.click("#save-settings").await;
    browser.wait_text("#notice", "Settings saved. They apply from the next request.").await;
    let saved = deps.trackers.settings().await.expect("settings");
    deps.trackers.save_settings(&shared::threats::SecuritySettings::default()).await.expect("restore");
    assert_eq!(saved.not_found_threshold, 30);
    assert!(saved.auto_ban_enabled, "the checkbox kept its state");
    browser.screenshot("15-settings-saved").await;

    // The traffic log, filtered by path, with this session's own requests in it.
    browser.click(r#"nav a[href="/prod/logs"]"#).await;
    browser.wait_text("h1", "Traffic log").await;
    browser.type_into("#path", "/security/").await;
    browser.click("#filter").await;
    browser.wait_text("h1", "Traffic log").await;
    let count: usize = browser.text("#count").await.parse().expect("count");
    assert!(count >= 3, "the ban, unban and settings posts: {count}");
    let table = browser.text("#traffic").await;
    assert!(table.contains("/security/ban") && table.contains("/security/unban") && table.contains("IST"), "{table}");
    assert!(!table.contains("/dashboard"), "filtered by path");
    browser.screenshot("16-traffic-log").await;
    browser.quit().await;
}
