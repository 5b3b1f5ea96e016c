//! What each entry point declares about itself: the template event it serves (method and
//! resource), and for an API route its rate-limit class and outage policy, for a page the session
//! it needs.
//!
//! Each function lists its routes as an enum implementing [`Routes`]; its handler finds the route
//! of a request with [`Routes::of`] and matches on it exhaustively, so a declared route without a
//! handler does not compile, and `tests/tests/routes.rs` compares every function's declared
//! routes with its `Api` events in `template.yaml`.

use std::collections::HashMap;

use lambda_http::{Request, RequestExt};

use crate::limits::LimitedAction;

/// An HTTP method as `template.yaml` writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    /// API Gateway's `ANY`, which only the catch-all uses.
    Any,
}

impl Method {
    /// The template's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Any => "any",
        }
    }

    fn admits(self, method: &http::Method) -> bool {
        match self {
            Method::Get => method == http::Method::GET,
            Method::Post => method == http::Method::POST,
            Method::Any => true,
        }
    }
}

/// One `Api` event: a method on a template resource (`/api/v1/placeorder`, `/{proxy+}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
}

impl Endpoint {
    /// Whether API Gateway routed `request` to this event: its resource and method.
    pub fn serves(&self, request: &Request) -> bool {
        self.method.admits(request.method()) && resource(request) == self.path
    }
}

/// The routes one function serves. `ALL` is the declaration the drift test reads; a route left
/// out of it is never dispatched, and the test names it as missing.
pub trait Routes: Copy + Sized + 'static {
    const ALL: &'static [Self];

    fn endpoint(self) -> Endpoint;

    /// The route API Gateway sent `request` to, if this function declares it.
    fn of(request: &Request) -> Option<Self> {
        Self::ALL.iter().copied().find(|route| route.endpoint().serves(request))
    }

    /// Every endpoint this function declares.
    fn endpoints() -> Vec<Endpoint> {
        Self::ALL.iter().map(|route| route.endpoint()).collect()
    }
}

/// The template resource the request was routed to (`/api/v1/placeorder`), from API Gateway's
/// request context: the path itself may carry a stage prefix or a trailing slash. Borrowed: a
/// function asks it of each route it declares until one matches.
pub fn resource(request: &Request) -> &str {
    match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV1(context)) => {
            context.resource_path.as_deref().unwrap_or_default()
        }
        _ => "",
    }
}

/// An `/api/v1` route.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// Stable name for logs and the traffic record, e.g. `ping`.
    pub name: &'static str,
    pub endpoint: Endpoint,
    pub action: LimitedAction,
    /// Reads state and changes nothing: [`crate::core::config::StoreOutage::ServeReads`] may serve it
    /// without its ban and rate-limit checks when the security table cannot be reached.
    pub reads_only: bool,
}

impl Route {
    /// OpenAlgo's routes are all `POST`.
    pub const fn post(name: &'static str, path: &'static str, action: LimitedAction, reads_only: bool) -> Self {
        Self { name, endpoint: Endpoint { method: Method::Post, path }, action, reads_only }
    }
}

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

/// A page or one of its form or JSON endpoints.
#[derive(Clone, Copy, Debug)]
pub struct PageRoute {
    pub name: &'static str,
    pub endpoint: Endpoint,
    pub access: Access,
}

impl PageRoute {
    pub const fn get(name: &'static str, path: &'static str, access: Access) -> Self {
        Self { name, endpoint: Endpoint { method: Method::Get, path }, access }
    }

    pub const fn post(name: &'static str, path: &'static str, access: Access) -> Self {
        Self { name, endpoint: Endpoint { method: Method::Post, path }, access }
    }
}

