//! The catch-all behind the API's `{proxy+}`.

use lambda_http::{Body, Request};
use serde_json::Value;

use crate::app::bootstrap::Deps;
use crate::core::error::AppError;
use crate::http::traffic::loggable_path;
use crate::pipeline::api::{InFlight, request_path};
use crate::pipeline::gate::Gate;
use crate::pipeline::pages::request::session_cookie;
use crate::store::sessions::Stage;
use crate::threats::{Detection, Detector, is_well_known};

/// The catch-all behind the API's `{proxy+}`: every path no route declares. It is where scanners
/// land, so a miss from a visitor without a logged-in session feeds the 404 detector, unless it is
/// a path browsers ask for by themselves. Bans are enforced here as on every route.
pub async fn not_found(deps: &Deps, request: Request) -> lambda_http::Response<Body> {
    let in_flight = InFlight::named(deps, &request, "not-found");
    let path = loggable_path(request_path(&request));
    let outcome: Result<Value, AppError> = async {
        let ip = in_flight.client_ip()?;
        let presented = session_cookie(&request);
        let admitted = Gate::catch_all(ip, presented.as_ref()).pass(deps).await?;
        let now = admitted.now;
        let signed_in = admitted.session().is_some_and(|session| session.stage == Stage::Full);
        if !signed_in
            && !is_well_known(&path)
            && let Detection::Banned(_) = deps.threats().observe(Detector::NotFound, ip, Some(&path), now).await?
        {
            return Err(AppError::Banned);
        }
        Err(AppError::NotFound { path: path.clone() })
    }
    .await;
    in_flight.respond(deps, &request, outcome, None)
}
