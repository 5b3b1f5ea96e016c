//! What a page handler receives, read from the API Gateway event: the form, the session cookie,
//! whether the caller wants JSON.

use std::collections::HashMap;
use std::net::IpAddr;

use http::Method;
use http::header::CONTENT_TYPE;
use lambda_http::Request;
use maud::Markup;
use serde_json::{Value, json};

use super::html;
use super::reply::{Content, Reply};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::http::base_path::BasePath;
use crate::identity::sessions::SessionId;
use crate::store::sessions::{SessionRecord, Stage};

/// What a page handler receives.
pub struct WebRequest {
    /// The query string, if any.
    pub query: String,
    pub method: Method,
    pub ip: IpAddr,
    pub now: UnixMillis,
    /// The valid session this route's [`Access`](crate::pipeline::route::Access) asked for (`None` only on public routes).
    pub session: Option<SessionRecord>,
    /// Form fields or a JSON object's string/number fields.
    pub form: HashMap<String, String>,
    /// This response's CSP nonce.
    pub nonce: String,
    pub wants_json: bool,
    pub user_agent: String,
    /// The device cookies the browser sent (name, value): which accounts it has logged in to.
    pub device_cookies: Vec<(String, String)>,
    /// The prefix this request's URLs carry (the stage on execute-api): see [`WebRequest::link`].
    pub base: BasePath,
}

/// By hand, so that what the visitor typed stays out of logs: the form (passwords, codes, tokens)
/// and the query string (a mailed reset link carries its token there) print their field names only.
impl std::fmt::Debug for WebRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut form: Vec<&str> = self.form.keys().map(String::as_str).collect();
        form.sort_unstable();
        let query: Vec<String> =
            form_urlencoded::parse(self.query.as_bytes()).map(|(name, _)| name.into_owned()).collect();
        f.debug_struct("WebRequest")
            .field("query", &query)
            .field("method", &self.method)
            .field("ip", &self.ip)
            .field("now", &self.now)
            .field("session", &self.session)
            .field("form", &form)
            .field("nonce", &self.nonce)
            .field("wants_json", &self.wants_json)
            .field("user_agent", &self.user_agent)
            .field("device_cookies", &self.device_cookies.len())
            .field("base", &self.base)
            .finish()
    }
}

impl WebRequest {
    /// A site path (`/auth/login`) as this client must ask for it, for links, form actions and JSON
    /// `redirect` fields. (A [`Reply::redirect`]'s location is joined when it is rendered.)
    pub fn link(&self, site_path: &str) -> String {
        self.base.link(site_path)
    }

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

    /// The session an `Access::Session`, `Access::Admin` or `Access::PendingTotp` route is
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

    /// A page of this request: its CSP nonce and, for a full session, the logged-in header. The
    /// body is [`Markup`], so only a template (which escapes what it interpolates) can make one.
    pub fn page(&self, status: u16, title: &str, body: Markup) -> Reply {
        let viewer = self
            .session
            .as_ref()
            .filter(|session| session.stage == Stage::Full)
            .map(|session| html::Viewer { username: &session.user, csrf: &session.csrf });
        Reply::new(status, Content::Html(html::layout(title, &self.nonce, &self.base, viewer.as_ref(), body)))
    }
}

/// Every cookie the request sent, as (name, value), across all its `Cookie` headers.
fn cookies(request: &Request) -> impl Iterator<Item = (&str, &str)> {
    request
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// The session cookie, if one of the right shape was sent.
pub fn session_cookie(request: &Request) -> Option<SessionId> {
    cookies(request)
        .find(|(name, _)| *name == crate::identity::sessions::COOKIE_NAME)
        .and_then(|(_, value)| SessionId::parse(value))
}

/// Every device cookie sent (`identity::devices`), as (name, value); verified where used.
pub(crate) fn device_cookies(request: &Request) -> Vec<(String, String)> {
    cookies(request)
        .filter(|(name, _)| name.starts_with(crate::identity::devices::COOKIE_PREFIX))
        // A browser sends a few; a header stuffed with thousands is not worth verifying.
        .take(16)
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect()
}

/// OpenAlgo's test for an AJAX caller, which gets JSON errors instead of redirects.
pub(crate) fn wants_json(request: &Request) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    header("accept").starts_with("application/json")
        || header("x-requested-with").eq_ignore_ascii_case("XMLHttpRequest")
        || header("content-type").starts_with("application/json")
}

/// Form-encoded or JSON bodies, into one flat map of strings.
pub(crate) fn parse_form(request: &Request, body: &[u8]) -> Result<HashMap<String, String>, AppError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::sessions::CsrfToken;

    #[test]
    fn debug_prints_field_names_but_no_value_a_visitor_typed() {
        let csrf = CsrfToken::generate();
        let session = SessionRecord {
            hash: "0".repeat(64),
            user: "trader".into(),
            stage: Stage::Full,
            created_at: UnixMillis(1),
            last_seen: UnixMillis(1),
            ip: "203.0.113.9".into(),
            user_agent: "test".into(),
            csrf: csrf.clone(),
            reauth_at: None,
            expires_at: UnixMillis(2_000),
        };
        let form = [("password", "Planted-Pa55!"), ("totp_code", "493817"), ("csrf_token", csrf.expose())]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let request = WebRequest {
            query: "token=planted-reset-token".into(),
            method: Method::POST,
            ip: "203.0.113.9".parse().expect("ip"),
            now: UnixMillis(1),
            session: Some(session),
            form,
            nonce: "n0nce".into(),
            wants_json: false,
            user_agent: "test".into(),
            device_cookies: vec![("__Host-kavach_device_0".into(), "planted-device-cookie".into())],
            base: BasePath::root(),
        };
        let printed = format!("{request:?}");
        for secret in ["Planted-Pa55!", "493817", csrf.expose(), "planted-reset-token", "planted-device-cookie"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        for name in ["password", "totp_code", "csrf_token", "token"] {
            assert!(printed.contains(&format!("\"{name}\"")), "{name} missing from {printed}");
        }
    }
}
