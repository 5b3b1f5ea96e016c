//! Time as an injected dependency, so tests can cross windows, TTLs and daily boundaries at will.
//!
//! [`UnixMillis`] is the one type of an instant and [`Duration`] the one type of a span, in every
//! layer. Whole seconds appear only on the wire: a DynamoDB `expires_at` attribute, a Fernet
//! token's timestamp, a candle's `timestamp`, each converted where it is written or read.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch. DynamoDB TTLs are in seconds: use [`UnixMillis::secs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Whole seconds, the unit of every `expires_at` attribute.
    pub const fn secs(self) -> u64 {
        self.0 / 1000
    }

    /// Whole seconds as a signed number, for the simulated market's arithmetic on the epoch.
    pub fn epoch_secs(self) -> i64 {
        i64::try_from(self.secs()).unwrap_or(i64::MAX)
    }

    #[must_use]
    pub fn plus(self, by: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)))
    }

    #[must_use]
    pub fn minus(self, by: Duration) -> Self {
        Self(self.0.saturating_sub(u64::try_from(by.as_millis()).unwrap_or(u64::MAX)))
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: UnixMillis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> UnixMillis;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        // A clock before 1970 is a broken host; treat it as the epoch rather than panic.
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        UnixMillis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(time: UnixMillis) -> Self {
        Self(AtomicU64::new(time.0))
    }

    pub fn set(&self, time: UnixMillis) {
        self.0.store(time.0, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(UnixMillis::from_secs(100));
        assert_eq!(clock.now().secs(), 100);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), UnixMillis(101_500));
        clock.set(UnixMillis::from_secs(7));
        assert_eq!(clock.now().secs(), 7);
    }

    #[test]
    fn instants_and_spans() {
        let at = UnixMillis::from_secs(100);
        assert_eq!(at.plus(Duration::from_secs(5)).since(at), Duration::from_secs(5));
        assert_eq!(at.minus(Duration::from_millis(500)), UnixMillis(99_500));
        assert_eq!(at.since(at.plus(Duration::from_secs(1))), Duration::ZERO, "never negative");
        assert_eq!(UnixMillis(1_999).epoch_secs(), 1);
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now().secs() > 1_700_000_000);
    }
}
