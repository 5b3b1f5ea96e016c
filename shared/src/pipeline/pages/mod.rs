//! The request pipeline for server-rendered pages and their form/JSON endpoints.
//!
//! Order: client IP → one concurrent round trip (ban, session by cookie hash, the IP's page budget)
//! → ban (403) → rate limit (429) → session (401 JSON or a redirect to login) → `Sec-Fetch-Site`
//! (403 when cross-site) → body → CSRF on state-changing requests of a session (400) → the admin
//! role on admin routes (403) → handler.
//! Every response carries the security headers and a CSP whose script and style sources are a
//! fresh nonce, so no inline script or style runs unless this response put it there.


pub mod html;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;

use base64::Engine;
use http::header::{CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER, SET_COOKIE};
use http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

use crate::pipeline::api::InFlight;
use crate::app::bootstrap::Deps;
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::http as responses;
use crate::limits::LimitedAction;
use crate::identity::sessions::{SessionId, clear_cookie};
use crate::store::rate_limit::within_budgets;
use crate::store::sessions::{SessionRecord, Stage};
use crate::identity::Role;
use crate::threats::{self, Detection, Detector};

/// Which session a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, setup, reset). A full session, if present, is passed along.
    Public,
    /// A session that has passed the password and still owes its TOTP code.
    PendingTotp,
    /// A fully logged-in session.
    Session,
    /// A fully logged-in session whose user has the admin role.
    Admin,
}

#[derive(Clone, Copy, Debug)]
pub struct PageRoute {
    pub name: &'static str,
    pub access: Access,
}

/// What a page handler receives.
#[derive(Debug)]
pub struct WebRequest {
    /// The query string, if any.
    pub query: String,
    pub method: Method,
    pub ip: IpAddr,
    pub now: UnixMillis,
    /// The valid session this route's [`Access`] asked for (`None` only on public routes).
    pub session: Option<SessionRecord>,
    /// Form fields or a JSON object's string/number fields.
    pub form: HashMap<String, String>,
    /// This response's CSP nonce.
    pub nonce: String,
    pub wants_json: bool,
    pub user_agent: String,
}

impl WebRequest {
    /// A trimmed form field, `""` when absent.
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map_or("", |value| value.trim())
    }

    /// A form field as sent, `""` when absent: passwords keep their spaces.
    pub fn raw_field(&self, name: &str) -> &str {
        self.form.get(name).map_or("", String::as_str)
    }

    /// A query-string parameter, decoded; `Some("")` for a bare `?flag`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
    }

    /// The session a [`Access::Session`], [`Access::Admin`] or [`Access::PendingTotp`] route is
    /// guaranteed to have.
    pub fn session(&self) -> Result<&SessionRecord, AppError> {
        self.session.as_ref().ok_or(AppError::SessionExpired)
    }

    /// A refusal on a form: a JSON caller gets `error` itself; a browser gets the form again, from
    /// `page`, with the error's status and public message in it.
    pub fn refuse(
        &self,
        error: AppError,
        page: impl FnOnce(u16, &str) -> Result<Reply, AppError>,
    ) -> Result<Reply, AppError> {
        if self.wants_json {
            return Err(error);
        }
        page(error.status(), &error.public_message())
    }

    /// A change made: a JSON caller gets `message`; a browser is sent on to `location`.
    pub fn done(&self, message: &str, location: &str) -> Reply {
        if self.wants_json { Reply::json(json!({ "message": message })) } else { Reply::redirect(location) }
    }

    pub fn page(&self, status: u16, title: &str, body: &str) -> Reply {
        let viewer = self
            .session
            .as_ref()
            .filter(|session| session.stage == Stage::Full)
            .map(|session| html::Viewer { username: &session.user, csrf: &session.csrf });
        Reply::new(status, Content::Html(html::layout(title, &self.nonce, viewer.as_ref(), body)))
    }
}

#[derive(Debug)]
enum Content {
    Html(String),
    Json(Value),
    Redirect(String),
    Csv { filename: String, body: String },
}

/// A handler's answer, plus any cookies to set.
#[derive(Debug)]
pub struct Reply {
    status: u16,
    content: Content,
    cookies: Vec<String>,
}

impl Reply {
    fn new(status: u16, content: Content) -> Self {
        Self { status, content, cookies: Vec::new() }
    }

    /// 303 See Other: after a POST the browser follows with a GET.
    pub fn redirect(location: &str) -> Self {
        Self::new(303, Content::Redirect(location.to_owned()))
    }

    /// `{"status":"success", …fields}`.
    pub fn json(fields: Value) -> Self {
        Self::new(200, Content::Json(responses::envelope(fields)))
    }

