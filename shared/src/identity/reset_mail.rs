//! Password reset by email, after the response. The page answers every request the same way,
//! having only queued it: whether the address belongs to an account is looked up here, after the
//! response has gone (on Lambda by the internal extension, `crate::pipeline::lambda`; in the local
//! gateway by a task), so neither the answer nor its timing can say which addresses are registered.
//!
//! A known address gets at most one mail per [`MAIL_INTERVAL`], claimed with a conditional write
//! on the user's item, and the mail goes to the address the account has stored, not the one typed.

use std::time::Duration;

use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::crypto::one_time::OneTimeToken;
use crate::http::base_path::BasePath;
use crate::identity::mail::MailSettings;
use crate::store::identity::IdentityStore;
use crate::store::users::{AuditDetail, AuditEvent, AuditKind, AuditOutcome};

/// How long a reset token lives, whichever way it was issued.
pub const RESET_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// At most one reset mail per user in this long, however many requests name its address.
pub const MAIL_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// One request for a reset link, as the page received it.
#[derive(Clone, Debug)]
pub struct ResetMailRequest {
    /// The address as typed; only ever used to look the account up.
    pub email: String,
    pub ip: String,
    pub user_agent: String,
    pub at: UnixMillis,
    /// The base path the reset page was served under, which the mailed link must carry too.
    pub base: BasePath,
}

/// What delivering a reset mail uses: the identity table, the SMTP settings and the origin links
/// are built from (`PUBLIC_BASE_URL`, never a request's `Host`).
#[derive(Clone, Copy, Debug)]
pub struct ResetMailer<'a> {
    pub identity: &'a IdentityStore,
    pub mail: MailSettings<'a>,
    pub base_url: Option<&'a str>,
}

impl ResetMailer<'_> {
    /// Handles one queued request: nothing for an unknown address; for a known one, unless a mail
    /// went to the account within [`MAIL_INTERVAL`], a fresh token and a mail to the stored address.
    /// Either outcome for a known address is audited (`email_sent`, `email_withheld`).
    pub async fn deliver(self, request: &ResetMailRequest) -> Result<(), AppError> {
        let Some(username) = self.identity.user_by_email(&request.email).await? else { return Ok(()) };
        let Some(user) = self.identity.user(&username).await? else { return Ok(()) };
        let (Some(base_url), Some(smtp)) = (self.base_url, self.mail.settings().await?) else { return Ok(()) };
        let audit = |detail: AuditDetail| AuditEvent {
            kind: AuditKind::Reset,
            at: request.at,
            username: username.clone(),
            ip: request.ip.clone(),
            user_agent: request.user_agent.clone(),
            outcome: AuditOutcome::Success,
            detail: detail.to_stored(),
        };
        if !self.identity.claim_reset_mail(&username, request.at, MAIL_INTERVAL).await? {
            tracing::info!(username, "reset mail withheld: one was sent within 15 minutes");
            return self.identity.audit(&audit(AuditDetail::EmailWithheld)).await;
        }
        let token = OneTimeToken::generate();
        self.identity.put_reset_token(&token.hash(), &username, request.at, request.at.plus(RESET_TOKEN_TTL)).await?;
        let confirm = format!("/auth/reset-password/confirm?token={}", token.expose());
        let link = format!("{base_url}{}", request.base.link(&confirm));
        let text = format!(
            "Someone asked to reset the Kavach password of {username}.\n\nTo choose a new password, open this link within 15 minutes:\n{link}\n\nIf it was not you, ignore this message: your password stays as it is.\n"
        );
        if let Err(error) = super::mail::send(&smtp, &user.email, "Reset your Kavach password", text).await {
            tracing::error!(error = %error, "reset email not sent");
        }
        self.identity.audit(&audit(AuditDetail::EmailSent)).await
    }
}
