//! The daily rollover of broker sessions (W5). EventBridge Scheduler runs it at
//! `SESSION_EXPIRY_TIME` IST in AWS; the local gateway runs the same pass on a timer. Every token
//! whose expiry has passed is ended at its broker and dropped here (`BrokerLinks::roll_over`),
//! so a copy of it is worthless, and a trader who logs in again after the boundary keeps the new
//! one.

use shared::broker::links::Rollover;
use shared::{AppError, Deps};

/// What this function's cold start loads: the brokers' keys, to end each token at its broker.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::BROKER_TOKENS;

/// One pass: what it revoked, what the broker did not hear, what it left alone.
pub async fn run_once(deps: &Deps) -> Result<Rollover, AppError> {
    let done = deps.broker_links()?.roll_over().await?;
    if done != Rollover::default() {
        tracing::info!(revoked = done.revoked, not_heard = done.not_heard, kept = done.kept, "broker rollover");
    }
    Ok(done)
}
