//! The Broker page: link a broker (its app's credentials, then its login), see each link's state,
//! disconnect. Every route needs the full session; the callback too, so a broker login can only
//! complete in the session that started it (W10). The principal is the session's user, never a
//! form field.

use maud::html;
use serde_json::json;
use shared::Deps;
use shared::broker::BrokerId;
use shared::broker::links::{AppCredentials, Disconnected, LinkStatus};
use shared::core::error::AppError;
use shared::pipeline::pages::html::{csrf_field, error_box, notice_box};
use shared::pipeline::pages::{Reply, WebRequest};

use crate::common::ist;

/// The page's title and, for each broker, the name a trader knows it by.
const fn display_name(broker: BrokerId) -> &'static str {
    match broker {
        BrokerId::Zerodha => "Zerodha (Kite Connect)",
    }
}

/// Where the broker sends the trader back, as registered in the trader's broker app.
fn callback_path(broker: BrokerId) -> String {
    format!("/broker/callback/{}", broker.as_str())
}

/// The broker named by the form, or a 400 naming the ones there are.
fn broker_of(request: &WebRequest) -> Result<BrokerId, AppError> {
    let named = request.field("broker");
    BrokerId::parse(named).ok_or_else(|| {
        let known: Vec<&str> = BrokerId::ALL.iter().map(|broker| broker.as_str()).collect();
        AppError::bad_request(format!("Unknown broker `{named}`: Kavach links {}", known.join(", ")))
    })
}

async fn broker_page(
    deps: &Deps,
    request: &WebRequest,
    notice: Option<&str>,
    error: Option<&str>,
    status: u16,
) -> Result<Reply, AppError> {
    let session = request.session()?;
    let links = deps.broker_links()?.all(&session.user).await?;
    let csrf = csrf_field(&session.csrf);
    let origin = deps.config.public_base_url.as_deref().unwrap_or_default();
    let body = html! {
        (notice_box(notice))
        (error_box(error))
        p {
            "A link lasts until the daily boundary or the broker's own expiry, whichever is first; then log in to "
            "the broker again here. Orders still go to the sandbox: sending them to the linked broker is not "
            "built yet."
        }
        @for (broker, link) in &links {
            @let name = broker.as_str();
            @let status = LinkStatus::of(link.as_ref(), request.now);
            h2 { (display_name(*broker)) }
            p { "Status: " strong id=(format!("status-{name}")) { (status.as_str()) } }
            @if let Some(link) = link {
                p { "App key: " code id=(format!("key-{name}")) { (link.key_hint) } }
                @if let (LinkStatus::Linked, Some(expires)) = (status, link.token_expires) {
                    p {
                        "Broker user " code id=(format!("user-{name}")) { (link.broker_user.as_deref().unwrap_or("?")) }
                        ", linked until " span id=(format!("expires-{name}")) { (ist(expires)) } "."
                    }
                }
                @if let Some(last_error) = &link.last_error {
                    p class="error" id=(format!("last-error-{name}")) { "Last error: " (last_error) }
                }
            }
            p {
                "In your broker app, register this redirect URL: "
                code id=(format!("redirect-{name}")) { (origin) (request.link(&callback_path(*broker))) }
                @if origin.is_empty() { " on this site's address (set PUBLIC_BASE_URL to show it in full)" }
            }
            form method="post" action=(request.link("/broker/connect")) {
                (csrf)
                input type="hidden" name="broker" value=(name);
                label for=(format!("api_key-{name}")) { "App API key" }
                input id=(format!("api_key-{name}")) name="api_key" autocomplete="off";
                label for=(format!("api_secret-{name}")) { "App API secret" }
                input id=(format!("api_secret-{name}")) name="api_secret" type="password" autocomplete="off";
                @if link.is_some() {
                    p { "Leave both empty to log in again with the saved app." }
                }
                button id=(format!("connect-{name}")) type="submit" { "Connect" }
            }
            @if matches!(status, LinkStatus::Linked | LinkStatus::Expired) {
                form method="post" action=(request.link("/broker/disconnect")) {
                    (csrf)
                    input type="hidden" name="broker" value=(name);
                    button id=(format!("disconnect-{name}")) type="submit" { "Disconnect" }
                }
            }
        }
    };
    // Connect answers with a redirect to the broker's login, which the form's CSP must allow.
    Ok(request.page(status, "Broker", body).allowing_form_target(&deps.config.brokers.kite_login))
}

