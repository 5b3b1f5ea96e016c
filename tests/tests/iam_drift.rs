//! The IAM drift test. The emulator enforces no IAM, so a function whose template policies lack an
//! action it performs would pass every other suite and fail only in AWS. Here every template
//! function is driven through the local gateway over HTTP (and the fill engine through one pass),
//! with [`shared::app::aws::AwsCallStats`] recording what IAM would authorise for each call; each
//! recorded (function, action, resource) must then be allowed by that function's policies in
//! `template.yaml`, managed policies resolved (`kavach_tests::iam`).
//!
//! It runs on a stack of its own, provisioned from the template into the suite's emulator with
//! test-friendly parameters, so it can complete first-run setup, ban addresses and change the
//! security settings without touching what the other suites share.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use kavach_gateway::TemplateRoute;
use kavach_tests::kite_stub::{API_KEY, API_SECRET, KiteStub};
use kavach_tests::web::WebClient;
use kavach_tests::{
    WebUser, call, get_text, iam, market_morning, new_admin, new_user, new_web_user, ping_body, post, unique_ip,
};
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;
use shared::Deps;
use shared::app::aws::{AwsClients, acting_as};
use shared::app::bootstrap::Secrets;
use shared::broker::BrokerId;
use shared::core::clock::{Clock, ManualClock};
use shared::core::config::Config;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
const PUBLIC_BASE_URL: &str = "https://kavach.example.in";

/// Budgets no flow here comes near, the never-ban set narrowed so loopback addresses other than
/// 127.0.0.1 can be banned, and an origin for reset links.
const PARAMETERS: &[(&str, &str)] = &[
    ("NeverBanCidrs", "127.0.0.1/32,::1/128"),
    ("ApiRateLimit", "1000 per second"),
    ("OrderRateLimit", "1000 per second"),
    ("SmartOrderRateLimit", "1000 per second"),
    ("PageRateLimit", "1000 per second"),
    ("LoginRateLimitMinute", "1000 per minute"),
    ("LoginRateLimitHour", "1000 per hour"),
    ("PublicBaseUrl", PUBLIC_BASE_URL),
];

/// A fresh stack from the template in the suite's emulator: its function environment.
async fn provision_own_stack() -> BTreeMap<String, String> {
    kavach_tests::provision_stack(&format!("iam-drift-{}", std::process::id()), PARAMETERS).await
}

struct Stack {
    deps: Arc<Deps>,
    gateway: SocketAddr,
    clock: Arc<ManualClock>,
}

impl Stack {
    /// An API call that must succeed.
    async fn ok(&self, route: &str, key: &str, body: Value) -> Value {
        let reply = call(self.gateway, route, key, body).await;
        assert_eq!(reply.status, 200, "{route}: {}", reply.body);
        reply.body
    }

    /// A logged-in browser for `user`, in a TOTP step no earlier login of that user has used.
    async fn browser(&self, user: &WebUser) -> WebClient {
        self.clock.advance(Duration::from_secs(30));
        WebClient::logged_in(self.gateway, unique_ip(), user, &self.deps).await
    }
}

