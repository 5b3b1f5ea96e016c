use std::sync::Arc;

use anyhow::Context;
use kavach_gateway::Gateway;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::core::logging::init();
    let template_path = std::env::var("KAVACH_TEMPLATE").unwrap_or_else(|_| "template.yaml".into());
    let address = std::env::var("KAVACH_GATEWAY_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let template = std::fs::read_to_string(&template_path).with_context(|| format!("reading {template_path}"))?;
    let deps = shared::app::bootstrap::init().await.context("cold start")?;
    // OpenAlgo's sandbox checks resting orders every 5 s; EventBridge's floor in AWS is a minute.
    let fill_every = std::env::var("KAVACH_FILL_INTERVAL_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let engine = fill_engine::FillEngine::new(&deps.config, &deps.aws, deps.clock.clone());
    tokio::spawn(kavach_gateway::run_fill_engine(engine, std::time::Duration::from_secs(fill_every)));
    let rollover_every = std::env::var("KAVACH_ROLLOVER_INTERVAL_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let rollover = deps.for_function(rollover::SECRETS);
    tokio::spawn(kavach_gateway::run_rollover(rollover, std::time::Duration::from_secs(rollover_every)));
    // `prod` serves every route under /prod, as the deployed execute-api URL does.
    let stage = std::env::var("KAVACH_STAGE").unwrap_or_default();
    let gateway = Arc::new(Gateway::from_template(deps, &template)?.under_stage(&stage));
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, routes = gateway.route_count(), "local gateway listening");
    let prefix = if stage.is_empty() { String::new() } else { format!("/{}", stage.trim_matches('/')) };
    eprintln!("kavach local gateway: http://{bound}{prefix} ({} routes from {template_path})", gateway.route_count());
    gateway.serve(listener).await;
    Ok(())
}
