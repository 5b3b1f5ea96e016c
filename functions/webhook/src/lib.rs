//! `POST /strategy/webhook/{webhook_id}`: a strategy signal `{"symbol","action"[,"position_size"]}`
//! authenticated only by the secret id in the URL (see `shared::identity::webhooks`). It passes the
//! one gate (ban, then the id's own counter in the webhook class, 100 per minute by default, with
//! the address's failures as a backstop and the webhook's record fetched in the same round trip),
//! is validated strictly, and trades on the webhook owner's account. An unknown id is a failure of
//! its address and a miss for the 404 detector.

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};
use shared::http::validate::Fields;
use std::net::IpAddr;

use shared::core::clock::UnixMillis;
use shared::identity::webhooks::{self, Mode};
use shared::limits::LimitedAction;
use shared::pipeline::api::InFlight;
use shared::pipeline::gate::{self as gate, Admitted, Gate};
use shared::pipeline::route::{Endpoint, Route, Routes};
use shared::threats::{Detection, Detector, Initiator};
use shared::trading::orders::{Action, OrderLeg, PriceType, SmartOrder, SmartOutcome};
use shared::{AppError, Deps, http};

/// What this function's cold start loads: the brokers' keys, to trade a live account at its broker.
/// No pepper: the webhook's id is checked by its SHA-256.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::BROKER_TOKENS;

const PATH: &str = "/strategy/webhook/{webhook_id}";
pub const ROUTE: Route = Route::post("strategy/webhook", PATH, LimitedAction::Webhook, false);

/// The one route this function serves.
#[derive(Clone, Copy, Debug)]
pub struct StrategyWebhook;

impl Routes for StrategyWebhook {
    const ALL: &'static [Self] = &[StrategyWebhook];

    fn endpoint(self) -> Endpoint {
        ROUTE.endpoint
    }
}

struct Signal {
    symbol: String,
    action: Action,
    position_size: Option<f64>,
}

pub async fn handler(deps: &Deps, request: Request) -> Response<Body> {
    if StrategyWebhook::of(&request).is_none() {
        return shared::pipeline::api::unknown_resource(&request);
    }
    let in_flight = InFlight::begin(deps, &request, ROUTE);
    match signal(deps, &request, in_flight.client_ip()).await {
        Ok((body, user)) => in_flight.respond(deps, &request, Ok(body), Some(user)),
        Err(error) => in_flight.respond(deps, &request, Err(error), None),
    }
}

async fn signal(deps: &Deps, request: &Request, ip: Result<IpAddr, AppError>) -> Result<(Value, String), AppError> {
    let ip = ip?;
    let presented = request.path_parameters_ref().and_then(|p| p.first("webhook_id")).unwrap_or_default();
    let id_hash = webhooks::presented_hash(presented);
    let admitted = Gate::webhook(ip, ROUTE, id_hash.as_deref()).pass(deps).await?;
    let (now, under_ban) = (admitted.now, admitted.under_ban);
    let Some(webhook) = admitted.webhook() else {
        let refusal = unknown_webhook(deps, request, ip, id_hash.is_some(), now).await;
        return Err(Admitted::refuse(under_ban, refusal));
    };
    if webhook.suspended_at.is_some() {
        return Err(Admitted::refuse(under_ban, AppError::WebhookSuspended));
    }
    let mut fields = Fields::parse(http::body_bytes(request, deps.config.max_body_bytes)?)?;
    let symbol = fields.required_string("symbol", 1..=64);
    let action = fields.one_of("action", Action::CHOICES, None);
    let position_size = fields.number("position_size", false);
    fields.finish()?;
    // `finish` has refused a missing or invalid field already; this only unwraps the values.
    let (symbol, action) = symbol.zip(action).ok_or_else(|| AppError::bad_request("symbol and action are required"))?;
    let input = Signal { symbol, action, position_size };

    let Some(quantity) = webhook.symbols.get(&input.symbol).copied() else {
        return Err(AppError::bad_request(format!(
            "Symbol {} is not mapped to strategy {}",
            input.symbol, webhook.strategy
        )));
    };
    let leg = OrderLeg {
        exchange: webhook.exchange,
        symbol: input.symbol.clone(),
        action: input.action,
        quantity: quantity as f64,
        price_type: PriceType::Market,
        product: webhook.product,
        price: 0.0,
        trigger_price: 0.0,
        disclosed_quantity: 0,
    };
    let target = match (webhook.mode, input.action) {
        (Mode::Long, Action::Buy) | (Mode::Short, Action::Sell) => None,
        (Mode::Long, Action::Sell) | (Mode::Short, Action::Buy) => Some(0.0),
        (Mode::Both, _) => Some(input.position_size.ok_or_else(|| {
            AppError::bad_request("position_size is required: this strategy trades both ways (mode both)")
        })?),
    };
    // The webhook trades where its owner's account does: the account is read now, so a switch to
    // or from analyzer mode applies to the next alert.
    let owner = deps.identity.user(&webhook.user).await?.ok_or_else(|| AppError::NotFound { path: PATH.to_owned() })?;
    let desk = deps.desk(&webhook.user, &owner.broker).await?;
    let placed =
        |order_id: String| json!({ "message": format!("Order placed for {}", input.symbol), "orderid": order_id });
    let body = match target {
        None => placed(desk.place(&webhook.strategy, &leg).await?),
        Some(position_size) => {
            let smart = SmartOrder { strategy: webhook.strategy.clone(), leg, position_size };
            match desk.smart(&smart).await? {
                SmartOutcome::Placed(order_id) => placed(order_id),
                SmartOutcome::Matched(message) => json!({ "message": message }),
            }
        }
    };
    let body = desk.answer(body);
    Ok((body, webhook.user))
}

/// What an id with no webhook costs its address: a failure on the address's webhook budget (a
/// malformed id was charged to it by the gate already), and a miss for the 404 detector, which
/// counts it like any unknown path unless it came from a shared sender or another site's page.
async fn unknown_webhook(deps: &Deps, request: &Request, ip: IpAddr, well_formed: bool, now: UnixMillis) -> AppError {
    let charge = async { if well_formed { gate::charge_failure(deps, ip, ROUTE.action, now).await } else { Ok(()) } };
    let initiator = Initiator::of(request.headers());
    let detect = deps.threats().observe(Detector::NotFound, ip, initiator, Some(PATH), now);
    match tokio::join!(charge, detect) {
        (Err(error), _) | (_, Err(error)) => error,
        (Ok(()), Ok(Detection::Banned(_))) => AppError::Banned,
        (Ok(()), Ok(_)) => AppError::NotFound { path: PATH.to_owned() },
    }
}