pub async fn page(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let notice = match request.query_param("linked").as_deref().and_then(BrokerId::parse) {
        Some(broker) => Some(format!("{} is linked.", display_name(broker))),
        None => request.query_param("disconnected").is_some().then(|| "Disconnected.".to_owned()),
    };
    broker_page(deps, &request, notice.as_deref(), None, 200).await
}

/// Saves the app's credentials when both are entered (else the saved ones are used) and sends the
/// trader to the broker's login with a fresh single-use state.
pub async fn connect(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let started = async {
        let broker = broker_of(&request)?;
        let (api_key, api_secret) = (request.field("api_key"), request.raw_field("api_secret"));
        let credentials = match (api_key.is_empty(), api_secret.is_empty()) {
            (true, true) => None,
            _ => Some(AppCredentials::from_form(api_key, api_secret)?),
        };
        let session = request.session()?;
        deps.broker_links()?.start(&session.user, &session.hash, broker, credentials).await
    };
    match started.await {
        Ok(login_url) if request.wants_json => Ok(Reply::json(json!({ "login_url": login_url }))),
        Ok(login_url) => Ok(Reply::redirect_away(login_url)),
        Err(error) if error.is_server_error() => Err(error),
        Err(error) => refused(deps, &request, error).await,
    }
}

/// Where Zerodha sends the trader back: `request_token`, `status` and the `state` Kavach put in
/// `redirect_params`.
pub async fn zerodha_callback(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let state = request.query_param("state");
    let succeeded = request.query_param("status").as_deref() == Some("success");
    let code = request.query_param("request_token").filter(|_| succeeded);
    let session = request.session()?;
    let outcome = deps
        .broker_links()?
        .complete(&session.user, &session.hash, BrokerId::Zerodha, state.as_deref(), code.as_deref())
        .await;
    match outcome {
        Ok(()) => Ok(request.done("Zerodha is linked", "/broker?linked=zerodha")),
        Err(error) if error.is_server_error() => Err(error),
        Err(error) => refused(deps, &request, error).await,
    }
}

/// Ends the link at the broker and here.
pub async fn disconnect(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let broker = match broker_of(&request) {
        Ok(broker) => broker,
        Err(error) => return refused(deps, &request, error).await,
    };
    let session = request.session()?;
    let outcome = deps.broker_links()?.disconnect(&session.user, broker).await?;
    let revoked_at_broker = matches!(outcome, Disconnected::AtBroker);
    if let Disconnected::BrokerFailed(error) = &outcome {
        // The token is gone here all the same; the page says what the broker did not do.
        let message = format!(
            "Disconnected here, but the broker could not be told ({}): the token is no longer used, and ends at the \
             broker's own expiry.",
            error.public_message()
        );
        if request.wants_json {
            return Ok(Reply::json(json!({ "message": message, "revoked_at_broker": false })));
        }
        return broker_page(deps, &request, Some(&message), None, 200).await;
    }
    if request.wants_json {
        return Ok(Reply::json(json!({ "message": "Disconnected", "revoked_at_broker": revoked_at_broker })));
    }
    Ok(Reply::redirect("/broker?disconnected"))
}

/// A refusal: a JSON caller gets the error; a browser gets the Broker page with it.
async fn refused(deps: &Deps, request: &WebRequest, error: AppError) -> Result<Reply, AppError> {
    if request.wants_json {
        return Err(error);
    }
    broker_page(deps, request, None, Some(&error.public_message()), error.status()).await
}
