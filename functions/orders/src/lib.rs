//! The order routes. They share one function because they need the same privileges (read and
//! write the account's sandbox partition); each keeps its own rate-limit class.

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::limits::LimitedAction;
use shared::limits::limiter::within_budgets;
use shared::limits::subject::Subject;
use shared::pipeline::api::{self, Call};
use shared::pipeline::route::{Endpoint, Route, Routes};
use shared::trading::desk::Desk;
use shared::trading::orders::{
    BasketOrder, CancelOrder, ModifyOrder, PlaceOrder, SmartOrder, SplitOrder, StrategyOnly,
};
use shared::trading::orders::{LegOutcome, SmartOutcome};
use shared::{AppError, Deps};

/// What this function's cold start loads: the pepper, to verify API keys, and the brokers' keys,
/// to call a live account's broker.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::TRADING;

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
    match order_route {
        OrderRoute::Place => api::run(deps, request, route, PlaceOrder::parse, |call| place(deps, call)).await,
        OrderRoute::Smart => api::run(deps, request, route, SmartOrder::parse, |call| smart(deps, call)).await,
        OrderRoute::Modify => api::run(deps, request, route, ModifyOrder::parse, |call| modify(deps, call)).await,
        OrderRoute::Cancel => api::run(deps, request, route, CancelOrder::parse, |call| cancel(deps, call)).await,
        OrderRoute::CancelAll => {
            api::run(deps, request, route, StrategyOnly::parse, |call| cancel_all(deps, call)).await
        }
        OrderRoute::Close => api::run(deps, request, route, StrategyOnly::parse, |call| close(deps, call)).await,
        OrderRoute::Basket => {
            api::run(deps, request, route, BasketOrder::parse, |call| async move {
                reserve_orders(deps, &call, call.input.orders.len()).await?;
                basket(deps, call).await
            })
            .await
        }
        OrderRoute::Split => {
            api::run(deps, request, route, SplitOrder::parse, |call| async move {
                reserve_orders(deps, &call, call.input.child_sizes().len()).await?;
                split(deps, call).await
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

async fn place(deps: &Deps, call: Call<PlaceOrder>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    let order_id = desk.place(&call.input.strategy, &call.input.leg).await?;
    Ok(desk.answer(json!({ "orderid": order_id })))
}

async fn smart(deps: &Deps, call: Call<SmartOrder>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    Ok(desk.answer(match desk.smart(&call.input).await? {
        SmartOutcome::Placed(order_id) => json!({ "orderid": order_id }),
        SmartOutcome::Matched(message) => json!({ "message": message }),
    }))
}

async fn modify(deps: &Deps, call: Call<ModifyOrder>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    Ok(match &desk {
        Desk::Sandbox { sandbox, user } => {
            let order = sandbox.modify(user, &call.input).await?;
            desk.answer(json!({ "orderid": order.id, "message": "Order modified successfully" }))
        }
        Desk::Live(live) => json!({ "orderid": live.modify(&call.input).await? }),
    })
}

async fn cancel(deps: &Deps, call: Call<CancelOrder>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    Ok(match &desk {
        Desk::Sandbox { sandbox, user } => {
            let order = sandbox.cancel(user, &call.input.order_id).await?;
            desk.answer(json!({ "orderid": order.id, "message": "Order cancelled successfully" }))
        }
        Desk::Live(live) => json!({ "orderid": live.cancel(&call.input.order_id).await? }),
    })
}

async fn cancel_all(deps: &Deps, call: Call<StrategyOnly>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    let (cancelled, failed) = match &desk {
        Desk::Sandbox { sandbox, user } => sandbox.cancel_all(user).await?,
        Desk::Live(live) => live.cancel_all().await?,
    };
    let message = if cancelled.is_empty() && failed.is_empty() {
        "No open orders to cancel".to_owned()
    } else {
        format!("Canceled {} orders. Failed to cancel {} orders.", cancelled.len(), failed.len())
    };
    let failed: Vec<Value> =
        failed.into_iter().map(|(orderid, message)| json!({ "orderid": orderid, "message": message })).collect();
    Ok(desk.answer(json!({ "message": message, "canceled_orders": cancelled, "failed_cancellations": failed })))
}

async fn close(deps: &Deps, call: Call<StrategyOnly>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    let (closed, failed) = match &desk {
        Desk::Sandbox { sandbox, user } => {
            let (closed, failed) = sandbox.close_all(user).await?;
            let failed = failed
                .into_iter()
                .map(|(key, message)| (key.symbol, key.exchange.as_str().to_owned(), message))
                .collect::<Vec<_>>();
            (closed.into_iter().map(|order| order.id).collect::<Vec<_>>(), failed)
        }
        Desk::Live(live) => live.close_all().await?,
    };
    if closed.is_empty() && failed.is_empty() {
        return Ok(desk.answer(json!({ "message": "No open positions to close" })));
    }
    let mut message = format!("Closed {} positions", closed.len());
    if !failed.is_empty() {
        message.push_str(&format!(" (Failed to close {} positions)", failed.len()));
    }
    let failures: Vec<Value> = failed
        .iter()
        .map(|(symbol, exchange, message)| json!({ "symbol": symbol, "exchange": exchange, "message": message }))
        .collect();
    Ok(desk.answer(json!({
        "message": message,
        "closed_positions": closed.len(),
        "failed_closures": failed.len(),
        "orderids": closed,
        "failures": failures,
    })))
}

/// One result row: `status` and `orderid`, or `status` and `message`.
fn leg_result(outcome: &LegOutcome, mut row: Value) -> Value {
    match &outcome.result {
        Ok(order_id) => {
            row["status"] = json!("success");
            row["orderid"] = json!(order_id);
        }
        Err(error) => {
            row["status"] = json!("error");
            row["message"] = json!(error.public_message());
        }
    }
    row
}

async fn basket(deps: &Deps, call: Call<BasketOrder>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    let outcomes = match &desk {
        Desk::Sandbox { sandbox, user } => sandbox.basket(user, &call.input).await,
        Desk::Live(live) => live.basket(&call.input).await,
    };
    let results: Vec<Value> = outcomes
        .iter()
        .map(|outcome| {
            let leg = &outcome.leg;
            let row =
                json!({ "symbol": leg.symbol, "exchange": leg.exchange.as_str(), "product": leg.product.as_str() });
            leg_result(outcome, row)
        })
        .collect();
    Ok(desk.answer(json!({ "results": results })))
}

async fn split(deps: &Deps, call: Call<SplitOrder>) -> Result<Value, AppError> {
    let desk = deps.desk(&call.principal.user, &call.principal.broker).await?;
    let outcomes = match &desk {
        Desk::Sandbox { sandbox, user } => sandbox.split(user, &call.input).await,
        Desk::Live(live) => live.split(&call.input).await,
    };
    let results: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| {
            leg_result(outcome, json!({ "order_num": index + 1, "quantity": outcome.leg.quantity as u64 }))
        })
        .collect();
    Ok(desk.answer(json!({
        "total_quantity": call.input.leg.quantity as u64,
        "split_size": call.input.split_size,
        "results": results,
    })))
}
