//! `POST /api/v1/ping`: answers `pong` and the caller's broker once the key is verified.

use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::Deps;
use shared::pipeline::api::{self, Route};
use shared::limits::LimitedAction;

pub const ROUTE: Route = Route { name: "ping", action: LimitedAction::Api, reads_only: true };

pub async fn handler(deps: &Deps, request: Request) -> Response<Body> {
    api::run(
        deps,
        request,
        ROUTE,
        |_no_other_fields| Some(()),
        |call| async move { Ok(json!({ "data": { "message": "pong", "broker": call.principal.broker } })) },
    )
    .await
}
