//! `/setup`: creates the administrator once, and only for whoever holds the one-time setup token
//! that provisioning printed (OpenAlgo let the first visitor of a fresh instance take it over, W24).

use maud::{PreEscaped, html};
use shared::Deps;
use shared::core::error::AppError;
use shared::crypto::one_time::OneTimeToken;
use shared::identity::accounts::{WebUserCreated, check_password_strength};
use shared::limits::subject::Subject;
use shared::pipeline::pages::html::error_box;
use shared::pipeline::pages::{Reply, WebRequest, charge_login_failure, spend_login_attempt};

fn form_page(request: &WebRequest, status: u16, error: Option<&str>) -> Reply {
    let body = html! {
        p {
            "Create the administrator. You need the one-time setup token printed by " code { "scripts/dev" }
            " or the deploy step."
        }
        (error_box(error))
        form method="post" action=(request.link("/setup")) {
            label for="setup_token" { "Setup token" }
            input id="setup_token" name="setup_token" autocomplete="off" required;
            label for="username" { "Username" }
            input id="username" name="username" value=(request.field("username")) autocomplete="username" required;
            label for="email" { "Email" }
            input id="email" name="email" type="email" value=(request.field("email")) autocomplete="email" required;
            label for="password" { "Password" }
            input id="password" name="password" type="password" autocomplete="new-password" required;
            label for="confirm_password" { "Confirm password" }
            input id="confirm_password" name="confirm_password" type="password" autocomplete="new-password" required;
            button id="create" type="submit" { "Create administrator" }
        }
        p {
            "Passwords need 8 or more characters with an upper-case letter, a lower-case letter, a digit and one of "
            code { "!@#$%^&*" } "."
        }
    };
    request.page(status, "First-run setup", body)
}

pub async fn form(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    if deps.identity.admin_exists().await? {
        return Ok(Reply::redirect("/auth/login"));
    }
    Ok(form_page(&request, 200, None))
}

pub async fn submit(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    match create(deps, &request).await {
        Err(error @ AppError::BadRequest { .. }) => {
            request.refuse(error, |status, message| Ok(form_page(&request, status, Some(message))))
        }
        outcome => outcome,
    }
}

async fn create(deps: &Deps, request: &WebRequest) -> Result<Reply, AppError> {
    let username = request.field("username");
    let attempt = spend_login_attempt(deps, request, Subject::Setup).await?;
    let presented = OneTimeToken::presented(request.field("setup_token"));
    if !deps.accounts().setup_token_matches(&presented, attempt).await? {
        charge_login_failure(deps, request, Subject::Setup).await?;
        if deps.identity.admin_exists().await? {
            return Ok(Reply::redirect("/auth/login"));
        }
        return Err(AppError::bad_request("Invalid setup token"));
    }
    let password = request.raw_field("password");
    check_password_strength(password)?;
    if request.raw_field("confirm_password") != password {
        return Err(AppError::bad_request("Passwords do not match"));
    }
    let email = request.field("email");
    let WebUserCreated { key, totp: secret } =
        deps.accounts().create_web_user(username, email, password, Some(&presented.hash())).await?;
    tracing::info!(user = username, "administrator created by first-run setup");

    if request.wants_json {
        return Ok(Reply::json(serde_json::json!({
            "message": "Setup complete",
            "totp_secret": secret.base32(),
            "totp_uri": secret.provisioning_uri(email),
            "apikey": key.expose(),
            "redirect": request.link("/auth/login"),
        })));
    }
    let qr = secret.qr_svg(email).unwrap_or_default();
    let body = html! {
        p class="notice" {
            "The administrator " strong { (username) } " has been created. What follows is shown " strong { "once" } "."
        }
        h2 { "Two-factor authentication" }
        p {
            "Scan this code with an authenticator app (Google Authenticator, Aegis, 1Password…). Every login will ask for its 6-digit code."
        }
        // The `qrcode` crate's SVG: markup it drew itself from the provisioning URI, never our input as text.
        div id="totp-qr" { (PreEscaped(qr)) }
        p { "Or enter this secret by hand:" }
        p class="secret" id="totp-secret" { (secret.base32()) }
        h2 { "Your API key" }
        p {
            "For TradingView, Amibroker, Chartink and the " code { "openalgo" }
            " SDK. Store it now; you can regenerate it later."
        }
        p class="secret" id="api-key" { (key.expose()) }
        p { a id="to-login" href=(request.link("/auth/login")) { "Continue to login" } }
    };
    Ok(request.page(200, "Setup complete", body))
}
