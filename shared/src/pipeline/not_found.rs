//! The catch-all behind the API's `{proxy+}`.

use lambda_http::{Body, Request};
use serde_json::Value;

use crate::app::bootstrap::Deps;
use crate::core::error::AppError;
use crate::crypto::api_key::ApiKey;
use crate::http::traffic::loggable_path;
use crate::identity::auth::allowlist_admits;
use crate::pipeline::api::{InFlight, request_path};
use crate::pipeline::gate::{CredentialRecord, Gate};
use crate::pipeline::pages::request::session_cookie;
use crate::pipeline::route::{declared_resource, is_openalgo_route};
use crate::store::identity::ApiKeyRecord;
use crate::store::sessions::Stage;
use crate::threats::{Detection, Detector, Initiator, is_well_known};

/// The catch-all behind the API's `{proxy+}`: every path no route declares, and every declared
/// resource called with a method it does not declare (API Gateway routes those here too). It is
/// where scanners land, so a miss feeds the 404 detector, except from those who are not scanning:
/// - a declared resource with the wrong method (a browser opening `/api/v1/ping`): it is answered
///   405 with the methods it takes, metered by the address's page budget instead;
/// - a visitor with a logged-in session, or a request with an API key naming a live key of ours (a
///   trader's own client asking for a route Kavach lacks; its secret is not verified, see
///   `names_live_key`);
/// - a request for one of OpenAlgo's routes that Kavach does not serve yet: it is answered
///   `route_not_supported`, naming the route;
/// - a path browsers ask for by themselves;
/// - a request another site's page caused, or one from a shared sender: those are metered by the
///   address's page budget instead.
///
/// Bans are enforced here as on every route.
pub async fn not_found(deps: &Deps, request: Request) -> lambda_http::Response<Body> {
    let in_flight = InFlight::named(deps, &request, "not-found");
    let path = loggable_path(request_path(&request));
    let declared = declared_resource(request_path(&request));
    let outcome: Result<Value, AppError> = async {
        let ip = in_flight.client_ip()?;
        let session = session_cookie(&request);
        let key = presented_api_key(&request, deps.config.max_body_bytes);
        let initiator = Initiator::of(request.headers());
        // Misses a detector will not count (another site's page, a shared sender) are metered per
        // address instead, so a scanner that forges the browser's marks still meets a budget.
        let counted = declared.is_none() && deps.threats().counts(ip, initiator);
        let admitted = Gate::catch_all(ip, session.as_ref(), key.as_ref(), !counted).pass(deps).await?;
        let (now, under_ban) = (admitted.now, admitted.under_ban);
        let credentialed = match (&key, admitted.record) {
            (_, CredentialRecord::Session(session)) => session.is_some_and(|session| session.stage == Stage::Full),
            (Some(key), CredentialRecord::ApiKey(Some(record))) => names_live_key(key, &record, ip),
            _ => false,
        };
        if under_ban && !credentialed {
            return Err(AppError::Banned);
        }
        if let Some((_, allowed)) = declared {
            let method = request.method().as_str();
            // The method is the resource's own only when the path differs from it by a trailing
            // slash that API Gateway did not fold: a miss, but still not a scanner's.
            if allowed.split(", ").any(|declared| declared == method) {
                return Err(AppError::NotFound { path: path.clone() });
            }
            return Err(AppError::MethodNotAllowed { method: method.to_owned(), allowed });
        }
        let openalgo = is_openalgo_route(&path);
        if !credentialed
            && !openalgo
            && !is_well_known(&path)
            && let Detection::Banned(_) =
                deps.threats().observe(Detector::NotFound, ip, initiator, Some(&path), now).await?
        {
            return Err(AppError::Banned);
        }
        if openalgo {
            return Err(AppError::RouteNotSupported { path: path.clone() });
        }
        Err(AppError::NotFound { path: path.clone() })
    }
    .await;
    let mut response = in_flight.respond(deps, &request, outcome, None);
    if response.status() == http::StatusCode::METHOD_NOT_ALLOWED
        && let Some((_, allowed)) = declared
    {
        response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
    }
    response
}

/// Whether `key` names a live key of ours that `ip` may use: its id's record exists, is not revoked,
/// and its allowlist admits the address. The secret is not verified: the catch-all, the function
/// every scanner reaches, holds no pepper (nor any other secret), so that code execution in it
/// finds none. The trade-off: someone who knows a key's id (public by design) but not its secret
/// can miss here without being counted, or past a detector's ban; they still meet a manual ban, the
/// WAF and a 404.
fn names_live_key(key: &ApiKey, record: &ApiKeyRecord, ip: std::net::IpAddr) -> bool {
    record.id == *key.id() && record.revoked_at.is_none() && allowlist_admits(&record.allow, ip)
}

/// A well-formed API key where OpenAlgo clients put it: the JSON body's `apikey`, or the query's
/// for its GET routes. Anything else (no key, a body too big or not JSON) is no key.
fn presented_api_key(request: &Request, max_body_bytes: usize) -> Option<ApiKey> {
    let from_body = crate::http::body_bytes(request, max_body_bytes)
        .ok()
        .and_then(|body| serde_json::from_slice::<Value>(body).ok())
        .and_then(|body| body.get("apikey").and_then(Value::as_str).and_then(ApiKey::parse));
    from_body.or_else(|| {
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .find(|(name, _)| name == "apikey")
            .and_then(|(_, value)| ApiKey::parse(&value))
    })
}
