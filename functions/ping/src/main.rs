fn main() -> Result<(), lambda_http::Error> {
    shared::app::runtime::block_on(async {
        shared::core::logging::init();
        // A cold start that cannot load its keys must fail loudly, not serve requests half-armed.
        let deps = shared::app::bootstrap::init_for(ping::SECRETS).await?;
        shared::pipeline::lambda::serve(deps, |deps, request| async move { ping::handler(&deps, request).await }).await
    })
}
