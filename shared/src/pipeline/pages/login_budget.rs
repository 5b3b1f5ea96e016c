//! The login budget: every login-class attempt (password, TOTP code, setup, reset, key reveal) is
//! spent here before its credential is checked, and the [`LoginAttempt`] it grants is what the
//! checks require. A failed check is then charged to the account with [`charge_login_failure`].

use crate::app::bootstrap::Deps;
use crate::core::error::AppError;
use crate::identity::devices;
use crate::limits::LimitedAction;
use crate::limits::limiter::within_budgets;
use crate::limits::login::LoginAttempt;
use crate::limits::subject::Subject;
use crate::pipeline::pages::request::WebRequest;
use crate::threats::{Detection, Detector, Initiator};

/// Whose budget an attempt at `account` is held to: a browser presenting a valid device cookie
/// for that username has its own (the cookie's nonce); any other caller shares the account's.
fn account_budget<'a>(deps: &Deps, request: &'a WebRequest, account: Subject<'a>) -> Subject<'a> {
    match account {
        Subject::Username(name) => {
            devices::trusted_nonce(&deps.device_cookies, name, &request.device_cookies, request.now)
                .map_or(account, Subject::Device)
        }
        other => other,
    }
}

/// Admits one login-class attempt: it spends one of the address's attempts, per minute and per
/// hour, and needs the account's budget (a username, an email address or the setup form; a trusted
/// browser's own) not to be spent by earlier *failures*, which this only reads: four counters, one
/// concurrent round trip. A success never costs the account anything, so someone who fails at an
/// account from elsewhere cannot make its owner's successes count against it, and the owner's
/// browser with a device cookie is not held to the account's budget at all. Admitted, it grants
/// the [`LoginAttempt`] that the credential check requires.
pub async fn spend_login_attempt(
    deps: &Deps,
    request: &WebRequest,
    account: Subject<'_>,
) -> Result<LoginAttempt, AppError> {
    let (ip, now) = (request.ip, request.now);
    let address = Subject::Ip(ip);
    let account = account_budget(deps, request, account);
    let (minute, hour) = (LimitedAction::LoginMinute, LimitedAction::LoginHour);
    let verdicts = tokio::try_join!(
        deps.limits.hit(minute, address, now),
        deps.limits.hit(hour, address, now),
        deps.limits.peek(minute, account, now),
        deps.limits.peek(hour, account, now),
    )?;
    let verdicts = [verdicts.0, verdicts.1, verdicts.2, verdicts.3];
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

/// Charges a failed check against `account` (or the trusted browser's own budget, as
/// [`spend_login_attempt`] chose it), per minute and per hour. Concurrent attempts all read the
/// budget before any is charged, so a burst can pass it by as many as run at once; each of them
/// still spent its address's budget.
pub async fn charge_login_failure(deps: &Deps, request: &WebRequest, account: Subject<'_>) -> Result<(), AppError> {
    let account = account_budget(deps, request, account);
    let now = request.now;
    tokio::try_join!(
        deps.limits.hit(LimitedAction::LoginMinute, account, now),
        deps.limits.hit(LimitedAction::LoginHour, account, now),
    )?;
    Ok(())
}
