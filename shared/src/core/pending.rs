//! Work a request leaves for after its response ([`crate::app::bootstrap::Deps::after_response`]):
//! on Lambda an internal extension does it once the response has gone (`crate::pipeline::lambda`),
//! and the local gateway in a task after responding.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;

/// A queue of such work: requests push, the after-response step takes everything at once.
#[derive(Debug)]
pub struct Pending<T>(Mutex<Vec<T>>);

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<T> Pending<T> {
    pub fn push(&self, item: T) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(item);
    }

    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One piece of such work that needs the function's dependencies `D` (`Deps`), boxed. Only a
/// function that queues one links its code: the reset mail's SMTP client is in the web function
/// that sends it, not in every bootstrap, which it would be if `after_response` called it.
pub struct Deferred<D>(Box<Work<D>>);

/// What a [`Deferred`] holds: given the dependencies, the future that does the work.
type Work<D> = dyn for<'a> FnOnce(&'a D) -> BoxFuture<'a, ()> + Send;

impl<D> Deferred<D> {
    pub fn new(work: impl for<'a> FnOnce(&'a D) -> BoxFuture<'a, ()> + Send + 'static) -> Self {
        Self(Box::new(work))
    }

    pub async fn run(self, deps: &D) {
        (self.0)(deps).await;
    }
}

impl<D> fmt::Debug for Deferred<D> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Deferred")
    }
}
