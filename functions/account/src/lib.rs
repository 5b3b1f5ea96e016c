//! The account reads and analyzer mode. They share one function because they need the same
//! privileges: read-only access to the account's sandbox partition.

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::identity::SANDBOX_BROKER;
use shared::limits::LimitedAction;
use shared::pipeline::api::{self, Call};
use shared::pipeline::route::{Endpoint, Route, Routes};
use shared::trading::orders::Exchange;
use shared::trading::reads::{AnalyzerToggle, OpenPosition, OrderStatus};
use shared::trading::sandbox::service::Sandbox;
use shared::trading::sandbox::views;
use shared::{AppError, Deps};

/// What this function's cold start loads: the pepper, to verify API keys; no purpose key.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::PEPPER;

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
    let sandbox = deps.sandbox();
    let sandbox = &sandbox;
    let nothing_else = |_: &mut shared::http::validate::Fields| Some(());
    match account_route {
        AccountRoute::OrderBook => api::run(deps, request, route, nothing_else, |c| order_book(sandbox, c)).await,
        AccountRoute::TradeBook => api::run(deps, request, route, nothing_else, |c| trade_book(sandbox, c)).await,
        AccountRoute::PositionBook => api::run(deps, request, route, nothing_else, |c| position_book(sandbox, c)).await,
        AccountRoute::Holdings => api::run(deps, request, route, nothing_else, |_| holdings()).await,
        AccountRoute::Funds => api::run(deps, request, route, nothing_else, |c| funds(sandbox, c)).await,
        AccountRoute::OrderStatus => {
            api::run(deps, request, route, OrderStatus::parse, |c| order_status(sandbox, c)).await
        }
        AccountRoute::OpenPosition => {
            api::run(deps, request, route, OpenPosition::parse, |c| open_position(sandbox, c)).await
        }
        AccountRoute::Analyzer => api::run(deps, request, route, nothing_else, |c| analyzer(sandbox, c)).await,
        AccountRoute::AnalyzerToggle => {
            api::run(deps, request, route, AnalyzerToggle::parse, |c| toggle(sandbox, c)).await
        }
    }
}

async fn order_book(sandbox: &Sandbox<'_>, call: Call<()>) -> Result<Value, AppError> {
    let orders = sandbox.store().orders_since(&call.principal.user, &sandbox.session_first_id()).await?;
    Ok(views::order_book(&orders))
}

async fn trade_book(sandbox: &Sandbox<'_>, call: Call<()>) -> Result<Value, AppError> {
    let trades = sandbox.store().trades_since(&call.principal.user, &sandbox.session_first_id()).await?;
    Ok(views::trade_book(&trades))
}

async fn position_book(sandbox: &Sandbox<'_>, call: Call<()>) -> Result<Value, AppError> {
    let ledger = sandbox.ledger(&call.principal.user).await?;
    let positions: Vec<_> = ledger.positions.values().cloned().collect();
    Ok(views::position_book(&positions, ledger.session_start().0, ledger.now()))
}

/// The sandbox settles nothing into holdings yet (no T+1 run): CNC buys stay in the positionbook.
async fn holdings() -> Result<Value, AppError> {
    Ok(json!({
        "data": {
            "holdings": [],
            "statistics": { "totalholdingvalue": 0.0, "totalinvvalue": 0.0, "totalprofitandloss": 0.0, "totalpnlpercentage": 0.0 },
        },
        "mode": "analyze",
    }))
}

async fn funds(sandbox: &Sandbox<'_>, call: Call<()>) -> Result<Value, AppError> {
    let ledger = sandbox.ledger(&call.principal.user).await?;
    let positions: Vec<_> = ledger.positions.values().cloned().collect();
    Ok(views::funds(&ledger.funds, &positions, ledger.now()))
}

async fn order_status(sandbox: &Sandbox<'_>, call: Call<OrderStatus>) -> Result<Value, AppError> {
    let order_id = &call.input.order_id;
    let order = sandbox
        .store()
        .order(&call.principal.user, order_id)
        .await?
        .ok_or_else(|| AppError::OrderNotFound { order_id: order_id.clone() })?;
    Ok(views::order_status(&order))
}

/// The net quantity for (symbol, exchange, product), 0 if none. The exchange is not enum-checked
/// here in OpenAlgo either: an unknown one simply has no position.
async fn open_position(sandbox: &Sandbox<'_>, call: Call<OpenPosition>) -> Result<Value, AppError> {
    let ledger = sandbox.ledger(&call.principal.user).await?;
    let input = &call.input;
    let exchange = Exchange::CHOICES.iter().find(|(name, _)| *name == input.exchange).map(|(_, exchange)| *exchange);
    let quantity = ledger
        .positions
        .values()
        .find(|p| Some(p.key.exchange) == exchange && p.key.symbol == input.symbol && p.key.product == input.product)
        .map_or(0, |position| position.quantity);
    Ok(json!({ "quantity": quantity, "mode": "analyze" }))
}

async fn analyzer_data(sandbox: &Sandbox<'_>, user: &str) -> Result<Value, AppError> {
    let total_logs = sandbox.store().count_orders_since(user, &sandbox.session_first_id()).await?;
    Ok(json!({ "mode": "analyze", "analyze_mode": true, "total_logs": total_logs }))
}

async fn analyzer(sandbox: &Sandbox<'_>, call: Call<()>) -> Result<Value, AppError> {
    Ok(json!({ "data": analyzer_data(sandbox, &call.principal.user).await? }))
}

/// Analyzer mode is where every account trades until a broker is linked: switching it on is a
/// no-op, switching it off needs a live broker.
async fn toggle(sandbox: &Sandbox<'_>, call: Call<AnalyzerToggle>) -> Result<Value, AppError> {
    if !call.input.analyze && call.principal.broker == SANDBOX_BROKER {
        return Err(AppError::NoBrokerLinked);
    }
    let mut data = analyzer_data(sandbox, &call.principal.user).await?;
    data["message"] = json!("Analyzer mode switched to analyze");
    Ok(json!({ "data": data }))
}
