//! `kavach-bench`: the figures `scripts/bench` reports. Run against the emulator `scripts/bench`
//! starts; each figure is measured here, in one run, so ratios between them are meaningful.
//!
//! - `calls ROUTE N`: AWS calls per warm request by service and operation, and sequential round
//!   trips, counted on a sample; then in-process CPU per request over N more (handler + SDK, the
//!   emulator excluded) on the clients a Lambda function builds, which count nothing.
//! - `cold-start BIN`: exec of the Lambda binary to its first response, through a local Lambda
//!   Runtime API.
//! - `warm-run BIN ROUTE KEY N`: N invocations of the Lambda binary through that Runtime API; its
//!   peak RSS after them and its CPU per warm invocation.
//! - `login-timing N`: the Argon2id hash time, and N failed logins each for an unknown user and
//!   for a wrong password over HTTP, interleaved: the medians must not tell them apart.
//! - `load URL KEY`: warm requests per second and latency percentiles through the local gateway.
//! - `orders BASE KEY CLIENTS PER_CLIENT RATE LABEL`: CLIENTS concurrent clients placing PER_CLIENT
//!   MARKET orders each on one account through the gateway, paced to RATE orders per second in all
//!   (0: as fast as they can); orders per second, every answer by status and code, and whether the
//!   account's order book then holds exactly the acknowledged orders.
//! - `key-forcing SECONDS`: how many Argon2 verifications per second one attacker who knows a key id
//!   can force with random secrets from ever new addresses, with the per-key-id failure budget and
//!   without it (as before the budget), through the local gateway.
//! - `dashboard N`: the security dashboard's latency with N rate-limit counters present, bulk-loaded
//!   with `BatchWriteItem`, beside what the four Scans of the old layout would have read.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

fn main() -> anyhow::Result<()> {
    // `calls` runs the handlers in-process as a function does, so on the functions' runtime
    // (`shared::app::runtime`, one thread), unless `KAVACH_BENCH_RUNTIME=multi_thread` asks what
    // `#[tokio::main]`'s scheduler would cost instead. The load generators keep every core.
    let in_process = std::env::args().nth(1).as_deref() == Some("calls");
    if in_process && std::env::var("KAVACH_BENCH_RUNTIME").as_deref() != Ok("multi_thread") {
        return shared::app::runtime::block_on(run());
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["calls", route, n] => calls(route, n.parse()?).await,
        ["ledger", n] => ledger(n.parse()?),
        ["cold-start", binary, key, runs] => cold_start(binary, key, runs.parse()?).await,
        ["warm-run", binary, route, key, n] => warm_run(binary, route, key, n.parse()?).await,
        ["login-timing", n] => login_timing(n.parse()?).await,
        ["key-forcing", seconds] => key_forcing(Duration::from_secs(seconds.parse()?)).await,
        ["load", url, body, requests, concurrency] => load(url, body, requests.parse()?, concurrency.parse()?).await,
        ["dashboard", counters] => dashboard(counters.parse()?).await,
        ["orders", base, key, clients, per_client, rate, label] => {
            orders(base, key, clients.parse()?, per_client.parse()?, rate.parse()?, label).await
        }
        _ => anyhow::bail!(
            "usage: kavach-bench calls ping|placeorder|live-placeorder|orderbook|bad-key|not-found|webhook|page|history-daily|history-hourly N | login-timing N | key-forcing SECONDS | cold-start BIN KEY RUNS | warm-run BIN ping|placeorder KEY N | load URL BODY REQUESTS CONCURRENCY | orders BASE KEY CLIENTS PER_CLIENT RATE LABEL | dashboard COUNTERS"
        ),
    }
}

fn ping_event(key: &str, source_ip: &str) -> String {
    api_event("/api/v1/ping", &serde_json::json!({ "apikey": key }), source_ip)
}

/// A REST proxy event for `resource`, as API Gateway sends it.
fn api_event(resource: &str, body: &serde_json::Value, source_ip: &str) -> String {
    serde_json::json!({
        "resource": resource, "path": resource, "httpMethod": "POST",
        "headers": { "content-type": "application/json" }, "multiValueHeaders": { "content-type": ["application/json"] },
        "requestContext": { "resourcePath": resource, "httpMethod": "POST", "stage": "bench",
            "requestId": "bench", "identity": { "sourceIp": source_ip } },
        "body": body.to_string(), "isBase64Encoded": false
    })
    .to_string()
}

/// The body the bench sends to each measured route: a one-share CNC market buy for placeorder
/// (CNC is accepted at any hour; MIS is refused after 15:15 IST).
pub fn route_body(route: &str, key: &str) -> serde_json::Value {
    match route {
        "placeorder" => serde_json::json!({ "apikey": key, "strategy": "bench", "symbol": "SBIN", "exchange": "NSE",
            "action": "BUY", "quantity": "1", "pricetype": "MARKET", "product": "CNC" }),
        // The two heaviest history requests allowed: daily candles over the whole simulated history,
        // and hourly candles over the longest range under the candle cap (each sampled every minute).
        "history-daily" => serde_json::json!({ "apikey": key, "symbol": "SBIN", "exchange": "NSE", "interval": "D",
            "start_date": "2000-01-03", "end_date": "2099-12-31" }),
        "history-hourly" => serde_json::json!({ "apikey": key, "symbol": "SBIN", "exchange": "NSE", "interval": "1h",
            "start_date": "2016-01-04", "end_date": "2099-12-31" }),
        _ => serde_json::json!({ "apikey": key }),
    }
}

/// Process CPU time (user + system) from /proc, in microseconds (10 ms resolution: for long runs).
fn cpu_micros(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    // Linux reports in USER_HZ, 100 per second on every mainstream kernel.
    Ok(ticks * 10_000)
}

