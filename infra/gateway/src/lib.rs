//! The local gateway: what `sam local start-api` would be, without Docker.
//!
//! It serves every route of `template.yaml` on loopback by turning each HTTP request into an API
//! Gateway REST proxy event (source IP = the TCP peer) and calling the very handler function the
//! Lambda binary calls. A function declared in the template without a handler here is a start-up
//! error, so the local stack can never silently miss a route.
//!
//! Each dispatch runs as its template function ([`shared::app::aws::acting_as`]), as does the fill
//! engine's pass, so the IAM drift test can hold every AWS call against that function's policies,
//! and with that function's own [`Deps`] ([`Deps::for_function`]): the secrets its Lambda's cold
//! start loads ([`function_secrets`]) and no others, so a route that reached for a withheld key
//! would fail here as it would in AWS.

pub mod template;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyRequestContext};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, Response};
use shared::app::aws::acting_as;
use shared::app::bootstrap::Secrets;
use shared::pipeline::route::{Endpoint, Routes, resource_parameters};
use shared::{AppError, Deps};
use tokio::net::TcpListener;

pub use template::TemplateRoute;

/// API Gateway's own payload limit.
const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;

pub type Handler = fn(Arc<Deps>, Request) -> BoxFuture<'static, Response<Body>>;

/// Template logical id → the handler its Lambda binary runs.
fn handlers() -> HashMap<&'static str, Handler> {
    macro_rules! handler {
        ($path:path) => {{
            fn call(deps: Arc<Deps>, request: Request) -> BoxFuture<'static, Response<Body>> {
                Box::pin(async move { $path(&deps, request).await })
            }
            call as Handler
        }};
    }
    HashMap::from([
        ("PingFunction", handler!(ping::handler)),
        ("OrdersFunction", handler!(orders::handler)),
        ("AccountFunction", handler!(account::handler)),
        ("MarketFunction", handler!(market::handler)),
        ("WebhookFunction", handler!(webhook::handler)),
        ("SetupFunction", handler!(web::setup_handler)),
        ("AuthFunction", handler!(web::auth_handler)),
        ("PortalFunction", handler!(web::portal_handler)),
        ("SecurityFunction", handler!(web::security_handler)),
        ("NotFoundFunction", handler!(web::not_found_handler)),
    ])
}

/// Template logical id → the routes its function declares (`shared::pipeline::route::Routes`).
/// `tests/tests/routes.rs` compares them with the template's `Api` events, function by function.
pub fn declared_routes() -> BTreeMap<&'static str, Vec<Endpoint>> {
    BTreeMap::from([
        ("PingFunction", ping::Ping::endpoints()),
        ("OrdersFunction", orders::OrderRoute::endpoints()),
        ("AccountFunction", account::AccountRoute::endpoints()),
        ("MarketFunction", market::MarketRoute::endpoints()),
        ("WebhookFunction", webhook::StrategyWebhook::endpoints()),
        ("SetupFunction", web::SetupRoute::endpoints()),
        ("AuthFunction", web::AuthRoute::endpoints()),
        ("PortalFunction", web::PortalRoute::endpoints()),
        ("SecurityFunction", web::SecurityRoute::endpoints()),
        ("NotFoundFunction", web::CatchAll::endpoints()),
    ])
}

/// The logical ids the gateway can serve.
pub fn function_names() -> BTreeSet<&'static str> {
    handlers().into_keys().collect()
}

/// Template logical id → the secrets its Lambda binary's cold start loads (each binary's `main`
/// passes the same constant to `bootstrap::init_for`).
pub fn function_secrets() -> BTreeMap<&'static str, Secrets> {
    BTreeMap::from([
        ("PingFunction", ping::SECRETS),
        ("OrdersFunction", orders::SECRETS),
        ("AccountFunction", account::SECRETS),
        ("MarketFunction", market::SECRETS),
        ("WebhookFunction", webhook::SECRETS),
        ("SetupFunction", web::SETUP_SECRETS),
        ("AuthFunction", web::AUTH_SECRETS),
        ("PortalFunction", web::PORTAL_SECRETS),
        ("SecurityFunction", web::SECURITY_SECRETS),
        ("NotFoundFunction", web::NOT_FOUND_SECRETS),
        (ROLLOVER_FUNCTION, rollover::SECRETS),
    ])
}

