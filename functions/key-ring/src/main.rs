//! The `KeyRing` custom resource's Lambda: every CloudFormation request is answered (see the lib).

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;

fn main() -> Result<(), lambda_runtime::Error> {
    shared::app::runtime::block_on(async {
        shared::core::logging::init();
        // A configuration error is reported to CloudFormation as the request's failure, not by
        // exiting: an exit would leave the stack waiting for an answer until ServiceTimeout.
        let config = shared::core::config::Config::from_env().map_err(|error| error.to_string());
        let aws = shared::app::aws::AwsClients::for_lambda();
        let provider = &key_ring::Provider::new(config, aws)?;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            // An answer that could not be delivered fails the invocation, so Lambda retries it; the
            // work is idempotent.
            provider.handle(event.payload).await.map_err(lambda_runtime::Error::from)
        }))
        .await
    })
}
