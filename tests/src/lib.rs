//! Test harness for the integration suites. Everything runs against the real AWS emulator that
//! `scripts/test` starts; a missing dependency fails the test with a message, it never skips.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use shared::Deps;
use shared::app::aws::AwsClients;
use shared::app::bootstrap;
use shared::core::clock::{Clock, ManualClock, SystemClock, UnixMillis};
use shared::core::config::Config;
use shared::core::ist::ist_midnight_epoch;

pub mod cfn;
pub mod iam;
pub mod kite_stub;
pub mod smtp_sink;
pub mod tls;
pub mod web;
pub mod webdriver;

/// A variable `scripts/test` sets. Absent means the suite is being run outside its stack: fail.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{name} is not set: run the suite with scripts/test, which starts the AWS emulator"),
    }
}

/// The stack's configuration, with `overrides` applied on top of the environment.
pub fn config_with(overrides: &[(&str, &str)]) -> Config {
    required_env("AWS_ENDPOINT_URL");
    Config::from_lookup(|name| {
        overrides
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
            .or_else(|| std::env::var(name).ok())
    })
    .unwrap_or_else(|error| panic!("stack configuration: {error}"))
}

/// Login budgets large enough that a test's own logins never trip them.
pub const ROOMY: &[(&str, &str)] =
    &[("LOGIN_RATE_LIMIT_MIN", "1000 per minute"), ("LOGIN_RATE_LIMIT_HOUR", "1000 per hour")];

/// A fresh cold start (new clients, one Secrets Manager read, one KMS Decrypt).
pub async fn cold_start(config: Config, clock: Arc<dyn Clock>) -> Arc<Deps> {
    let aws = AwsClients::from_env().await;
    bootstrap::init_with(config, clock, aws, shared::core::metrics::MetricSink::Memory(Default::default()))
        .await
        .unwrap_or_else(|error| panic!("cold start: {error}"))
}

pub async fn deps() -> Arc<Deps> {
    cold_start(config_with(&[]), Arc::new(SystemClock)).await
}

/// Serves the template's routes on an ephemeral loopback port, in-process, with these deps.
pub async fn start_gateway(deps: Arc<Deps>) -> SocketAddr {
    start_gateway_under(deps, "").await
}

/// [`start_gateway`] under a stage prefix (`prod`: every route at `/prod/…`, as on execute-api).
pub async fn start_gateway_under(deps: Arc<Deps>, stage: &str) -> SocketAddr {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let gateway =
        Arc::new(kavach_gateway::Gateway::from_template(deps, &template).expect("gateway").under_stage(stage));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(gateway.serve(listener));
    address
}

/// A stack of its own in the emulator, provisioned from the template by the real `kavach provision`
/// with `parameters`: for a test that needs what the shared stack no longer has (no administrator
/// yet). Returns the function environment it resolved.
pub async fn provision_stack(stack: &str, parameters: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    provision_stack_from(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"), stack, parameters).await
}

/// [`provision_stack`] from another template: an upgrade test provisions from the old one first.
pub async fn provision_stack_from(
    template: &str,
    stack: &str,
    parameters: &[(&str, &str)],
) -> std::collections::BTreeMap<String, String> {
    required_env("AWS_ENDPOINT_URL");
    let env_file = std::env::temp_dir().join(format!("kavach-{stack}.env"));
    let mut command = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"));
    command.args(["provision", "--template", template, "--stack", stack, "--env-file"]).arg(&env_file);
    for (name, value) in parameters {
        command.args(["--param", &format!("{name}={value}")]);
    }
    let status = command.status().await.expect("run kavach provision");
    assert!(status.success(), "kavach provision --stack {stack} failed");
    let text = std::fs::read_to_string(&env_file).expect("env file");
    std::fs::remove_file(&env_file).ok();
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect()
}

/// A loopback source address no other test in this run uses, so counters and bans never collide.
/// Linux routes all of 127.0.0.0/8 to the loopback interface. Each test process takes its own
/// second octet ([`address_block`]); within it, addresses are handed out in order.
pub fn unique_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let octets = [127, address_block(), u8::try_from(n / 250).unwrap_or(0), u8::try_from(n % 250 + 2).unwrap_or(2)];
    IpAddr::V4(Ipv4Addr::from(octets))
}

