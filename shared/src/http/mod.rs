//! One response shape: the OpenAlgo JSON envelope, with security headers on every response,
//! and what every request path shares: strict input ([`validate`]), the client IP ([`client_ip`])
//! and the redacted traffic record ([`traffic`]).

pub mod base_path;
pub mod client_ip;
pub mod fetch_metadata;
pub mod traffic;
pub mod validate;

use std::sync::LazyLock;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};

use crate::core::error::AppError;

/// Sent with every response, errors and bans included. The CSP is the strictest possible because
/// API responses are never rendered; pages set their own nonce-based policy on top.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=63072000; includeSubDomains; preload"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "permissions-policy",
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), microphone=(), payment=(), usb=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Adds the security headers, keeping any header the handler already set (e.g. a page's CSP).
pub fn with_security_headers(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    // Room for all of them at once: the map would otherwise grow, and rehash, twice on the way.
    headers.reserve(SECURITY_HEADERS.len() + 1);
    for (name, value) in SECURITY_HEADERS {
        headers.entry(HeaderName::from_static(name)).or_insert(HeaderValue::from_static(value));
    }
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A JSON answer's headers: the security headers and `no-store`, as [`with_security_headers`]
/// adds them, and the JSON content type. Built once: a JSON response sets nothing else, and
/// copying the finished map is cheaper than inserting ten headers into every response.
static JSON_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut response = Response::new(Body::Empty);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_security_headers(response).into_parts().0.headers
});

fn json_response(status: u16, body: &Value) -> Response<Body> {
    // `Value`'s `Display` writes through a formatter; the serializer writes to the string directly,
    // and a `Value` (its keys are all strings) always serialises.
    let mut response = Response::new(Body::Text(serde_json::to_string(body).unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *response.headers_mut() = JSON_HEADERS.clone();
    response
}

/// `{"status":"success", …fields}`: OpenAlgo's routes put their payload at the top level under
/// different names (`data`, `orderid`, `results`, `quantity`), so handlers return the whole body.
pub fn envelope(fields: Value) -> Value {
    let mut body = json!({ "status": "success" });
    if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
        body.extend(fields);
    }
    body
}

/// [`envelope`] with 200.
pub fn success(fields: Value) -> Response<Body> {
    json_response(200, &envelope(fields))
}

/// `{"status":"error","message":…,"code":…}` plus `errors` for field failures and `retry_after`
/// (and the `Retry-After` header) for 429. Server errors are logged here, once, with their source.
pub fn error(error: &AppError) -> Response<Body> {
    if error.is_server_error() {
        tracing::error!(error.code = error.code(), error.detail = %error, "request failed");
    }
    let mut body = json!({ "status": "error", "message": error.public_message(), "code": error.code() });
    match error {
        AppError::BadRequest { errors: Some(errors), .. } => body["errors"] = json!(errors),
        AppError::NotFound { path } | AppError::RouteNotSupported { path } => body["path"] = json!(path),
        AppError::RateLimited { retry_after_secs } => body["retry_after"] = json!(retry_after_secs),
        AppError::OrderRejected { order_id, .. } => {
            body["mode"] = json!("analyze");
            if let Some(order_id) = order_id {
                body["orderid"] = json!(order_id);
            }
        }
        AppError::OrderNotFound { .. } => body["mode"] = json!("analyze"),
        // OpenAlgo's shapes, which its front end and scripts look for.
        AppError::SessionExpired => body["error"] = json!("session_expired"),
        AppError::CsrfFailed => body["error"] = json!("CSRF validation failed"),
        AppError::CrossSite => body["error"] = json!("Access Denied"),
        _ => {}
    }
    let mut response = json_response(error.status(), &body);
    if let AppError::RateLimited { retry_after_secs } = error {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    response
}

/// The raw body bytes, refused with 413 above `limit`. API Gateway hands over at most 10 MB, so
/// the cap bounds work per request, not what we can receive.
pub fn body_bytes(request: &Request, limit: usize) -> Result<&[u8], AppError> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        // `Body` is non-exhaustive upstream; an unknown shape is not something we can parse.
        _ => return Err(AppError::bad_request("Request body could not be read")),
    };
    if bytes.len() > limit {
        return Err(AppError::PayloadTooLarge { limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: &Response<Body>) -> Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).expect("json body"),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn every_error_class_carries_every_security_header() {
        let errors = [
            AppError::bad_request("bad"),
            AppError::Banned,
            AppError::RateLimited { retry_after_secs: 1 },
            AppError::internal(anyhow::anyhow!("x")),
            AppError::unavailable(anyhow::anyhow!("x")),
        ];
        for err in &errors {
            let response = error(err);
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(response.headers().get(*name).map(|v| v.to_str().ok()), Some(Some(*value)), "{name}");
            }
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        }
        let csp = SECURITY_HEADERS.iter().find(|(n, _)| *n == "content-security-policy").map(|(_, v)| *v);
        assert!(csp.is_some_and(|csp| csp.contains("object-src 'none'") && csp.contains("frame-ancestors")));
    }

    #[test]
    fn rate_limited_has_header_and_body_field() {
        let response = error(&AppError::RateLimited { retry_after_secs: 3 });
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        let body = body_json(&response);
        assert_eq!(body["retry_after"], 3);
        assert_eq!(body["status"], "error");
    }

    #[test]
    fn five_hundreds_have_fixed_text() {
        let response = error(&AppError::internal(anyhow::anyhow!("stack trace with table names")));
        assert_eq!(response.status(), 500);
        let body = body_json(&response);
        assert_eq!(body["message"], "Internal Server Error");
        assert!(!body.to_string().contains("table"));
    }

    #[test]
    fn handler_headers_win_over_defaults() {
        let mut response = Response::new(Body::Empty);
        response.headers_mut().insert("content-security-policy", HeaderValue::from_static("default-src 'self'"));
        let response = with_security_headers(response);
        assert_eq!(response.headers()["content-security-policy"], "default-src 'self'");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
}
