//! What the page groups share: session creation, TOTP checks, the audit, IST display.

use shared::Deps;
use shared::core::clock::UnixMillis;
use shared::core::error::AppError;
use shared::core::ist::IstTime;
use shared::identity::sessions::{CsrfToken, PENDING_TOTP, SessionId};
use shared::pipeline::pages::WebRequest;
use shared::store::sessions::{SessionRecord, Stage};
use shared::store::users::{AuditDetail, AuditEvent, AuditKind, AuditOutcome};

/// `2026-11-22 09:15:02 IST`.
pub fn ist(at: UnixMillis) -> String {
    format!("{} IST", IstTime::at(at).timestamp())
}

/// Writes one audit record of this request; a failed login step is also counted as a metric.
pub async fn audit(
    deps: &Deps,
    request: &WebRequest,
    kind: AuditKind,
    username: &str,
    outcome: AuditOutcome,
    detail: AuditDetail,
) -> Result<(), AppError> {
    if kind == AuditKind::Login && outcome == AuditOutcome::Failed {
        deps.metrics.count(shared::core::metrics::Metric::FailedLogins, request.now);
    }
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
