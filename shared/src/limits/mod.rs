//! Rate limiting: the classes and their budgets ([`LimitedAction`], in OpenAlgo's
//! `N per second|minute|hour|day` syntax), whom a counter counts ([`subject::Subject`]), and the
//! limiter that owns the budgets and the 429 rule ([`limiter`]). Callers name an action and a
//! subject, never a limit.

pub mod limiter;
pub mod login;
pub mod subject;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A budget of `limit` requests per fixed `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

impl RateLimit {
    pub const fn per_second(limit: u32) -> Self {
        Self { limit, window: Duration::from_secs(1) }
    }
}

impl FromStr for RateLimit {
    type Err = String;

    /// Accepts `50 per second`, `5 per minute`, `25 per hour`, `100 per day` (case-insensitive),
    /// as OpenAlgo's `.env` does. Chained limits (`a;b`) are a separate class each here.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected `<count> per <second|minute|hour|day>`, e.g. `50 per second`";
        let words: Vec<&str> = text.split_whitespace().collect();
        let [count, per, unit] = words.as_slice() else {
            return Err(format!("`{text}`: {expected}"));
        };
        if !per.eq_ignore_ascii_case("per") {
            return Err(format!("`{text}`: {expected}"));
        }
        let limit: u32 = count.parse().map_err(|_| format!("`{count}` is not a whole number; {expected}"))?;
        if limit == 0 {
            return Err(format!("`{text}`: the count must be at least 1"));
        }
        let seconds = match unit.to_ascii_lowercase().trim_end_matches('s') {
            "second" => 1,
            "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            _ => return Err(format!("`{unit}` is not a unit; {expected}")),
        };
        Ok(Self { limit, window: Duration::from_secs(seconds) })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.window.as_secs() {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            _ => "day",
        };
        write!(f, "{} per {unit}", self.limit)
    }
}

/// Every action with its own counter. Each owns its environment override and default budget, so
/// adding a class is one variant, not a hunt through handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitedAction {
    /// Reads, utility routes and bulk order routes (basket, split, cancel-all, close):
    /// `API_RATE_LIMIT`, default 50/s.
    Api,
    /// placeorder, modifyorder, cancelorder: `ORDER_RATE_LIMIT`, default 10/s.
    Order,
    /// placesmartorder: `SMART_ORDER_RATE_LIMIT`, default 10/s.
    SmartOrder,
    /// `/strategy/webhook/<id>`, per webhook id, with the address's failures on the same budget as
    /// a backstop: `WEBHOOK_RATE_LIMIT`, default 100/min.
    Webhook,
    /// Every page and form request, per source IP: `PAGE_RATE_LIMIT`, default 50/s.
    Page,
    /// Password, TOTP, setup and reset attempts, per IP (every one) and per account or device
    /// cookie (failures only): `LOGIN_RATE_LIMIT_MIN`,
    /// default 5/min …
    LoginMinute,
    /// … and `LOGIN_RATE_LIMIT_HOUR`, default 25/hour.
    LoginHour,
    /// Failed verifications of one API key id, from any address: `KEY_FAILURE_RATE_LIMIT`, default
    /// 10/min. Past it, a key that is not already verified in the container is refused without
    /// running Argon2, so a known key id and random secrets cannot buy CPU by the request.
    KeyFailures,
}

impl LimitedAction {
    pub const ALL: [LimitedAction; 8] = [
        LimitedAction::Api,
        LimitedAction::Order,
        LimitedAction::SmartOrder,
        LimitedAction::Webhook,
        LimitedAction::Page,
        LimitedAction::LoginMinute,
        LimitedAction::LoginHour,
        LimitedAction::KeyFailures,
    ];

    pub const fn env_var(self) -> &'static str {
        match self {
            LimitedAction::Api => "API_RATE_LIMIT",
            LimitedAction::Order => "ORDER_RATE_LIMIT",
            LimitedAction::SmartOrder => "SMART_ORDER_RATE_LIMIT",
            LimitedAction::Webhook => "WEBHOOK_RATE_LIMIT",
            LimitedAction::Page => "PAGE_RATE_LIMIT",
            LimitedAction::LoginMinute => "LOGIN_RATE_LIMIT_MIN",
            LimitedAction::LoginHour => "LOGIN_RATE_LIMIT_HOUR",
            LimitedAction::KeyFailures => "KEY_FAILURE_RATE_LIMIT",
        }
    }

    /// OpenAlgo's `.sample.env` values; pages (which OpenAlgo does not limit as a class) get the API's.
    pub const fn default_limit(self) -> RateLimit {
        match self {
            LimitedAction::Api | LimitedAction::Page => RateLimit::per_second(50),
            LimitedAction::Order | LimitedAction::SmartOrder => RateLimit::per_second(10),
            LimitedAction::Webhook => RateLimit { limit: 100, window: Duration::from_secs(60) },
            LimitedAction::LoginMinute => RateLimit { limit: 5, window: Duration::from_secs(60) },
            LimitedAction::LoginHour => RateLimit { limit: 25, window: Duration::from_secs(3600) },
            LimitedAction::KeyFailures => RateLimit { limit: 10, window: Duration::from_secs(60) },
        }
    }

    /// Short stable name used in counter keys and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            LimitedAction::Api => "api",
            LimitedAction::Order => "order",
            LimitedAction::SmartOrder => "smart-order",
            LimitedAction::Webhook => "webhook",
            LimitedAction::Page => "page",
            LimitedAction::LoginMinute => "login-min",
            LimitedAction::LoginHour => "login-hour",
            LimitedAction::KeyFailures => "key-failures",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openalgo_syntax() {
        assert_eq!("50 per second".parse(), Ok(RateLimit::per_second(50)));
        assert_eq!("5 per Minute".parse(), Ok(RateLimit { limit: 5, window: Duration::from_secs(60) }));
        assert_eq!("25 per hours".parse::<RateLimit>().map(|r| r.window.as_secs()), Ok(3600));
        assert_eq!("100 per day".parse::<RateLimit>().map(|r| r.to_string()), Ok("100 per day".into()));
    }

    #[test]
    fn every_class_has_its_own_variable_name_and_openalgo_default() {
        let names: std::collections::HashSet<&str> = LimitedAction::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), LimitedAction::ALL.len(), "counter keys must not collide");
        assert_eq!(LimitedAction::Order.default_limit(), RateLimit::per_second(10));
        assert_eq!(LimitedAction::SmartOrder.env_var(), "SMART_ORDER_RATE_LIMIT");
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        for bad in ["", "50", "50 every second", "x per second", "0 per second", "5 per fortnight", "-1 per second"] {
            let err = bad.parse::<RateLimit>().expect_err(bad);
            assert!(err.contains("per") || err.contains("least"), "{bad}: {err}");
        }
    }
}