/// This process's CPU time, all threads, user + system, to the nanosecond
/// (`CLOCK_PROCESS_CPUTIME_ID`: what getrusage sums, without its tick rounding).
fn process_cpu() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(time.tv_sec).unwrap_or(0), u32::try_from(time.tv_nsec).unwrap_or(0))
}

/// Process CPU spent while at least one DynamoDB call is in flight, from the SDK orchestrator's
/// first interceptor hook to its last: the SDK's share (signing, serialisation, the HTTP client,
/// the syscalls), plus whatever else the process did meanwhile (on this sequential bench, the
/// runtime's scheduling). The config layering the SDK does before its first hook falls outside:
/// the profile (`scripts/bench-profile.py`) counts it with the SDK.
#[derive(Clone, Debug, Default)]
struct CpuMeter(Arc<std::sync::Mutex<MeterState>>);

#[derive(Debug, Default)]
struct MeterState {
    in_flight: u32,
    since: Duration,
    total: Duration,
}

impl CpuMeter {
    fn total(&self) -> Duration {
        self.0.lock().map(|state| state.total).unwrap_or_default()
    }
}

impl Intercept for CpuMeter {
    fn name(&self) -> &'static str {
        "CpuMeter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(mut state) = self.0.lock() {
            if state.in_flight == 0 {
                state.since = process_cpu();
            }
            state.in_flight += 1;
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(mut state) = self.0.lock() {
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight == 0 {
                let spent = process_cpu().saturating_sub(state.since);
                state.total += spent;
            }
        }
        Ok(())
    }
}

/// A row of the summary table `scripts/bench` prints last, appended to `KAVACH_BENCH_SUMMARY`
/// (tab-separated: figure, value, target, met).
fn summary(figure: &str, value: &str, target: &str, met: Option<bool>) -> anyhow::Result<()> {
    use std::io::Write;
    let Ok(path) = std::env::var("KAVACH_BENCH_SUMMARY") else { return Ok(()) };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let met = match met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    };
    writeln!(file, "{figure}\t{value}\t{target}\t{met}")?;
    Ok(())
}

/// A cold start on `aws`, with the configuration and clock the tests use.
async fn deps_on(aws: shared::app::aws::AwsClients, overrides: &[(&str, &str)]) -> Arc<shared::Deps> {
    let config = kavach_tests::config_with(overrides);
    let clock: Arc<dyn shared::core::clock::Clock> = Arc::new(shared::core::clock::SystemClock);
    let metrics = shared::core::metrics::MetricSink::Memory(Default::default());
    match shared::app::bootstrap::init_with(config, clock, aws, metrics).await {
        Ok(deps) => deps,
        Err(error) => panic!("cold start: {error}"),
    }
}

/// A cold start on the clients a Lambda function builds ([`AwsClients::for_lambda`], which count
/// nothing), whose DynamoDB client also carries `meter` (the warm path calls no other service): the
/// production path, timed.
///
/// [`AwsClients::for_lambda`]: shared::app::aws::AwsClients::for_lambda
async fn metered_lambda_deps(meter: &CpuMeter, overrides: &[(&str, &str)]) -> Arc<shared::Deps> {
    let mut aws = shared::app::aws::AwsClients::for_lambda();
    aws.dynamodb =
        aws_sdk_dynamodb::Client::from_conf(aws.dynamodb.config().to_builder().interceptor(meter.clone()).build());
    deps_on(aws, overrides).await
}

/// Switches `perf record --control fifo:…` on or off, when `scripts/bench` profiles this run
/// (`KAVACH_BENCH_PERF_CONTROL` names the FIFO): the profile then holds the measured loop only.
fn profiler(command: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let Ok(fifo) = std::env::var("KAVACH_BENCH_PERF_CONTROL") else { return Ok(()) };
    std::fs::OpenOptions::new().write(true).open(fifo)?.write_all(format!("{command}\n").as_bytes())?;
    Ok(())
}

/// Issue 16's CPU targets per warm request, connections kept alive: (in all, Kavach's own code).
fn cpu_targets(route: &str) -> Option<(Duration, Duration)> {
    match route {
        "ping" => Some((Duration::from_micros(600), Duration::from_micros(100))),
        "placeorder" => Some((Duration::from_micros(1200), Duration::from_micros(100))),
        _ => None,
    }
}

/// How many requests the counting pass of `calls` sends. Every warm request of a route makes the
/// same calls, so a sample shows them; the counting itself costs CPU, so the timed pass runs on
/// clients that do not count, as a Lambda function's do.
const COUNTED_REQUESTS: u32 = 200;