fn sbin(extra: Value) -> Value {
    let mut body = json!({ "strategy": "iam", "symbol": "SBIN", "exchange": "NSE", "action": "BUY", "quantity": "1",
        "pricetype": "MARKET", "product": "MIS" });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// PingFunction: a good key, an unknown one, a wrong secret, and the bad-key detector's ban.
async fn ping(stack: &Stack, key: &str) {
    assert_eq!(stack.ok("ping", key, json!({})).await["data"]["message"], "pong");
    let wrong_secret = format!("{}{}", &key[..key.len() - 1], if key.ends_with('0') { '1' } else { '0' });
    let attacker = unique_ip();
    for n in 0..11 {
        let presented = if n % 2 == 0 { wrong_secret.clone() } else { format!("made-up-{n}") };
        post(stack.gateway, attacker, "/api/v1/ping", &ping_body(&presented)).await;
    }
    let banned = post(stack.gateway, attacker, "/api/v1/ping", &ping_body("made-up")).await;
    assert_eq!(banned.body["code"], "ip_banned", "{}", banned.body);
    // A detector's ban spares a valid key.
    assert_eq!(post(stack.gateway, attacker, "/api/v1/ping", &ping_body(key)).await.status, 200);
}

/// OrdersFunction, every route; AccountFunction, every route.
async fn trading(stack: &Stack, key: &str) {
    let filled = stack.ok("placeorder", key, sbin(json!({ "product": "CNC" }))).await;
    let filled_id = filled["orderid"].as_str().expect("orderid").to_owned();
    let resting = |price: &str| sbin(json!({ "pricetype": "LIMIT", "price": price }));
    let open = stack.ok("placeorder", key, resting("1")).await["orderid"].as_str().expect("orderid").to_owned();
    let modify = json!({ "strategy": "iam", "orderid": open, "symbol": "SBIN", "exchange": "NSE", "action": "BUY",
        "product": "MIS", "pricetype": "LIMIT", "price": "2", "quantity": "1", "disclosed_quantity": "0",
        "trigger_price": "0" });
    stack.ok("modifyorder", key, modify).await;
    stack.ok("cancelorder", key, json!({ "strategy": "iam", "orderid": open })).await;
    stack.ok("placeorder", key, resting("1")).await;
    stack.ok("cancelallorder", key, json!({ "strategy": "iam" })).await;
    stack.ok("placesmartorder", key, sbin(json!({ "quantity": "2", "position_size": "2" }))).await;
    let leg = |symbol: &str| {
        json!({ "symbol": symbol, "exchange": "NSE", "action": "BUY", "quantity": "1", "pricetype": "MARKET",
            "product": "MIS" })
    };
    stack.ok("basketorder", key, json!({ "strategy": "iam", "orders": [leg("SBIN"), leg("INFY")] })).await;
    stack.ok("splitorder", key, sbin(json!({ "quantity": "5", "splitsize": "2" }))).await;
    stack.ok("closeposition", key, json!({ "strategy": "iam" })).await;

    for route in ["orderbook", "tradebook", "positionbook", "holdings", "funds", "analyzer"] {
        stack.ok(route, key, json!({})).await;
    }
    stack.ok("orderstatus", key, json!({ "strategy": "iam", "orderid": filled_id })).await;
    let position = json!({ "strategy": "iam", "symbol": "SBIN", "exchange": "NSE", "product": "CNC" });
    stack.ok("openposition", key, position).await;
    stack.ok("analyzer/toggle", key, json!({ "mode": true })).await;
}

/// Live trading: a Zerodha-linked account switched out of analyzer mode, an order and a read at
/// Kite through OrdersFunction and AccountFunction, a quote through MarketFunction, a signal through
/// WebhookFunction, and back.
async fn live(stack: &Stack, kite: &KiteStub) {
    let (user, key) = new_user(&stack.deps).await;
    let links = stack.deps.broker_links().expect("broker links");
    let credentials = shared::broker::links::AppCredentials::from_form(API_KEY, API_SECRET).expect("credentials");
    let login = links.start(&user, "iam-drift", BrokerId::Zerodha, Some(credentials)).await.expect("connect");
    let back = kite.authorize(&login).await;
    let (state, token) = (kavach_tests::query_param(&back, "state"), kavach_tests::query_param(&back, "request_token"));
    links.complete(&user, "iam-drift", BrokerId::Zerodha, state.as_deref(), token.as_deref()).await.expect("linked");
    let webhook = kavach_tests::sbin_webhook(&stack.deps, &user, "Live", 1).await;
    stack.ok("analyzer/toggle", &key, json!({ "mode": false })).await;
    let placed = stack.ok("placeorder", &key, sbin(json!({}))).await;
    assert!(placed.get("mode").is_none(), "placed at Kite: {placed}");
    stack.ok("orderbook", &key, json!({})).await;
    let quote = stack.ok("quotes", &key, json!({ "symbol": "SBIN", "exchange": "NSE" })).await;
    assert_eq!(quote["data"]["ltp"], 800.0, "quoted at Kite: {quote}");
    let signal = json!({ "symbol": "SBIN", "action": "BUY" }).to_string();
    let reply = post(stack.gateway, unique_ip(), &format!("/strategy/webhook/{webhook}"), &signal).await;
    assert_eq!(reply.status, 200, "live signal: {}", reply.body);
    assert!(reply.body.get("mode").is_none(), "the signal traded at Kite: {}", reply.body);
    stack.ok("analyzer/toggle", &key, json!({ "mode": true })).await;
}

/// MarketFunction, every route.
async fn market(stack: &Stack, key: &str) {
    let instrument = json!({ "symbol": "SBIN", "exchange": "NSE" });
    stack.ok("quotes", key, instrument.clone()).await;
    stack.ok("depth", key, instrument.clone()).await;
    stack.ok("multiquotes", key, json!({ "symbols": [instrument] })).await;
    let history = json!({ "symbol": "SBIN", "exchange": "NSE", "interval": "5m", "start_date": "2025-10-01",
        "end_date": "2025-10-01" });
    stack.ok("history", key, history).await;
    stack.ok("intervals", key, json!({})).await;
}

/// WebhookFunction: an entry and an exit signal, and an unknown id.
async fn webhook(stack: &Stack) {
    let (user, _) = new_user(&stack.deps).await;
    let id = kavach_tests::sbin_webhook(&stack.deps, &user, "Breakout", 5).await;
    for action in ["BUY", "SELL"] {
        let signal = json!({ "symbol": "SBIN", "action": action }).to_string();
        let reply = post(stack.gateway, unique_ip(), &format!("/strategy/webhook/{id}"), &signal).await;
        assert_eq!(reply.status, 200, "{action}: {}", reply.body);
    }
    let unknown = format!("/strategy/webhook/{}", hex::encode(shared::crypto::random_bytes::<16>()));
    let signal = json!({ "symbol": "SBIN", "action": "BUY" }).to_string();
    assert_eq!(post(stack.gateway, unique_ip(), &unknown, &signal).await.status, 404);
}

fn setup_form(token: &str) -> [(&'static str, &str); 5] {
    [
        ("setup_token", token),
        ("username", "iam-admin"),
        ("email", "admin@example.in"),
        ("password", "Adm1n!secret"),
        ("confirm_password", "Adm1n!secret"),
    ]
}

/// SetupFunction: the form, a wrong token, and the administrator created with the right one.
async fn setup(stack: &Stack) {
    let mut visitor = WebClient::new(stack.gateway, unique_ip());
    assert_eq!(visitor.get("/setup").await.status, 200, "a fresh stack offers setup");
    let token = stack.deps.accounts().issue_setup_token().await.expect("setup token");
    let wrong = visitor.post_json("/setup", &setup_form("not-the-token")).await;
    assert_eq!(wrong.status, 400, "{}", wrong.text);
    let done = visitor.post_json("/setup", &setup_form(token.expose())).await;
    assert_eq!((done.status, done.json()["message"].as_str()), (200, Some("Setup complete")), "{}", done.text);
}

/// AuthFunction: the pages, a failed and a full login, and password reset by TOTP and by email.
async fn auth(stack: &Stack, sink: &kavach_tests::smtp_sink::SmtpSink) {
    let mut visitor = WebClient::new(stack.gateway, unique_ip());
    for path in ["/", "/auth/login", "/auth/login/totp", "/auth/csrf-token", "/auth/reset-password"] {
        let page = visitor.get(path).await;
        assert!(page.status < 500, "{path}: {}", page.status);
    }
    let user = new_web_user(&stack.deps).await;
    let wrong = visitor.post_json("/auth/login", &[("username", &user.username), ("password", "Wr0ng!pass")]).await;
    assert_eq!(wrong.status, 401);
    let mut browser = stack.browser(&user).await;
    browser.csrf_token().await;

    stack.clock.advance(Duration::from_secs(30));
    let by_totp = [("method", "totp"), ("username", &user.username), ("totp_code", &user.code(&stack.deps))];
    let verified = visitor.post_json("/auth/reset-password", &by_totp).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let token = verified.json()["token"].as_str().expect("token").to_owned();
    confirm_reset(&mut visitor, &token, "N3w!password").await;

    let email = format!("{}@example.com", user.username);
    let sent = visitor.post_json("/auth/reset-password", &[("method", "email"), ("email", &email)]).await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    // Sent after the response, by the same function's permissions.
    let message = sink.wait_for_message_to(&email).await;
    let text = message.replace("=\n", "").replace("=3D", "=");
    let link = text.split_whitespace().find(|word| word.contains("token=")).expect("a link");
    let token = link.split("token=").nth(1).expect("token").to_owned();
    confirm_reset(&mut visitor, &token, "Th1rd!password").await;
}

async fn confirm_reset(visitor: &mut WebClient, token: &str, password: &str) {
    let form = visitor.get(&format!("/auth/reset-password/confirm?token={token}")).await;
    assert_eq!(form.status, 200, "{}", form.text);
    let fields = [("token", token), ("password", password), ("confirm_password", password)];
    let done = visitor.post("/auth/reset-password/confirm", &fields).await;
    assert_eq!((done.status, done.location()), (303, "/auth/login?reset"), "{}", done.text);
}

/// PortalFunction, every route.
async fn portal(stack: &Stack, kite: &KiteStub) {
    let user = new_web_user(&stack.deps).await;
    let kept = kavach_tests::sbin_webhook(&stack.deps, &user.username, "kept", 1).await;
    let dropped = kavach_tests::sbin_webhook(&stack.deps, &user.username, "dropped", 1).await;
    let mut browser = stack.browser(&user).await;
    for path in ["/dashboard", "/apikey", "/auth/sessions", "/broker"] {
        assert_eq!(browser.get(path).await.status, 200, "{path}");
    }
    let csrf = browser.csrf_token().await;
    // Link Zerodha (credentials saved, a login state issued, the callback's state used up and the
    // token stored), then disconnect.
    let credentials =
        [("csrf_token", csrf.as_str()), ("broker", "zerodha"), ("api_key", API_KEY), ("api_secret", API_SECRET)];
    let started = browser.post_json("/broker/connect", &credentials).await;
    assert_eq!(started.status, 200, "connect: {}", started.text);
    let login = started.json()["login_url"].as_str().expect("login_url").to_owned();
    let query = kite.authorize(&login).await;
    let linked = browser.get(&format!("/broker/callback/zerodha?{query}")).await;
    assert_eq!((linked.status, linked.location()), (303, "/broker?linked=zerodha"), "callback: {}", linked.text);
    let gone = browser.post_json("/broker/disconnect", &[("csrf_token", &csrf), ("broker", "zerodha")]).await;
    assert_eq!(gone.status, 200, "disconnect: {}", gone.text);
    assert_eq!(browser.post_json("/apikey", &[("csrf_token", &csrf)]).await.status, 200, "regenerate");
    for (path, id) in [("/apikey/webhooks/rebind", &kept), ("/apikey/webhooks/revoke", &dropped)] {
        let handle = shared::identity::webhooks::handle_of(id);
        let changed = browser.post_json(path, &[("csrf_token", &csrf), ("handle", &handle)]).await;
        assert_eq!(changed.status, 200, "{path}: {}", changed.text);
    }
    let allowlist = browser.post_json("/apikey/allowlist", &[("csrf_token", &csrf), ("allowlist", "")]).await;
    assert_eq!(allowlist.status, 200, "allowlist: {}", allowlist.text);
    // Past the re-authentication window: reveal asks for the password and rotates the session.
    stack.clock.advance(Duration::from_secs(6 * 60));
    let reveal = browser.post_json("/apikey/reveal", &[("csrf_token", &csrf), ("password", &user.password)]).await;
    assert_eq!(reveal.status, 200, "reveal: {}", reveal.text);
    let csrf = browser.csrf_token().await;
    assert_eq!(browser.post_json("/auth/logout-all", &[("csrf_token", &csrf)]).await.status, 200, "logout-all");

    let mut browser = stack.browser(&user).await;
    let csrf = browser.csrf_token().await;
    let new_password = "Chang3d!pass";
    let change = [
        ("csrf_token", csrf.as_str()),
        ("current_password", user.password.as_str()),
        ("new_password", new_password),
        ("confirm_password", new_password),
    ];
    let changed = browser.post_json("/auth/change-password", &change).await;
    assert_eq!(changed.status, 200, "change password: {}", changed.text);

    let user = WebUser { password: new_password.into(), ..user };
    let mut browser = stack.browser(&user).await;
    let csrf = browser.csrf_token().await;
    assert_eq!(browser.post_json("/auth/logout", &[("csrf_token", &csrf)]).await.status, 200, "logout");
}

/// SecurityFunction, every route, as the administrator.
async fn security(stack: &Stack) {
    let admin = new_admin(&stack.deps).await;
    let mut operator = stack.browser(&admin).await;
    for path in ["/security", "/security/api/data", "/logs", "/logs/export"] {
        assert_eq!(operator.get(path).await.status, 200, "{path}");
    }
    let target = unique_ip().to_string();
    let writes: [(&str, Vec<(&str, &str)>); 4] = [
        ("/security/ban", vec![("ip_address", &target), ("reason", "iam drift"), ("duration_hours", "1")]),
        ("/security/unban", vec![("ip_address", &target)]),
        ("/security/clear-404", vec![("ip_address", &target)]),
        ("/security/settings", vec![("404_threshold", "20")]),
    ];
    for (path, form) in writes {
        let csrf = operator.csrf_token().await;
        let page = operator.post_with(path, &form, &[("accept", "application/json"), ("x-csrf-token", &csrf)]).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
    }
}

/// NotFoundFunction: misses until the 404 detector bans, and a request from the banned address.
async fn not_found(stack: &Stack) {
    let scanner = unique_ip();
    for n in 0..21 {
        get_text(stack.gateway, scanner, &format!("/wp-admin/probe-{n}.php")).await;
    }
    assert_eq!(get_text(stack.gateway, scanner, "/.env").await.0, 403, "the scanner is banned");
}

/// FillEngineFunction: one pass that fills a resting limit order at the market's coming low.
async fn fill_engine(stack: &Stack, key: &str) {
    let instrument = shared::trading::market::instrument("SBIN", shared::trading::orders::Exchange::Nse).expect("SBIN");
    let now = stack.clock.now();
    let (low_at, low) = (1..3_600)
        .map(|s| now.plus(std::time::Duration::from_secs(s)))
        .map(|at| (at, instrument.price_at(at)))
        .fold((now, f64::MAX), |best, x| if x.1 < best.1 { x } else { best });
    stack.ok("placeorder", key, sbin(json!({ "pricetype": "LIMIT", "price": low.to_string() }))).await;
    let engine = fill_engine::FillEngine::new(&stack.deps.config, &stack.deps.aws, stack.clock.clone());
    stack.clock.set(low_at);
    let changed = kavach_gateway::fill_engine_pass(&engine).await.expect("fill pass");
    assert!(changed >= 1, "the pass filled the order");
}

/// RolloverFunction: the next morning's pass, which ends the live step's Kite token (Query of the
/// held-tokens index, the link read, the conditional revoke). Last: it moves the clock a day on.
async fn rollover(stack: &Stack) {
    stack.clock.advance(Duration::from_secs(24 * 3600));
    let deps = stack.deps.for_function(rollover::SECRETS);
    let done = kavach_gateway::rollover_pass(&deps).await.expect("rollover pass");
    assert!(done.revoked >= 1, "the live step's token was ended: {done:?}");
}

/// KeyRingFunction: the Create that fills the secret CloudFormation left empty (GetSecretValue,
/// a KMS root, its sealing, PutSecretValue), then the upgrade's Create that finds both (opening the
/// ring), and the deploy's last step turning deletion protection on (UpdateTable). Run first, on
/// the stack's own secret: the fixtures then use the pepper and ring it made.
async fn key_ring(config: &Config, aws: &AwsClients) {
    aws.secrets.put_secret_value().secret_id(&config.secret_id).secret_string("{}").send().await.expect("empty");
    let sink = kavach_tests::cfn::ResponseSink::start().await;
    let provider = key_ring::Provider::new(Ok(config.clone()), aws.clone()).expect("provider");
    for (n, created) in [(1, "true"), (2, "false")] {
        let url = sink.url(&format!("create-{n}"));
        let request = kavach_tests::cfn::key_ring_request("Create", &config.stack_name, &url, None);
        let answer = acting_as("KeyRingFunction", provider.handle(request)).await.expect("answered");
        assert_eq!(answer.data.get("KeyRingCreated").map(String::as_str), Some(created), "{answer:?}");
    }
    // The deploy's last step, TableProtection, answered by the same function: UpdateTable.
    let url = sink.url("table-protection");
    let mut request = kavach_tests::cfn::key_ring_request("Create", &config.stack_name, &url, None);
    request["LogicalResourceId"] = serde_json::json!("TableProtection");
    request["ResourceType"] = serde_json::json!(key_ring::TABLE_PROTECTION);
    let answer = acting_as("KeyRingFunction", provider.handle(request)).await.expect("answered");
    let reason = answer.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("Deletion protection is on"), "{answer:?}");
}

/// Whether API Gateway's resource `pattern` (`{name}` one segment, `{name+}` the rest) covers `path`.
fn covers(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').trim_end_matches('/').split('/').collect();
    for (index, segment) in pattern.iter().enumerate() {
        if segment.ends_with("+}") {
            return path.len() > index;
        }
        match path.get(index) {
            Some(actual) if segment.starts_with('{') || segment == actual => {}
            _ => return false,
        }
    }
    pattern.len() == path.len()
}

/// The template's routes no request in this stack's traffic log went to. Records are written after
/// each response, so the log is read until it covers them all, for up to 5 s. (`/{proxy+}` is
/// covered by any request: that the catch-all ran is shown by its function's calls instead.)
async fn routes_not_requested(deps: &Deps, routes: &[TemplateRoute]) -> Vec<String> {
    let mut missing = Vec::new();
    for _ in 0..50 {
        let items = kavach_tests::scan_traffic(deps, None).await;
        let field = |item: &std::collections::HashMap<String, AttributeValue>, name: &str| {
            item.get(name).and_then(|value| value.as_s().ok()).cloned().unwrap_or_default()
        };
        let requested: BTreeSet<(String, String)> =
            items.iter().map(|item| (field(item, "method"), field(item, "path"))).collect();
        missing = routes
            .iter()
            .filter(|route| {
                !requested.iter().any(|(method, path)| {
                    (route.method == "ANY" || &route.method == method) && covers(&route.path, path)
                })
            })
            .map(|route| format!("{} {} ({})", route.method, route.path, route.function))
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    missing
}

#[tokio::test]
async fn every_aws_call_of_every_function_is_allowed_by_its_template_policies() {
    let text = std::fs::read_to_string(TEMPLATE).expect("template.yaml");
    let template: Yaml = serde_yaml::from_str(&text).expect("template parses");
    let policies = iam::function_policies(&template).unwrap_or_else(|error| panic!("{error:#}"));
    let environment = provision_own_stack().await;
    let names = iam::resource_names(&template, &environment).unwrap_or_else(|error| panic!("{error:#}"));

    let aws = AwsClients::from_env().await;
    aws.stats.record_accesses();
    // Kite is the local stub: the portal links and unlinks it.
    let kite = KiteStub::start().await;
    let config = Config::from_lookup(|name| match name {
        "KITE_API_ROOT" | "KITE_LOGIN_ROOT" => Some(kite.root.clone()),
        _ => environment.get(name).cloned(),
    })
    .expect("provisioned config");
    let clock = market_morning();
    let metrics = shared::core::metrics::MetricSink::Memory(Default::default());
    key_ring(&config, &aws).await;
    // The fixtures' deps (every secret) start outside any function, so their calls are not recorded;
    // each function's own cold start is, under its name, with the secrets its binary asks for.
    let deps = shared::app::bootstrap::init_with(config.clone(), clock.clone(), aws.clone(), metrics.clone())
        .await
        .expect("the fixtures' deps");
    let function_secrets = kavach_gateway::function_secrets();
    for (&function, &secrets) in &function_secrets {
        let cold_start = shared::app::bootstrap::init_with_secrets(
            config.clone(),
            clock.clone(),
            aws.clone(),
            metrics.clone(),
            secrets,
        );
        acting_as(function, cold_start).await.unwrap_or_else(|error| panic!("{function}'s cold start: {error}"));
    }
    let sink = kavach_tests::smtp_sink::SmtpSink::start().await;
    deps.mail_settings().configure(&sink.settings()).await.expect("configure SMTP");
    let gateway = kavach_tests::start_gateway(deps.clone()).await;
    let stack = Stack { deps: deps.clone(), gateway, clock };

    setup(&stack).await;
    let (_, key) = new_user(&deps).await;
    ping(&stack, &key).await;
    trading(&stack, &key).await;
    market(&stack, &key).await;
    webhook(&stack).await;
    live(&stack, &kite).await;
    auth(&stack, &sink).await;
    portal(&stack, &kite).await;
    security(&stack).await;
    not_found(&stack).await;
    fill_engine(&stack, &key).await;
    rollover(&stack).await;

    let routes = kavach_gateway::template::routes(&text).expect("routes");
    let missing = routes_not_requested(&deps, &routes).await;
    assert!(missing.is_empty(), "these template routes were not requested, so their IAM is unchecked: {missing:#?}");
    let accesses = deps.aws.stats.accesses();
    let callers: BTreeSet<&str> = accesses.iter().map(|access| access.caller).collect();
    let missed: Vec<&String> = policies.keys().filter(|function| !callers.contains(function.as_str())).collect();
    assert!(missed.is_empty(), "these template functions were not driven, so their IAM is unchecked: {missed:?}");
    // A cold start reads the app secret exactly when its function uses a secret: never for the
    // catch-all or the security dashboard.
    for (function, secrets) in &function_secrets {
        let read =
            accesses.iter().any(|access| access.caller == *function && access.action.starts_with("secretsmanager:"));
        assert_eq!(read, *secrets != Secrets::NONE, "{function}'s cold start read the app secret: {read}");
    }
    // Each function's cold start is recorded under its own name above, so none is a shared caller.
    let violations = iam::violations(&policies, &names, &accesses, &BTreeSet::new());
    assert!(
        violations.is_empty(),
        "IAM drift between the code and template.yaml: {} finding(s) over {} recorded accesses:\n{}",
        violations.len(),
        accesses.len(),
        violations.into_iter().collect::<Vec<_>>().join("\n")
    );
}
