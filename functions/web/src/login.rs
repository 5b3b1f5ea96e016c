//! `/auth/login` (password) and `/auth/login/totp` (the second step).
//!
//! An unknown username and a wrong password give the same status, body and Argon2 work. A right
//! password with TOTP enrolled starts a *pending* session that can do nothing but submit a code for
//! five minutes; the code's acceptance replaces it with a full session under a new id.

use maud::html;
use serde_json::json;
use shared::Deps;
use shared::core::error::{AppError, AuthStep};
use shared::identity::accounts::{MAX_USERNAME_BYTES, bounded_login_name};
use shared::limits::subject::Subject;
use shared::pipeline::pages::html::{csrf_field, error_box, notice_box};
use shared::pipeline::pages::{Reply, WebRequest, charge_login_failure, spend_login_attempt};
use shared::store::sessions::Stage;
use shared::store::users::{AuditDetail, AuditKind, AuditOutcome};

use crate::common::{audit, start_session};

fn login_page(request: &WebRequest, status: u16, error: Option<&str>, notice: Option<&str>) -> Reply {
    let body = html! {
        (notice_box(notice))
        (error_box(error))
        form method="post" action=(request.link("/auth/login")) {
            label for="username" { "Username" }
            input id="username" name="username" value=(request.field("username")) autocomplete="username" required;
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            button id="login" type="submit" { "Log in" }
        }
        p { a id="forgot" href=(request.link("/auth/reset-password")) { "Forgot your password?" } }
    };
    request.page(status, "Log in", body)
}

pub async fn form(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    if request.session.is_some() {
        return Ok(Reply::redirect("/dashboard"));
    }
    if !deps.identity.admin_exists().await? {
        return Ok(Reply::redirect("/setup"));
    }
    let notices = [
        ("reset", "Your password has been reset successfully. Log in with the new one."),
        ("changed", "Password changed. Every session has been logged out."),
        ("bye", "Logged out successfully."),
    ];
    let notice = notices.iter().find(|(flag, _)| request.query_param(flag).is_some()).map(|(_, text)| *text);
    Ok(login_page(&request, 200, None, notice))
}

pub async fn submit(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let username = bounded_login_name("username", request.field("username"), MAX_USERNAME_BYTES)?.to_owned();
    let password = request.raw_field("password");
    if username.is_empty() || password.is_empty() {
        return Err(AppError::bad_request("Username and password are required"));
    }
    let (budget, user) =
        tokio::join!(spend_login_attempt(deps, &request, Subject::Username(&username)), deps.identity.user(&username));
    let attempt = match budget {
        Ok(attempt) => attempt,
        Err(error) => {
            audit(deps, &request, AuditKind::Login, &username, AuditOutcome::Failed, AuditDetail::RateLimited).await?;
            return Err(error);
        }
    };
    let user = user?;
    if !deps.accounts().verify_password(user.as_ref(), password, attempt).await? {
        charge_login_failure(deps, &request, Subject::Username(&username)).await?;
        audit(deps, &request, AuditKind::Login, &username, AuditOutcome::Failed, AuditDetail::InvalidCredentials)
            .await?;
        return request.refuse(AppError::InvalidCredentials, |status, message| {
            Ok(login_page(&request, status, Some(message), None))
        });
    }
    let Some(user) = user else { return Err(AppError::InvalidCredentials) };
    if user.totp.is_some() {
        let (cookie, _) = start_session(deps, &request, &user.username, Stage::PendingTotp, None).await?;
        audit(
            deps,
            &request,
            AuditKind::Login,
            &user.username,
            AuditOutcome::Success,
            AuditDetail::PasswordOkTotpRequired,
        )
        .await?;
        let reply = if request.wants_json {
            Reply::json(
                json!({ "status": "totp_required", "message": "Enter the code from your authenticator app.", "redirect": request.link("/auth/login/totp") }),
            )
        } else {
            Reply::redirect("/auth/login/totp")
        };
        return Ok(reply.with_cookie(cookie));
    }
    let (cookie, _) = start_session(deps, &request, &user.username, Stage::Full, None).await?;
    deps.accounts().clear_failures(&user.username).await?;
    audit(deps, &request, AuditKind::Login, &user.username, AuditOutcome::Success, AuditDetail::Password).await?;
    Ok(trust_device(deps, &request, &user.username, logged_in(&request).with_cookie(cookie)))
}

/// A full login's answer, with a fresh device cookie for the account: from now on this browser's
/// attempts at it are held to the cookie's own budget, not the account's (`identity::devices`).
fn trust_device(deps: &Deps, request: &WebRequest, username: &str, reply: Reply) -> Reply {
    match shared::identity::devices::issue(&deps.device_cookies, username, request.now) {
        Some(cookie) => reply.with_cookie(cookie),
        None => reply,
    }
}

fn logged_in(request: &WebRequest) -> Reply {
    if request.wants_json {
        Reply::json(json!({ "message": "Login successful", "redirect": request.link("/dashboard") }))
    } else {
        Reply::redirect("/dashboard")
    }
}

fn totp_page(request: &WebRequest, status: u16, error: Option<&str>) -> Result<Reply, AppError> {
    let body = html! {
        p { "Enter the 6-digit code from your authenticator app." }
        (error_box(error))
        form method="post" action=(request.link("/auth/login/totp")) {
            (csrf_field(&request.session()?.csrf))
            label for="totp_code" { "Code" }
            input id="totp_code" name="totp_code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6"
                autocomplete="one-time-code" required;
            button id="verify" type="submit" { "Verify" }
        }
    };
    Ok(request.page(status, "Two-factor authentication", body))
}

pub async fn totp_form(request: WebRequest) -> Result<Reply, AppError> {
    totp_page(&request, 200, None)
}

pub async fn totp_submit(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let pending = request.session()?.clone();
    let code = request.field("totp_code");
    if code.is_empty() {
        return Err(AppError::bad_request("TOTP code is required."));
    }
    let (budget, user) = tokio::join!(
        spend_login_attempt(deps, &request, Subject::Username(&pending.user)),
        deps.identity.user(&pending.user)
    );
    let attempt = match budget {
        Ok(attempt) => attempt,
        Err(error) => {
            audit(deps, &request, AuditKind::Login, &pending.user, AuditOutcome::Failed, AuditDetail::RateLimited)
                .await?;
            return Err(error);
        }
    };
    let user = user?.ok_or(AppError::SessionExpired)?;
    if !deps.accounts().accept_totp(&user, code, request.now, attempt).await? {
        charge_login_failure(deps, &request, Subject::Username(&user.username)).await?;
        audit(deps, &request, AuditKind::Login, &user.username, AuditOutcome::Failed, AuditDetail::InvalidTotp).await?;
        return request.refuse(AppError::AuthStep(AuthStep::InvalidTotp), |status, message| {
            totp_page(&request, status, Some(message))
        });
    }
    let (cookie, _) = start_session(deps, &request, &user.username, Stage::Full, Some(&pending)).await?;
    // A full login is the owner's: the failure count, and any lock on the TOTP reset, start again.
    deps.accounts().clear_failures(&user.username).await?;
    audit(deps, &request, AuditKind::Login, &user.username, AuditOutcome::Success, AuditDetail::Totp).await?;
    Ok(trust_device(deps, &request, &user.username, logged_in(&request).with_cookie(cookie)))
}

/// OpenAlgo's token endpoint for script-driven callers: this session's CSRF token.
pub async fn csrf_token(request: WebRequest) -> Result<Reply, AppError> {
    let session = request.session()?;
    Ok(Reply::json(json!({ "csrf_token": session.csrf.expose() })))
}