    /// A CSV download.
    pub fn csv(filename: &str, body: String) -> Self {
        Self::new(200, Content::Csv { filename: filename.to_owned(), body })
    }

    /// The same answer with another status (a JSON error body, say).
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    #[must_use]
    pub fn with_cookie(mut self, cookie: String) -> Self {
        self.cookies.push(cookie);
        self
    }
}

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
    let mut user = None;
    let outcome =
        pipeline(deps, &request, in_flight.client_ip(), route, nonce.clone(), wants_json, &mut user, handle).await;
    let response = match outcome {
        Ok(reply) => render(reply, &nonce),
        Err(error) => render_error(&error, wants_json, &nonce, route),
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
    let now = deps.clock.now();
    let presented = session_cookie(request);
    let limit = deps.config.rate_limit(LimitedAction::Api);
    let budget_subject = format!("page#{ip}");
    let (ban, budget, session) = tokio::try_join!(
        deps.bans.active(ip, now),
        deps.limits.hit(LimitedAction::Api, &budget_subject, limit, now),
        live_session(deps, presented.as_ref(), now)
    )?;
    if ban.is_some() {
        return Err(AppError::Banned);
    }
    within_budgets([&budget], now)?;
    let session = match route.access {
        Access::Public => session.filter(|session| session.stage == Stage::Full),
        Access::PendingTotp => Some(
            session
                .filter(|s| s.stage == Stage::PendingTotp)
                .ok_or(AppError::AuthStep { code: "no_pending_login", message: "No pending login. Sign in first." })?,
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
        if !crate::crypto::ct_eq(presented.as_bytes(), session.csrf.as_bytes()) {
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
    handle(WebRequest { query, method, ip, now, session, form, nonce, wants_json, user_agent }).await
}

/// The session `presented` names, if it exists and has not passed the daily boundary.
async fn live_session(
    deps: &Deps,
    presented: Option<&SessionId>,
    now: UnixMillis,
) -> Result<Option<SessionRecord>, AppError> {
    let Some(id) = presented else { return Ok(None) };
    let session = deps.identity.session(&id.hash(), now).await?;
    Ok(session.filter(|session| !deps.config.session_expiry.has_expired(session.created_at, now)))
}

/// The catch-all behind the API's `{proxy+}`: every path no route declares. It is where scanners
/// land, so a miss from a visitor without a logged-in session feeds the 404 detector, unless it is
/// a path browsers ask for by themselves. Bans are enforced here as on every route.
pub async fn not_found(deps: &Deps, request: Request) -> lambda_http::Response<Body> {
    let in_flight = InFlight::named(deps, &request, "not-found");
    let path = crate::http::traffic::loggable_path(crate::pipeline::api::request_path(&request));
    let outcome: Result<Value, AppError> = async {
        let ip = in_flight.client_ip()?;
        let now = deps.clock.now();
        let presented = session_cookie(&request);
        let (ban, session) = tokio::try_join!(deps.bans.active(ip, now), live_session(deps, presented.as_ref(), now))?;
        if ban.is_some() {
            return Err(AppError::Banned);
        }
        let signed_in = session.is_some_and(|session| session.stage == Stage::Full);
        if !signed_in
            && !threats::is_well_known(&path)
            && let Detection::Banned(_) = threats::observe(deps, Detector::NotFound, ip, Some(&path), now).await?
        {
            return Err(AppError::Banned);
        }
        Err(AppError::NotFound { path: path.clone() })
    }
    .await;
    in_flight.respond(deps, &request, outcome, None)
}

/// Spends one login-class attempt (password, TOTP code, setup, reset, key reveal) against the IP and
/// the username, per minute and per hour: four counters, one concurrent round trip. Every attempt
/// counts, as in OpenAlgo, so guessing is bounded per account whatever the number of addresses.
pub async fn spend_login_attempt(deps: &Deps, ip: IpAddr, username: &str, now: UnixMillis) -> Result<(), AppError> {
    let account = format!("user#{}", username.trim().to_ascii_lowercase());
    let address = crate::pipeline::gate::ip_subject(ip);
    let (minute, hour) = (LimitedAction::LoginMinute, LimitedAction::LoginHour);
    let limit = |action| deps.config.rate_limit(action);
    let verdicts = futures::future::try_join_all([
        deps.limits.hit(minute, &address, limit(minute), now),
        deps.limits.hit(hour, &address, limit(hour), now),
        deps.limits.hit(minute, &account, limit(minute), now),
        deps.limits.hit(hour, &account, limit(hour), now),
    ])
    .await?;
    // Only the address's own budgets feed the detector: a spent username budget says nothing about
    // this address, and counting it would let anyone get a trader's address banned.
    let address_over = verdicts.iter().take(2).any(|verdict| !verdict.admitted());
    if address_over && let Detection::Banned(_) = threats::observe(deps, Detector::LoginAbuse, ip, None, now).await? {
        return Err(AppError::Banned);
    }
    within_budgets(&verdicts, now)
}

/// The session cookie, if one of the right shape was sent.
pub fn session_cookie(request: &Request) -> Option<SessionId> {
    request
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::identity::sessions::COOKIE_NAME)
        .and_then(|(_, value)| SessionId::parse(value))
}

/// Fetch metadata: a browser says where a request came from, and a state change from another site
/// is refused outright. A missing header (an older browser, curl) is allowed: the CSRF token and
/// `SameSite=Lax` still stand.
fn refuse_cross_site(request: &Request) -> Result<(), AppError> {
    match request.headers().get("sec-fetch-site").and_then(|value| value.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(AppError::CrossSite),
    }
}

/// OpenAlgo's test for an AJAX caller, which gets JSON errors instead of redirects.
fn wants_json(request: &Request) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    header("accept").starts_with("application/json")
        || header("x-requested-with").eq_ignore_ascii_case("XMLHttpRequest")
        || header("content-type").starts_with("application/json")
}

/// Form-encoded or JSON bodies, into one flat map of strings.
fn parse_form(request: &Request, body: &[u8]) -> Result<HashMap<String, String>, AppError> {
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashMap::new());
    }
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(body)
            .map_err(|error| AppError::bad_request(format!("Request body is not valid JSON: {error}")))?;
        let Value::Object(object) = value else {
            return Err(AppError::bad_request("Request body must be a JSON object"));
        };
        return object
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name, text)),
                Value::Number(number) => Ok((name, number.to_string())),
                Value::Bool(flag) => Ok((name, flag.to_string())),
                _ => Err(AppError::bad_request(format!("Field `{name}` must be a string"))),
            })
            .collect();
    }
    Ok(form_urlencoded::parse(body).into_owned().collect())
}

fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
}

fn render(reply: Reply, nonce: &str) -> lambda_http::Response<Body> {
    let mut response = match reply.content {
        Content::Html(html) => {
            let mut response = lambda_http::Response::new(Body::Text(html));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            response
        }
        Content::Json(value) => {
            let mut response = lambda_http::Response::new(Body::Text(value.to_string()));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Content::Csv { filename, body } => {
            let mut response = lambda_http::Response::new(Body::Text(body));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
                response.headers_mut().insert(http::header::CONTENT_DISPOSITION, disposition);
            }
            response
        }
        Content::Redirect(location) => {
            let mut response = lambda_http::Response::new(Body::Empty);
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
    };
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    if let Ok(policy) = HeaderValue::from_str(&csp(nonce)) {
        response.headers_mut().insert("content-security-policy", policy);
    }
    for cookie in reply.cookies {
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    responses::with_security_headers(response)
}

/// JSON callers get OpenAlgo's JSON error bodies; browsers get a redirect to login when the session
/// is gone, and an error page otherwise. Both clear a dead session cookie.
fn render_error(error: &AppError, wants_json: bool, nonce: &str, route: PageRoute) -> lambda_http::Response<Body> {
    let mut response = if wants_json {
        responses::error(error)
    } else if matches!(error, AppError::SessionExpired)
        || matches!(error, AppError::AuthStep { code: "no_pending_login", .. })
    {
        render(Reply::redirect("/auth/login"), nonce)
    } else {
        if error.is_server_error() {
            tracing::error!(error.code = error.code(), error.detail = %error, "page failed");
        }
        let body = format!(
            r#"<p class="error" id="error">{}</p><p><a href="/auth/login">Log in</a></p>"#,
            html::escape(&error.public_message())
        );
        let page = html::layout("Something went wrong", nonce, None, &body);
        let mut response = render(Reply::new(error.status(), Content::Html(page)), nonce);
        if let AppError::RateLimited { retry_after_secs } = error {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    };
    if matches!(error, AppError::SessionExpired)
        && route.access != Access::Public
        && let Ok(cookie) = HeaderValue::from_str(&clear_cookie())
    {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    if !error.is_server_error() {
        tracing::info!(route = route.name, error.code = error.code(), "page request refused");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_has_no_unsafe_inline_and_uses_the_nonce() {
        let policy = csp("n0nce");
        assert!(policy.contains("script-src 'nonce-n0nce'") && policy.contains("style-src 'nonce-n0nce'"));
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert!(policy.contains("frame-ancestors 'none'"));
    }
}
