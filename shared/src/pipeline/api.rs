//! The request pipeline for OpenAlgo's `/api/v1/*` routes. Every route function is a call to [`run`]
//! with its name, its rate-limit class, its body schema and its handler.
//!
//! Order of verdicts: ban (403) → rate limit (429) → body (413/400) → API key (403) → handler.
//! The body is read and parsed before the gate so that the key id can join the gate's round trip,
//! but a banned or throttled client learns nothing about its body. (Under a detector's ban, a
//! request whose key id exists goes on to the body and key checks; one that then fails to verify is
//! answered `banned`.)

use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use lambda_http::{Body, Request, RequestExt};
use serde_json::Value;

use crate::app::bootstrap::Deps;
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::core::metrics::Metric;
use crate::crypto::api_key::ApiKey;
use crate::http;
use crate::http::client_ip::client_ip;
use crate::http::traffic::{TrafficRecord, loggable_path};
use crate::http::validate::Fields;
use crate::identity::auth::Principal;
use crate::pipeline::gate::{self, Admitted, Gate};
use crate::pipeline::route::{Route, declared_resource, resource};
use crate::threats::{Detection, Detector, Initiator, short_key_hash};

/// What a handler receives: an authenticated principal and its validated input.
#[derive(Debug)]
pub struct Call<T> {
    pub principal: Principal,
    /// The key the principal was verified by: the subject of its budgets, for a route that spends
    /// more than the gate charged (a basket's orders).
    pub key: ApiKey,
    pub client_ip: IpAddr,
    pub input: T,
}

/// Runs the whole pipeline and always produces a response; the runtime never sees an `Err`.
pub async fn run<T, Parse, Handle, Fut>(
    deps: &Deps,
    request: Request,
    route: Route,
    parse: Parse,
    handle: Handle,
) -> lambda_http::Response<Body>
where
    Parse: FnOnce(&mut Fields) -> Option<T>,
    Handle: FnOnce(Call<T>) -> Fut,
    Fut: Future<Output = Result<Value, AppError>>,
{
    let in_flight = InFlight::begin(deps, &request, route);
    let mut user = None;
    let outcome = pipeline(deps, &request, in_flight.client_ip(), route, parse, handle, &mut user).await;
    in_flight.respond(deps, &request, outcome, user)
}

/// One request in flight: when it started, from where, and how it ends: the JSON response
/// with its security headers, and the traffic record queued for after the response.
#[derive(Debug)]
pub struct InFlight {
    started: Instant,
    at: UnixMillis,
    /// The route's name, for the log lines and the traffic record.
    route: &'static str,
    /// `None` when the request context carries no usable source IP (logged at `begin`).
    pub ip: Option<IpAddr>,
}

impl InFlight {
    pub fn begin(deps: &Deps, request: &Request, route: Route) -> Self {
        Self::named(deps, request, route.name)
    }

    /// [`InFlight::begin`] for what is not an API [`Route`] (a page, the catch-all): only the name
    /// is recorded, so no rate-limit action or outage policy has to be made up for it.
    pub fn named(deps: &Deps, request: &Request, route: &'static str) -> Self {
        let ip = client_ip(request)
            .inspect_err(|error| tracing::error!(error.detail = %error, "no client IP; refusing the request"))
            .ok();
        Self { started: Instant::now(), at: deps.clock.now(), route, ip }
    }

    /// The client IP, or the 500 every request without one gets: API Gateway always sets it, so its
    /// absence means the function is not behind API Gateway.
    pub fn client_ip(&self) -> Result<IpAddr, AppError> {
        self.ip.ok_or_else(|| AppError::internal(anyhow::anyhow!("request context has no usable sourceIp")))
    }

    /// The response for `outcome`, after queueing the traffic record. The path recorded is the
    /// template resource when there is one, so a secret in the path (a webhook id) is never logged.
    pub fn respond(
        self,
        deps: &Deps,
        request: &Request,
        outcome: Result<Value, AppError>,
        user: Option<String>,
    ) -> lambda_http::Response<Body> {
        let response = match outcome {
            Ok(data) => http::success(data),
            Err(error) => {
                if !error.is_server_error() {
                    tracing::info!(route = self.route, error.code = error.code(), "request refused");
                }
                http::error(&error)
            }
        };
        self.finish(deps, request, response, user)
    }

