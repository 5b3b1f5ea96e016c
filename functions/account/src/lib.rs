//! The account reads and analyzer mode. They share one function because they need the same
//! privileges: read-only access to the account's sandbox partition and its broker link, and the
//! account's trading mode.

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::broker::BrokerId;
use shared::identity::SANDBOX_BROKER;
use shared::limits::LimitedAction;
use shared::pipeline::api::{self, Call};
use shared::pipeline::route::{Endpoint, Route, Routes};
use shared::store::Conditional;
use shared::trading::desk::Desk;
use shared::trading::orders::Exchange;
use shared::trading::reads::{AnalyzerToggle, OpenPosition, OrderStatus};
use shared::trading::sandbox::views;
use shared::{AppError, Deps};

/// What this function's cold start loads: the pepper, to verify API keys, and the brokers' keys,
/// to call a live account's broker.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::TRADING;

/// The account reads, and analyzer mode.
#[derive(Clone, Copy, Debug)]
pub enum AccountRoute {
    OrderBook,
    TradeBook,
    PositionBook,
    Holdings,
    Funds,
    OrderStatus,
    OpenPosition,
    Analyzer,
    AnalyzerToggle,
}

impl AccountRoute {
    pub const fn route(self) -> Route {
        const fn read(name: &'static str, path: &'static str) -> Route {
            Route::post(name, path, LimitedAction::Api, true)
        }
        match self {
            AccountRoute::OrderBook => read("orderbook", "/api/v1/orderbook"),
            AccountRoute::TradeBook => read("tradebook", "/api/v1/tradebook"),
            AccountRoute::PositionBook => read("positionbook", "/api/v1/positionbook"),
            AccountRoute::Holdings => read("holdings", "/api/v1/holdings"),
            AccountRoute::Funds => read("funds", "/api/v1/funds"),
            AccountRoute::OrderStatus => read("orderstatus", "/api/v1/orderstatus"),
            AccountRoute::OpenPosition => read("openposition", "/api/v1/openposition"),
            AccountRoute::Analyzer => read("analyzer", "/api/v1/analyzer"),
            // Leaving or entering analyzer mode changes the account.
            AccountRoute::AnalyzerToggle => {
                Route::post("analyzer/toggle", "/api/v1/analyzer/toggle", LimitedAction::Api, false)
            }
        }
    }
}

impl Routes for AccountRoute {
    const ALL: &'static [Self] = &[
        AccountRoute::OrderBook,
        AccountRoute::TradeBook,
        AccountRoute::PositionBook,
        AccountRoute::Holdings,
        AccountRoute::Funds,
        AccountRoute::OrderStatus,
        AccountRoute::OpenPosition,
        AccountRoute::Analyzer,
        AccountRoute::AnalyzerToggle,
    ];

    fn endpoint(self) -> Endpoint {
        self.route().endpoint
    }
}

pub async fn handler(deps: &Deps, request: Request) -> Response<Body> {
    let Some(account_route) = AccountRoute::of(&request) else { return api::unknown_resource(&request) };
    let route = account_route.route();
    let nothing_else = |_: &mut shared::http::validate::Fields| Some(());
    match account_route {
        AccountRoute::OrderBook => api::run(deps, request, route, nothing_else, |c| order_book(deps, c)).await,
        AccountRoute::TradeBook => api::run(deps, request, route, nothing_else, |c| trade_book(deps, c)).await,
        AccountRoute::PositionBook => api::run(deps, request, route, nothing_else, |c| position_book(deps, c)).await,
        AccountRoute::Holdings => api::run(deps, request, route, nothing_else, |c| holdings(deps, c)).await,
        AccountRoute::Funds => api::run(deps, request, route, nothing_else, |c| funds(deps, c)).await,
        AccountRoute::OrderStatus => {
            api::run(deps, request, route, OrderStatus::parse, |c| order_status(deps, c)).await
        }
        AccountRoute::OpenPosition => {
            api::run(deps, request, route, OpenPosition::parse, |c| open_position(deps, c)).await
        }
        AccountRoute::Analyzer => api::run(deps, request, route, nothing_else, |c| analyzer(deps, c)).await,
        AccountRoute::AnalyzerToggle => {
            api::run(deps, request, route, AnalyzerToggle::parse, |c| toggle(deps, c)).await
        }
    }
}

async fn order_book(deps: &Deps, call: Call<()>) -> Result<Value, AppError> {
    match deps.desk(&call.principal.user, &call.principal.broker).await? {
        Desk::Live(live) => live.order_book().await,
        Desk::Sandbox { sandbox, user } => {
            Ok(views::order_book(&sandbox.store().orders_since(&user, &sandbox.session_first_id()).await?))
        }
    }
}

async fn trade_book(deps: &Deps, call: Call<()>) -> Result<Value, AppError> {
    match deps.desk(&call.principal.user, &call.principal.broker).await? {
        Desk::Live(live) => live.trade_book().await,
        Desk::Sandbox { sandbox, user } => {
            Ok(views::trade_book(&sandbox.store().trades_since(&user, &sandbox.session_first_id()).await?))
        }
    }
}

async fn position_book(deps: &Deps, call: Call<()>) -> Result<Value, AppError> {
    match deps.desk(&call.principal.user, &call.principal.broker).await? {
        Desk::Live(live) => live.position_book().await,
        Desk::Sandbox { sandbox, user } => {
            let ledger = sandbox.ledger(&user).await?;
            let positions: Vec<_> = ledger.positions.values().cloned().collect();
            Ok(views::position_book(&positions, ledger.session_start().0, ledger.now()))
        }
    }
}

