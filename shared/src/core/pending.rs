//! Work a request leaves for after its response ([`crate::app::bootstrap::Deps::after_response`]):
//! on Lambda an internal extension does it once the response has gone (`crate::pipeline::lambda`),
//! and the local gateway in a task after responding.

use std::sync::{Mutex, PoisonError};

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
