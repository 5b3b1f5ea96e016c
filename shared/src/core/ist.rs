//! Indian Standard Time without a time-zone database: IST is a fixed UTC+05:30 with no daylight
//! saving, so civil dates are plain arithmetic on epoch seconds.

use std::time::Duration;

use crate::core::clock::UnixMillis;

pub const OFFSET_SECS: i64 = 5 * 3600 + 30 * 60;
const DAY_SECS: i64 = 86_400;

/// A civil IST instant, to the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IstTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    /// Milliseconds since IST midnight.
    pub millis_of_day: u32,
}

impl IstTime {
    pub fn at(now: UnixMillis) -> Self {
        let local_ms = i64::try_from(now.0).unwrap_or(i64::MAX) + OFFSET_SECS * 1000;
        let days = local_ms.div_euclid(DAY_SECS * 1000);
        let millis_of_day = u32::try_from(local_ms.rem_euclid(DAY_SECS * 1000)).unwrap_or(0);
        let (year, month, day) = civil_from_days(days);
        Self { year, month, day, millis_of_day }
    }

    pub fn seconds_of_day(&self) -> u32 {
        self.millis_of_day / 1000
    }

    /// `YYYY-MM-DD HH:MM:SS`, the sandbox's timestamp format.
    pub fn timestamp(&self) -> String {
        let s = self.seconds_of_day();
        format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", self.year, self.month, self.day, s / 3600, s / 60 % 60, s % 60)
    }

    /// `YYMMDD` as a number, the first six digits of an order id (which is built as one number, so
    /// that it is formatted once).
    pub fn yymmdd(&self) -> u64 {
        self.year.rem_euclid(100).unsigned_abs() * 10_000 + u64::from(self.month) * 100 + u64::from(self.day)
    }

    /// `YYYYMMDD-HHMMSS`, as in trade ids.
    pub fn compact(&self) -> String {
        let s = self.seconds_of_day();
        format!("{:04}{:02}{:02}-{:02}{:02}{:02}", self.year, self.month, self.day, s / 3600, s / 60 % 60, s % 60)
    }
}

/// The epoch millisecond of the latest daily boundary (`hh:mm` IST) at or before `now`.
pub fn last_boundary(now: UnixMillis, boundary_secs_of_day: u32) -> UnixMillis {
    let local_ms = i64::try_from(now.0).unwrap_or(i64::MAX) + OFFSET_SECS * 1000;
    let midnight = local_ms.div_euclid(DAY_SECS * 1000) * DAY_SECS * 1000;
    let mut boundary = midnight + i64::from(boundary_secs_of_day) * 1000;
    if boundary > local_ms {
        boundary -= DAY_SECS * 1000;
    }
    UnixMillis(u64::try_from(boundary - OFFSET_SECS * 1000).unwrap_or(0))
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse, for tests and for turning request dates into epochs.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch seconds of IST midnight starting the given civil date.
pub fn ist_midnight_epoch(year: i64, month: u32, day: u32) -> i64 {
    days_from_civil(year, month, day) * DAY_SECS - OFFSET_SECS
}

/// The daily boundary, seconds after IST midnight (`SESSION_EXPIRY_TIME`, `HH:MM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DailyExpiry {
    pub secs_of_day: u32,
}

impl Default for DailyExpiry {
    fn default() -> Self {
        Self { secs_of_day: 3 * 3600 }
    }
}

impl std::str::FromStr for DailyExpiry {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (hours, minutes) = text.trim().split_once(':').ok_or_else(|| format!("`{text}` is not HH:MM"))?;
        let hours: u32 = hours.parse().map_err(|_| format!("`{text}` is not HH:MM"))?;
        let minutes: u32 = minutes.parse().map_err(|_| format!("`{text}` is not HH:MM"))?;
        if hours > 23 || minutes > 59 {
            return Err(format!("`{text}` is not a time of day between 00:00 and 23:59"));
        }
        Ok(Self { secs_of_day: hours * 3600 + minutes * 60 })
    }
}

impl DailyExpiry {
    /// A session that began at `login` has expired at `now` when any daily boundary lies in
    /// `(login, now]`, however long ago: not only today's (OpenAlgo's W5).
    pub fn has_expired(&self, login: UnixMillis, now: UnixMillis) -> bool {
        now < login || last_boundary(now, self.secs_of_day) > login
    }

    /// The first boundary after `now`: the session's `expires_at`.
    pub fn next_after(&self, now: UnixMillis) -> UnixMillis {
        last_boundary(now, self.secs_of_day).plus(Duration::from_secs(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_match_known_instants() {
        for days in [-1, 0, 59, 60, 365, 10_957, 19_000, 20_819, 47_482] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        // 2025-10-01 10:15:02 IST = 04:45:02 UTC = 1759293902.
        let t = IstTime::at(UnixMillis(1_759_293_902_123));
        assert_eq!(t.timestamp(), "2025-10-01 10:15:02");
        assert_eq!(t.yymmdd(), 251_001);
        assert_eq!(t.compact(), "20251001-101502");
        assert_eq!(ist_midnight_epoch(2025, 10, 1), 1_759_257_000);
    }

    #[test]
    fn the_daily_boundary_is_the_latest_0300_ist_at_or_before_now() {
        let three_am = 3 * 3600;
        // 2025-10-01 02:59:59 IST → the boundary is 2025-09-30 03:00 IST.
        let before = UnixMillis((ist_midnight_epoch(2025, 10, 1) as u64 + 3 * 3600 - 1) * 1000);
        assert_eq!(last_boundary(before, three_am).0, (ist_midnight_epoch(2025, 9, 30) as u64 + 3 * 3600) * 1000);
        let at = UnixMillis((ist_midnight_epoch(2025, 10, 1) as u64 + 3 * 3600) * 1000);
        assert_eq!(last_boundary(at, three_am), at);
    }

    /// 2026-11-20 10:00 IST.
    fn ist(day: u32, hour: u64, minute: u64) -> UnixMillis {
        let midnight = ist_midnight_epoch(2026, 11, day);
        UnixMillis::from_secs(u64::try_from(midnight).expect("positive") + hour * 3600 + minute * 60)
    }

    #[test]
    fn any_boundary_between_login_and_now_expires() {
        let expiry = DailyExpiry::default();
        let login = ist(20, 10, 0);
        assert!(!expiry.has_expired(login, ist(20, 23, 59)));
        assert!(!expiry.has_expired(login, ist(21, 2, 59)));
        assert!(expiry.has_expired(login, ist(21, 3, 0)));
        // OpenAlgo's hole: a cookie unused across a whole day, replayed before the next boundary.
        assert!(expiry.has_expired(login, ist(22, 2, 0)));
        // Logged in after today's boundary: valid until tomorrow's.
        assert!(!expiry.has_expired(ist(21, 3, 1), ist(22, 2, 59)));
        assert_eq!(expiry.next_after(login), ist(21, 3, 0));
        assert_eq!(expiry.next_after(ist(21, 2, 0)), ist(21, 3, 0));
    }

    #[test]
    fn expiry_time_parsing() {
        assert_eq!("03:00".parse(), Ok(DailyExpiry { secs_of_day: 10_800 }));
        assert_eq!("15:45".parse::<DailyExpiry>().map(|e| e.secs_of_day), Ok(56_700));
        for bad in ["", "3", "24:00", "12:60", "ab:cd"] {
            assert!(bad.parse::<DailyExpiry>().is_err(), "{bad}");
        }
    }
}
