//! What each entry point declares about itself: the template event it serves (method and
//! resource), and for an API route its rate-limit class and outage policy, for a page the session
//! it needs.
//!
//! Each function lists its routes as an enum implementing [`Routes`]; its handler finds the route
//! of a request with [`Routes::of`] and matches on it exhaustively, so a declared route without a
//! handler does not compile, and `tests/tests/routes.rs` compares every function's declared
//! routes with its `Api` events in `template.yaml`.

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
/// request context: the path itself may carry a stage prefix or a trailing slash.
pub fn resource(request: &Request) -> String {
    match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV1(context)) => {
            context.resource_path.clone().unwrap_or_default()
        }
        _ => String::new(),
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
