//! The order routes. They share one function because they need the same privileges (read and
//! write the account's sandbox partition); each keeps its own rate-limit class.

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::limits::LimitedAction;
use shared::limits::limiter::within_budgets;
use shared::limits::subject::Subject;
use shared::pipeline::api::{self, Call};
use shared::pipeline::route::{Endpoint, Route, Routes};
use shared::trading::orders::{
    BasketOrder, CancelOrder, ModifyOrder, PlaceOrder, SmartOrder, SplitOrder, StrategyOnly,
};
use shared::trading::sandbox::service::{LegOutcome, Sandbox, SmartOutcome};
use shared::{AppError, Deps};

/// What this function's cold start loads: the pepper, to verify API keys; no purpose key.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::PEPPER;

/// The order routes, each with its own rate-limit class.
#[derive(Clone, Copy, Debug)]
pub enum OrderRoute {
    Place,
    Smart,
    Modify,
    Cancel,
    CancelAll,
    Close,
    Basket,
    Split,
}

impl OrderRoute {
    pub const fn route(self) -> Route {
        use LimitedAction::{Api, Order, SmartOrder};
        match self {
            OrderRoute::Place => Route::post("placeorder", "/api/v1/placeorder", Order, false),
            OrderRoute::Smart => Route::post("placesmartorder", "/api/v1/placesmartorder", SmartOrder, false),
            OrderRoute::Modify => Route::post("modifyorder", "/api/v1/modifyorder", Order, false),
            OrderRoute::Cancel => Route::post("cancelorder", "/api/v1/cancelorder", Order, false),
            OrderRoute::CancelAll => Route::post("cancelallorder", "/api/v1/cancelallorder", Api, false),
            OrderRoute::Close => Route::post("closeposition", "/api/v1/closeposition", Api, false),
            OrderRoute::Basket => Route::post("basketorder", "/api/v1/basketorder", Api, false),
            OrderRoute::Split => Route::post("splitorder", "/api/v1/splitorder", Api, false),
        }
    }
}

impl Routes for OrderRoute {
    const ALL: &'static [Self] = &[
        OrderRoute::Place,
        OrderRoute::Smart,
        OrderRoute::Modify,
        OrderRoute::Cancel,
        OrderRoute::CancelAll,
        OrderRoute::Close,
        OrderRoute::Basket,
        OrderRoute::Split,
    ];

    fn endpoint(self) -> Endpoint {
        self.route().endpoint
    }
}

pub async fn handler(deps: &Deps, request: Request) -> Response<Body> {
    let Some(order_route) = OrderRoute::of(&request) else { return api::unknown_resource(&request) };
    let route = order_route.route();
    let sandbox = deps.sandbox();
    let sandbox = &sandbox;
    match order_route {
        OrderRoute::Place => api::run(deps, request, route, PlaceOrder::parse, |call| place(sandbox, call)).await,
        OrderRoute::Smart => api::run(deps, request, route, SmartOrder::parse, |call| smart(sandbox, call)).await,
        OrderRoute::Modify => api::run(deps, request, route, ModifyOrder::parse, |call| modify(sandbox, call)).await,
        OrderRoute::Cancel => api::run(deps, request, route, CancelOrder::parse, |call| cancel(sandbox, call)).await,
        OrderRoute::CancelAll => {
            api::run(deps, request, route, StrategyOnly::parse, |call| cancel_all(sandbox, call)).await
        }
        OrderRoute::Close => api::run(deps, request, route, StrategyOnly::parse, |call| close(sandbox, call)).await,
        OrderRoute::Basket => {
            api::run(deps, request, route, BasketOrder::parse, |call| async move {
                reserve_orders(deps, &call, call.input.orders.len()).await?;
                basket(sandbox, call).await
            })
            .await
        }
        OrderRoute::Split => {
            api::run(deps, request, route, SplitOrder::parse, |call| async move {
                reserve_orders(deps, &call, call.input.child_sizes().len()).await?;
                split(sandbox, call).await
            })
            .await
        }
    }
}

/// A basket or a split creates `orders` orders: each spends the order budget as a placeorder
/// does, all of them or, when fewer are left, none, and the whole request is refused with 429
/// before any order is placed.
async fn reserve_orders<T>(deps: &Deps, call: &Call<T>, orders: usize) -> Result<(), AppError> {
    let now = deps.clock.now();
    let orders = u64::try_from(orders).unwrap_or(u64::MAX);
    let verdict = deps.limits.reserve(LimitedAction::Order, Subject::ApiKey(&call.key), orders, now).await?;
    within_budgets([&verdict], now)
}

