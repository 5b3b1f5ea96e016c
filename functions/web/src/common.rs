//! What the page groups share: session creation, TOTP checks, the audit, IST display.

use shared::Deps;
use shared::core::clock::UnixMillis;
use shared::core::error::AppError;
use shared::core::ist::IstTime;
use shared::core::metrics::Metric;
use shared::identity::accounts::RESET_LOCK_FAILURES;
use shared::identity::sessions::{CsrfToken, PENDING_TOTP, SessionId};
use shared::pipeline::pages::WebRequest;
use shared::store::sessions::{SessionRecord, Stage};
use shared::store::users::{AuditDetail, AuditEvent, AuditKind, AuditOutcome};

/// `2026-11-22 09:15:02 IST`.
pub fn ist(at: UnixMillis) -> String {
    format!("{} IST", IstTime::at(at).timestamp())
}

/// The `Kind` a failure is counted under in `FailedLogins`: the audit kind, except that a login's
/// TOTP step is `totp`.
fn failure_kind(kind: AuditKind, detail: &AuditDetail) -> &'static str {
    match (kind, detail) {
        (AuditKind::Login, AuditDetail::InvalidTotp) => "totp",
        (kind, _) => kind.as_str(),
    }
}

/// Writes one audit record of this request. Every failure, of any kind, is also counted in the
/// `FailedLogins` metric (its kind named), and a failed credential check (anything but a refusal
/// for a spent budget, which checked nothing) counts against the account's lockout counter; the
/// failure that reaches the threshold locks the TOTP-only reset, raises `ResetLocked` and mails
/// the owner.
pub async fn audit(
    deps: &Deps,
    request: &WebRequest,
    kind: AuditKind,
    username: &str,
    outcome: AuditOutcome,
    detail: AuditDetail,
) -> Result<(), AppError> {
    if outcome == AuditOutcome::Failed {
        deps.metrics.count_kind(Metric::FailedLogins, failure_kind(kind, &detail), request.now);
        if detail != AuditDetail::RateLimited && deps.accounts().count_failure(username).await? {
            reset_locked(deps, request, username).await?;
        }
    }
    write_audit(deps, request, kind, username, outcome, &detail).await
}

async fn write_audit(
    deps: &Deps,
    request: &WebRequest,
    kind: AuditKind,
    username: &str,
    outcome: AuditOutcome,
    detail: &AuditDetail,
) -> Result<(), AppError> {
    deps.identity
        .audit(&AuditEvent {
            kind,
            at: request.now,
            username: username.chars().take(64).collect(),
            ip: request.ip.to_string(),
            user_agent: request.user_agent.clone(),
            outcome,
            detail: detail.to_stored(),
        })
        .await
}

/// The account just reached the failure threshold: the alarm's metric, an audit record the
/// dashboard shows, and, when SMTP is configured, a mail to the address the account has stored.
/// A mail that cannot be sent (or, in the portal, which holds no SMTP key, read) is logged; the
/// lock holds either way.
async fn reset_locked(deps: &Deps, request: &WebRequest, username: &str) -> Result<(), AppError> {
    deps.metrics.count(Metric::ResetLocked, request.now);
    tracing::warn!(username, "account reached the failure threshold: reset by TOTP code is locked");
    write_audit(deps, request, AuditKind::Reset, username, AuditOutcome::Failed, &AuditDetail::ResetLocked).await?;
    let smtp = match deps.mail_settings().settings().await {
        Ok(smtp) => smtp,
        // The portal holds no SMTP key (least privilege): a lock reached there is locked, alarmed
        // and audited all the same, and only its mail is not sent.
        Err(error) => {
            tracing::warn!(error = %error, "lockout email not sent: this function cannot read the mail settings");
            None
        }
    };
    let (Some(user), Some(smtp)) = (deps.identity.user(username).await?, smtp) else {
        return Ok(());
    };
    if user.email.is_empty() {
        return Ok(());
    }
    let text = format!(
        "There have been {RESET_LOCK_FAILURES} failed attempts in a row to log in to, reset or unlock the Kavach account {username}; the last came from {}.\n\nResetting its password with an authenticator code alone is now locked. It unlocks when you next log in with your password and code, or when the operator runs `kavach user unlock {username}`.\n\nIf these attempts were not yours, someone may know your username or password: log in and change your password.\n",
        request.ip
    );
    if let Err(error) =
        shared::identity::mail::send(&smtp, &user.email, "Kavach: failed attempts on your account", text).await
    {
        tracing::error!(error = %error, "lockout email not sent");
    }
    Ok(())
}

/// Starts a session for `user` at `stage`, replacing `replaces` if given (the id is always new:
/// rotation at login, at TOTP step-up and at re-authentication). Returns the `Set-Cookie` value.
pub async fn start_session(
    deps: &Deps,
    request: &WebRequest,
    user: &str,
    stage: Stage,
    replaces: Option<&SessionRecord>,
) -> Result<(String, SessionRecord), AppError> {
    let id = SessionId::generate();
    let now = request.now;
    let daily = deps.config.session_expiry.next_after(now);
    let expires_at = match stage {
        Stage::PendingTotp => daily.min(now.plus(PENDING_TOTP)),
        Stage::Full => daily,
    };
    let record = SessionRecord {
        hash: id.hash(),
        user: user.to_owned(),
        stage,
        // A step-up keeps the login time: the daily boundary counts from the original login.
        created_at: replaces.filter(|old| old.stage == Stage::Full).map_or(now, |old| old.created_at),
        last_seen: now,
        ip: request.ip.to_string(),
        user_agent: request.user_agent.clone(),
        csrf: CsrfToken::generate(),
        reauth_at: Some(now),
        expires_at,
    };
    deps.identity.start_session(&record, replaces.map(|old| old.hash.as_str())).await?;
    Ok((id.set_cookie(now, expires_at), record))
}