struct Route {
    /// The template function's logical id.
    function: &'static str,
    method: String,
    path: String,
    segments: Vec<String>,
    handler: Handler,
}

/// API Gateway's own answer to a request outside every stage (execute-api) or resource.
const FORBIDDEN: &str = r#"{"message":"Forbidden"}"#;
const MISSING_AUTHENTICATION_TOKEN: &str = r#"{"message":"Missing Authentication Token"}"#;

impl Route {
    /// Path parameters if `path` matches this resource (`{name}` one segment, `{name+}` the rest).
    fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        resource_parameters(&self.path, path)
    }

    fn is_greedy(&self) -> bool {
        self.path.contains("+}")
    }

    fn admits(&self, method: &hyper::Method) -> bool {
        self.method == "ANY" || self.method == method.as_str()
    }

    /// Literal resources win over parameters, parameters over greedy ones, as in API Gateway.
    fn specificity(&self) -> (usize, usize) {
        let greedy = self.segments.iter().filter(|s| s.ends_with("+}")).count();
        let literal = self.segments.iter().filter(|s| !s.starts_with('{')).count();
        (greedy, usize::MAX - literal)
    }
}

/// The template function EventBridge runs the fill engine as.
pub const FILL_ENGINE_FUNCTION: &str = "FillEngineFunction";

/// One fill-engine invocation: a matching pass, as [`FILL_ENGINE_FUNCTION`].
pub async fn fill_engine_pass(engine: &fill_engine::FillEngine) -> Result<usize, AppError> {
    acting_as(FILL_ENGINE_FUNCTION, engine.run_once()).await
}

/// What EventBridge does for the fill engine in AWS: one matching pass every `interval`, for as long
/// as the task lives. A failed pass is logged and the next one runs on time.
pub async fn run_fill_engine(engine: fill_engine::FillEngine, interval: std::time::Duration) {
    every(interval, "fill engine", || fill_engine_pass(&engine)).await
}

/// `pass` every `interval`, for as long as the task lives: a failed pass is logged as `name`'s and
/// the next one runs on time.
async fn every<T, Pass, Fut>(interval: std::time::Duration, name: &str, pass: Pass)
where
    Pass: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = pass().await {
            tracing::warn!(error = %error, "{name} pass failed");
        }
    }
}

/// The template function EventBridge Scheduler runs the daily broker rollover as.
pub const ROLLOVER_FUNCTION: &str = "RolloverFunction";

/// One rollover invocation, as [`ROLLOVER_FUNCTION`] on a cold start with its own secrets.
pub async fn rollover_pass(deps: &Deps) -> Result<shared::broker::links::Rollover, AppError> {
    acting_as(ROLLOVER_FUNCTION, rollover::run_once(deps)).await
}

/// What the scheduler does in AWS, locally: a rollover pass every `interval`. AWS runs it once, at
/// the boundary; a pass finds nothing to do until a token's expiry has passed, so running it
/// more often only tells the broker sooner.
pub async fn run_rollover(deps: Deps, interval: std::time::Duration) {
    every(interval, "broker rollover", || rollover_pass(&deps)).await
}

pub struct Gateway {
    routes: Vec<Route>,
    /// Each function's own view of the stack: its secrets only.
    deps: HashMap<&'static str, Arc<Deps>>,
    /// The stage every path is served under (`/prod/…`, as on the execute-api endpoint), or none
    /// (at the root, as on a custom domain mapped at `/`).
    stage: Option<String>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<String> = self.routes.iter().map(|route| format!("{} {}", route.method, route.path)).collect();
        f.debug_struct("Gateway").field("routes", &routes).field("stage", &self.stage).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("template.yaml declares {0} but the local gateway has no handler for it; register it in infra/gateway")]
    NoHandler(String),
    #[error("{0} has a handler but no secrets in function_secrets; register them in infra/gateway")]
    NoSecrets(String),
}