/// One route's warm requests, twice over one emulator: first on the default chain's clients, which
/// count AWS calls and round trips ([`shared::app::aws::AwsCallStats`]); then, timed, on the clients a
/// Lambda function builds. Both passes share the tables, the user and its key.
async fn calls(route: &str, requests: u32) -> anyhow::Result<()> {
    // The subscriber a Lambda installs, at its default level, so that what the code logs (and
    // what it formats) is in the figure. Its lines go nowhere: Lambda's write to stdout is left out.
    shared::core::logging::init_to(std::io::sink);
    // A live placeorder goes to Kite: the local stub here, started for this run.
    let kite = match route {
        "live-placeorder" => Some(kavach_tests::kite_stub::KiteStub::start().await),
        _ => None,
    };
    let kite_root = kite.as_ref().map(|stub| stub.root.clone()).unwrap_or_default();
    let overrides: &[(&str, &str)] = match kite {
        Some(_) => &[("KITE_API_ROOT", &kite_root), ("KITE_LOGIN_ROOT", &kite_root)],
        None => &[],
    };
    let counted = deps_on(shared::app::aws::AwsClients::from_env().await, overrides).await;
    let boot = counted.aws.stats.snapshot();
    let (user, key) = kavach_tests::new_user(&counted).await;
    if let Some(stub) = &kite {
        go_live(&counted, stub, &user).await?;
    }
    // The detector routes count per address: each request comes from another one, so the cost
    // measured is a counted miss, never a ban.
    let (resource, body, expected) = match route {
        "bad-key" => ("/api/v1/ping".to_owned(), serde_json::json!({ "apikey": "made-up-key" }), 403),
        "not-found" => ("/{proxy+}".to_owned(), serde_json::json!({}), 404),
        // A strategy alert that buys what the strategy maps: the webhook's gate fetches its record.
        "webhook" => {
            ("/strategy/webhook/{webhook_id}".to_owned(), serde_json::json!({ "symbol": "SBIN", "action": "BUY" }), 200)
        }
        // A page without a session: the page gate, then a form.
        "page" => ("/auth/reset-password".to_owned(), serde_json::json!({}), 200),
        "history-daily" | "history-hourly" => ("/api/v1/history".to_owned(), route_body(route, &key), 200),
        "live-placeorder" => ("/api/v1/placeorder".to_owned(), route_body("placeorder", &key), 200),
        _ => (format!("/api/v1/{route}"), route_body(route, &key), 200),
    };
    let webhook_id = match route {
        "webhook" => {
            let (user, _) = kavach_tests::new_user(&counted).await;
            // CNC: the bench runs on the wall clock, and MIS is refused after 15:15 IST.
            kavach_tests::sbin_webhook_for(&counted, &user, "bench", 1, shared::trading::orders::Product::Cnc).await
        }
        _ => String::new(),
    };
    let sent = std::sync::atomic::AtomicU32::new(0);
    let request = || {
        let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let source = format!("8.{}.{}.{}", n / 65_536 % 256, n / 256 % 256, n % 256);
        let mut event: serde_json::Value = serde_json::from_str(&api_event(&resource, &body, &source))?;
        if route == "not-found" {
            event["path"] = serde_json::json!(format!("/wp-admin/probe-{n}.php"));
        }
        if route == "webhook" {
            event["path"] = serde_json::json!(format!("/strategy/webhook/{webhook_id}"));
            event["pathParameters"] = serde_json::json!({ "webhook_id": webhook_id });
        }
        if route == "page" {
            event["httpMethod"] = serde_json::json!("GET");
            event["requestContext"]["httpMethod"] = serde_json::json!("GET");
            event["body"] = serde_json::Value::Null;
        }
        lambda_http::request::from_str(&event.to_string()).map_err(anyhow::Error::from)
    };
    // The events are built first: parsing them is the Lambda runtime's work, not the function's.
    let events = |count: u32| (0..count).map(|_| request()).collect::<anyhow::Result<Vec<_>>>();

    // The counting pass: its first request is the cold one (the key's Argon2 verification).
    warm_up(route, &counted, request()?, expected).await?;
    let sample = requests.min(COUNTED_REQUESTS);
    let counted_events = events(sample)?;
    let before = counted.aws.stats.snapshot();
    for event in counted_events {
        let response = handle(route, &counted, event).await;
        counted.flush_traffic().await;
        anyhow::ensure!(response.status() == expected, "{route} failed: {:?}", response.body());
    }
    let after = counted.aws.stats.snapshot();
    let per_request = |count: u64| count as f64 / f64::from(sample);
    println!("cold start: {} AWS calls ({:?})", boot.total(), boot.by_operation);
    println!("per warm {route} (mean of {sample}), the traffic record written after each response included:");
    for (operation, count) in &after.by_operation {
        let delta = count - before.by_operation.get(operation).copied().unwrap_or(0);
        if delta > 0 {
            println!("  {operation:<28} {:.2}", per_request(delta));
        }
    }
    println!("  KMS calls                    {}", after.for_service("KMS") - before.for_service("KMS"));
    println!(
        "  Secrets Manager calls        {}",
        after.for_service("Secrets Manager") - before.for_service("Secrets Manager")
    );
    println!("  sequential round trips       {:.2}", per_request(after.round_trips - before.round_trips));
    println!("  retries                      {}", after.retries - before.retries);

    // The timed pass, on a Lambda function's clients.
    let meter = CpuMeter::default();
    let deps = metered_lambda_deps(&meter, overrides).await;
    warm_up(route, &deps, request()?, expected).await?;
    let timed_events = events(requests)?;
    let (mut answering, mut recording) = (Duration::ZERO, Duration::ZERO);
    let sdk_before = meter.total();
    profiler("enable")?;
    let started = Instant::now();
    for event in timed_events {
        let cpu = process_cpu();
        let response = handle(route, &deps, event).await;
        let answered = process_cpu();
        // What the internal extension writes after each response, as in Lambda.
        deps.flush_traffic().await;
        recording += process_cpu().saturating_sub(answered);
        answering += answered.saturating_sub(cpu);
        anyhow::ensure!(response.status() == expected, "{route} failed: {:?}", response.body());
    }
    let wall = started.elapsed();
    profiler("disable")?;
    let sdk = meter.total().saturating_sub(sdk_before);
    let micros = |cpu: Duration| cpu.as_secs_f64() * 1e6 / f64::from(requests);
    let total = answering + recording;
    let own = total.saturating_sub(sdk);
    println!("timed: {requests} more on a Lambda function's clients, which count nothing:");
    println!(
        "process CPU per warm {route}: {:.0} µs = {:.0} µs to the response + {:.0} µs for the traffic record",
        micros(total),
        micros(answering),
        micros(recording)
    );
    println!("  inside DynamoDB calls (SDK)  {:.0} µs   (CPU while a call is in flight, instrumented)", micros(sdk));
    println!("  outside them (Kavach + runtime) {:.0} µs", micros(own));
    println!(
        "wall time per {route}         {:.2} ms  (against moto on loopback, one request at a time)",
        wall.as_secs_f64() * 1000.0 / f64::from(requests)
    );
    let label = match route {
        "bad-key" => "a bad key",
        "page" => "a page view",
        other => other,
    };
    let targets = cpu_targets(route);
    let per = |cpu: Duration| cpu / requests;
    summary(
        &format!("CPU per warm request, {label}, in all"),
        &format!("{:.0} µs", micros(total)),
        &targets.map_or("-".to_owned(), |(all, _)| format!("≤ {} µs", all.as_micros())),
        targets.map(|(all, _)| per(total) <= all),
    )?;
    // Outside SDK calls is Kavach's code and the runtime's scheduling: the profile (scripts/bench,
    // 1a) tells them apart, and its row carries the target for Kavach's own.
    summary("  of which outside SDK calls (instrumented)", &format!("{:.0} µs", micros(own)), "-", None)?;
    Ok(())
}