async fn place(sandbox: &Sandbox<'_>, call: Call<PlaceOrder>) -> Result<Value, AppError> {
    let order = sandbox.place(&call.principal.user, &call.input.strategy, &call.input.leg).await?;
    Ok(json!({ "orderid": order.id, "mode": "analyze" }))
}

async fn smart(sandbox: &Sandbox<'_>, call: Call<SmartOrder>) -> Result<Value, AppError> {
    Ok(match sandbox.smart(&call.principal.user, &call.input).await? {
        SmartOutcome::Placed(order) => json!({ "orderid": order.id, "mode": "analyze" }),
        SmartOutcome::Matched(message) => json!({ "message": message, "mode": "analyze" }),
    })
}

async fn modify(sandbox: &Sandbox<'_>, call: Call<ModifyOrder>) -> Result<Value, AppError> {
    let order = sandbox.modify(&call.principal.user, &call.input).await?;
    Ok(json!({ "orderid": order.id, "message": "Order modified successfully", "mode": "analyze" }))
}

async fn cancel(sandbox: &Sandbox<'_>, call: Call<CancelOrder>) -> Result<Value, AppError> {
    let order = sandbox.cancel(&call.principal.user, &call.input.order_id).await?;
    Ok(json!({ "orderid": order.id, "message": "Order cancelled successfully", "mode": "analyze" }))
}

async fn cancel_all(sandbox: &Sandbox<'_>, call: Call<StrategyOnly>) -> Result<Value, AppError> {
    let (cancelled, failed) = sandbox.cancel_all(&call.principal.user).await?;
    let message = if cancelled.is_empty() && failed.is_empty() {
        "No open orders to cancel".to_owned()
    } else {
        format!("Canceled {} orders. Failed to cancel {} orders.", cancelled.len(), failed.len())
    };
    let failed: Vec<Value> =
        failed.into_iter().map(|(orderid, message)| json!({ "orderid": orderid, "message": message })).collect();
    Ok(json!({ "message": message, "canceled_orders": cancelled, "failed_cancellations": failed, "mode": "analyze" }))
}

async fn close(sandbox: &Sandbox<'_>, call: Call<StrategyOnly>) -> Result<Value, AppError> {
    let (closed, failed) = sandbox.close_all(&call.principal.user).await?;
    if closed.is_empty() && failed.is_empty() {
        return Ok(json!({ "message": "No open positions to close", "mode": "analyze" }));
    }
    let mut message = format!("Closed {} positions", closed.len());
    if !failed.is_empty() {
        message.push_str(&format!(" (Failed to close {} positions)", failed.len()));
    }
    let failures: Vec<Value> = failed
        .iter()
        .map(|(key, message)| json!({ "symbol": key.symbol, "exchange": key.exchange.as_str(), "message": message }))
        .collect();
    Ok(json!({
        "message": message,
        "closed_positions": closed.len(),
        "failed_closures": failed.len(),
        "orderids": closed.iter().map(|order| order.id.clone()).collect::<Vec<_>>(),
        "failures": failures,
        "mode": "analyze",
    }))
}

/// One result row: `status` and `orderid`, or `status` and `message`.
fn leg_result(outcome: &LegOutcome, mut row: Value) -> Value {
    match &outcome.result {
        Ok(order) => {
            row["status"] = json!("success");
            row["orderid"] = json!(order.id);
        }
        Err(error) => {
            row["status"] = json!("error");
            row["message"] = json!(error.public_message());
        }
    }
    row
}

async fn basket(sandbox: &Sandbox<'_>, call: Call<BasketOrder>) -> Result<Value, AppError> {
    let outcomes = sandbox.basket(&call.principal.user, &call.input).await;
    let results: Vec<Value> = outcomes
        .iter()
        .map(|outcome| {
            let leg = &outcome.leg;
            let row =
                json!({ "symbol": leg.symbol, "exchange": leg.exchange.as_str(), "product": leg.product.as_str() });
            leg_result(outcome, row)
        })
        .collect();
    Ok(json!({ "results": results, "mode": "analyze" }))
}

async fn split(sandbox: &Sandbox<'_>, call: Call<SplitOrder>) -> Result<Value, AppError> {
    let outcomes = sandbox.split(&call.principal.user, &call.input).await;
    let results: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| {
            leg_result(outcome, json!({ "order_num": index + 1, "quantity": outcome.leg.quantity as u64 }))
        })
        .collect();
    Ok(json!({
        "total_quantity": call.input.leg.quantity as u64,
        "split_size": call.input.split_size,
        "results": results,
        "mode": "analyze",
    }))
}
