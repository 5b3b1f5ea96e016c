//! The order routes. They share one function because they need the same privileges (read and
//! write the account's sandbox partition); each keeps its own rate-limit class.

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::pipeline::api::{self, Call, Route};
use shared::limits::LimitedAction;
use shared::trading::orders::{BasketOrder, CancelOrder, ModifyOrder, PlaceOrder, SmartOrder, SplitOrder, StrategyOnly};
use shared::trading::sandbox::service::{LegOutcome, Sandbox, SmartOutcome};
use shared::{AppError, Deps};

pub const PLACE: Route = Route { name: "placeorder", action: LimitedAction::Order, reads_only: false };
pub const SMART: Route = Route { name: "placesmartorder", action: LimitedAction::SmartOrder, reads_only: false };
pub const MODIFY: Route = Route { name: "modifyorder", action: LimitedAction::Order, reads_only: false };
pub const CANCEL: Route = Route { name: "cancelorder", action: LimitedAction::Order, reads_only: false };
pub const CANCEL_ALL: Route = Route { name: "cancelallorder", action: LimitedAction::Api, reads_only: false };
pub const CLOSE: Route = Route { name: "closeposition", action: LimitedAction::Api, reads_only: false };
pub const BASKET: Route = Route { name: "basketorder", action: LimitedAction::Api, reads_only: false };
pub const SPLIT: Route = Route { name: "splitorder", action: LimitedAction::Api, reads_only: false };

pub async fn handler(deps: &Deps, request: Request) -> Response<Body> {
    let sandbox = Sandbox::from_deps(deps);
    let sandbox = &sandbox;
    match api::resource(&request).as_str() {
        "/api/v1/placeorder" => api::run(deps, request, PLACE, PlaceOrder::parse, |call| place(sandbox, call)).await,
        "/api/v1/placesmartorder" => {
            api::run(deps, request, SMART, SmartOrder::parse, |call| smart(sandbox, call)).await
        }
        "/api/v1/modifyorder" => {
            api::run(deps, request, MODIFY, ModifyOrder::parse, |call| modify(sandbox, call)).await
        }
        "/api/v1/cancelorder" => {
            api::run(deps, request, CANCEL, CancelOrder::parse, |call| cancel(sandbox, call)).await
        }
        "/api/v1/cancelallorder" => {
            api::run(deps, request, CANCEL_ALL, StrategyOnly::parse, |call| cancel_all(sandbox, call)).await
        }
        "/api/v1/closeposition" => {
            api::run(deps, request, CLOSE, StrategyOnly::parse, |call| close(sandbox, call)).await
        }
        "/api/v1/basketorder" => {
            api::run(deps, request, BASKET, BasketOrder::parse, |call| basket(sandbox, call)).await
        }
        "/api/v1/splitorder" => api::run(deps, request, SPLIT, SplitOrder::parse, |call| split(sandbox, call)).await,
        _ => api::unknown_resource(&request),
    }
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
