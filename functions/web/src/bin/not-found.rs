#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    let deps = shared::bootstrap::init().await?;
    shared::lambda::serve(deps, |deps, request| async move { web::not_found_handler(&deps, request).await }).await
}
