//! The async runtime every function's `main` runs on.
//!
//! One thread, with its I/O driver on that thread: a Lambda execution environment handles one
//! invocation at a time, and what one invocation overlaps (the gate's concurrent DynamoDB calls,
//! the Runtime API's long poll, the internal extension) is waiting on sockets, not computing.
//! `#[tokio::main]`'s multi-threaded scheduler hands each socket wake-up between worker threads,
//! which costs futex and eventfd syscalls on every call: `scripts/bench` measured about a quarter
//! of a warm ping's CPU in them. CPU-bound work (Argon2id) already runs on the blocking pool
//! ([`crate::crypto::password`]), which this runtime keeps.

use std::future::Future;

/// Runs `main` to completion on a current-thread runtime with I/O and timers enabled. A runtime
/// that cannot be built (no file descriptors left) is a failed cold start, reported as an error.
pub fn block_on<F, E>(main: F) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
    E: From<std::io::Error>,
{
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(main)
}