/// This process's second octet, 20 to 250, claimed among every test process of the run.
///
/// The processes of one run share the emulator, and with it every ban and counter: two of them
/// on the same addresses would see each other's bans. (Deriving the octet from the process id did
/// collide: two of some twenty test binaries drew the same one and a test found its address
/// already banned.) A block is claimed by creating its file with `create_new`, which exactly one
/// process can do, in `KAVACH_TEST_ADDRESS_BLOCKS` (which `scripts/test` makes fresh per run), or
/// else in a directory named after the emulator's endpoint.
fn address_block() -> u8 {
    static BLOCK: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *BLOCK.get_or_init(|| {
        let directory =
            std::env::var("KAVACH_TEST_ADDRESS_BLOCKS").map(std::path::PathBuf::from).unwrap_or_else(|_| {
                let endpoint: String = required_env("AWS_ENDPOINT_URL")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                std::env::temp_dir().join(format!("kavach-test-address-blocks-{endpoint}"))
            });
        std::fs::create_dir_all(&directory).unwrap_or_else(|error| panic!("{}: {error}", directory.display()));
        (20..=250u8)
            .find(|block| {
                std::fs::OpenOptions::new().write(true).create_new(true).open(directory.join(block.to_string())).is_ok()
            })
            .unwrap_or_else(|| {
                panic!("every address block in {} is taken: remove the directory for a new run", directory.display())
            })
    })
}

/// An HTTP client whose connections leave from `source`.
pub fn client_from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder().local_address(source).no_proxy().build().expect("client")
}

/// A table of the test's own, named after `stem`, keyed on string attributes: `keys[0]` the
/// partition key and `keys[1]`, if given, the sort key. What a test loads into it or counts in it
/// then weighs on no other test.
pub async fn scratch_table(aws: &AwsClients, stem: &str, keys: &[&str]) -> String {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let name = unique_name(stem);
    let mut create = aws.dynamodb.create_table().table_name(&name).billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind) in keys.iter().zip([KeyType::Hash, KeyType::Range]) {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(KeySchemaElement::builder().attribute_name(*attribute).key_type(kind).build().expect("key"));
    }
    create.send().await.expect("CreateTable");
    name
}

pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A gateway on a fresh cold start with `overrides` applied, and a new user's API key.
pub async fn gateway_with_user(overrides: &[(&str, &str)], clock: Arc<dyn Clock>) -> (Arc<Deps>, SocketAddr, String) {
    let deps = cold_start(config_with(overrides), clock).await;
    let (_, key) = new_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;
    (deps, gateway, key)
}

/// A gateway on a fresh cold start with `overrides` applied, and a new web user.
pub async fn gateway_with_web_user(
    overrides: &[(&str, &str)],
    clock: Arc<dyn Clock>,
) -> (Arc<Deps>, SocketAddr, WebUser) {
    let deps = cold_start(config_with(overrides), clock).await;
    let user = new_web_user(&deps).await;
    let gateway = start_gateway(deps.clone()).await;
    (deps, gateway, user)
}

/// A long-only MIS strategy webhook on `user`'s account trading `quantity` SBIN per entry signal:
/// its secret id.
pub async fn sbin_webhook(deps: &Deps, user: &str, strategy: &str, quantity: u64) -> String {
    sbin_webhook_for(deps, user, strategy, quantity, shared::trading::orders::Product::Mis).await
}

/// [`sbin_webhook`] trading `product`: CNC for a caller on the wall clock, which may be past the
/// 15:15 IST square-off that refuses MIS.
pub async fn sbin_webhook_for(
    deps: &Deps,
    user: &str,
    strategy: &str,
    quantity: u64,
    product: shared::trading::orders::Product,
) -> String {
    let webhook = shared::identity::webhooks::Webhook {
        user: user.to_owned(),
        strategy: strategy.into(),
        exchange: shared::trading::orders::Exchange::Nse,
        product,
        mode: shared::identity::webhooks::Mode::Long,
        symbols: [("SBIN".to_owned(), quantity)].into(),
        suspended_at: None,
    };
    deps.accounts().create_webhook(&webhook).await.expect("create webhook")
}

/// A new user on the sandbox broker and its API key.
pub async fn new_user(deps: &Deps) -> (String, String) {
    let username = unique_name("u");
    let key = deps.accounts().create_user(&username).await.expect("create user");
    (username, key.expose().to_owned())
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

/// POSTs `body` verbatim to `path` from `source`.
pub async fn post(address: SocketAddr, source: IpAddr, path: &str, body: &str) -> Reply {
    post_with(client_from(source).post(format!("http://{address}{path}")).body(body.to_owned())).await
}

pub async fn post_with(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("gateway reachable");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text}"));
    Reply { status, headers, body }
}