/// The sandbox settles nothing into holdings yet (no T+1 run): CNC buys stay in the positionbook.
async fn holdings(deps: &Deps, call: Call<()>) -> Result<Value, AppError> {
    match deps.desk(&call.principal.user, &call.principal.broker).await? {
        Desk::Live(live) => live.holdings().await,
        Desk::Sandbox { .. } => Ok(json!({
            "data": {
                "holdings": [],
                "statistics": { "totalholdingvalue": 0.0, "totalinvvalue": 0.0, "totalprofitandloss": 0.0, "totalpnlpercentage": 0.0 },
            },
            "mode": "analyze",
        })),
    }
}

async fn funds(deps: &Deps, call: Call<()>) -> Result<Value, AppError> {
    match deps.desk(&call.principal.user, &call.principal.broker).await? {
        Desk::Live(live) => live.funds().await,
        Desk::Sandbox { sandbox, user } => {
            let ledger = sandbox.ledger(&user).await?;
            let positions: Vec<_> = ledger.positions.values().cloned().collect();
            Ok(views::funds(&ledger.funds, &positions, ledger.now()))
        }
    }
}

async fn order_status(deps: &Deps, call: Call<OrderStatus>) -> Result<Value, AppError> {
    let order_id = &call.input.order_id;
    match deps.desk(&call.principal.user, &call.principal.broker).await? {
        Desk::Live(live) => live.order_status(order_id).await,
        Desk::Sandbox { sandbox, user } => {
            let order = sandbox
                .store()
                .order(&user, order_id)
                .await?
                .ok_or_else(|| AppError::OrderNotFound { order_id: order_id.clone() })?;
            Ok(views::order_status(&order))
        }
    }
}

/// The net quantity for (symbol, exchange, product), 0 if none. The exchange is not enum-checked
/// here in OpenAlgo either: an unknown one simply has no position.
async fn open_position(deps: &Deps, call: Call<OpenPosition>) -> Result<Value, AppError> {
    let input = &call.input;
    match deps.desk(&call.principal.user, &call.principal.broker).await? {
        Desk::Live(live) => live.open_position(&input.symbol, &input.exchange, input.product.as_str()).await,
        Desk::Sandbox { sandbox, user } => {
            let ledger = sandbox.ledger(&user).await?;
            let exchange =
                Exchange::CHOICES.iter().find(|(name, _)| *name == input.exchange).map(|(_, exchange)| *exchange);
            let quantity = ledger
                .positions
                .values()
                .find(|p| {
                    Some(p.key.exchange) == exchange && p.key.symbol == input.symbol && p.key.product == input.product
                })
                .map_or(0, |position| position.quantity);
            Ok(json!({ "quantity": quantity, "mode": "analyze" }))
        }
    }
}

/// Analyzer mode as OpenAlgo reports it: on while the account trades on the sandbox. `total_logs`
/// counts the session's sandbox orders, the analyzer's log, in either mode.
async fn analyzer_data(deps: &Deps, user: &str, broker: &str) -> Result<Value, AppError> {
    let sandbox = deps.sandbox();
    let total_logs = sandbox.store().count_orders_since(user, &sandbox.session_first_id()).await?;
    let analyze = broker == SANDBOX_BROKER;
    Ok(json!({ "mode": mode_name(analyze), "analyze_mode": analyze, "total_logs": total_logs }))
}

const fn mode_name(analyze: bool) -> &'static str {
    if analyze { "analyze" } else { "live" }
}

async fn analyzer(deps: &Deps, call: Call<()>) -> Result<Value, AppError> {
    Ok(json!({ "data": analyzer_data(deps, &call.principal.user, &call.principal.broker).await? }))
}

/// Switches the account between the sandbox (`mode: true`) and its linked broker (`mode: false`),
/// on the account and its current key together. Live needs a broker whose login is current: with
/// none linked it is `broker_not_linked`, with an expired or revoked one `broker_session_expired`.
async fn toggle(deps: &Deps, call: Call<AnalyzerToggle>) -> Result<Value, AppError> {
    let account = deps.identity.user(&call.principal.user).await?.ok_or(AppError::InvalidApiKey)?;
    let destination =
        if call.input.analyze { SANDBOX_BROKER } else { live_broker(deps, &account.username).await?.as_str() };
    if account.broker != destination
        && let Conditional::Stale = deps.identity.set_order_destination(&account, destination).await?
    {
        return Err(AppError::ConcurrentChange);
    }
    let mut data = analyzer_data(deps, &account.username, destination).await?;
    data["message"] = json!(format!("Analyzer mode switched to {}", mode_name(call.input.analyze)));
    Ok(json!({ "data": data }))
}

/// The first broker `user` holds a current login with.
async fn live_broker(deps: &Deps, user: &str) -> Result<BrokerId, AppError> {
    let links = deps.broker_links()?;
    let mut refusal = AppError::NoBrokerLinked;
    for &broker in BrokerId::ALL {
        match links.live_session(user, broker).await {
            Ok(_) => return Ok(broker),
            Err(AppError::NoBrokerLinked) => {}
            Err(error) => refusal = error,
        }
    }
    Err(refusal)
}
