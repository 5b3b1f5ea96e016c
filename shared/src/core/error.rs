//! The one error type. Each variant knows its HTTP status, its stable machine `code`, and the
//! message a client may see; anything internal is logged once at the boundary and never sent.

use std::collections::BTreeMap;

/// Field name → messages, in marshmallow's words (`Missing data for required field.` …).
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input that fails validation. `message` is readable on its own; `errors` is keyed by field.
    #[error("bad request: {message}")]
    BadRequest { message: String, errors: Option<FieldErrors> },
    #[error("request body over {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A key that is malformed, unknown, or whose secret does not verify. The only auth failure
    /// that counts towards bans.
    #[error("invalid API key")]
    InvalidApiKey,
    /// A key that was valid but has been revoked or regenerated.
    #[error("revoked API key")]
    RevokedApiKey,
    /// A strategy webhook whose owner's key was regenerated since it was bound to it.
    #[error("webhook suspended")]
    WebhookSuspended,
    #[error("banned client IP")]
    Banned,
    /// The account trades on the sandbox and the request needs a live broker (for example
    /// leaving analyzer mode).
    #[error("no broker linked")]
    NoBrokerLinked,
    /// The broker refused the order (for the sandbox: its acceptance rules). `order_id` is set when
    /// the refusal was recorded as a `rejected` order.
    #[error("order rejected: {message}")]
    OrderRejected { message: String, order_id: Option<String> },
    #[error("order {order_id} not found")]
    OrderNotFound { order_id: String },
    /// The linked broker refused the request; `message` is the broker's own words.
    #[error("broker rejected the request: {message}")]
    BrokerRejected { message: String },
    /// The linked broker could not be reached or failed (5xx, timeout). Nothing is known to have
    /// happened there; an order's outcome was checked before this is answered.
    #[error("broker unavailable: {0:#}")]
    BrokerUnavailable(#[source] anyhow::Error),
    /// The broker session has ended (the daily rollover, a revoke, the broker's own expiry): the
    /// trader logs in to the broker again. Not an API-key failure, and never counted as one.
    #[error("broker session expired")]
    BrokerSessionExpired,
    /// The broker refused the order because it came from an address the trader has not
    /// registered with it (the static-IP rule for API orders).
    #[error("broker refused the source IP")]
    BrokerIpNotRegistered,
    /// A broker login's callback that this session did not start: its `state` is missing, made
    /// up, used, expired, another session's or another broker's. Nothing is stored.
    #[error("broker login callback refused")]
    BrokerLinkRefused,
    /// Concurrent writers kept changing the account; nothing was written.
    #[error("account busy")]
    AccountBusy,
    /// The account's key or allowlist kept changing under a write conditional on them; nothing
    /// was written.
    #[error("account changed concurrently")]
    ConcurrentChange,
    /// No valid web session (none, ended, or past the daily boundary).
    #[error("session expired")]
    SessionExpired,
    /// A wrong password or unknown user: one answer for both.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A refused second factor or login step, with OpenAlgo's words.
    #[error("authentication step refused: {}", .0.code())]
    AuthStep(AuthStep),
    /// A state-changing web request without this session's synchroniser token.
    #[error("CSRF token missing or wrong")]
    CsrfFailed,
    /// `Sec-Fetch-Site` says the request came from another site.
    #[error("cross-site request refused")]
    CrossSite,
    /// The API key has an IP allowlist and the caller is not on it.
    #[error("client IP not on the key's allowlist")]
    IpNotAllowed,
    /// A page or action only the administrator may use.
    #[error("administrator access required")]
    AdminOnly,
    /// An unban for an address that is not banned.
    #[error("no ban for that address")]
    NoSuchBan,
    #[error("rate limited; retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("no route for {path}")]
    NotFound { path: String },
    /// A route OpenAlgo has and Kavach does not serve yet: a client asking for it is not a scanner.
    #[error("OpenAlgo route {path} not served")]
    RouteNotSupported { path: String },
    /// A declared resource called with a method it does not declare (`allowed`, as in `Allow`).
    #[error("method {method} not allowed (allowed: {allowed})")]
    MethodNotAllowed { method: String, allowed: &'static str },
    /// A dependency (DynamoDB, KMS, Secrets Manager) failed: fail closed with 503.
    #[error("dependency unavailable: {0:#}")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error: {0:#}")]
    Internal(#[source] anyhow::Error),
}

/// The login steps that can be refused, each with its wire code and message in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// The TOTP step without a password-checked login waiting for it.
    NoPendingLogin,
    /// A wrong, reused or expired code at the TOTP step.
    InvalidTotp,
    /// Neither the password nor a code confirmed a key reveal.
    ReauthFailed,
}

impl AuthStep {
    /// The machine code clients read.
    pub const fn code(self) -> &'static str {
        match self {
            AuthStep::NoPendingLogin => "no_pending_login",
            AuthStep::InvalidTotp => "invalid_totp",
            AuthStep::ReauthFailed => "reauth_failed",
        }
    }

    /// The message a client may see.
    pub const fn message(self) -> &'static str {
        match self {
            AuthStep::NoPendingLogin => "No pending login. Sign in first.",
            AuthStep::InvalidTotp => "Invalid TOTP code.",
            AuthStep::ReauthFailed => "Password or code is incorrect.",
        }
    }
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest { message: message.into(), errors: None }
    }

    pub fn unavailable(source: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(source.into())
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self::Internal(source.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            AppError::BadRequest { .. } | AppError::BrokerLinkRefused => 400,
            AppError::OrderRejected { .. } | AppError::CsrfFailed | AppError::BrokerRejected { .. } => 400,
            AppError::BrokerSessionExpired | AppError::BrokerIpNotRegistered => 403,
            AppError::SessionExpired | AppError::InvalidCredentials | AppError::AuthStep(_) => 401,
            AppError::CrossSite | AppError::IpNotAllowed | AppError::AdminOnly => 403,
            AppError::InvalidApiKey | AppError::RevokedApiKey | AppError::Banned | AppError::NoBrokerLinked => 403,
            AppError::NotFound { .. }
            | AppError::RouteNotSupported { .. }
            | AppError::OrderNotFound { .. }
            | AppError::NoSuchBan => 404,
            AppError::AccountBusy | AppError::ConcurrentChange => 409,
            AppError::WebhookSuspended => 403,
            AppError::MethodNotAllowed { .. } => 405,
            AppError::PayloadTooLarge { .. } => 413,
            AppError::RateLimited { .. } => 429,
            AppError::Internal(_) => 500,
            AppError::Unavailable(_) | AppError::BrokerUnavailable(_) => 503,
        }
    }

    /// Stable machine-readable code, so clients can tell causes apart (T14).
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { .. } => "invalid_request",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::InvalidApiKey => "invalid_apikey",
            AppError::RevokedApiKey => "revoked_apikey",
            AppError::Banned => "ip_banned",
            AppError::NoBrokerLinked => "broker_not_linked",
            AppError::OrderRejected { .. } => "order_rejected",
            AppError::OrderNotFound { .. } => "order_not_found",
            AppError::BrokerRejected { .. } => "broker_rejected",
            AppError::BrokerUnavailable(_) => "broker_unavailable",
            AppError::BrokerSessionExpired => "broker_session_expired",
            AppError::BrokerIpNotRegistered => "broker_ip_not_registered",
            AppError::BrokerLinkRefused => "broker_link_refused",
            AppError::AccountBusy => "account_busy",
            AppError::ConcurrentChange => "concurrent_change",
            AppError::WebhookSuspended => "webhook_suspended",
            AppError::SessionExpired => "session_expired",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::AuthStep(step) => step.code(),
            AppError::CsrfFailed => "csrf_failed",
            AppError::CrossSite => "cross_site_refused",
            AppError::IpNotAllowed => "ip_not_allowed",
            AppError::AdminOnly => "admin_only",
            AppError::NoSuchBan => "ban_not_found",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::NotFound { .. } => "not_found",
            AppError::RouteNotSupported { .. } => "route_not_supported",
            AppError::MethodNotAllowed { .. } => "method_not_allowed",
            AppError::Unavailable(_) => "service_unavailable",
            AppError::Internal(_) => "internal_error",
        }
    }

    /// What the client reads. 5xx texts are fixed: details only go to the log.
    pub fn public_message(&self) -> String {
        match self {
            AppError::BadRequest { message, .. } => message.clone(),
            AppError::PayloadTooLarge { limit } => format!("Request body is larger than {limit} bytes"),
            AppError::InvalidApiKey => "Invalid openalgo apikey".into(),
            AppError::RevokedApiKey => "This API key has been revoked; generate a new key".into(),
            AppError::Banned => "Access Denied: Your IP has been banned".into(),
            AppError::NoBrokerLinked => {
                "No broker is linked to this account: orders go to the sandbox. Link a broker to trade live.".into()
            }
            AppError::OrderRejected { message, .. } => message.clone(),
            AppError::OrderNotFound { order_id } => format!("Order {order_id} not found"),
            AppError::BrokerRejected { message } => message.clone(),
            AppError::BrokerUnavailable(_) => {
                "The broker is not reachable right now. Please retry.".into()
            }
            AppError::BrokerSessionExpired => {
                "Your broker session has expired: log in to your broker again on the Broker page.".into()
            }
            AppError::BrokerIpNotRegistered => {
                "The broker refused this server's IP address: register the stack's egress IP (the EgressIps output) with your broker.".into()
            }
            AppError::BrokerLinkRefused => {
                "This broker login was not started from this session, or it expired or was already used. Nothing was linked: start again from the Broker page.".into()
            }
            AppError::AccountBusy => "The account is busy with other orders; please retry".into(),
            AppError::WebhookSuspended => {
                "This webhook was suspended when its owner's API key was regenerated; the owner can re-bind it on the API key page".into()
            }
            AppError::ConcurrentChange => {
                "The API key or its allowlist changed while saving; nothing was saved, please retry".into()
            }
            AppError::SessionExpired => "Your session has expired. Please log in again.".into(),
            AppError::InvalidCredentials => "Invalid credentials".into(),
            AppError::AuthStep(step) => step.message().into(),
            AppError::CsrfFailed => "Security token expired or invalid. Please refresh the page and try again.".into(),
            AppError::CrossSite => "Access Denied".into(),
            AppError::IpNotAllowed => "This API key may not be used from your IP address".into(),
            AppError::AdminOnly => "Administrator access required".into(),
            AppError::NoSuchBan => "IP not found in ban list".into(),
            AppError::RateLimited { .. } => "Rate limit exceeded. Please slow down your requests.".into(),
            AppError::NotFound { .. } => "Not found".into(),
            AppError::RouteNotSupported { path } => {
                format!("{path} is an OpenAlgo route that Kavach does not serve yet")
            }
            AppError::MethodNotAllowed { method, allowed } => {
                format!("{method} is not allowed on this route; it takes {allowed}")
            }
            AppError::Unavailable(_) => "Service Unavailable".into(),
            AppError::Internal(_) => "Internal Server Error".into(),
        }
    }

    pub fn is_server_error(&self) -> bool {
        self.status() >= 500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant's status and code, written out by hand: the match has no wildcard, so a new
    /// variant does not compile until it is pinned here.
    fn pinned(error: &AppError) -> (u16, &'static str) {
        match error {
            AppError::BadRequest { .. } => (400, "invalid_request"),
            AppError::PayloadTooLarge { .. } => (413, "payload_too_large"),
            AppError::InvalidApiKey => (403, "invalid_apikey"),
            AppError::RevokedApiKey => (403, "revoked_apikey"),
            AppError::Banned => (403, "ip_banned"),
            AppError::NoBrokerLinked => (403, "broker_not_linked"),
            AppError::OrderRejected { .. } => (400, "order_rejected"),
            AppError::OrderNotFound { .. } => (404, "order_not_found"),
            AppError::BrokerRejected { .. } => (400, "broker_rejected"),
            AppError::BrokerUnavailable(_) => (503, "broker_unavailable"),
            AppError::BrokerSessionExpired => (403, "broker_session_expired"),
            AppError::BrokerIpNotRegistered => (403, "broker_ip_not_registered"),
            AppError::BrokerLinkRefused => (400, "broker_link_refused"),
            AppError::AccountBusy => (409, "account_busy"),
            AppError::ConcurrentChange => (409, "concurrent_change"),
            AppError::WebhookSuspended => (403, "webhook_suspended"),
            AppError::SessionExpired => (401, "session_expired"),
            AppError::InvalidCredentials => (401, "invalid_credentials"),
            // A login step answers with its own OpenAlgo code.
            AppError::AuthStep(AuthStep::NoPendingLogin) => (401, "no_pending_login"),
            AppError::AuthStep(AuthStep::InvalidTotp) => (401, "invalid_totp"),
            AppError::AuthStep(AuthStep::ReauthFailed) => (401, "reauth_failed"),
            AppError::CsrfFailed => (400, "csrf_failed"),
            AppError::CrossSite => (403, "cross_site_refused"),
            AppError::IpNotAllowed => (403, "ip_not_allowed"),
            AppError::AdminOnly => (403, "admin_only"),
            AppError::NoSuchBan => (404, "ban_not_found"),
            AppError::RateLimited { .. } => (429, "rate_limited"),
            AppError::NotFound { .. } => (404, "not_found"),
            AppError::RouteNotSupported { .. } => (404, "route_not_supported"),
            AppError::MethodNotAllowed { .. } => (405, "method_not_allowed"),
            AppError::Unavailable(_) => (503, "service_unavailable"),
            AppError::Internal(_) => (500, "internal_error"),
        }
    }

    #[test]
    fn every_variant_has_its_pinned_status_and_code() {
        let one_of_each = [
            AppError::bad_request("x"),
            AppError::PayloadTooLarge { limit: 1 },
            AppError::InvalidApiKey,
            AppError::RevokedApiKey,
            AppError::Banned,
            AppError::NoBrokerLinked,
            AppError::OrderRejected { message: "x".into(), order_id: None },
            AppError::OrderNotFound { order_id: "1".into() },
            AppError::BrokerRejected { message: "x".into() },
            AppError::BrokerUnavailable(anyhow::anyhow!("timed out")),
            AppError::BrokerSessionExpired,
            AppError::BrokerIpNotRegistered,
            AppError::BrokerLinkRefused,
            AppError::AccountBusy,
            AppError::ConcurrentChange,
            AppError::WebhookSuspended,
            AppError::SessionExpired,
            AppError::InvalidCredentials,
            AppError::AuthStep(AuthStep::NoPendingLogin),
            AppError::AuthStep(AuthStep::InvalidTotp),
            AppError::AuthStep(AuthStep::ReauthFailed),
            AppError::CsrfFailed,
            AppError::CrossSite,
            AppError::IpNotAllowed,
            AppError::AdminOnly,
            AppError::NoSuchBan,
            AppError::RateLimited { retry_after_secs: 1 },
            AppError::NotFound { path: "/x".into() },
            AppError::RouteNotSupported { path: "/api/v1/symbol".into() },
            AppError::MethodNotAllowed { method: "GET".into(), allowed: "POST" },
            AppError::unavailable(anyhow::anyhow!("dynamodb timed out")),
            AppError::internal(anyhow::anyhow!("bug")),
        ];
        for error in one_of_each {
            assert_eq!((error.status(), error.code()), pinned(&error), "{error:?}");
        }
    }

    #[test]
    fn server_errors_never_expose_their_source() {
        let error = AppError::unavailable(anyhow::anyhow!("secret table name kavach-identity"));
        assert_eq!(error.public_message(), "Service Unavailable");
        assert!(error.to_string().contains("kavach-identity"), "the log line keeps the detail");
    }

    #[test]
    fn openalgo_messages_are_verbatim() {
        assert_eq!(AppError::InvalidApiKey.public_message(), "Invalid openalgo apikey");
        assert_eq!(AppError::Banned.public_message(), "Access Denied: Your IP has been banned");
        assert_eq!(
            AppError::RateLimited { retry_after_secs: 1 }.public_message(),
            "Rate limit exceeded. Please slow down your requests."
        );
        let steps = [
            (AuthStep::NoPendingLogin, "No pending login. Sign in first."),
            (AuthStep::InvalidTotp, "Invalid TOTP code."),
            (AuthStep::ReauthFailed, "Password or code is incorrect."),
        ];
        for (step, message) in steps {
            assert_eq!(AppError::AuthStep(step).public_message(), message);
        }
    }
}
