//! Threat detection: three detectors feed rolling 24-hour counters, and an IP over a detector's
//! threshold is banned — on by default, with the settings in DynamoDB so the dashboard can change
//! them without a redeploy.
//!
//! - 404s: requests to routes that do not exist, from visitors without a valid session, except the
//!   paths browsers and crawlers ask for by themselves ([`is_well_known`]).
//! - Invalid API keys: every request whose key is malformed, unknown or does not verify.
//! - Login abuse: login-class attempts refused because the *address's* budget is spent. Refusals
//!   because a *username's* budget is spent are not counted, so nobody can get a trader's address
//!   banned by hammering the trader's username from elsewhere.
//!
//! Nothing counts toward a detector, and no detector bans, for:
//! - addresses in the never-ban set;
//! - shared senders (TradingView's webhook addresses by default), whose failures may be anyone's;
//! - requests a browser marks as caused by another site ([`Initiator::OtherSite`]): a page the
//!   trader visits could otherwise get the trader's own address banned with `<img>` tags.
//!
//! A detector's ban refuses only requests that carry no valid credential (see
//! [`crate::pipeline::gate`]); a manual ban refuses everything.

pub mod manual;
pub mod settings;

use std::net::IpAddr;
use std::time::Duration;

use crate::core::clock::UnixMillis;
use crate::core::config::{NeverBan, SharedSenders};
use crate::core::error::AppError;
use crate::core::metrics::{Metric, Metrics};
pub use crate::http::fetch_metadata::Initiator;
use crate::store::bans::{Ban, BanStore, BanTerms};
use crate::store::trackers::TrackerStore;
pub use manual::ManualBan;
pub use settings::{Detector, SecuritySettings, WINDOW_HOURS, is_well_known, short_key_hash};

/// What one detection led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    /// Counted (or exempt); the IP is not banned by this hit.
    Counted(u64),
    /// This hit crossed the threshold and banned the IP.
    Banned(Ban),
}

/// The detectors and bans over the stores they use. Every ban, a detector's or a manual one from
/// the dashboard or the operator CLI, is created by [`Threats::ban`], so every ban is counted as an
/// offence, escalated, measured and logged the same way.
#[derive(Clone, Copy, Debug)]
pub struct Threats<'a> {
    pub bans: &'a BanStore,
    pub trackers: &'a TrackerStore,
    pub metrics: &'a Metrics,
    pub never_ban: &'a NeverBan,
    pub shared_senders: &'a SharedSenders,
}

impl Threats<'_> {
    /// Whether a request from `ip` that `initiator` set off may count toward a detector: the one
    /// rule, for every detector (see the module's documentation).
    pub fn counts(self, ip: IpAddr, initiator: Initiator) -> bool {
        initiator == Initiator::Direct && !self.never_ban.contains(ip) && !self.shared_senders.contains(ip)
    }

    /// Whether failures from `ip` belong to many senders, so that they must never refuse a valid
    /// credential sent from it.
    pub fn is_shared_sender(self, ip: IpAddr) -> bool {
        self.shared_senders.contains(ip)
    }

    /// Counts one hit of `detector` for `ip` and bans the IP when the rolling count exceeds the
    /// threshold and auto-ban is on. Settings are read on every detection, so a change from the
    /// dashboard applies to the very next request.
    pub async fn observe(
        self,
        detector: Detector,
        ip: IpAddr,
        initiator: Initiator,
        evidence: Option<&str>,
        now: UnixMillis,
    ) -> Result<Detection, AppError> {
        if !self.counts(ip, initiator) {
            return Ok(Detection::Counted(0));
        }
        let (settings, count) =
            tokio::try_join!(self.trackers.settings(), self.trackers.count(detector, ip, evidence, now))?;
        if !settings.auto_ban_enabled || count <= u64::from(settings.threshold(detector)) {
            return Ok(Detection::Counted(count));
        }
        let terms = BanTerms {
            reason: detector.reason(count),
            created_by: detector.creator(),
            duration: settings.ban_hours(detector).map(|hours| Duration::from_secs(u64::from(hours) * 3600)),
        };
        match self.impose(ip, &terms, settings.repeat_offender_limit, now).await? {
            Some(ban) => Ok(Detection::Banned(ban)),
            // Another request's hit banned it a moment ago.
            None => Ok(Detection::Counted(count)),
        }
    }

    /// A manual ban, validated once by [`ManualBan`], escalated by the stored settings. Refused
    /// with 400 when the address is already banned.
    pub async fn ban(self, manual: &ManualBan, now: UnixMillis) -> Result<Ban, AppError> {
        let settings = self.trackers.settings().await?;
        let ip = manual.ip();
        self.impose(ip, &manual.terms(), settings.repeat_offender_limit, now)
            .await?
            .ok_or_else(|| AppError::bad_request(format!("{ip} is already banned; unban it first to change the ban")))
    }

    /// Bans `ip` unless it is already banned (or never bannable): the one place a ban is created.
    async fn impose(
        self,
        ip: IpAddr,
        terms: &BanTerms,
        repeat_offender_limit: u32,
        now: UnixMillis,
    ) -> Result<Option<Ban>, AppError> {
        if self.never_ban.contains(ip) {
            return Ok(None);
        }
        let ban = self.bans.impose(ip, terms, repeat_offender_limit, now).await?;
        if let Some(ban) = &ban {
            self.metrics.count(Metric::BansCreated, now);
            tracing::warn!(
                client_ip = %ip,
                created_by = ban.created_by,
                reason = ban.reason,
                offence = ban.ban_count,
                permanent = ban.is_permanent(),
                "IP banned"
            );
        }
        Ok(ban)
    }

    /// Lifts `ip`'s ban and forgets its current detector counts, so its next request is served and
    /// one more stray 404 does not re-ban it. The offender history stays. Returns whether it was
    /// banned.
    pub async fn unban(self, ip: IpAddr) -> Result<bool, AppError> {
        let clears = Detector::ALL.map(|detector| self.trackers.clear(detector, ip));
        let (was_banned, _) = tokio::try_join!(self.bans.remove(ip), futures::future::try_join_all(clears))?;
        if was_banned {
            tracing::warn!(client_ip = %ip, "IP unbanned");
        }
        Ok(was_banned)
    }
}
