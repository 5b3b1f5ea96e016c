//! The security gate: ban record, credential record and rate-limit counters, fetched concurrently in
//! a single DynamoDB round trip before the body is acted on.

use std::net::IpAddr;

use crate::pipeline::api::Route;
use crate::app::bootstrap::Deps;
use crate::core::clock::UnixMillis;
use crate::core::config::StoreOutage;
use crate::crypto::api_key::ApiKey;
use crate::core::error::AppError;
use crate::limits::LimitedAction;
use crate::core::metrics::Metric;
use crate::store::bans::Ban;
use crate::store::identity::ApiKeyRecord;
use crate::store::rate_limit::{Verdict, within_budgets};

#[derive(Debug)]
pub struct GateOutcome {
    pub now: UnixMillis,
    pub ban: Option<Ban>,
    pub ip_limit: Verdict,
    pub key_limit: Option<Verdict>,
    pub key_record: Option<ApiKeyRecord>,
}

impl GateOutcome {
    /// Ban first (403 before anything about the request is considered), then the rate limits.
    pub fn enforce(&self) -> Result<(), AppError> {
        if self.ban.is_some() {
            return Err(AppError::Banned);
        }
        within_budgets([Some(&self.ip_limit), self.key_limit.as_ref()].into_iter().flatten(), self.now)
    }
}

/// Runs the ban read, the key read and the rate-limit counters at once: one round trip.
///
/// A request is charged to exactly one counter, so admission under contention is exact:
/// - with a well-formed key, to the key's counter (keyed by a fingerprint of the *whole* key, so
///   someone who knows only a key id cannot spend its owner's budget), while the IP's counter is
///   only read: an IP already over its budget of failures is refused;
/// - without one, to the IP's counter.
///
/// A key that then fails to verify is charged to the IP as well ([`charge_failure`]), so spraying
/// made-up keys from one address is throttled per IP.
pub async fn pass(deps: &Deps, ip: IpAddr, route: Route, key: Option<&ApiKey>) -> Result<GateOutcome, AppError> {
    let action = route.action;
    let now = deps.clock.now();
    let limit = deps.config.rate_limit(action);
    let serve_reads = route.reads_only && deps.config.store_outage == StoreOutage::ServeReads;
    // Under `STORE_OUTAGE_READS=serve`, a read-only route whose security lookups fail goes on
    // unbanned and unmetered; everything else fails closed.
    let or_open = |result: Result<Verdict, AppError>| match result {
        Err(AppError::Unavailable(error)) if serve_reads => {
            tracing::warn!(error = %format!("{error:#}"), route = route.name, "security table unavailable; serving a read unmetered");
            deps.metrics.count(Metric::StoreUnavailable, now);
            Ok(Verdict { count: 0, limit: limit.limit, window_ends: now })
        }
        other => other,
    };
    let ip_subject = ip_subject(ip);

    let ban = async {
        match deps.bans.active(ip, now).await {
            Err(AppError::Unavailable(_)) if serve_reads => Ok(None),
            other => other,
        }
    };
    let ip_limit = async {
        or_open(match key {
            Some(_) => deps.limits.peek(action, &ip_subject, limit, now).await,
            None => deps.limits.hit(action, &ip_subject, limit, now).await,
        })
    };
    let key_record = async {
        match key {
            Some(key) => deps.identity.api_key(key.id()).await,
            None => Ok(None),
        }
    };
    let key_limit = async {
        match key {
            Some(key) => {
                let subject = format!("key#{}", hex::encode(&key.fingerprint()[..16]));
                or_open(deps.limits.hit(action, &subject, limit, now).await).map(Some)
            }
            None => Ok(None),
        }
    };
    let (ban, ip_limit, key_record, key_limit) = tokio::try_join!(ban, ip_limit, key_record, key_limit)?;
    Ok(GateOutcome { now, ban, ip_limit, key_limit, key_record })
}

pub(crate) fn ip_subject(ip: IpAddr) -> String {
    format!("ip#{ip}")
}

/// Charges a failed credential to the client's IP. Only the failing path pays this extra write.
pub async fn charge_failure(deps: &Deps, ip: IpAddr, action: LimitedAction, now: UnixMillis) -> Result<(), AppError> {
    let limit = deps.config.rate_limit(action);
    deps.limits.hit(action, &ip_subject(ip), limit, now).await.map(|_| ())
}