/// Links `user` to Zerodha at the Kite `stub`, as the Broker page's Connect and callback do, and
/// switches the account to live, as `analyzer/toggle` does.
async fn go_live(deps: &shared::Deps, stub: &kavach_tests::kite_stub::KiteStub, user: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use kavach_tests::kite_stub::{API_KEY, API_SECRET};
    use shared::broker::BrokerId;
    let links = deps.broker_links()?;
    let credentials = shared::broker::links::AppCredentials::from_form(API_KEY, API_SECRET)?;
    let login = links.start(user, "bench", BrokerId::Zerodha, Some(credentials)).await?;
    let back = stub.authorize(&login).await;
    let (state, token) = (kavach_tests::query_param(&back, "state"), kavach_tests::query_param(&back, "request_token"));
    links.complete(user, "bench", BrokerId::Zerodha, state.as_deref(), token.as_deref()).await?;
    let account = deps.identity.user(user).await?.context("the user")?;
    deps.identity.set_order_destination(&account, BrokerId::Zerodha.as_str()).await?;
    Ok(())
}

/// The first request of a pass, whose answer must be the route's usual one.
async fn warm_up(route: &str, deps: &shared::Deps, request: lambda_http::Request, expected: u16) -> anyhow::Result<()> {
    let first = handle(route, deps, request).await;
    anyhow::ensure!(first.status() == expected, "warm-up {route} failed: {:?}", first.body());
    Ok(())
}

/// `route`'s function handler, as its Lambda binary calls it.
async fn handle(
    route: &str,
    deps: &shared::Deps,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    match route {
        "ping" | "bad-key" => ping::handler(deps, request).await,
        "placeorder" | "live-placeorder" => orders::handler(deps, request).await,
        "not-found" => web::not_found_handler(deps, request).await,
        "webhook" => webhook::handler(deps, request).await,
        "history-daily" | "history-hourly" => market::handler(deps, request).await,
        "page" => web::auth_handler(deps, request).await,
        _ => account::handler(deps, request).await,
    }
}

/// The sandbox's own work per order, without I/O: acceptance, margin, fill, position.
fn ledger(orders: u32) -> anyhow::Result<()> {
    use shared::trading::orders::{Action, Exchange, OrderLeg, PriceType, Product};
    use shared::trading::sandbox::ledger::Ledger;
    let leg = OrderLeg {
        exchange: Exchange::Nse,
        symbol: "SBIN".into(),
        action: Action::Buy,
        quantity: 1.0,
        price_type: PriceType::Market,
        product: Product::Cnc,
        price: 0.0,
        trigger_price: 0.0,
        disclosed_quantity: 0,
    };
    let now = shared::core::clock::Clock::now(&shared::core::clock::SystemClock);
    let cpu_before = cpu_micros("self")?;
    let started = Instant::now();
    for n in 0..orders {
        let mut book = Ledger::new(None, Vec::new(), shared::core::clock::UnixMillis(now.0 + u64::from(n)));
        let order = book.place(n.to_string(), "bench", &leg).map_err(|r| anyhow::anyhow!(r.message))?;
        std::hint::black_box(order);
    }
    let wall = started.elapsed();
    let cpu = cpu_micros("self")? - cpu_before;
    println!(
        "sandbox ledger per placeorder (no I/O, {orders} orders): {:.1} µs wall, {:.1} µs CPU",
        wall.as_secs_f64() * 1e6 / f64::from(orders),
        cpu as f64 / f64::from(orders)
    );
    Ok(())
}

