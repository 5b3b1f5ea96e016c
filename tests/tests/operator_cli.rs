//! The operator command's bans, run as the real `kavach` binary against the stack: a ban by hand is
//! created by the same service as the dashboard's and the detectors', so it is validated the same
//! way, counted as `BansCreated` and logged, and it refuses the very next request.

use std::net::IpAddr;

use std::sync::Arc;

use kavach_tests::web::WebClient;
use kavach_tests::{
    ROOMY, WebUser, cold_start, config_with, deps, new_user, new_web_user, ping_body, post, required_env,
    start_gateway, unique_ip,
};
use shared::core::clock::SystemClock;

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

async fn kavach(args: &[&str]) -> Run {
    let output = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(args)
        .output()
        .await
        .expect("run the kavach binary (KAVACH_ADMIN_BIN)");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The JSON lines of `text` that parse.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// `kavach ban add` run for a new address, for 2 hours with the reason "cli test": the address and
/// the run, which must have succeeded.
async fn ban_by_hand() -> (IpAddr, Run) {
    let ip: IpAddr = unique_ip();
    let address = ip.to_string();
    let run = kavach(&["ban", "add", &address, "--hours", "2", "--reason", "cli test"]).await;
    assert!(run.success, "ban add failed: {}{}", run.stdout, run.stderr);
    (ip, run)
}

#[tokio::test]
async fn a_ban_by_hand_emits_bans_created_on_the_dimension_the_alarm_watches() {
    let deps = deps().await;
    let (_, run) = ban_by_hand().await;
    let metric = json_lines(&run.stdout)
        .into_iter()
        .find(|line| line.get("BansCreated").is_some())
        .unwrap_or_else(|| panic!("no BansCreated EMF line on stdout:\n{}", run.stdout));
    assert_eq!(metric["BansCreated"], 1);
    let directive = &metric["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Kavach");
    assert_eq!(directive["Metrics"][0]["Name"], "BansCreated");
    assert_eq!(metric["Service"], deps.config.stack_name.as_str(), "the dimension the alarm watches");
}

#[tokio::test]
async fn a_ban_by_hand_logs_ip_banned_with_the_address_and_reason() {
    let (ip, run) = ban_by_hand().await;
    let address = ip.to_string();
    let logged = json_lines(&run.stderr)
        .into_iter()
        .find(|line| line["message"] == "IP banned")
        .unwrap_or_else(|| panic!("no `IP banned` log line on stderr:\n{}", run.stderr));
    assert_eq!(logged["client_ip"], address.as_str());
    assert_eq!(logged["created_by"], "manual");
    assert_eq!(logged["reason"], "cli test");
    assert!(run.stdout.contains(&format!("Banned {address} until epoch")), "{}", run.stdout);
}

#[tokio::test]
async fn a_ban_by_hand_refuses_the_next_request_until_it_is_removed() {
    let deps = deps().await;
    let gateway = start_gateway(deps.clone()).await;
    let (_, key) = new_user(&deps).await;
    let (ip, _) = ban_by_hand().await;
    let address = ip.to_string();

    let refused = post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (403, Some("ip_banned")));

    let lifted = kavach(&["ban", "remove", &address]).await;
    assert!(lifted.success && lifted.stdout.contains(&format!("Unbanned {address}")), "{}", lifted.stdout);
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await.status, 200);
}

#[tokio::test]
async fn a_ban_by_hand_is_listed_as_manual_with_its_reason() {
    let (ip, _) = ban_by_hand().await;
    let listed = kavach(&["ban", "list"]).await;
    let row = listed.stdout.lines().find(|line| line.starts_with(&format!("{ip}\t"))).unwrap_or_default();
    assert!(row.ends_with("\tmanual\tcli test"), "listed as a manual ban: {row:?}");
}

#[tokio::test]
async fn banning_an_address_already_banned_by_hand_is_refused() {
    let (ip, _) = ban_by_hand().await;
    let again = kavach(&["ban", "add", &ip.to_string()]).await;
    assert!(!again.success && again.stderr.contains("already banned"), "{}", again.stderr);
}

