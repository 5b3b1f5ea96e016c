//! The limiter: fixed-window counters per (action, subject), with the budgets it was built with.
//! Callers name an action and a subject; the limiter picks the budget, forms the counter key and
//! owns the rule that turns a spent budget into 429.
//!
//! The window index is part of the key, so a stale counter that TTL has not yet removed can never
//! be mistaken for the current one. Over-counting (an SDK retry after a timeout) can only deny
//! more, never admit more.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::subject::Subject;
use super::{LimitedAction, RateLimit};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::store::rate_limit::RateLimitStore;
use crate::store::{Item, PointRead};

/// Counters outlive their window by this much before TTL may remove them.
const EXPIRY_SLACK: Duration = Duration::from_secs(60);

/// One counter's state after this request.
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

/// The 429 rule: refuses when any of `verdicts` is over its budget, telling the client to wait for
/// the longest of those windows to close.
pub fn within_budgets<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>, now: UnixMillis) -> Result<(), AppError> {
    let longest_wait =
        verdicts.into_iter().filter(|verdict| !verdict.admitted()).map(|verdict| verdict.retry_after_secs(now)).max();
    match longest_wait {
        Some(retry_after_secs) => Err(AppError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

#[derive(Clone, Debug)]
pub struct RateLimiter {
    store: RateLimitStore,
    budgets: HashMap<LimitedAction, RateLimit>,
}

impl RateLimiter {
    /// A limiter with `budget(action)` for every class, read once (at cold start).
    pub fn new(store: RateLimitStore, budget: impl Fn(LimitedAction) -> RateLimit) -> Self {
        Self { store, budgets: LimitedAction::ALL.into_iter().map(|action| (action, budget(action))).collect() }
    }

    pub fn budget(&self, action: LimitedAction) -> RateLimit {
        self.budgets.get(&action).copied().unwrap_or(action.default_limit())
    }

    /// Counts one hit of `action` for `subject` and says whether it is within the budget.
    pub async fn hit(&self, action: LimitedAction, subject: Subject<'_>, now: UnixMillis) -> Result<Verdict, AppError> {
        let window = self.window(action, subject, now);
        let count = self.store.add_one(&window.key, window.ends.plus(EXPIRY_SLACK)).await?;
        Ok(Verdict { count, limit: window.limit, window_ends: window.ends })
    }

    /// Takes back one hit that [`RateLimiter::hit`] or [`RateLimiter::reserve`] counted for `subject`
    /// at `now`, leaving no counter behind when it was the only one: the request it counted was
    /// refused before the budget mattered (a ban), or what the reservation guarded did not happen
    /// (a key verification that succeeded is not a failure).
    pub async fn take_back(
        &self,
        action: LimitedAction,
        subject: Subject<'_>,
        now: UnixMillis,
    ) -> Result<(), AppError> {
        self.store.take_back(&self.window(action, subject, now).key).await
    }

    /// Reserves `n` hits at once, all or none: a request that creates `n` orders spends `n` of the
    /// order budget, or, when fewer are left, none of it and gets a spent verdict.
    pub async fn reserve(
        &self,
        action: LimitedAction,
        subject: Subject<'_>,
        n: u64,
        now: UnixMillis,
    ) -> Result<Verdict, AppError> {
        let window = self.window(action, subject, now);
        let limit = u64::from(window.limit);
        let reserved = self.store.add_if_room(&window.key, n, limit, window.ends.plus(EXPIRY_SLACK)).await?;
        // No room: a count just over the limit, so the 429 rule refuses it like any spent budget.
        let count = reserved.unwrap_or(limit.saturating_add(1));
        Ok(Verdict { count, limit: window.limit, window_ends: window.ends })
    }

    /// What a hit *would* be, without counting one: the count so far plus this request.
    pub async fn peek(
        &self,
        action: LimitedAction,
        subject: Subject<'_>,
        now: UnixMillis,
    ) -> Result<Verdict, AppError> {
        let window = self.window(action, subject, now);
        let so_far = self.store.read(&window.key).await?;
        Ok(peeked(so_far, window.limit, window.ends))
    }

    /// The read [`RateLimiter::peek`] makes, for a batch of the gate's reads.
    pub(crate) fn peek_read(&self, action: LimitedAction, subject: Subject<'_>, now: UnixMillis) -> PointRead {
        self.store.read_of(self.window(action, subject, now).key)
    }

    /// [`RateLimiter::peek`]'s verdict from `item`, the counter [`RateLimiter::peek_read`] names
    /// (the item names its subject, so only the window's bounds are needed here).
    pub(crate) fn peek_verdict(&self, action: LimitedAction, now: UnixMillis, item: Option<&Item>) -> Verdict {
        let (_, limit, ends) = self.bounds(action, now);
        peeked(RateLimitStore::count_in(item), limit, ends)
    }

    /// The window's length in milliseconds, its budget's limit and its end.
    fn bounds(&self, action: LimitedAction, now: UnixMillis) -> (u64, u32, UnixMillis) {
        let budget = self.budget(action);
        let window_ms = u64::try_from(budget.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let ends = UnixMillis((now.0 / window_ms).saturating_add(1).saturating_mul(window_ms));
        (window_ms, budget.limit, ends)
    }

    fn window(&self, action: LimitedAction, subject: Subject<'_>, now: UnixMillis) -> Window {
        let (window_ms, limit, ends) = self.bounds(action, now);
        let index = now.0 / window_ms;
        // Sized for the longest key (a v6 address, a 32-digit fingerprint) so it is written once.
        let mut key = String::with_capacity(96);
        let _ = write!(key, "rl#{}#{window_ms}ms#{subject}#{index}", action.name());
        Window { key, limit, ends }
    }
}

/// The counter for one subject in the window containing now.
struct Window {
    key: String,
    limit: u32,
    ends: UnixMillis,
}

/// What one more request would make of a counter at `so_far`, without counting it.
fn peeked(so_far: u64, limit: u32, ends: UnixMillis) -> Verdict {
    Verdict { count: so_far.saturating_add(1), limit, window_ends: ends }
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

    #[test]
    fn the_longest_spent_window_sets_retry_after() {
        let now = UnixMillis(1_000);
        let spent = |ends| Verdict { count: 6, limit: 5, window_ends: UnixMillis(ends) };
        let fresh = Verdict { count: 1, limit: 5, window_ends: UnixMillis(900_000) };
        assert!(within_budgets([&fresh], now).is_ok());
        match within_budgets([&spent(3_000), &fresh, &spent(61_000)], now) {
            Err(AppError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 60),
            other => panic!("expected 429, got {other:?}"),
        }
    }
}