/// Cold starts of a Lambda binary through a local Runtime API: exec → ready, → first response,
/// → traffic record written; the peak RSS and the process CPU spent up to the first response (what
/// Lambda bills a cold keyed request at, before scaling by the memory size's CPU share).
async fn cold_start(binary: &str, key: &str, runs: u32) -> anyhow::Result<()> {
    let (mut to_init, mut to_response, mut to_flushed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak_rss_kib, mut cold_cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut lambda = LocalLambda::start(binary, ping_event(key, "198.51.100.201"), 1).await?;
        let pid = lambda.pid()?;
        let (mut init, mut response, mut flushed) = (None, None, None);
        // The extension asks for its next event once the traffic record is written, which may be
        // before or after the runtime has posted its response: the run ends when both have.
        while response.is_none() || flushed.is_none() {
            match lambda.next_report().await? {
                ("next", at) if init.is_none() => init = Some(at),
                ("response", at) => {
                    response = Some(at);
                    cold_cpu.push(Duration::from_micros(cpu_micros(&pid)?));
                }
                ("extension-next-again", at) => flushed = Some(at),
                _ => {}
            }
        }
        // Lambda bills by the memory size it reserves; this is how much of it one invocation used.
        peak_rss_kib.push(peak_rss(&pid)?);
        lambda.stop().await?;
        to_init.push(init.unwrap_or_default());
        to_response.push(response.unwrap_or_default());
        to_flushed.push(flushed.unwrap_or_default());
    }
    to_init.sort();
    to_response.sort();
    to_flushed.sort();
    cold_cpu.sort();
    let median = |values: &[Duration]| values.get(values.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let name = std::path::Path::new(binary).file_name().and_then(|n| n.to_str()).unwrap_or(binary).to_owned();
    println!("cold start of {binary} over {runs} runs (median):");
    println!(
        "  exec → ready for the first event   {:.1} ms  (config, 1 Secrets Manager read, 1 KMS Decrypt)",
        median(&to_init)
    );
    println!(
        "  exec → first response              {:.1} ms  (plus the gate and one Argon2id key verification)",
        median(&to_response)
    );
    println!(
        "  exec → traffic record written      {:.1} ms  (after the response, by the internal extension)",
        median(&to_flushed)
    );
    println!(
        "  process CPU to the first response  {:.0} ms  (10 ms ticks; at 1/7 of a vCPU, ×7 on Lambda)",
        median(&cold_cpu)
    );
    peak_rss_kib.sort_unstable();
    if let Some(rss) = peak_rss_kib.get(peak_rss_kib.len() / 2) {
        println!(
            "  peak RSS after one invocation      {:.1} MiB  (VmHWM; Argon2id's 19 MiB included)",
            *rss as f64 / 1024.0
        );
    }
    let (ready, first) = (median(&to_init), median(&to_response));
    summary(
        &format!("  cold start of {name}, exec → ready"),
        &format!("{ready:.1} ms"),
        "≤ 25 ms",
        Some(ready <= 25.0),
    )?;
    summary(
        &format!("  cold start of {name}, exec → first keyed response"),
        &format!("{first:.1} ms"),
        "≤ 60 ms",
        Some(first <= 60.0),
    )?;
    summary(&format!("  {name} CPU of a cold keyed request"), &format!("{:.0} ms", median(&cold_cpu)), "-", None)?;
    Ok(())
}

/// The peak resident set of process `pid` so far (`VmHWM` in /proc), in KiB.
fn peak_rss(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}

/// Serves the Runtime API and the Extensions API for `invocations` invocations of one event, in
/// lockstep as Lambda does: the extension is told of invocation k once the runtime has it, and
/// invocation k + 1 is handed out only after the runtime asks for it. Reports the first `next`,
/// each `response`, and `extension-next-again` once the extension asks past the last invocation
/// (every traffic record written); then both wait forever (the run ends there).
async fn serve_runtime_api(
    listener: tokio::net::TcpListener,
    events: mpsc::UnboundedSender<(&'static str, Instant)>,
    event: Arc<String>,
    invocations: usize,
) {
    let handed = Arc::new(AtomicUsize::new(0));
    let extension_asked = Arc::new(AtomicUsize::new(0));
    let handed_out = Arc::new(tokio::sync::Notify::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (events, event) = (events.clone(), event.clone());
        let (handed, extension_asked, handed_out) = (handed.clone(), extension_asked.clone(), handed_out.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (events, event) = (events.clone(), event.clone());
                let (handed, extension_asked, handed_out) =
                    (handed.clone(), extension_asked.clone(), handed_out.clone());
                async move {
                    let path = request.uri().path().to_owned();
                    let _ = request.into_body().collect().await;
                    let deadline =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
                            + 10_000;
                    let arn = "arn:aws:lambda:ap-south-1:123456789012:function:bench";
                    let mut response = hyper::Response::new(Full::new(Bytes::new()));
                    if path.ends_with("/extension/register") {
                        response.headers_mut().insert("lambda-extension-identifier", HeaderValue::from_static("bench"));
                        let body = serde_json::json!({"functionName": "bench", "functionVersion": "$LATEST", "handler": "bootstrap"});
                        *response.body_mut() = Full::new(Bytes::from(body.to_string()));
                    } else if path.ends_with("/extension/event/next") {
                        let asked = extension_asked.fetch_add(1, Ordering::SeqCst);
                        if asked == invocations {
                            let _ = events.send(("extension-next-again", Instant::now()));
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        while handed.load(Ordering::SeqCst) <= asked {
                            let notified = handed_out.notified();
                            if handed.load(Ordering::SeqCst) > asked {
                                break;
                            }
                            notified.await;
                        }
                        let body = serde_json::json!({"eventType": "INVOKE", "deadlineMs": deadline,
                            "requestId": format!("bench-{}", asked + 1), "invokedFunctionArn": arn});
                        *response.body_mut() = Full::new(Bytes::from(body.to_string()));
                    } else if path.ends_with("/invocation/next") {
                        let _ = events.send(("next", Instant::now()));
                        let number = handed.load(Ordering::SeqCst) + 1;
                        if number > invocations {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        let headers = response.headers_mut();
                        if let Ok(id) = HeaderValue::from_str(&format!("bench-{number}")) {
                            headers.insert("lambda-runtime-aws-request-id", id);
                        }
                        headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline as u64));
                        headers.insert("lambda-runtime-invoked-function-arn", HeaderValue::from_static(arn));
                        *response.body_mut() = Full::new(Bytes::from(event.as_bytes().to_vec()));
                        handed.store(number, Ordering::SeqCst);
                        handed_out.notify_waiters();
                    } else if path.ends_with("/response") {
                        let _ = events.send(("response", Instant::now()));
                        *response.status_mut() = hyper::StatusCode::ACCEPTED;
                    } else if path.ends_with("/error") {
                        let _ = events.send(("error", Instant::now()));
                        *response.status_mut() = hyper::StatusCode::ACCEPTED;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// A Lambda binary's process, started against a local Runtime API that serves `event`
/// `invocations` times.
struct LocalLambda {
    child: tokio::process::Child,
    received: mpsc::UnboundedReceiver<(&'static str, Instant)>,
    server: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl LocalLambda {
    async fn start(binary: &str, event: String, invocations: usize) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (events, received) = mpsc::unbounded_channel::<(&'static str, Instant)>();
        let server = tokio::spawn(serve_runtime_api(listener, events, Arc::new(event), invocations));
        let started = Instant::now();
        let child = tokio::process::Command::new(binary)
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child, received, server, started })
    }

    fn pid(&self) -> anyhow::Result<String> {
        self.child.id().map(|pid| pid.to_string()).ok_or_else(|| anyhow::anyhow!("the function exited"))
    }

    /// Waits for the next report from the Runtime API.
    async fn next_report(&mut self) -> anyhow::Result<(&'static str, Duration)> {
        let (what, at) = tokio::time::timeout(Duration::from_secs(60), self.received.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no report from the function through the Runtime API in 60 s"))?
            .ok_or_else(|| anyhow::anyhow!("runtime API closed"))?;
        anyhow::ensure!(what != "error", "the function reported an error");
        Ok((what, at - self.started))
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        self.server.abort();
        Ok(())
    }
}

/// `invocations` warm invocations of a Lambda binary through the local Runtime API: the peak RSS
/// after them (the memory a function needs beside its first request), and the process CPU per
/// warm invocation, the first one (the cold start) excluded.
async fn warm_run(binary: &str, route: &str, key: &str, invocations: usize) -> anyhow::Result<()> {
    let event = match route {
        "ping" => ping_event(key, "198.51.100.202"),
        "placeorder" => api_event("/api/v1/placeorder", &route_body(route, key), "198.51.100.202"),
        _ => anyhow::bail!("warm-run serves ping or placeorder, not {route}"),
    };
    let mut lambda = LocalLambda::start(binary, event, invocations).await?;
    let pid = lambda.pid()?;
    let (mut responses, mut after_first, mut flushed) = (0, None, false);
    // The extension can finish the last invocation's traffic record before the runtime posts that
    // invocation's response, so the run waits for both; a response that never comes fails the
    // run at `next_report`'s timeout.
    while responses < invocations || !flushed {
        match lambda.next_report().await? {
            ("response", _) => {
                responses += 1;
                if responses == 1 {
                    after_first = Some(Duration::from_micros(cpu_micros(&pid)?));
                }
            }
            ("extension-next-again", _) => flushed = true,
            _ => {}
        }
    }
    let cpu = Duration::from_micros(cpu_micros(&pid)?).saturating_sub(after_first.unwrap_or_default());
    let rss = peak_rss(&pid)?;
    lambda.stop().await?;
    let warm = u32::try_from(invocations - 1)?;
    let per_request = cpu / warm.max(1);
    let name = std::path::Path::new(binary).file_name().and_then(|n| n.to_str()).unwrap_or(binary).to_owned();
    println!("{name}: {invocations} invocations of {route} through the local Runtime API");
    println!(
        "  process CPU per warm invocation   {} µs  (the Lambda binary itself: runtime, pipeline, SDK)",
        per_request.as_micros()
    );
    println!("  peak RSS after them               {:.1} MiB  (VmHWM)", rss as f64 / 1024.0);
    let mib = rss as f64 / 1024.0;
    summary(
        &format!("  peak RSS of {name} after {invocations} warm invocations"),
        &format!("{mib:.1} MiB"),
        "≤ 30 MB",
        Some(mib * 1.048_576 <= 30.0),
    )?;
    summary(
        &format!("  {name} binary CPU per warm {route} (Runtime API)"),
        &format!("{} µs", per_request.as_micros()),
        "-",
        None,
    )?;
    Ok(())
}

async fn load(url: &str, body: &str, requests: usize, concurrency: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let body = body.to_owned();
    // Warm the connection pool and the key cache.
    for _ in 0..concurrency {
        client.post(url).body(body.clone()).send().await?;
    }
    let started = Instant::now();
    let results = futures::stream::iter(0..requests)
        .map(|_| {
            let (client, body) = (client.clone(), body.clone());
            async move {
                let sent = Instant::now();
                let status = client.post(url).body(body).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                (status, sent.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let wall = started.elapsed();
    let ok = results.iter().filter(|(status, _)| *status == 200).count();
    let mut latencies: Vec<Duration> = results.iter().map(|(_, latency)| *latency).collect();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    println!("warm load through the local gateway: {requests} requests, {concurrency} concurrent");
    println!("  200s                 {ok}/{requests}");
    println!("  throughput           {:.0} requests/s", requests as f64 / wall.as_secs_f64());
    println!("  latency p50 / p99    {:.2} / {:.2} ms", percentile(0.50), percentile(0.99));
    anyhow::ensure!(ok == requests, "some requests failed");
    Ok(())
}

/// Orders on one account from `clients` clients at once: what a trader running several strategies
/// on one account does. Each order's answer is kept; the order book is then read back, so an order
/// booked behind an error answer (or acknowledged and lost) shows as a difference.
async fn orders(
    base: &str,
    key: &str,
    clients: usize,
    per_client: usize,
    rate: f64,
    label: &str,
) -> anyhow::Result<()> {
    use std::collections::{BTreeMap, BTreeSet};
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let total = clients * per_client;
    // Order k leaves at start + k / rate, whichever client sends it: the load stays under a budget
    // however the clients interleave.
    let spacing = if rate > 0.0 { Duration::from_secs_f64(1.0 / rate) } else { Duration::ZERO };
    let next = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let url = format!("{base}/api/v1/placeorder");
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, next, url, key) = (client.clone(), next.clone(), url.clone(), key.to_owned());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= total {
                        return answers;
                    }
                    tokio::time::sleep_until(started + spacing * k as u32).await;
                    // The bench's placeorder, on two symbols in turn: two positions grow at once.
                    let mut body = route_body("placeorder", &key);
                    body["symbol"] = (if k % 2 == 0 { "SBIN" } else { "INFY" }).into();
                    let answer = match client.post(&url).body(body.to_string()).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body: serde_json::Value = response.json().await.unwrap_or_default();
                            (
                                status,
                                body["code"].as_str().map(str::to_owned),
                                body["orderid"].as_str().map(str::to_owned),
                            )
                        }
                        Err(_) => (0, Some("no answer".to_owned()), None),
                    };
                    answers.push(answer);
                }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(total);
    for task in tasks {
        answers.extend(task.await?);
    }
    let wall = started.elapsed();

    let mut by_answer: BTreeMap<String, usize> = BTreeMap::new();
    for (status, code, _) in &answers {
        let label = code.as_ref().map_or_else(|| status.to_string(), |code| format!("{status} {code}"));
        *by_answer.entry(label).or_default() += 1;
    }
    let acknowledged: BTreeSet<String> =
        answers.iter().filter(|(status, ..)| *status == 200).filter_map(|(_, _, id)| id.clone()).collect();
    let book = client
        .post(format!("{base}/api/v1/orderbook"))
        .body(serde_json::json!({ "apikey": key }).to_string())
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    let booked: BTreeSet<String> = book["data"]["orders"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no order book: {book}"))?
        .iter()
        .filter_map(|order| order["orderid"].as_str().map(str::to_owned))
        .collect();
    let busy = answers.iter().filter(|(_, code, _)| code.as_deref() == Some("account_busy")).count();
    let server_errors = answers.iter().filter(|(status, ..)| *status >= 500 || *status == 0).count();
    let book_is_acknowledged = booked == acknowledged;
    let per_second = acknowledged.len() as f64 / wall.as_secs_f64();

    println!("{label}: {clients} clients × {per_client} MARKET orders on one account");
    println!("  answers              {by_answer:?}");
    println!(
        "  acknowledged         {} orders in {:.1} s: {per_second:.1} orders/s",
        acknowledged.len(),
        wall.as_secs_f64()
    );
    println!(
        "  order book           {} orders; booked but not acknowledged {}, acknowledged but not booked {}",
        booked.len(),
        booked.difference(&acknowledged).count(),
        acknowledged.difference(&booked).count()
    );
    summary(&format!("  orders per second, {label}"), &format!("{per_second:.1}"), "-", None)?;
    summary(
        &format!("  {label}: account_busy, 5xx, book = acknowledged"),
        &format!("{busy}, {server_errors}, {}", if book_is_acknowledged { "yes" } else { "no" }),
        "0, 0, yes",
        Some(busy == 0 && server_errors == 0 && book_is_acknowledged),
    )?;
    Ok(())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Login budgets no bench run reaches: the runs log in from 127.0.0.1 again and again, and its
/// per-address counters outlive each run's cold start in the shared table.
const ROOMY_LOGINS: &[(&str, &str)] =
    &[("LOGIN_RATE_LIMIT_MIN", "100000 per minute"), ("LOGIN_RATE_LIMIT_HOUR", "100000 per hour")];

/// A cold start with [`ROOMY_LOGINS`], on the system clock.
async fn deps_with_roomy_logins() -> Arc<shared::Deps> {
    kavach_tests::cold_start(kavach_tests::config_with(ROOMY_LOGINS), Arc::new(shared::core::clock::SystemClock)).await
}

async fn login_timing(n: usize) -> anyhow::Result<()> {
    let deps = deps_with_roomy_logins().await;
    let mut hashing: Vec<Duration> = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        deps.accounts().hash_secret("Bench1!password").await?;
        hashing.push(started.elapsed());
    }
    println!("  Argon2id {:?}: hash median {:.1} ms", deps.passwords, median(&mut hashing).as_secs_f64() * 1000.0);

    let gateway = kavach_tests::start_gateway(deps.clone()).await;
    let user = kavach_tests::new_web_user(&deps).await;
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
    let attempt = |username: String| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let response = client
                .post(format!("http://{gateway}/auth/login"))
                .header("accept", "application/json")
                .form(&[("username", username.as_str()), ("password", "Wrong1!password")])
                .send()
                .await?;
            let (status, body) = (response.status().as_u16(), response.text().await?);
            anyhow::Ok((started.elapsed(), status, body))
        }
    };
    let (mut unknown, mut wrong) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut answers = std::collections::HashSet::new();
    for i in 0..n {
        let (elapsed, status, body) = attempt(format!("nobody-{i}")).await?;
        answers.insert((status, body));
        unknown.push(elapsed);
        let (elapsed, status, body) = attempt(user.username.clone()).await?;
        answers.insert((status, body));
        wrong.push(elapsed);
    }
    let (unknown_ms, wrong_ms) =
        (median(&mut unknown).as_secs_f64() * 1000.0, median(&mut wrong).as_secs_f64() * 1000.0);
    println!("  failed login over HTTP, {n} each, interleaved:");
    println!("    unknown user    median {unknown_ms:.1} ms  p90 {:.1} ms", unknown[n * 9 / 10].as_secs_f64() * 1000.0);
    println!("    wrong password  median {wrong_ms:.1} ms  p90 {:.1} ms", wrong[n * 9 / 10].as_secs_f64() * 1000.0);
    println!(
        "    difference of medians {:.1} ms; distinct (status, body) answers: {}",
        (unknown_ms - wrong_ms).abs(),
        answers.len()
    );
    Ok(())
}

/// Wrong secrets for one known key id, 8 at a time, each from a new address (so no address budget
/// or detector is what stops them), for `window`: the verifications the attacker forced per second
/// (answers `invalid_apikey`: Argon2 ran and failed) and the refusals without one (429).
async fn key_forcing(window: Duration) -> anyhow::Result<()> {
    for (label, budget) in
        [("with the per-key-id budget (default)", None), ("without it (as before)", Some("100000000 per minute"))]
    {
        let overrides: Vec<(&str, &str)> =
            budget.map(|budget| ("KEY_FAILURE_RATE_LIMIT", budget)).into_iter().collect();
        let deps =
            kavach_tests::cold_start(kavach_tests::config_with(&overrides), Arc::new(shared::core::clock::SystemClock))
                .await;
        let gateway = kavach_tests::start_gateway(deps.clone()).await;
        let (_, key) = kavach_tests::new_user(&deps).await;
        let stem = key[..key.len() - 6].to_owned();
        let started = Instant::now();
        let (verified, refused) = (std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0));
        futures::stream::iter(0u64..)
            .take_while(|_| futures::future::ready(started.elapsed() < window))
            .for_each_concurrent(8, |i| {
                let (stem, verified, refused) = (&stem, &verified, &refused);
                async move {
                    let wrong = format!("{stem}{:06x}", i % 0x100_0000);
                    let reply = kavach_tests::post(
                        gateway,
                        kavach_tests::unique_ip(),
                        "/api/v1/ping",
                        &kavach_tests::ping_body(&wrong),
                    )
                    .await;
                    match reply.status {
                        403 => verified.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                }
            })
            .await;
        let seconds = started.elapsed().as_secs_f64();
        let (verified, refused) = (verified.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
        println!(
            "  {label}: {verified} verifications forced in {seconds:.1} s = {:.2}/s; {refused} refused without one",
            verified as f64 / seconds
        );
    }
    Ok(())
}

/// `GET /security/api/data` as the administrator, first with no counters, then with `counters`
/// rate-limit counters bulk-loaded into their table: median and p90, and the DynamoDB calls of one
/// load. Then one Scan of those counters, as each of the old dashboard's four (counters in the
/// security table) read them, under the functions' own SDK timeouts.
async fn dashboard(counters: usize) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    use shared::core::clock::Clock;
    // Section 1b's failed logins from 127.0.0.1 have spent its default hourly budget by now.
    let deps = deps_with_roomy_logins().await;
    let table = deps.config.tables.rate_limits.clone();
    let gateway = kavach_tests::start_gateway(deps.clone()).await;
    let admin = kavach_tests::new_admin(&deps).await;
    let source: std::net::IpAddr = "127.0.0.1".parse()?;
    let mut browser = kavach_tests::web::WebClient::logged_in(gateway, source, &admin, &deps).await;
    dashboard_loads(&deps, &mut browser, 0).await?;

    let expires = (shared::core::clock::SystemClock.now().secs() + 3600).to_string();
    let started = Instant::now();
    let batches: Vec<Vec<WriteRequest>> = (0..counters)
        .map(|n| {
            // One address's page counter for one second, as a flood of distinct sources leaves them.
            let pk = format!("rl#page#1000ms#ip#10.{}.{}.{}#{}", n / 65_536 % 256, n / 256 % 256, n % 256, n);
            let item = [
                ("pk".to_owned(), AttributeValue::S(pk)),
                ("hits".to_owned(), AttributeValue::N("1".into())),
                ("expires_at".to_owned(), AttributeValue::N(expires.clone())),
            ];
            Ok(WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item.into())).build()?).build())
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .chunks(25)
        .map(<[WriteRequest]>::to_vec)
        .collect();
    let writes = futures::stream::iter(batches)
        .map(|batch| {
            let (client, table) = (deps.aws.dynamodb.clone(), table.clone());
            async move {
                let mut pending = batch;
                // The emulator, like DynamoDB, may hand some back unprocessed: send them again.
                while !pending.is_empty() {
                    let output = client.batch_write_item().request_items(&table, pending).send().await?;
                    pending = output.unprocessed_items.and_then(|mut items| items.remove(&table)).unwrap_or_default();
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    writes.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!("  {counters} counters bulk-loaded into {table} in {:.1} s", started.elapsed().as_secs_f64());
    dashboard_loads(&deps, &mut browser, counters).await?;

    let started = Instant::now();
    let scanned = deps
        .aws
        .dynamodb
        .scan()
        .table_name(&table)
        .filter_expression("begins_with(pk, :prefix)")
        .expression_attribute_values(":prefix", AttributeValue::S("ban#".into()))
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    match scanned.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(pages) => println!(
            "  for comparison, one filtered Scan over those counters (the old dashboard ran four per load): {elapsed:.1} ms, {} page(s)",
            pages.len()
        ),
        Err(error) => println!(
            "  for comparison, one filtered Scan over those counters (the old dashboard ran four per load) failed after {elapsed:.0} ms: {error} (the functions' own SDK timeouts: the old page would have answered 503)"
        ),
    }
    Ok(())
}

/// 21 loads of the dashboard's JSON: median, p90 and the DynamoDB calls of one load.
async fn dashboard_loads(
    deps: &shared::Deps,
    browser: &mut kavach_tests::web::WebClient,
    counters: usize,
) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    let mut calls = None;
    for _ in 0..21 {
        let before = deps.aws.stats.snapshot();
        let started = Instant::now();
        let page = browser.get_json("/security/api/data").await;
        samples.push(started.elapsed());
        anyhow::ensure!(page.status == 200, "dashboard: {} {}", page.status, page.text);
        let after = deps.aws.stats.snapshot();
        calls.get_or_insert_with(|| {
            after
                .by_operation
                .iter()
                .filter_map(|(operation, count)| {
                    let delta = count - before.by_operation.get(operation).copied().unwrap_or(0);
                    (delta > 0).then(|| format!("{operation} {delta}"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
    }
    samples.sort();
    let p90 = samples[samples.len() * 9 / 10];
    println!(
        "  GET /security/api/data with {counters} counters present: median {:.1} ms, p90 {:.1} ms (21 loads; DynamoDB calls per load: {})",
        median(&mut samples).as_secs_f64() * 1000.0,
        p90.as_secs_f64() * 1000.0,
        calls.unwrap_or_default()
    );
    Ok(())
}
