//! A page handler's answer and how it becomes a response: HTML with a fresh CSP nonce, JSON, a
//! redirect or a CSV download, with the security headers and any cookies.

use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER, SET_COOKIE};
use lambda_http::Body;
use maud::{Markup, html};
use serde_json::Value;

use super::html;
use crate::core::error::{AppError, AuthStep};
use crate::http as responses;
use crate::http::base_path::BasePath;
use crate::identity::sessions::clear_cookie;
use crate::pipeline::route::{Access, PageRoute};

#[derive(Debug)]
pub(crate) enum Content {
    Html(Markup),
    Json(Value),
    Redirect(String),
    /// To another site, as given (not joined to the base path).
    RedirectAway(String),
    Csv {
        filename: String,
        body: String,
    },
}

/// A handler's answer, plus any cookies to set.
#[derive(Debug)]
pub struct Reply {
    status: u16,
    content: Content,
    cookies: Vec<String>,
    /// Origins besides this one that the page's forms may lead to (CSP `form-action`, which
    /// browsers also apply to the redirect a submission answers with).
    form_targets: Vec<String>,
}

impl Reply {
    pub(crate) fn new(status: u16, content: Content) -> Self {
        Self { status, content, cookies: Vec::new(), form_targets: Vec::new() }
    }

    /// 303 See Other: after a POST the browser follows with a GET. `location` is a site path
    /// (`/dashboard`); rendering puts the request's base path in front of it.
    pub fn redirect(location: &str) -> Self {
        Self::new(303, Content::Redirect(location.to_owned()))
    }

    /// 303 See Other to `url` on another site (a broker's login page). Only a URL built from
    /// configuration, never one the request named: that would be an open redirect.
    pub fn redirect_away(url: String) -> Self {
        Self::new(303, Content::RedirectAway(url))
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

    /// The same page, whose forms may also lead to `origin` (a broker's login site, which the
    /// Broker page's Connect answers with a redirect to). Only an origin from configuration, never
    /// from the request.
    #[must_use]
    pub fn allowing_form_target(mut self, origin: &str) -> Self {
        self.form_targets.push(origin.to_owned());
        self
    }
}

fn csp(nonce: &str, form_targets: &[String]) -> String {
    let mut form_action = String::from("'self'");
    for origin in form_targets {
        form_action.push(' ');
        form_action.push_str(origin);
    }
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; \
         form-action {form_action}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
}

/// An empty answer whose `Location` is `location` (the status is set by [`render`]).
fn redirect_to(location: &str) -> lambda_http::Response<Body> {
    let mut response = lambda_http::Response::new(Body::Empty);
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

pub(crate) fn render(reply: Reply, nonce: &str, base: &BasePath) -> lambda_http::Response<Body> {
    let mut response = match reply.content {
        Content::Html(html) => {
            let mut response = lambda_http::Response::new(Body::Text(html.into_string()));
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
        Content::Redirect(location) => redirect_to(&base.link(&location)),
        Content::RedirectAway(url) => redirect_to(&url),
    };
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    if let Ok(policy) = HeaderValue::from_str(&csp(nonce, &reply.form_targets)) {
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
pub(crate) fn render_error(
    error: &AppError,
    wants_json: bool,
    nonce: &str,
    base: &BasePath,
    route: PageRoute,
) -> lambda_http::Response<Body> {
    let mut response = if wants_json {
        responses::error(error)
    } else if matches!(error, AppError::SessionExpired) || matches!(error, AppError::AuthStep(AuthStep::NoPendingLogin))
    {
        render(Reply::redirect("/auth/login"), nonce, base)
    } else {
        if error.is_server_error() {
            tracing::error!(error.code = error.code(), error.detail = %error, "page failed");
        }
        let body = html! {
            (html::error_box(Some(&error.public_message())))
            p { a href=(base.link("/auth/login")) { "Log in" } }
        };
        let page = html::layout("Something went wrong", nonce, base, None, body);
        let mut response = render(Reply::new(error.status(), Content::Html(page)), nonce, base);
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
        let policy = csp("n0nce", &[]);
        assert!(policy.contains("script-src 'nonce-n0nce'") && policy.contains("style-src 'nonce-n0nce'"));
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert!(policy.contains("frame-ancestors 'none'"));
    }
}
