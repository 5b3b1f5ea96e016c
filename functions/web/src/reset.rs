//! Password reset, by TOTP or by email, with server-side single-use tokens (W13).
//!
//! Either way ends in a reset token: 256 random bits, of which only the SHA-256 is stored, for 15
//! minutes, used up by one conditional delete. The new password is only ever *posted*: the token
//! travels in a hidden form field, and a mailed link's GET only shows the form. Answers are the same
//! whether or not the account exists (W15), and links are built from `PUBLIC_BASE_URL`, never from
//! the request's `Host`.

use maud::html;
use shared::Deps;
use shared::core::error::AppError;
use shared::core::pending::Deferred;
use shared::crypto::one_time::OneTimeToken;
use shared::identity::accounts::{MAX_EMAIL_BYTES, MAX_USERNAME_BYTES, bounded_login_name, check_password_strength};
use shared::identity::reset_mail::{RESET_TOKEN_TTL, ResetMailRequest};
use shared::limits::subject::Subject;
use shared::pipeline::pages::html::{error_box, notice_box};
use shared::pipeline::pages::{Reply, WebRequest, charge_login_failure, spend_login_attempt};
use shared::store::users::{AuditDetail, AuditKind, AuditOutcome};

use crate::common::audit;

const INVALID_TOKEN: &str = "Invalid or expired reset token.";
const EMAIL_SENT: &str = "If an account with that email exists, a reset link has been sent to it.";

fn start_page(request: &WebRequest, status: u16, error: Option<&str>, notice: Option<&str>) -> Reply {
    let body = html! {
        (notice_box(notice))
        (error_box(error))
        h2 { "With your authenticator app" }
        form method="post" action=(request.link("/auth/reset-password")) {
            input type="hidden" name="method" value="totp";
            label for="username" { "Username" }
            input id="username" name="username" autocomplete="username" required;
            label for="totp_code" { "Code" }
            input id="totp_code" name="totp_code" inputmode="numeric" maxlength="6" autocomplete="one-time-code" required;
            button id="reset-totp" type="submit" { "Continue" }
        }
        h2 { "By email" }
        form method="post" action=(request.link("/auth/reset-password")) {
            input type="hidden" name="method" value="email";
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="email" required;
            button id="reset-email" type="submit" { "Send reset link" }
        }
        p { a href=(request.link("/auth/login")) { "Back to login" } }
    };
    request.page(status, "Reset password", body)
}

fn password_page(request: &WebRequest, token: &OneTimeToken, status: u16, error: Option<&str>) -> Reply {
    let body = html! {
        (error_box(error))
        form method="post" action=(request.link("/auth/reset-password/confirm")) {
            input type="hidden" name="token" value=(token.expose());
            label for="password" { "New password" }
            input id="password" name="password" type="password" autocomplete="new-password" required;
            label for="confirm_password" { "Confirm new password" }
            input id="confirm_password" name="confirm_password" type="password" autocomplete="new-password" required;
            button id="set-password" type="submit" { "Set new password" }
        }
    };
    request.page(status, "Choose a new password", body)
}

pub async fn form(request: WebRequest) -> Result<Reply, AppError> {
    Ok(start_page(&request, 200, None, None))
}

async fn issue_token(deps: &Deps, request: &WebRequest, username: &str) -> Result<OneTimeToken, AppError> {
    let token = OneTimeToken::generate();
    deps.identity.put_reset_token(&token.hash(), username, request.now, request.now.plus(RESET_TOKEN_TTL)).await?;
    Ok(token)
}

pub async fn start(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    match request.field("method") {
        "totp" => by_totp(deps, &request).await,
        "email" => by_email(deps, &request).await,
        _ => Err(AppError::bad_request("Invalid step")),
    }
}

