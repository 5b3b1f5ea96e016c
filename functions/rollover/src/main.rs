use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::{Value, json};

fn main() -> Result<(), lambda_runtime::Error> {
    shared::app::runtime::block_on(async {
        shared::core::logging::init();
        let deps = shared::app::bootstrap::init_for(rollover::SECRETS).await?;
        let deps = &deps;
        lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
            // A pass that cannot read the links fails the invocation: the scheduler retries it,
            // and the function's error alarm tells the operator.
            let done =
                rollover::run_once(deps).await.map_err(|error| lambda_runtime::Error::from(error.to_string()))?;
            Ok::<Value, lambda_runtime::Error>(
                json!({ "revoked": done.revoked, "not_heard": done.not_heard, "kept": done.kept }),
            )
        }))
        .await
    })
}
