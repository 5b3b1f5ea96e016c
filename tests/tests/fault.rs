//! Fault injection: with the AWS emulator stopped, ping fails closed with 503 and a fixed body.
//! This suite starts its own emulator (so stopping it disturbs nothing else) and needs
//! `KAVACH_MOTO_SERVER` and `KAVACH_ADMIN_BIN`, which `scripts/test` sets; without them it fails.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kavach_tests::{client_from, ping_body, post, post_with, required_env, start_gateway, unique_ip};
use shared::app::aws::AwsClients;
use shared::core::clock::SystemClock;
use shared::core::config::Config;

struct Emulator {
    child: tokio::process::Child,
    endpoint: String,
}

async fn start_emulator() -> Emulator {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let child = tokio::process::Command::new(required_env("KAVACH_MOTO_SERVER"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start moto_server");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Emulator { child, endpoint: format!("http://127.0.0.1:{port}") };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not listen on {port} within 10 s");
}

/// Provisions the template into `endpoint` with the real operator command; returns the function
/// environment it resolved.
async fn provision(endpoint: &str) -> HashMap<String, String> {
    let env_file = std::env::temp_dir().join(format!("kavach-fault-{}.env", std::process::id()));
    let status = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(["provision", "--template", concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"), "--env-file"])
        .arg(&env_file)
        .env("AWS_ENDPOINT_URL", endpoint)
        .status()
        .await
        .expect("run kavach provision");
    assert!(status.success(), "kavach provision failed");
    let text = std::fs::read_to_string(&env_file).expect("env file");
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect()
}

#[tokio::test]
async fn with_the_emulator_stopped_ping_login_totp_and_orders_fail_closed_with_503_and_a_metric() {
    let mut emulator = start_emulator().await;
    let environment = provision(&emulator.endpoint).await;
    let config = Config::from_lookup(|name| environment.get(name).cloned()).expect("provisioned config");
    let aws = AwsClients::for_endpoint(&emulator.endpoint).await;
    let metrics = Arc::new(std::sync::Mutex::new(Vec::new()));
    let deps = shared::app::bootstrap::init_with(
        config,
        Arc::new(SystemClock),
        aws,
        shared::core::metrics::MetricSink::Memory(metrics.clone()),
    )
    .await
    .expect("cold start");
    let key = deps.accounts().create_user("fault-user").await.expect("user");
    let gateway = start_gateway(deps).await;
    let ip = unique_ip();
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(key.expose())).await.status, 200);

    emulator.child.kill().await.expect("stop moto");
    emulator.child.wait().await.expect("moto exited");

    for body in [ping_body(key.expose()), "{".to_owned()] {
        let reply = post(gateway, ip, "/api/v1/ping", &body).await;
        assert_eq!(reply.status, 503, "fail closed: {}", reply.body);
        assert_eq!(reply.body["message"], "Service Unavailable");
        assert_eq!(reply.body["code"], "service_unavailable");
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        let text = reply.body.to_string();
        assert!(!text.contains("dispatch") && !text.contains("127.0.0.1"), "no internals: {text}");
    }

    let order = serde_json::json!({
        "apikey": key.expose(), "strategy": "fault", "symbol": "SBIN", "exchange": "NSE", "action": "BUY",
        "quantity": "1", "pricetype": "MARKET", "product": "MIS"
    });
    let reply = post(gateway, ip, "/api/v1/placeorder", &order.to_string()).await;
    assert_eq!(reply.status, 503, "orders fail closed: {}", reply.body);
    let form = "username=fault-user&password=whatever";
    for path in ["/auth/login", "/auth/login/totp"] {
        let reply = post_with(
            client_from(ip)
                .post(format!("http://{gateway}{path}"))
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
        )
        .await;
        assert_eq!(reply.status, 503, "{path} fails closed: {}", reply.body);
        assert_eq!(reply.body["message"], "Service Unavailable");
    }
    let unavailable =
        metrics.lock().expect("metrics").iter().filter(|line| line.contains("\"StoreUnavailable\":1")).count();
    assert_eq!(unavailable, 5, "one StoreUnavailable metric per refused request");
}