impl Gateway {
    /// `deps` holds every secret; each function is served with its own narrowing of it.
    pub fn from_template(deps: Arc<Deps>, template_yaml: &str) -> Result<Self, GatewayError> {
        let handlers = handlers();
        let secrets = function_secrets();
        let mut narrowed: HashMap<&'static str, Arc<Deps>> = HashMap::new();
        let mut routes = template::routes(template_yaml)?
            .into_iter()
            .map(|route| {
                let (function, handler) = handlers
                    .get_key_value(route.function.as_str())
                    .ok_or_else(|| GatewayError::NoHandler(route.function.clone()))?;
                let function_secrets =
                    *secrets.get(function).ok_or_else(|| GatewayError::NoSecrets(route.function.clone()))?;
                narrowed.entry(function).or_insert_with(|| Arc::new(deps.for_function(function_secrets)));
                let segments = route.path.trim_start_matches('/').split('/').map(str::to_owned).collect();
                Ok(Route { function, method: route.method, path: route.path, segments, handler: *handler })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        routes.sort_by_key(Route::specificity);
        Ok(Self { routes, deps: narrowed, stage: None })
    }

    /// Serves every route under `/<stage>`, as API Gateway's execute-api endpoint does: a request
    /// outside it gets API Gateway's 403. An empty stage serves at the root.
    #[must_use]
    pub fn under_stage(mut self, stage: &str) -> Self {
        let stage = stage.trim_matches('/');
        self.stage = (!stage.is_empty()).then(|| stage.to_owned());
        self
    }

    /// The path under the stage, or `None` when `raw_path` is outside it.
    fn site_path<'a>(&self, raw_path: &'a str) -> Option<&'a str> {
        let Some(stage) = &self.stage else { return Some(raw_path) };
        let rest = raw_path.strip_prefix('/')?.strip_prefix(stage.as_str())?;
        match rest {
            "" => Some("/"),
            rest if rest.starts_with('/') => Some(rest),
            _ => None,
        }
    }

    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Serves until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(error = %error, "accept failed");
                    continue;
                }
            };
            let gateway = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, Infallible>(gateway.handle(request, peer).await) }
                });
                if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(error = %error, "connection ended");
                }
            });
        }
    }

    async fn handle(&self, request: hyper::Request<Incoming>, peer: SocketAddr) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_PAYLOAD_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return to_hyper(shared::http::error(&AppError::PayloadTooLarge { limit: MAX_PAYLOAD_BYTES })),
        };
        let Some(site_path) = self.site_path(parts.uri.path()) else { return api_gateway_answer(403, FORBIDDEN) };
        // OpenAlgo answers `/x/` as `/x` (its routes use strict_slashes=False).
        let path = if site_path.len() > 1 { site_path.trim_end_matches('/') } else { site_path };
        let path = if path.is_empty() { "/" } else { path };
        // As in API Gateway: the most specific resource that matches the path is chosen first, then
        // its method; a declared resource called with a method it does not declare falls through to
        // the greedy `{proxy+}` (whose function tells that apart from an undeclared path).
        let resource = self.routes.iter().find(|route| route.matches(path).is_some()).map(|route| route.path.as_str());
        let declared = self
            .routes
            .iter()
            .filter(|route| Some(route.path.as_str()) == resource && route.admits(&parts.method))
            .find_map(|route| route.matches(path).map(|params| (route, params)));
        let matched = declared.or_else(|| {
            self.routes
                .iter()
                .filter(|route| route.is_greedy() && route.admits(&parts.method))
                .find_map(|route| route.matches(path).map(|params| (route, params)))
        });
        let Some((route, path_parameters)) = matched else {
            return api_gateway_answer(403, MISSING_AUTHENTICATION_TOKEN);
        };
        let event = proxy_event(&parts, site_path, body, peer, route, path_parameters, self.stage.as_deref());
        let request = Request::from(LambdaRequest::ApiGatewayV1(event));
        // Every route's function was given its deps in from_template.
        let Some(deps) = self.deps.get(route.function).cloned() else {
            return to_hyper(shared::http::error(&AppError::internal(anyhow::anyhow!(
                "{} has no deps",
                route.function
            ))));
        };
        let response = acting_as(route.function, (route.handler)(deps.clone(), request)).await;
        // As on Lambda, the traffic record (and any reset mail) is handled after the response, off
        // the client's clock, by the same function.
        tokio::spawn(acting_as(route.function, async move { deps.after_response().await }));
        to_hyper(response)
    }
}

