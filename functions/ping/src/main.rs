use std::convert::Infallible;

use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    // A cold start that cannot load its keys must fail loudly, not serve requests half-armed.
    let deps = shared::bootstrap::init().await?;
    run(service_fn(|request| {
        let deps = deps.clone();
        async move { Ok::<_, Infallible>(ping::handler(&deps, request).await) }
    }))
    .await
}