/// The decoded value of `name` in a query string, or in a URL's query.
pub fn query_param(query_or_url: &str, name: &str) -> Option<String> {
    let query = query_or_url.split_once('?').map_or(query_or_url, |(_, query)| query);
    form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

pub fn ping_body(key: &str) -> String {
    serde_json::json!({ "apikey": key }).to_string()
}

/// Wednesday 2025-10-01, 10:00 IST: a frozen clock in market hours, so trading tests never depend
/// on the time they run at.
pub fn market_morning() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(UnixMillis((ist_midnight_epoch(2025, 10, 1) as u64 + 10 * 3600) * 1000)))
}

/// `body` with `apikey` set to `key`, as the trading API's JSON.
pub fn with_key(key: &str, body: serde_json::Value) -> String {
    let mut body = body;
    body["apikey"] = serde_json::json!(key);
    body.to_string()
}

/// POSTs `body` with `key` to `/api/v1/{route}` from a fresh source address, so no call spends
/// another's rate budget.
pub async fn call(gateway: SocketAddr, route: &str, key: &str, body: serde_json::Value) -> Reply {
    post(gateway, unique_ip(), &format!("/api/v1/{route}"), &with_key(key, body)).await
}

/// A web user with a password and enrolled TOTP, as the pages would create one.
#[derive(Debug)]
pub struct WebUser {
    pub username: String,
    pub password: String,
    pub api_key: String,
    pub totp: shared::crypto::totp::TotpSecret,
}

impl WebUser {
    /// The code the user's authenticator shows at `deps`' clock.
    pub fn code(&self, deps: &Deps) -> String {
        self.totp.code_at(deps.clock.now())
    }
}

pub async fn new_web_user(deps: &Deps) -> WebUser {
    let username = unique_name("w");
    let password = "Str0ng!pass".to_owned();
    let created = deps
        .accounts()
        .create_web_user(&username, &format!("{username}@example.com"), &password, None)
        .await
        .expect("create web user");
    WebUser { username, password, api_key: created.key.expose().to_owned(), totp: created.totp }
}

/// A web user promoted to administrator. Setup creates the one real administrator (the browser
/// suite drives it); the HTTP suites need one per test, so the fixture sets the role directly.
pub async fn new_admin(deps: &Deps) -> WebUser {
    let user = new_web_user(deps).await;
    deps.aws
        .dynamodb
        .update_item()
        .table_name(&deps.config.tables.identity)
        .key("pk", AttributeValue::S(format!("user#{}", user.username)))
        .update_expression("SET #role = :admin")
        .expression_attribute_names("#role", "role")
        .expression_attribute_values(":admin", AttributeValue::S("admin".into()))
        .send()
        .await
        .expect("promote to admin");
    user
}

/// GETs `path` from `source`; the body as text.
pub async fn get_text(address: SocketAddr, source: IpAddr, path: &str) -> (u16, String) {
    let response = client_from(source).get(format!("http://{address}{path}")).send().await.expect("gateway reachable");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Every traffic record as stored (consistent), or only those of requests from `ip`.
pub async fn scan_traffic(deps: &Deps, ip: Option<IpAddr>) -> Vec<HashMap<String, AttributeValue>> {
    let filter = ip.map(|ip| ("ip = :ip", ":ip", AttributeValue::S(ip.to_string())));
    scan_where(deps, &deps.config.tables.traffic, filter).await
}

/// Every item of `table` as stored (a consistent scan, all pages), or only those that
/// `(expression, placeholder, value)` keeps.
pub async fn scan_where(
    deps: &Deps,
    table: &str,
    filter: Option<(&str, &str, AttributeValue)>,
) -> Vec<HashMap<String, AttributeValue>> {
    let mut scan = deps.aws.dynamodb.scan().table_name(table).consistent_read(true);
    if let Some((expression, placeholder, value)) = filter {
        scan = scan.filter_expression(expression).expression_attribute_values(placeholder, value);
    }
    let pages = scan.into_paginator().items().send().collect::<Vec<_>>().await;
    pages.into_iter().collect::<Result<Vec<_>, _>>().unwrap_or_else(|error| panic!("scan {table}: {error}"))
}

/// The traffic table's items for requests from `ip`, as stored, once there are at least `count`.
/// The gateway writes them from a task it spawns after each response, so they are polled for, for
/// up to 5 s, rather than waited for with a fixed sleep.
pub async fn traffic_items(deps: &Deps, ip: IpAddr, count: usize) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    for _ in 0..50 {
        items = scan_traffic(deps, Some(ip)).await;
        if items.len() >= count {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{count} traffic records for {ip} within 5 s: found {}", items.len())
}
