//! The Lambda entry point every function's `main` calls.
//!
//! The runtime answers API Gateway as soon as the handler returns. An internal extension in the
//! same process then writes the queued traffic record and handles any queued reset mail (whose
//! lookup must not be timed by the asker). Its time counts toward the function's timeout. Lambda does not freeze the sandbox until
//! the extension asks for its next event too, so the record is written without delaying the
//! response and without being lost.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use lambda_extension::{Extension, LambdaEvent, NextEvent};
use lambda_http::{Body, Request, Response};
use tokio::sync::{Mutex, mpsc};

use crate::app::bootstrap::{Deps, Secrets};

/// An HTTP function's whole `main`: logs, the cold start with only its `secrets`, then [`serve`],
/// on the functions' one thread ([`crate::app::runtime::block_on`]).
pub fn run<Handle, Fut>(secrets: Secrets, handle: Handle) -> Result<(), lambda_http::Error>
where
    Handle: Fn(Arc<Deps>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    crate::app::runtime::block_on(async {
        crate::core::logging::init();
        // A cold start that cannot load its keys must fail loudly, not serve requests half-armed.
        let deps = crate::app::bootstrap::init_for(secrets).await?;
        serve(deps, handle).await
    })
}

pub async fn serve<Handle, Fut>(deps: Arc<Deps>, handle: Handle) -> Result<(), lambda_http::Error>
where
    Handle: Fn(Arc<Deps>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    let (answered, answers) = mpsc::unbounded_channel::<()>();
    let answers = Arc::new(Mutex::new(answers));
    let flusher = deps.clone();
    let extension = Extension::new()
        // Internal extensions receive INVOKE events only.
        .with_events(&["INVOKE"])
        .with_events_processor(lambda_extension::service_fn(move |event: LambdaEvent| {
            let (answers, deps) = (answers.clone(), flusher.clone());
            async move {
                if let NextEvent::Invoke(_) = event.next {
                    // Wait until this invocation's handler has produced its response.
                    answers.lock().await.recv().await;
                    deps.after_response().await;
                }
                Ok::<(), lambda_extension::Error>(())
            }
        }))
        // Extensions must register before the runtime starts taking events.
        .register()
        .await?;

    let handle = Arc::new(handle);
    let runtime = lambda_http::run(lambda_http::service_fn(move |request| {
        let (deps, handle, answered) = (deps.clone(), handle.clone(), answered.clone());
        async move {
            let response = handle(deps, request).await;
            let _ = answered.send(());
            Ok::<_, Infallible>(response)
        }
    }));
    tokio::try_join!(runtime, extension.run())?;
    Ok(())
}
