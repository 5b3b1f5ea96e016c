//! The request pipeline for server-rendered pages and their form/JSON endpoints.
//!
//! Order: client IP → one concurrent round trip (ban, session by cookie hash, the IP's page budget)
//! → ban (403) → rate limit (429) → session (401 JSON or a redirect to login) → `Sec-Fetch-Site`
//! (403 when cross-site) → body → CSRF on state-changing requests of a session (400) → the admin
//! role on admin routes (403) → handler.
//! Every response carries the security headers and a CSP whose script and style sources are a
//! fresh nonce, so no inline script or style runs unless this response put it there.

pub mod html;
pub mod login_budget;
pub mod reply;
pub mod request;

use std::future::Future;
use std::net::IpAddr;

use base64::Engine;
use http::Method;
use lambda_http::{Body, Request};

use crate::app::bootstrap::Deps;
use crate::core::error::{AppError, AuthStep};
use crate::http as responses;
use crate::http::base_path::BasePath;
use crate::http::fetch_metadata::Initiator;
use crate::identity::Role;
use crate::pipeline::api::InFlight;
use crate::pipeline::gate::Gate;
use crate::pipeline::route::{Access, PageRoute};
use crate::store::sessions::Stage;
pub use login_budget::{charge_login_failure, spend_login_attempt};
pub use reply::Reply;
use reply::{render, render_error};
pub use request::WebRequest;
use request::{device_cookies, parse_form, session_cookie, wants_json};

/// Runs the page pipeline and always produces a response.
pub async fn serve<Handle, Fut>(
    deps: &Deps,
    request: Request,
    route: PageRoute,
    handle: Handle,
) -> lambda_http::Response<Body>
where
    Handle: FnOnce(WebRequest) -> Fut,
    Fut: Future<Output = Result<Reply, AppError>>,
{
    let in_flight = InFlight::named(deps, &request, route.name);
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>());
    let wants_json = wants_json(&request);
    let base = BasePath::of(&request);
    let mut user = None;
    let outcome =
        pipeline(deps, &request, in_flight.client_ip(), route, nonce.clone(), wants_json, &mut user, handle).await;
    let response = match outcome {
        Ok(reply) => render(reply, &nonce, &base),
        Err(error) => render_error(&error, wants_json, &nonce, &base, route),
    };
    in_flight.finish(deps, &request, response, user)
}

#[allow(clippy::too_many_arguments)]
async fn pipeline<Handle, Fut>(
    deps: &Deps,
    request: &Request,
    ip: Result<IpAddr, AppError>,
    route: PageRoute,
    nonce: String,
    wants_json: bool,
    user: &mut Option<String>,
    handle: Handle,
) -> Result<Reply, AppError>
where
    Handle: FnOnce(WebRequest) -> Fut,
    Fut: Future<Output = Result<Reply, AppError>>,
{
    let ip = ip?;
    let presented = session_cookie(request);
    let admitted = Gate::page(ip, route.name, presented.as_ref()).pass(deps).await?;
    let now = admitted.now;
    let session = admitted.session();
    let session = match route.access {
        Access::Public => session.filter(|session| session.stage == Stage::Full),
        Access::PendingTotp => Some(
            session.filter(|s| s.stage == Stage::PendingTotp).ok_or(AppError::AuthStep(AuthStep::NoPendingLogin))?,
        ),
        Access::Session | Access::Admin => {
            Some(session.filter(|s| s.stage == Stage::Full).ok_or(AppError::SessionExpired)?)
        }
    };
    *user = session.as_ref().map(|session| session.user.clone());

    let method = request.method().clone();
    let state_changing = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if state_changing {
        refuse_cross_site(request)?;
    }
    let body = responses::body_bytes(request, deps.config.max_body_bytes)?;
    let form = parse_form(request, body)?;
    // Public forms (login, setup, reset) have no session to bind a token to; a session-bound route
    // always checks its token, whatever else the request carries.
    if state_changing
        && route.access != Access::Public
        && let Some(session) = &session
    {
        let presented = form
            .get("csrf_token")
            .map(String::as_str)
            .or_else(|| request.headers().get("x-csrf-token").and_then(|value| value.to_str().ok()))
            .or_else(|| request.headers().get("x-csrftoken").and_then(|value| value.to_str().ok()))
            .unwrap_or_default();
        if !session.csrf.matches(presented) {
            return Err(AppError::CsrfFailed);
        }
    }
    if let Some(session) = &session
        && let Err(error) = deps.identity.touch_session(session, now).await
    {
        tracing::warn!(error = %error, "session last-seen not recorded");
    }
    // The role is read after the CSRF check, so a forged request is refused as forged whoever
    // sends it; a user deleted since login has no session worth keeping.
    if route.access == Access::Admin
        && let Some(session) = &session
    {
        let account = deps.identity.user(&session.user).await?.ok_or(AppError::SessionExpired)?;
        if account.role != Role::Admin {
            return Err(AppError::AdminOnly);
        }
    }
    let user_agent: String = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let device_cookies = device_cookies(request);
    let base = BasePath::of(request);
    handle(WebRequest { query, method, ip, now, session, form, nonce, wants_json, user_agent, device_cookies, base })
        .await
}

/// Fetch metadata: a browser says where a request came from, and a state change from another site
/// is refused outright. A missing header (an older browser, curl) is allowed: the CSRF token and
/// `SameSite=Lax` still stand.
fn refuse_cross_site(request: &Request) -> Result<(), AppError> {
    match Initiator::of(request.headers()) {
        Initiator::Direct => Ok(()),
        Initiator::OtherSite => Err(AppError::CrossSite),
    }
}
