use std::sync::Arc;

use anyhow::Context;
use kavach_gateway::Gateway;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::logging::init();
    let template_path = std::env::var("KAVACH_TEMPLATE").unwrap_or_else(|_| "template.yaml".into());
    let address = std::env::var("KAVACH_GATEWAY_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let template = std::fs::read_to_string(&template_path).with_context(|| format!("reading {template_path}"))?;
    let deps = shared::bootstrap::init().await.context("cold start")?;
    let gateway = Arc::new(Gateway::from_template(deps, &template)?);
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, routes = gateway.route_count(), "local gateway listening");
    eprintln!("kavach local gateway: http://{bound} ({} routes from {template_path})", gateway.route_count());
    gateway.serve(listener).await;
    Ok(())
}