/// OpenAlgo's `/api/v1` routes (the contract's route inventory), by the name after `/api/v1/`.
/// A request for one that Kavach does not serve yet is a client that speaks OpenAlgo (the current
/// SDK calls `symbol`, `search`, `expiry` and more), not a scanner: it gets `route_not_supported`
/// and never feeds the 404 detector.
const OPENALGO_ROUTES: &[&str] = &[
    "placeorder",
    "placesmartorder",
    "modifyorder",
    "cancelorder",
    "cancelallorder",
    "closeposition",
    "basketorder",
    "splitorder",
    "optionsorder",
    "optionsmultiorder",
    "placegttorder",
    "modifygttorder",
    "cancelgttorder",
    "gttorderbook",
    "orderbook",
    "tradebook",
    "positionbook",
    "holdings",
    "funds",
    "orderstatus",
    "openposition",
    "margin",
    "quotes",
    "multiquotes",
    "depth",
    "history",
    "intervals",
    "symbol",
    "search",
    "expiry",
    "instruments",
    "optionsymbol",
    "optionchain",
    "optiongreeks",
    "multioptiongreeks",
    "syntheticfuture",
    "market/holidays",
    "market/timings",
    "ping",
    "analyzer",
    "analyzer/toggle",
    "pnl/symbols",
    "chart",
    "whatsapp/notify",
];
/// OpenAlgo's route families whose routes take a path segment or have many members.
const OPENALGO_ROUTE_FAMILIES: &[&str] = &["ticker/", "telegram/", "portfolio/", "sip/"];

/// Whether `path` (without a stage prefix) is one of OpenAlgo's `/api/v1` routes, with or without
/// its trailing slash.
pub fn is_openalgo_route(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/api/v1/") else { return false };
    let name = name.strip_suffix('/').unwrap_or(name);
    OPENALGO_ROUTES.contains(&name) || OPENALGO_ROUTE_FAMILIES.iter().any(|family| name.starts_with(family))
}

/// Every resource of `template.yaml` but the catch-all's `{proxy+}`, with the methods it declares
/// (as an `Allow` header lists them). In API Gateway a declared
/// resource called with a method it does not declare falls through to `{proxy+}`: the catch-all
/// needs these to tell such a call (a trader's browser opening `/api/v1/ping`) from a path nobody
/// declares, which is what the 404 detector is for. `tests/tests/routes.rs` holds the list equal
/// to the template's.
pub const DECLARED_RESOURCES: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/api/v1/analyzer", "POST"),
    ("/api/v1/analyzer/toggle", "POST"),
    ("/api/v1/basketorder", "POST"),
    ("/api/v1/cancelallorder", "POST"),
    ("/api/v1/cancelorder", "POST"),
    ("/api/v1/closeposition", "POST"),
    ("/api/v1/depth", "POST"),
    ("/api/v1/funds", "POST"),
    ("/api/v1/history", "POST"),
    ("/api/v1/holdings", "POST"),
    ("/api/v1/intervals", "POST"),
    ("/api/v1/modifyorder", "POST"),
    ("/api/v1/multiquotes", "POST"),
    ("/api/v1/openposition", "POST"),
    ("/api/v1/orderbook", "POST"),
    ("/api/v1/orderstatus", "POST"),
    ("/api/v1/ping", "POST"),
    ("/api/v1/placeorder", "POST"),
    ("/api/v1/placesmartorder", "POST"),
    ("/api/v1/positionbook", "POST"),
    ("/api/v1/quotes", "POST"),
    ("/api/v1/splitorder", "POST"),
    ("/api/v1/tradebook", "POST"),
    ("/apikey", "GET, POST"),
    ("/apikey/allowlist", "POST"),
    ("/apikey/reveal", "POST"),
    ("/apikey/webhooks/rebind", "POST"),
    ("/apikey/webhooks/revoke", "POST"),
    ("/auth/change-password", "POST"),
    ("/auth/csrf-token", "GET"),
    ("/auth/login", "GET, POST"),
    ("/auth/login/totp", "GET, POST"),
    ("/auth/logout", "POST"),
    ("/auth/logout-all", "POST"),
    ("/auth/reset-password", "GET, POST"),
    ("/auth/reset-password/confirm", "GET, POST"),
    ("/auth/sessions", "GET"),
    ("/broker", "GET"),
    ("/broker/callback/zerodha", "GET"),
    ("/broker/connect", "POST"),
    ("/broker/disconnect", "POST"),
    ("/dashboard", "GET"),
    ("/logs", "GET"),
    ("/logs/export", "GET"),
    ("/security", "GET"),
    ("/security/api/data", "GET"),
    ("/security/ban", "POST"),
    ("/security/clear-404", "POST"),
    ("/security/settings", "POST"),
    ("/security/unban", "POST"),
    ("/setup", "GET, POST"),
    ("/strategy/webhook/{webhook_id}", "POST"),
];