    /// Queues the traffic record for a response built elsewhere (a page) and returns it.
    pub fn finish(
        self,
        deps: &Deps,
        request: &Request,
        response: lambda_http::Response<Body>,
        user: Option<String>,
    ) -> lambda_http::Response<Body> {
        let status = response.status().as_u16();
        // Counted here, from the status, so every route and page is measured the same way.
        let by_status = match status {
            429 => &[Metric::RateLimited][..],
            503 => &[Metric::ServerErrors, Metric::StoreUnavailable][..],
            500..=599 => &[Metric::ServerErrors][..],
            _ => &[][..],
        };
        for metric in by_status {
            deps.metrics.count(*metric, self.at);
        }
        // The template resource stands for the path, so a secret in the path (a webhook id) is never
        // logged. The catch-all's resource says nothing: it logs the declared resource a wrong
        // method was called on (API Gateway sends those to it too), else the path the client sent.
        let resource = resource(request);
        let path = if resource.is_empty() || resource.contains("+}") {
            declared_resource(request_path(request)).map_or(request_path(request), |(declared, _)| declared)
        } else {
            resource
        };
        deps.pending_traffic.push(TrafficRecord {
            at: self.at,
            request_id: api_gateway_request_id(request),
            client_ip: self.ip,
            method: request.method().to_string(),
            path: loggable_path(path),
            status,
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            user,
            route: self.route,
        });
        response
    }
}

/// For a resource this function does not serve: API Gateway only routes declared resources here,
/// so this means the template and the function disagree.
pub fn unknown_resource(request: &Request) -> lambda_http::Response<Body> {
    http::error(&AppError::NotFound { path: loggable_path(request_path(request)) })
}

/// The path the client asked for, without the stage prefix `uri()` carries on API Gateway.
pub fn request_path(request: &Request) -> &str {
    request.raw_http_path()
}

/// API Gateway's request id, so a traffic record can be matched with API Gateway's own logs.
fn api_gateway_request_id(request: &Request) -> String {
    match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV1(context)) => {
            context.request_id.clone().unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// What every request with a bad key costs its address: one failure on its rate-limit budget, one
/// hit for the invalid-key detector (which may ban it, unless another site's page or a shared
/// sender sent it), and the metric. The answer is
/// `InvalidApiKey` — or `Banned` when this attempt crossed the threshold — unless storage failed.
///
/// A malformed key was already charged to the address by the gate (a request without a
/// well-formed key is charged to its IP), so only a well-formed key that failed pays here.
async fn invalid_api_key(
    deps: &Deps,
    ip: IpAddr,
    initiator: Initiator,
    route: Route,
    presented: &str,
    already_charged: bool,
    now: UnixMillis,
) -> AppError {
    deps.metrics.count(Metric::InvalidApiKeys, now);
    let evidence = short_key_hash(presented);
    let charge =
        async { if already_charged { Ok(()) } else { gate::charge_failure(deps, ip, route.action, now).await } };
    let (charged, detected) =
        tokio::join!(charge, deps.threats().observe(Detector::InvalidApiKey, ip, initiator, Some(&evidence), now));
    match (charged, detected) {
        (Err(error), _) | (_, Err(error)) => error,
        (Ok(()), Ok(Detection::Banned(_))) => AppError::Banned,
        (Ok(()), Ok(_)) => AppError::InvalidApiKey,
    }
}

async fn pipeline<T, Parse, Handle, Fut>(
    deps: &Deps,
    request: &Request,
    ip: Result<IpAddr, AppError>,
    route: Route,
    parse: Parse,
    handle: Handle,
    user: &mut Option<String>,
) -> Result<Value, AppError>
where
    Parse: FnOnce(&mut Fields) -> Option<T>,
    Handle: FnOnce(Call<T>) -> Fut,
    Fut: Future<Output = Result<Value, AppError>>,
{
    let ip = ip?;
    let parsed = http::body_bytes(request, deps.config.max_body_bytes).and_then(|body| {
        let mut fields = Fields::parse(body)?;
        let apikey = fields.required_string("apikey", 1..=256);
        let input = parse(&mut fields);
        fields.finish()?;
        // A schema returns `None` only after recording why, so `finish` has already refused it.
        let input = input.ok_or_else(|| AppError::internal(anyhow::anyhow!("schema returned nothing")))?;
        Ok((apikey.unwrap_or_default(), input))
    });
    let presented = parsed.as_ref().ok().and_then(|(apikey, _)| ApiKey::parse(apikey));

    let admitted = Gate::api(ip, route, presented.as_ref()).pass(deps).await?;
    let (apikey, input) = parsed?;
    let (now, under_ban) = (admitted.now, admitted.under_ban);
    let well_formed = presented.is_some();
    let verified = match &presented {
        Some(presented) => deps.authenticator().authenticate(presented, admitted.api_key(), ip, now).await,
        None => Err(AppError::InvalidApiKey),
    };
    let principal = match verified {
        Ok(principal) => principal,
        Err(AppError::InvalidApiKey) => {
            let initiator = Initiator::of(request.headers());
            let refusal = invalid_api_key(deps, ip, initiator, route, &apikey, !well_formed, now).await;
            return Err(Admitted::refuse(under_ban, refusal));
        }
        Err(error) => return Err(error),
    };
    // Verified, so it was presented well-formed.
    let key = presented.ok_or(AppError::InvalidApiKey)?;
    *user = Some(principal.user.clone());
    handle(Call { principal, key, client_ip: ip, input }).await
}
