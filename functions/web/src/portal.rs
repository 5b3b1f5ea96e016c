//! The logged-in pages: dashboard, API key, sessions, logout, password change. The principal is
//! always the session's user, never a form field (W9).

use maud::html;
use serde_json::json;
use shared::Deps;
use shared::core::error::{AppError, AuthStep};
use shared::identity::accounts::check_password_strength;
use shared::identity::auth::parse_allowlist;
use shared::identity::sessions::clear_cookie;
use shared::identity::webhooks::WebhookSummary;
use shared::limits::subject::Subject;
use shared::pipeline::pages::html::{csrf_field, error_box};
use shared::pipeline::pages::{Reply, WebRequest, charge_login_failure, spend_login_attempt};
use shared::store::sessions::{SessionRecord, Stage};
use shared::store::users::{AuditDetail, AuditKind, AuditOutcome, UserRecord};

use crate::common::{audit, ist, start_session};

async fn current_user(deps: &Deps, session: &SessionRecord) -> Result<UserRecord, AppError> {
    deps.identity.user(&session.user).await?.ok_or(AppError::SessionExpired)
}

pub async fn dashboard(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let session = request.session()?;
    let user = current_user(deps, session).await?;
    let expires = ist(session.expires_at);
    let body = html! {
        p {
            "Logged in as " strong id="username" { (user.username) } " (" (user.role.as_str()) "). Orders go to the "
            strong { "sandbox" } " broker."
        }
        p { "This session ends at " span id="session-expiry" { (expires) } ", the daily boundary." }
        h2 { "Change password" }
        form method="post" action=(request.link("/auth/change-password")) {
            (csrf_field(&session.csrf))
            label for="current_password" { "Current password" }
            input id="current_password" name="current_password" type="password" autocomplete="current-password" required;
            label for="new_password" { "New password" }
            input id="new_password" name="new_password" type="password" autocomplete="new-password" required;
            label for="confirm_password" { "Confirm new password" }
            input id="confirm_password" name="confirm_password" type="password" autocomplete="new-password" required;
            button id="change-password" type="submit" { "Change password and log out everywhere" }
        }
    };
    Ok(request.page(200, "Dashboard", body))
}

/// The API-key page; `shown` is a key to display this once (just generated or revealed).
/// The account as the key page shows it: the user, and its webhooks with their state.
struct KeyAccount {
    user: UserRecord,
    webhooks: Vec<WebhookSummary>,
}

async fn key_account(deps: &Deps, session: &SessionRecord) -> Result<KeyAccount, AppError> {
    let user = current_user(deps, session).await?;
    let webhooks = deps.webhooks.list(&user).await?;
    Ok(KeyAccount { user, webhooks })
}

