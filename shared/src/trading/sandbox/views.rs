//! The JSON bodies of OpenAlgo's sandbox routes (contract §4.7), built from stored records.
//! Numbers are emitted as numbers (the sandbox's style); every body says `"mode":"analyze"`.

use serde_json::{Value, json};

use super::ledger::{Funds, Order, Position, Status, Trade, rupees};
use crate::core::clock::UnixMillis;
use crate::core::ist::IstTime;
use crate::trading::market;

fn timestamp(at: u64) -> String {
    IstTime::at(UnixMillis(at)).timestamp()
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub fn order_row(order: &Order) -> Value {
    json!({
        "orderid": order.id,
        "symbol": order.symbol,
        "exchange": order.exchange.as_str(),
        "action": order.action.as_str(),
        "quantity": order.quantity,
        "price": rupees(order.price),
        "trigger_price": rupees(order.trigger_price),
        "pricetype": order.price_type.as_str(),
        "product": order.product.as_str(),
        "order_status": order.status.as_str(),
        "average_price": rupees(order.average_price),
        "filled_quantity": order.filled_quantity,
        "pending_quantity": order.quantity - order.filled_quantity,
        "rejection_reason": order.rejection_reason,
        "timestamp": timestamp(order.placed_at),
        "strategy": order.strategy,
    })
}

/// `orderstatus`: the orderbook row, with `price_type` beside `pricetype` (the sandbox's name).
pub fn order_status(order: &Order) -> Value {
    let mut row = order_row(order);
    row["price_type"] = json!(order.price_type.as_str());
    json!({ "data": row, "mode": "analyze" })
}

pub fn order_book(orders: &[Order]) -> Value {
    let count = |predicate: &dyn Fn(&Order) -> bool| orders.iter().filter(|order| predicate(order)).count();
    json!({
        "mode": "analyze",
        "data": {
            "orders": orders.iter().map(order_row).collect::<Vec<_>>(),
            "statistics": {
                "total_buy_orders": count(&|o| o.action == crate::trading::orders::Action::Buy),
                "total_sell_orders": count(&|o| o.action == crate::trading::orders::Action::Sell),
                "total_completed_orders": count(&|o| o.status == Status::Complete),
                "total_open_orders": count(&|o| o.status == Status::Open),
                "total_rejected_orders": count(&|o| o.status == Status::Rejected),
                "total_trigger_pending_orders": count(&|o| o.status == Status::TriggerPending),
            }
        }
    })
}

pub fn trade_book(trades: &[Trade]) -> Value {
    let rows: Vec<Value> = trades
        .iter()
        .map(|trade| {
            json!({
                "tradeid": trade.id,
                "orderid": trade.order_id,
                "symbol": trade.symbol,
                "exchange": trade.exchange.as_str(),
                "action": trade.action.as_str(),
                "quantity": trade.quantity,
                "average_price": rupees(trade.price),
                "price": rupees(trade.price),
                "trade_value": round2(rupees(trade.price) * trade.quantity as f64),
                "product": trade.product.as_str(),
                "strategy": trade.strategy,
                "timestamp": timestamp(trade.at),
            })
        })
        .collect();
    json!({ "data": rows, "mode": "analyze" })
}

/// The last price of a position's symbol at `now` (0 if the symbol left the simulated market).
fn last_price(position: &Position, now: UnixMillis) -> f64 {
    market::instrument(&position.key.symbol, position.key.exchange).map_or(0.0, |instrument| instrument.price_at(now))
}

fn unrealized(position: &Position, ltp: f64) -> f64 {
    round2((ltp - rupees(position.average_price)) * position.quantity as f64)
}

/// Positions shown: open ones, and closed ones that realised something this session.
pub fn position_book(positions: &[Position], session: u64, now: UnixMillis) -> Value {
    let mut totals = (0.0, 0.0);
    let rows: Vec<Value> = positions
        .iter()
        .filter(|p| p.quantity != 0 || (p.session == session && p.realized_today != 0))
        .map(|position| {
            let ltp = last_price(position, now);
            let unrealized = unrealized(position, ltp);
            let realized = rupees(position.realized_today);
            totals.0 += unrealized;
            totals.1 += realized;
            let invested = rupees(position.average_price) * position.quantity.abs() as f64;
            json!({
                "symbol": position.key.symbol,
                "exchange": position.key.exchange.as_str(),
                "product": position.key.product.as_str(),
                "quantity": position.quantity,
                "average_price": rupees(position.average_price),
                "ltp": ltp,
                "pnl": round2(unrealized + realized),
                "pnlpercent": if invested > 0.0 { round2(unrealized / invested * 100.0) } else { 0.0 },
                "unrealized_pnl": unrealized,
                "today_realized_pnl": realized,
                "total_pnl_today": round2(unrealized + realized),
                "lot_size": market::instrument(&position.key.symbol, position.key.exchange).map_or(1, |i| i.lot_size),
            })
        })
        .collect();
    json!({
        "data": rows,
        "mode": "analyze",
        "total_pnl": round2(totals.0 + totals.1),
        "total_unrealized_pnl": round2(totals.0),
        "total_today_realized_pnl": round2(totals.1),
        "total_pnl_today": round2(totals.0 + totals.1),
    })
}

/// Funds (§4.2): every value a float, unrealised P&L marked to the simulated market now.
pub fn funds(funds: &Funds, positions: &[Position], now: UnixMillis) -> Value {
    let unrealized: f64 = positions.iter().map(|p| unrealized(p, last_price(p, now))).sum();
    json!({
        "mode": "analyze",
        "data": {
            "availablecash": rupees(funds.available),
            "collateral": 0.0,
            "m2munrealized": round2(unrealized),
            "m2mrealized": rupees(funds.realized_today),
            "total_realized_pnl": rupees(funds.realized_total),
            "today_realized_pnl": rupees(funds.realized_today),
            "utiliseddebits": rupees(funds.used_margin),
            "grossexposure": rupees(funds.used_margin),
            "totalpnl": round2(rupees(funds.realized_total) + unrealized),
            "last_reset": timestamp(funds.opened_at),
            "reset_count": 0,
        }
    })
}
