//! The login budget: every login-class attempt (password, TOTP code, setup, reset, key reveal) is
//! spent here before its credential is checked, and the [`LoginAttempt`] it grants is what the
//! checks require.

use std::net::IpAddr;

use crate::app::bootstrap::Deps;
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::limits::LimitedAction;
use crate::limits::limiter::within_budgets;
use crate::limits::login::LoginAttempt;
use crate::limits::subject::Subject;
use crate::threats::{Detection, Detector, Initiator};

/// Spends one login-class attempt against the IP and the `account` (a username, an email address
/// or the setup form), per minute and per hour: four counters, one concurrent round trip. Every
/// attempt counts, as in OpenAlgo, so guessing is bounded per account whatever the number of
/// addresses. Admitted, it grants the [`LoginAttempt`] that the credential check requires.
pub async fn spend_login_attempt(
    deps: &Deps,
    ip: IpAddr,
    account: Subject<'_>,
    now: UnixMillis,
) -> Result<LoginAttempt, AppError> {
    let address = Subject::Ip(ip);
    let (minute, hour) = (LimitedAction::LoginMinute, LimitedAction::LoginHour);
    let verdicts = futures::future::try_join_all([
        deps.limits.hit(minute, address, now),
        deps.limits.hit(hour, address, now),
        deps.limits.hit(minute, account, now),
        deps.limits.hit(hour, account, now),
    ])
    .await?;
    // Cross-site form posts were refused before any attempt was spent, so this one came directly.
    // Only the address's own budgets feed the detector: a spent account budget says nothing about
    // this address, and counting it would let anyone get a trader's address banned.
    let address_over = verdicts.iter().take(2).any(|verdict| !verdict.admitted());
    if address_over
        && let Detection::Banned(_) =
            deps.threats().observe(Detector::LoginAbuse, ip, Initiator::Direct, None, now).await?
    {
        return Err(AppError::Banned);
    }
    within_budgets(&verdicts, now)?;
    Ok(LoginAttempt::granted())
}
