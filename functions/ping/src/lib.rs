//! `POST /api/v1/ping`: answers `pong` and the caller's broker once the key is verified.

use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::Deps;
use shared::limits::LimitedAction;
use shared::pipeline::api;
use shared::pipeline::route::{Endpoint, Route, Routes};

/// What this function's cold start loads: the pepper, to verify API keys; no purpose key.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::PEPPER;

pub const ROUTE: Route = Route::post("ping", "/api/v1/ping", LimitedAction::Api, true);

/// The one route this function serves.
#[derive(Clone, Copy, Debug)]
pub struct Ping;

impl Routes for Ping {
    const ALL: &'static [Self] = &[Ping];

    fn endpoint(self) -> Endpoint {
        ROUTE.endpoint
    }
}

pub async fn handler(deps: &Deps, request: Request) -> Response<Body> {
    if Ping::of(&request).is_none() {
        return api::unknown_resource(&request);
    }
    api::run(
        deps,
        request,
        ROUTE,
        |_no_other_fields| Some(()),
        |call| async move { Ok(json!({ "data": { "message": "pong", "broker": call.principal.broker } })) },
    )
    .await
}