/// API Gateway's REST proxy event: `path` is the resource path as sent (no stage), the request
/// context's `path` the full path the client asked for (stage included), from which
/// `shared::http::base_path` derives the prefix of the pages' links.
fn proxy_event(
    parts: &hyper::http::request::Parts,
    site_path: &str,
    body: Bytes,
    peer: SocketAddr,
    route: &Route,
    path_parameters: HashMap<String, String>,
    stage: Option<&str>,
) -> ApiGatewayProxyRequest {
    let mut query: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        query.entry(name.into_owned()).or_default().push(value.into_owned());
    }
    let query = QueryMap::from(query);

    let mut context = ApiGatewayProxyRequestContext::default();
    context.identity.source_ip = Some(peer.ip().to_string());
    context.request_id = Some(hex::encode(rand::random::<[u8; 16]>()));
    context.stage = Some(stage.unwrap_or("local").into());
    context.resource_path = Some(route.path.clone());
    context.path = Some(parts.uri.path().to_owned());
    context.http_method = parts.method.clone();
    context.protocol = Some("HTTP/1.1".into());
    context.request_time_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));

    let mut event = ApiGatewayProxyRequest::default();
    event.resource = Some(route.path.clone());
    event.path = Some(site_path.to_owned());
    event.http_method = parts.method.clone();
    event.headers = parts.headers.clone();
    event.multi_value_headers = parts.headers.clone();
    event.query_string_parameters = query.clone();
    event.multi_value_query_string_parameters = query;
    event.path_parameters = path_parameters;
    event.request_context = context;
    (event.body, event.is_base64_encoded) = match String::from_utf8(body.to_vec()) {
        Ok(text) if text.is_empty() => (None, false),
        Ok(text) => (Some(text), false),
        Err(_) => (Some(base64::engine::general_purpose::STANDARD.encode(&body)), true),
    };
    event
}

/// An answer API Gateway gives itself, before any function. In AWS the template's
/// `GatewayResponses` add the security headers to it; here they are added alike.
fn api_gateway_answer(status: u16, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut response = Response::new(Body::Text(body.to_owned()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::FORBIDDEN);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    to_hyper(shared::http::with_security_headers(response))
}

fn to_hyper(response: Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_function_has_a_handler() {
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).expect("template");
        let handlers = handlers();
        for route in template::routes(&template).expect("routes") {
            assert!(handlers.contains_key(route.function.as_str()), "{} has no local handler", route.function);
        }
    }

    #[test]
    fn the_fill_engine_runs_as_the_template_function_with_the_schedule() {
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).expect("template");
        let document: serde_yaml::Value = serde_yaml::from_str(&template).expect("yaml");
        let events = &document["Resources"][FILL_ENGINE_FUNCTION]["Properties"]["Events"];
        let scheduled = events.as_mapping().into_iter().flatten().any(|(_, event)| event["Type"] == "Schedule");
        assert!(scheduled, "template.yaml has no {FILL_ENGINE_FUNCTION} with a Schedule event");
    }
}