async fn by_totp(deps: &Deps, request: &WebRequest) -> Result<Reply, AppError> {
    let username = bounded_login_name("username", request.field("username"), MAX_USERNAME_BYTES)?;
    let (budget, user) =
        tokio::join!(spend_login_attempt(deps, request, Subject::Username(username)), deps.identity.user(username));
    let attempt = budget?;
    // A locked account answers as a wrong code does (W15): its owner hears of the lock by mail and
    // on the dashboard, a guesser learns nothing.
    let accepted = match user? {
        Some(user) => {
            deps.accounts().accept_totp_for_reset(&user, request.field("totp_code"), request.now, attempt).await?
        }
        None => false,
    };
    let (outcome, detail) = if accepted {
        (AuditOutcome::Success, AuditDetail::Totp)
    } else {
        (AuditOutcome::Failed, AuditDetail::InvalidTotp)
    };
    if !accepted {
        charge_login_failure(deps, request, Subject::Username(username)).await?;
    }
    audit(deps, request, AuditKind::Reset, username, outcome, detail).await?;
    if !accepted {
        return request.refuse(AppError::bad_request("Invalid TOTP code. Please try again."), |status, message| {
            Ok(start_page(request, status, Some(message), None))
        });
    }
    let token = issue_token(deps, request, username).await?;
    if request.wants_json {
        return Ok(Reply::json(serde_json::json!({ "message": "TOTP verified", "token": token.expose() })));
    }
    Ok(password_page(request, &token, 200, None))
}

/// Reset by email answers in the same time whatever the address: this path does the same work for
/// every request and never looks the address up. It spends the attempt, checks that mail is set up,
/// and queues the request; whether the address is an account's, the mail (to the stored address,
/// at most one per user per 15 minutes) and its audit happen after the response has gone
/// (`shared::identity::reset_mail`).
async fn by_email(deps: &Deps, request: &WebRequest) -> Result<Reply, AppError> {
    let email = bounded_login_name("email", request.field("email"), MAX_EMAIL_BYTES)?;
    // No credential is checked here, but each request may send a mail: it costs an attempt all the
    // same, against the address asked for.
    let _mail_attempt = spend_login_attempt(deps, request, Subject::Email(email)).await?;
    charge_login_failure(deps, request, Subject::Email(email)).await?;
    if deps.config.public_base_url.is_none() || deps.mail_settings().settings().await?.is_none() {
        return Err(AppError::bad_request("Email reset is not available. Please use TOTP authentication."));
    }
    let queued = ResetMailRequest {
        email: email.to_owned(),
        ip: request.ip.to_string(),
        user_agent: request.user_agent.clone(),
        at: request.now,
        base: request.base.clone(),
    };
    deps.deferred.push(Deferred::new(move |deps: &Deps| {
        Box::pin(async move {
            if let Err(error) = deps.reset_mailer().deliver(&queued).await {
                tracing::warn!(error = %error, "reset mail request not handled");
            }
        })
    }));
    if request.wants_json {
        return Ok(Reply::json(serde_json::json!({ "message": EMAIL_SENT })));
    }
    Ok(start_page(request, 200, None, Some(EMAIL_SENT)))
}

/// The mailed link: shows the form if the token is live, without using it up.
pub async fn confirm_form(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let token = OneTimeToken::presented(&request.query_param("token").unwrap_or_default());
    if token.is_empty() || deps.identity.peek_reset_token(&token.hash(), request.now).await?.is_none() {
        return Err(AppError::bad_request(INVALID_TOKEN));
    }
    Ok(password_page(&request, &token, 200, None))
}

pub async fn confirm(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let token = OneTimeToken::presented(request.field("token"));
    let password = request.raw_field("password");
    // A weak or mistyped password must not use the token up: check it first.
    let refusal = check_password_strength(password)
        .err()
        .map(|error| error.public_message())
        .or_else(|| (request.raw_field("confirm_password") != password).then(|| "Passwords do not match".to_owned()));
    if let Some(message) = refusal {
        return request.refuse(AppError::bad_request(message), |status, message| {
            Ok(password_page(&request, &token, status, Some(message)))
        });
    }
    let Some(username) = deps.identity.take_reset_token(&token.hash(), request.now).await? else {
        return Err(AppError::bad_request(INVALID_TOKEN));
    };
    let phc = deps.accounts().hash_secret(password).await?;
    deps.identity.set_password(&username, &phc, request.now).await?;
    deps.identity.end_all_sessions(&username).await?;
    audit(deps, &request, AuditKind::Reset, &username, AuditOutcome::Success, AuditDetail::PasswordSet).await?;
    Ok(request.done("Your password has been reset successfully.", "/auth/login?reset"))
}
