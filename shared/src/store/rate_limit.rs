//! Fixed-window counters: one atomic `UpdateItem … ADD hits :1` per request and subject, returning
//! the new count. Over-counting (an SDK retry after a timeout) can only deny more, never admit more.
//!
//! The window index is part of the key, so a stale counter that TTL has not yet removed can never be
//! mistaken for the current one.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;

use super::{EXPIRES_AT, PK, n, number, s, unavailable};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::limits::{LimitedAction, RateLimit};

/// Counters outlive their window by this much before TTL may remove them.
const EXPIRY_SLACK_SECS: u64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub count: u64,
    pub limit: u32,
    /// Epoch milliseconds at which the window closes.
    pub window_ends: UnixMillis,
}

impl Verdict {
    pub fn admitted(&self) -> bool {
        self.count <= u64::from(self.limit)
    }

    /// Whole seconds until the window closes, at least 1.
    pub fn retry_after_secs(&self, now: UnixMillis) -> u64 {
        self.window_ends.0.saturating_sub(now.0).div_ceil(1000).max(1)
    }
}

/// Refuses with 429 when any of `verdicts` is over its budget, telling the client to wait for the
/// longest of those windows to close.
pub fn within_budgets<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>, now: UnixMillis) -> Result<(), AppError> {
    let longest_wait =
        verdicts.into_iter().filter(|verdict| !verdict.admitted()).map(|verdict| verdict.retry_after_secs(now)).max();
    match longest_wait {
        Some(retry_after_secs) => Err(AppError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

#[derive(Clone, Debug)]
pub struct RateLimitStore {
    client: Client,
    table: String,
}

impl RateLimitStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Counts one hit for `subject` (e.g. `ip#203.0.113.9`) and says whether it is within `limit`.
    pub async fn hit(
        &self,
        action: LimitedAction,
        subject: &str,
        limit: RateLimit,
        now: UnixMillis,
    ) -> Result<Verdict, AppError> {
        let (key, window_ends) = counter_key(action, subject, limit, now);
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key))
            .update_expression("ADD hits :one SET #exp = if_not_exists(#exp, :exp)")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":exp", n(window_ends.secs() + EXPIRY_SLACK_SECS))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable("count request"))?;
        let count = output.attributes().and_then(|item| number(item, "hits")).unwrap_or(u64::MAX);
        Ok(Verdict { count, limit: limit.limit, window_ends })
    }

    /// What a hit *would* be, without counting one: the verdict for `subject`'s count so far plus
    /// this request.
    pub async fn peek(
        &self,
        action: LimitedAction,
        subject: &str,
        limit: RateLimit,
        now: UnixMillis,
    ) -> Result<Verdict, AppError> {
        let (key, window_ends) = counter_key(action, subject, limit, now);
        let item = super::get_by_pk(&self.client, &self.table, key, "read request count").await?;
        let so_far = item.and_then(|item| number(&item, "hits")).unwrap_or(0);
        Ok(Verdict { count: so_far.saturating_add(1), limit: limit.limit, window_ends })
    }
}

/// The counter item for `subject` in the window containing `now`, and when that window ends.
fn counter_key(action: LimitedAction, subject: &str, limit: RateLimit, now: UnixMillis) -> (String, UnixMillis) {
    let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX).max(1);
    let index = now.0 / window_ms;
    let window_ends = UnixMillis(index.saturating_add(1).saturating_mul(window_ms));
    (format!("rl#{}#{}ms#{subject}#{index}", action.name(), window_ms), window_ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_maths() {
        let verdict = Verdict { count: 51, limit: 50, window_ends: UnixMillis(10_000) };
        assert!(!verdict.admitted());
        assert_eq!(verdict.retry_after_secs(UnixMillis(9_999)), 1);
        assert_eq!(verdict.retry_after_secs(UnixMillis(7_500)), 3);
        assert_eq!(verdict.retry_after_secs(UnixMillis(12_000)), 1);
        assert!(Verdict { count: 50, ..verdict }.admitted());
    }
}
