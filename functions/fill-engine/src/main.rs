use std::sync::Arc;

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::{Value, json};

fn main() -> Result<(), lambda_runtime::Error> {
    shared::app::runtime::block_on(async {
        shared::core::logging::init();
        let config = shared::core::config::Config::from_env()?;
        let aws = shared::app::aws::AwsClients::for_lambda();
        let engine = fill_engine::FillEngine::new(&config, &aws, Arc::new(shared::core::clock::SystemClock));
        let engine = &engine;
        lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
            // The invocation fails (and EventBridge's metrics show it) when the table is unreachable.
            let changed = engine.run_once().await.map_err(|error| lambda_runtime::Error::from(error.to_string()))?;
            Ok::<Value, lambda_runtime::Error>(json!({ "changed": changed }))
        }))
        .await
    })
}
