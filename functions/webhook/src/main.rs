#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    // A cold start that cannot load its keys must fail loudly, not serve requests half-armed.
    let deps = shared::bootstrap::init().await?;
    shared::lambda::serve(deps, |deps, request| async move { webhook::handler(&deps, request).await }).await
}