fn key_page(
    request: &WebRequest,
    account: &KeyAccount,
    shown: Option<(&str, &str)>,
    error: Option<&str>,
    status: u16,
) -> Result<Reply, AppError> {
    let user = &account.user;
    let session = request.session()?;
    let csrf = csrf_field(&session.csrf);
    let key_id = user.api_key_id.as_deref().map_or_else(|| "none".to_owned(), |id| format!("kav_{id}_…"));
    let reauth_fresh = session.reauthenticated_recently(request.now);
    let body = html! {
        (error_box(error))
        @if let Some((label, key)) = shown {
            p class="notice" id="key-notice" { (label) }
            p class="secret" id="api-key" { (key) }
        }
        p { "Current key: " code id="key-id" { (key_id) } }
        form method="post" action=(request.link("/apikey/reveal")) {
            (csrf)
            @if !reauth_fresh {
                (step_up_fields("reveal", "To see the key again, confirm it is you"))
            }
            button id="reveal" type="submit" { "Show my API key" }
        }
        h2 { "Regenerate" }
        p { "A new key replaces the current one at once: the old key is refused on its next use." }
        form method="post" action=(request.link("/apikey")) {
            (csrf)
            @if !reauth_fresh {
                (step_up_fields("regenerate", "Confirm it is you"))
            }
            button id="regenerate" type="submit" { "Generate a new API key" }
        }
        h2 { "IP allowlist" }
        p { "SEBI's static-IP rule: when set, the key works only from these addresses or ranges. Empty allows any address." }
        form method="post" action=(request.link("/apikey/allowlist")) {
            (csrf)
            label for="allowlist" { "Addresses or CIDR ranges, one per line" }
            textarea id="allowlist" name="allowlist" rows="3" { (user.allow.join("\n")) }
            @if !reauth_fresh {
                (step_up_fields("allowlist", "Confirm it is you"))
            }
            button id="save-allowlist" type="submit" { "Save allowlist" }
        }
        h2 { "Strategy webhooks" }
        p {
            "Regenerating the key suspends every webhook: a suspended one is refused until you re-bind it to "
            "the new key (its URL stays the same). Revoking one refuses its URL for good."
        }
        @if account.webhooks.is_empty() {
            p id="no-webhooks" { "No webhooks. The operator creates them with " code { "kavach webhook create" } "." }
        } @else {
            table id="webhooks" {
                tr { th { "Strategy" } th { "Handle" } th { "State" } th {} }
                @for webhook in &account.webhooks {
                    tr id=(format!("webhook-{}", webhook.handle)) {
                        td { (webhook.strategy) }
                        td { code { (webhook.handle) } }
                        td id=(format!("state-{}", webhook.handle)) {
                            @if webhook.suspended_at.is_some() { "suspended" } @else { "active" }
                        }
                        td {
                            @if webhook.suspended_at.is_some() {
                                form method="post" action=(request.link("/apikey/webhooks/rebind")) {
                                    (csrf)
                                    input type="hidden" name="handle" value=(webhook.handle);
                                    @if !reauth_fresh {
                                        (step_up_fields(&format!("rebind-{}", webhook.handle), "Confirm it is you"))
                                    }
                                    button id=(format!("rebind-{}", webhook.handle)) type="submit" { "Re-bind to the current key" }
                                }
                            }
                            form method="post" action=(request.link("/apikey/webhooks/revoke")) {
                                (csrf)
                                input type="hidden" name="handle" value=(webhook.handle);
                                button id=(format!("revoke-{}", webhook.handle)) type="submit" { "Revoke" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(request.page(status, "API key", body))
}

/// The prompt and the password and code inputs of a form that needs a recent re-authentication;
/// `form` keeps the ids of the three forms on the page apart.
fn step_up_fields(form: &str, prompt: &str) -> maud::Markup {
    html! {
        p { (prompt) " with your password or a code from your authenticator app." }
        label for=(format!("{form}_password")) { "Password" }
        input id=(format!("{form}_password")) name="password" type="password" autocomplete="current-password";
        label for=(format!("{form}_totp")) { "or code" }
        input id=(format!("{form}_totp")) name="totp_code" inputmode="numeric" maxlength="6" autocomplete="one-time-code";
    }
}

/// A passed step-up: the rotated session (its cookie and record) when re-authentication happened
/// now, nothing when the session's was recent enough.
struct StepUp(Option<(String, SessionRecord)>);

impl StepUp {
    /// `request` as the browser holds it next, so a page rendered for it carries the rotated
    /// session's CSRF token.
    fn next_request(&self, request: WebRequest) -> WebRequest {
        let session = self.0.as_ref().map(|(_, record)| record.clone()).or(request.session.clone());
        WebRequest { session, ..request }
    }

    /// `reply`, installing the rotated session's cookie when there is one.
    fn answer(self, reply: Reply) -> Reply {
        match self.0 {
            Some((set_cookie, _)) => reply.with_cookie(set_cookie),
            None => reply,
        }
    }
}

/// The step-up before anything that reveals or changes the API key or its allowlist: the session's
/// password or TOTP code was entered within the re-authentication window, or one is entered now
/// (which rotates the session). A wrong or missing credential is audited under `kind` and refused
/// with `reauth_failed`: `Err(reply)` is that refusal, the key page again for a browser.
async fn step_up(
    deps: &Deps,
    request: &WebRequest,
    account: &KeyAccount,
    kind: AuditKind,
) -> Result<Result<StepUp, Reply>, AppError> {
    let user = &account.user;
    let session = request.session()?;
    if session.reauthenticated_recently(request.now) {
        return Ok(Ok(StepUp(None)));
    }
    let attempt = spend_login_attempt(deps, request, Subject::Username(&user.username)).await?;
    let password = request.raw_field("password");
    let code = request.field("totp_code");
    let confirmed = if !password.is_empty() {
        deps.accounts().verify_password(Some(user), password, attempt).await?
    } else if !code.is_empty() {
        deps.accounts().accept_totp(user, code, request.now, attempt).await?
    } else {
        false
    };
    if !confirmed {
        charge_login_failure(deps, request, Subject::Username(&user.username)).await?;
        audit(deps, request, kind, &user.username, AuditOutcome::Failed, AuditDetail::ReauthFailed).await?;
        let error = AppError::AuthStep(AuthStep::ReauthFailed);
        return request
            .refuse(error, |status, message| key_page(request, account, None, Some(message), status))
            .map(Err);
    }
    // Re-authentication is a step-up: the session id changes with it.
    Ok(Ok(StepUp(Some(start_session(deps, request, &user.username, Stage::Full, Some(session)).await?))))
}

pub async fn apikey_page(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let account = key_account(deps, request.session()?).await?;
    key_page(&request, &account, None, None, 200)
}

/// `POST /apikey`: a new key, behind the same step-up as reveal (a stolen session must not mint
/// a working key).
pub async fn regenerate(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let account = key_account(deps, request.session()?).await?;
    let step_up = match step_up(deps, &request, &account, AuditKind::ApiKey).await? {
        Ok(step_up) => step_up,
        Err(refusal) => return Ok(refusal),
    };
    let username = account.user.username.clone();
    let (key, _) = deps.accounts().regenerate_api_key(&username).await?;
    audit(deps, &request, AuditKind::ApiKey, &username, AuditOutcome::Success, AuditDetail::Regenerated).await?;
    let reply = if request.wants_json {
        Reply::json(json!({ "message": "API key regenerated", "api_key": key.expose() }))
    } else {
        let account = key_account(deps, request.session()?).await?;
        key_page(
            &step_up.next_request(request),
            &account,
            Some(("Your new API key. It is shown once; the old key no longer works.", key.expose())),
            None,
            200,
        )?
    };
    Ok(step_up.answer(reply))
}

pub async fn reveal(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let account = key_account(deps, request.session()?).await?;
    let user = &account.user;
    let step_up = match step_up(deps, &request, &account, AuditKind::Reveal).await? {
        Ok(step_up) => step_up,
        Err(refusal) => return Ok(refusal),
    };
    let key_id = user
        .api_key_id
        .as_deref()
        .and_then(shared::crypto::api_key::KeyId::parse)
        .ok_or_else(|| AppError::bad_request("This account has no API key"))?;
    let record =
        deps.identity.api_key(&key_id).await?.ok_or_else(|| AppError::bad_request("This account has no API key"))?;
    let plaintext = deps.api_key_copies.decrypt(&record.encrypted_copy, None, request.now).await?;
    let key = String::from_utf8_lossy(&plaintext).into_owned();
    audit(deps, &request, AuditKind::Reveal, &user.username, AuditOutcome::Success, AuditDetail::ApiKeyShown).await?;
    let reply = if request.wants_json {
        Reply::json(json!({ "api_key": key }))
    } else {
        key_page(&step_up.next_request(request), &account, Some(("Your API key:", &key)), None, 200)?
    };
    Ok(step_up.answer(reply))
}

/// `POST /apikey/allowlist`: behind the same step-up as reveal, so a stolen session cannot strip
/// the SEBI static-IP allowlist.
pub async fn allowlist(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let account = key_account(deps, request.session()?).await?;
    let user = &account.user;
    let entries = match parse_allowlist(request.field("allowlist")) {
        Ok(entries) => entries,
        Err(error) => {
            return request.refuse(error, |status, message| key_page(&request, &account, None, Some(message), status));
        }
    };
    let step_up = match step_up(deps, &request, &account, AuditKind::ApiKey).await? {
        Ok(step_up) => step_up,
        Err(refusal) => return Ok(refusal),
    };
    deps.accounts().set_allowlist(&user.username, &entries).await?;
    audit(
        deps,
        &request,
        AuditKind::ApiKey,
        &user.username,
        AuditOutcome::Success,
        AuditDetail::Allowlist(entries.clone()),
    )
    .await?;
    let reply = if request.wants_json {
        Reply::json(json!({ "message": "Allowlist saved", "allowlist": entries }))
    } else {
        Reply::redirect("/apikey")
    };
    Ok(step_up.answer(reply))
}

/// `POST /apikey/webhooks/revoke`: the webhook's URL is refused from its next alert on. Taking a
/// power away needs no step-up (the session and its CSRF token are checked as for every form).
pub async fn revoke_webhook(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let account = key_account(deps, request.session()?).await?;
    let handle = request.field("handle").to_owned();
    if let Err(error) = deps.accounts().revoke_webhook(&account.user.username, &handle).await {
        return request.refuse(error, |status, message| key_page(&request, &account, None, Some(message), status));
    }
    let detail = AuditDetail::WebhookRevoked(handle.clone());
    audit(deps, &request, AuditKind::ApiKey, &account.user.username, AuditOutcome::Success, detail).await?;
    Ok(if request.wants_json {
        Reply::json(json!({ "message": "Webhook revoked", "handle": handle }))
    } else {
        Reply::redirect("/apikey")
    })
}

/// `POST /apikey/webhooks/rebind`: a suspended webhook trades again, on the current key. It gives
/// a URL the power to place orders, so it has the same step-up as regenerating the key.
pub async fn rebind_webhook(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let account = key_account(deps, request.session()?).await?;
    let step_up = match step_up(deps, &request, &account, AuditKind::ApiKey).await? {
        Ok(step_up) => step_up,
        Err(refusal) => return Ok(refusal),
    };
    let handle = request.field("handle").to_owned();
    if let Err(error) = deps.accounts().rebind_webhook(&account.user.username, &handle).await {
        let request = step_up.next_request(request);
        let refusal =
            request.refuse(error, |status, message| key_page(&request, &account, None, Some(message), status))?;
        return Ok(step_up.answer(refusal));
    }
    let detail = AuditDetail::WebhookRebound(handle.clone());
    audit(deps, &request, AuditKind::ApiKey, &account.user.username, AuditOutcome::Success, detail).await?;
    let reply = if request.wants_json {
        Reply::json(json!({ "message": "Webhook bound to the current API key", "handle": handle }))
    } else {
        Reply::redirect("/apikey")
    };
    Ok(step_up.answer(reply))
}

pub async fn sessions(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let session = request.session()?;
    let list = deps.identity.sessions_of(&session.user, request.now).await?;
    if request.wants_json {
        let rows: Vec<_> = list
            .iter()
            .map(|s| json!({ "ip": s.ip, "user_agent": s.user_agent, "login_time": ist(s.created_at), "last_seen": ist(s.last_seen), "current": s.hash == session.hash }))
            .collect();
        return Ok(Reply::json(json!({ "data": rows })));
    }
    let body = html! {
        table id="sessions" {
            tr { th { "IP" } th { "Browser" } th { "Logged in" } th { "Last seen" } th {} }
            @for s in &list {
                tr {
                    td { (s.ip) }
                    td { (s.user_agent.chars().take(80).collect::<String>()) }
                    td { (ist(s.created_at)) }
                    td { (ist(s.last_seen)) }
                    td { @if s.hash == session.hash { "this device" } }
                }
            }
        }
        form method="post" action=(request.link("/auth/logout-all")) {
            (csrf_field(&session.csrf))
            button id="logout-all" type="submit" { "Log out all devices" }
        }
    };
    Ok(request.page(200, "Active sessions", body))
}

fn logged_out(request: &WebRequest) -> Reply {
    request.done("Logged out successfully", "/auth/login?bye").with_cookie(clear_cookie())
}

pub async fn logout(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let session = request.session()?;
    deps.identity.end_sessions(&session.user, std::slice::from_ref(&session.hash)).await?;
    Ok(logged_out(&request))
}

/// Every web session ends, and every broker session too: the brokers are told first (a failure
/// there is logged, metered and kept as the link's last error, and the token is dropped here all
/// the same), so no device keeps trading on a login the trader meant to end.
pub async fn logout_all(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let user = &request.session()?.user;
    deps.broker_links()?.end_all(user).await?;
    deps.identity.end_all_sessions(user).await?;
    Ok(logged_out(&request))
}

pub async fn change_password(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let user = current_user(deps, request.session()?).await?;
    let attempt = spend_login_attempt(deps, &request, Subject::Username(&user.username)).await?;
    if !deps.accounts().verify_password(Some(&user), request.raw_field("current_password"), attempt).await? {
        charge_login_failure(deps, &request, Subject::Username(&user.username)).await?;
        audit(
            deps,
            &request,
            AuditKind::Password,
            &user.username,
            AuditOutcome::Failed,
            AuditDetail::InvalidCredentials,
        )
        .await?;
        return Err(AppError::bad_request("Current password is incorrect"));
    }
    check_password_strength(request.raw_field("new_password"))?;
    if request.raw_field("new_password") != request.raw_field("confirm_password") {
        return Err(AppError::bad_request("New password and confirm password do not match."));
    }
    let phc = deps.accounts().hash_secret(request.raw_field("new_password")).await?;
    deps.identity.set_password(&user.username, &phc, request.now).await?;
    deps.identity.end_all_sessions(&user.username).await?;
    audit(deps, &request, AuditKind::Password, &user.username, AuditOutcome::Success, AuditDetail::Changed).await?;
    let reply = request.done("Password changed; every session has been logged out", "/auth/login?changed");
    Ok(reply.with_cookie(clear_cookie()))
}
