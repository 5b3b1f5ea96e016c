//! A ban by hand, from the dashboard or the operator CLI: validated here and nowhere else.

use std::net::IpAddr;
use std::time::Duration;

use crate::core::config::NeverBan;
use crate::core::error::AppError;
use crate::core::net::{accountable, canonical};
use crate::store::bans::{BanTerms, MANUAL_BAN};

/// The longest temporary ban, in hours (a year); longer is permanent.
pub const MAX_BAN_HOURS: u32 = 8760;
/// Reasons are shown on the dashboard: one line, at most this many characters.
pub const MAX_REASON_CHARS: usize = 200;
const DEFAULT_REASON: &str = "Manual ban";
/// The one message for a duration out of range, manual or a detector's setting.
pub const DURATION_MESSAGE: &str = "Ban duration must be Permanent (0) or between 1 hour and 1 year";

/// A manual ban that passed validation: a bannable address, a duration of 1 to 8760 hours or
/// permanent, and a printable reason of at most 200 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualBan {
    ip: IpAddr,
    hours: Option<u32>,
    reason: String,
}

impl ManualBan {
    /// `hours: None` is permanent. `operator` is the address the request to ban came from, when
    /// there is one: nobody may ban the address they are using. An empty reason is "Manual ban".
    pub fn new(
        ip: IpAddr,
        hours: Option<u32>,
        reason: &str,
        never_ban: &NeverBan,
        operator: Option<IpAddr>,
    ) -> Result<Self, AppError> {
        let ip = canonical(ip);
        // A ban covers the address's /64 when it is IPv6: the operator's own block is theirs too.
        if operator.map(accountable) == Some(accountable(ip)) {
            return Err(AppError::bad_request("Cannot ban your own IP address"));
        }
        if never_ban.contains(ip) {
            return Err(AppError::bad_request(format!(
                "Cannot ban {ip}: it is a non-global or never-ban address (NEVER_BAN_CIDRS)"
            )));
        }
        if hours.is_some_and(|hours| !(1..=MAX_BAN_HOURS).contains(&hours)) {
            return Err(AppError::bad_request(DURATION_MESSAGE));
        }
        let reason: String = reason.trim().chars().filter(|c| !c.is_control()).take(MAX_REASON_CHARS).collect();
        let reason = if reason.is_empty() { DEFAULT_REASON.to_owned() } else { reason };
        Ok(Self { ip, hours, reason })
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub(crate) fn terms(&self) -> BanTerms {
        let duration = self.hours.map(|hours| Duration::from_secs(u64::from(hours) * 3600));
        BanTerms { reason: self.reason.clone(), created_by: MANUAL_BAN, duration }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn refusal(result: Result<ManualBan, AppError>) -> String {
        result.expect_err("refused").public_message()
    }

    #[test]
    fn durations_addresses_and_reasons_are_checked_once() {
        let never = NeverBan::all_non_global();
        let ban = ManualBan::new(ip("8.8.8.8"), Some(24), "", &never, None).expect("valid");
        let day = Some(Duration::from_secs(24 * 3600));
        assert_eq!(ban.terms(), BanTerms { reason: "Manual ban".into(), created_by: MANUAL_BAN, duration: day });
        assert!(ManualBan::new(ip("8.8.8.8"), None, "scanner", &never, None).is_ok(), "permanent");
        assert!(ManualBan::new(ip("8.8.8.8"), Some(MAX_BAN_HOURS), "x", &never, None).is_ok());
        for hours in [0, MAX_BAN_HOURS + 1] {
            assert_eq!(refusal(ManualBan::new(ip("8.8.8.8"), Some(hours), "", &never, None)), DURATION_MESSAGE);
        }
        assert!(refusal(ManualBan::new(ip("10.1.2.3"), Some(1), "", &never, None)).contains("never-ban"));
        assert!(refusal(ManualBan::new(ip("::1"), Some(1), "", &never, None)).contains("never-ban"));
        let own = ManualBan::new(ip("::ffff:8.8.4.4"), Some(1), "", &never, Some(ip("8.8.4.4")));
        assert_eq!(refusal(own), "Cannot ban your own IP address");
        let long = ManualBan::new(ip("8.8.8.8"), Some(1), &format!("a\nb{}", "c".repeat(500)), &never, None);
        let reason = long.expect("valid").terms().reason;
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
        assert!(reason.starts_with("abc"), "control characters dropped");
    }
}