#[tokio::test]
async fn a_ban_by_hand_is_validated_as_the_dashboards_is() {
    let address = unique_ip().to_string();
    for (args, message) in [
        (vec!["--hours", "0"], "Ban duration must be Permanent (0) or between 1 hour and 1 year"),
        (vec!["--hours", "8761"], "Ban duration must be Permanent (0) or between 1 hour and 1 year"),
        (vec!["--hours", "many"], "is not a whole number"),
    ] {
        let run = kavach(&[&["ban", "add", address.as_str()][..], &args].concat()).await;
        assert!(!run.success, "{args:?} was accepted");
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    // `scripts/test` keeps 127.0.0.1 in the never-ban set.
    let home = kavach(&["ban", "add", "127.0.0.1"]).await;
    assert!(!home.success && home.stderr.contains("never-ban"), "{}", home.stderr);
    assert!(!json_lines(&home.stdout).iter().any(|line| line.get("BansCreated").is_some()), "no ban, no metric");
}

/// A gateway with roomy login budgets, and a web user whose TOTP reset ten wrong codes have locked.
async fn locked_user() -> (Arc<shared::Deps>, std::net::SocketAddr, WebUser) {
    let deps = cold_start(config_with(ROOMY), Arc::new(SystemClock)).await;
    let gateway = start_gateway(deps.clone()).await;
    let user = new_web_user(&deps).await;
    let mut attacker = WebClient::new(gateway, unique_ip());
    for _ in 0..10 {
        let fields = [("method", "totp"), ("username", user.username.as_str()), ("totp_code", "000000")];
        assert_eq!(attacker.post_json("/auth/reset-password", &fields).await.status, 400);
    }
    (deps, gateway, user)
}

async fn reset_by_code(gateway: std::net::SocketAddr, user: &WebUser, code: &str) -> u16 {
    let fields = [("method", "totp"), ("username", user.username.as_str()), ("totp_code", code)];
    WebClient::new(gateway, unique_ip()).post_json("/auth/reset-password", &fields).await.status
}

#[tokio::test]
async fn kavach_user_unlock_lifts_the_totp_reset_lock() {
    let (deps, gateway, user) = locked_user().await;
    assert_eq!(reset_by_code(gateway, &user, &user.code(&deps)).await, 400, "locked");
    let run = kavach(&["user", "unlock", &user.username]).await;
    assert!(run.success && run.stdout.contains("Unlocked"), "{}{}", run.stdout, run.stderr);
    assert_eq!(reset_by_code(gateway, &user, &user.code(&deps)).await, 200, "unlocked");
    let nobody = kavach(&["user", "unlock", "no-such-user"]).await;
    assert!(!nobody.success && nobody.stderr.contains("no user `no-such-user`"), "{}", nobody.stderr);
}

#[tokio::test]
async fn kavach_user_reset_password_prints_a_new_password_that_logs_in_once_shown() {
    let (deps, gateway, user) = locked_user().await;
    let mut before = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    let run = kavach(&["user", "reset-password", &user.username]).await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let at = lines.iter().position(|line| line.starts_with("New password for")).expect("the password's heading");
    let password = lines[at + 1].trim();
    shared::identity::accounts::check_password_strength(password).expect("a password the rules accept");
    assert_eq!(before.get_json("/dashboard").await.status, 401, "every session ended");

    let mut browser = WebClient::new(gateway, unique_ip());
    let old = browser.post_json("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!(old.status, 401, "the old password is gone");
    let new = browser.post("/auth/login", &[("username", &user.username), ("password", password)]).await;
    assert_eq!((new.status, new.location()), (303, "/auth/login/totp"), "{}", new.text);
}

#[tokio::test]
async fn kavach_user_reset_totp_prints_a_new_secret_and_the_old_codes_stop_working() {
    let (deps, gateway, user) = locked_user().await;
    let run = kavach(&["user", "reset-totp", &user.username]).await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let printed = run.stdout.lines().find_map(|line| line.strip_prefix("secret: ")).expect("the secret").trim();
    let record = deps.identity.user(&user.username).await.expect("read").expect("user");
    let stored = deps.accounts().totp_secret(&record, deps.clock.now()).await.expect("decrypt").expect("enrolled");
    assert_eq!(stored.base32(), printed, "the secret printed is the one stored");
    assert_ne!(stored.base32(), user.totp.base32(), "a new secret");
    assert!(run.stdout.contains("otpauth://totp/"), "{}", run.stdout);
    assert_eq!(reset_by_code(gateway, &user, &user.code(&deps)).await, 400, "the old authenticator's code is refused");
    let new_code = stored.code_at(deps.clock.now());
    assert_eq!(
        reset_by_code(gateway, &user, &new_code).await,
        200,
        "the new secret's code works, and the lock is lifted"
    );
}

/// After `sam deploy` the operator exports only the stack's name (and region): `scripts/kavach`
/// derives every table, the key alias and the secret the way template.yaml names them. Run with
/// every other variable of the stack removed, it must reach the same stack.
#[tokio::test]
async fn scripts_kavach_needs_only_the_stacks_name_for_a_deployed_stack() {
    let (ip, _) = ban_by_hand().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kavach");
    let mut command = tokio::process::Command::new(script);
    for derived in [
        "SECURITY_TABLE",
        "RATE_LIMIT_TABLE",
        "IDENTITY_TABLE",
        "TRAFFIC_TABLE",
        "SANDBOX_TABLE",
        "KMS_KEY_ID",
        "APP_SECRET_ID",
    ] {
        command.env_remove(derived);
    }
    let output = command
        .env("KAVACH_USE_REAL_AWS", "1")
        .env("STACK_NAME", required_env("STACK_NAME"))
        .args(["ban", "list"])
        .output()
        .await
        .expect("run scripts/kavach");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "scripts/kavach ban list: {stdout}{stderr}");
    assert!(stdout.contains(&ip.to_string()), "the stack's own ban list: {stdout}");
}