/// The path parameters if `path` (without a stage prefix or trailing slash) is an instance of the
/// template resource `pattern`: `{name}` is one non-empty segment, `{name+}` one or more. The
/// local gateway routes by it and the catch-all recognises declared resources by it.
pub fn resource_parameters(pattern: &str, path: &str) -> Option<HashMap<String, String>> {
    let actual: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let segments: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let mut parameters = HashMap::new();
    for (index, pattern) in segments.iter().enumerate() {
        if let Some(name) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
            let rest = actual.get(index..).filter(|rest| !rest.is_empty() && !rest[0].is_empty())?;
            parameters.insert(name.to_owned(), rest.join("/"));
            return Some(parameters);
        }
        let segment = actual.get(index)?;
        if let Some(name) = pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if segment.is_empty() {
                return None;
            }
            parameters.insert(name.to_owned(), (*segment).to_owned());
        } else if pattern != segment {
            return None;
        }
    }
    (actual.len() == segments.len()).then_some(parameters)
}

/// The declared resource (`/strategy/webhook/{webhook_id}`) `path` is an instance of, and its
/// methods, if any.
pub fn declared_resource(path: &str) -> Option<(&'static str, &'static str)> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    DECLARED_RESOURCES.iter().copied().find(|(pattern, _)| resource_parameters(pattern, path).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openalgo_routes_are_known_with_or_without_their_slash_and_nothing_else_is() {
        for path in ["/api/v1/symbol", "/api/v1/search/", "/api/v1/market/holidays", "/api/v1/ticker/NSE:SBIN"] {
            assert!(is_openalgo_route(path), "{path}");
        }
        for path in ["/api/v1/", "/api/v1/xyz", "/wp-login.php", "/symbol", "/api/v2/symbol", "/api/v1/symbolx"] {
            assert!(!is_openalgo_route(path), "{path}");
        }
    }

    #[test]
    fn resources_match_literally_by_parameter_and_greedily() {
        assert_eq!(resource_parameters("/api/v1/ping", "/api/v1/ping"), Some(HashMap::new()));
        assert_eq!(resource_parameters("/api/v1/ping", "/api/v1/pin"), None);
        assert_eq!(resource_parameters("/api/v1/ping", "/api/v1/ping/x"), None);
        let webhook = resource_parameters("/strategy/webhook/{id}", "/strategy/webhook/abc");
        assert_eq!(webhook.and_then(|p| p.get("id").cloned()).as_deref(), Some("abc"));
        assert_eq!(resource_parameters("/strategy/webhook/{id}", "/strategy/webhook/"), None);
        let proxy = resource_parameters("/{proxy+}", "/a/b/c");
        assert_eq!(proxy.and_then(|p| p.get("proxy").cloned()).as_deref(), Some("a/b/c"));
        assert_eq!(resource_parameters("/{proxy+}", "/"), None);
        assert_eq!(resource_parameters("/", "/"), Some(HashMap::new()));
    }

    #[test]
    fn declared_resources_are_found_with_or_without_their_slash() {
        assert_eq!(declared_resource("/api/v1/ping/"), Some(("/api/v1/ping", "POST")));
        let webhook = declared_resource("/strategy/webhook/0123abcd");
        assert_eq!(webhook, Some(("/strategy/webhook/{webhook_id}", "POST")));
        assert_eq!(declared_resource("/auth/login"), Some(("/auth/login", "GET, POST")));
        for undeclared in ["/wp-login.php", "/api/v1/symbol", "/strategy/webhook", "/setup/x"] {
            assert_eq!(declared_resource(undeclared), None, "{undeclared}");
        }
    }
}
