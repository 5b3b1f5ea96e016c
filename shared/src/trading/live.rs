//! Live trading: OpenAlgo's order, account and quote routes on the trader's linked broker, composed as
//! OpenAlgo composes them from the broker's primitives (a smart order reads the position, a basket
//! places BUY legs first, close-all flattens every net position with MARKET orders), and their
//! bodies in OpenAlgo's live shapes: the same fields as the sandbox's, without `"mode":"analyze"`.
//!
//! Every order goes out through [`place_once`] under a fresh tag, so an order whose answer was lost
//! is looked up rather than sent twice. The operator's per-order caps hold here as in the sandbox;
//! a MARKET order's value is not known before the broker fills it, so only its quantity is capped.

use rand::Rng;
use rand::distributions::Alphanumeric;
use serde_json::{Value, json};

use crate::broker::{
    Broker, BrokerFunds, BrokerOrder, BrokerPosition, BrokerQuote, BrokerSession, BrokerTrade, DepthLevel, place_once,
};
use crate::core::config::OrderCaps;
use crate::core::error::AppError;
use crate::trading::orders::Exchange;
use crate::trading::orders::{
    Action, BasketOrder, LegOutcome, ModifyOrder, OrderLeg, PriceType, SmartOrder, SmartOutcome, SmartStep, SplitOrder,
    smart_step,
};
use crate::trading::reads::Instrument;

/// The characters of an order's tag after `kv`: 18 alphanumerics, so Kite's 20-character limit
/// keeps all of it and a collision between two requests is out of reach (62^18).
const TAG_RANDOM_CHARS: usize = 18;

fn new_tag() -> String {
    let random: String = rand::thread_rng().sample_iter(&Alphanumeric).take(TAG_RANDOM_CHARS).map(char::from).collect();
    format!("kv{random}")
}

/// One trader's account at their linked broker, for one request.
pub struct LiveDesk<'a> {
    pub broker: &'a dyn Broker,
    pub session: BrokerSession,
    pub caps: OrderCaps,
}

impl std::fmt::Debug for LiveDesk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDesk").field("broker", &self.broker.id()).finish_non_exhaustive()
    }
}

fn rupees_to_paise(rupees: f64) -> i128 {
    (rupees * 100.0).round() as i128
}

impl LiveDesk<'_> {
    /// The caps, before anything is sent. The value is the limit price, or the trigger of an
    /// SL-M; a MARKET order has no price until it fills.
    fn check_caps(&self, leg: &OrderLeg) -> Result<(), AppError> {
        let quantity = leg.quantity as i64;
        let reference = match leg.price_type {
            PriceType::Limit | PriceType::StopLoss => Some(leg.price),
            PriceType::StopLossMarket => Some(leg.trigger_price),
            PriceType::Market => None,
        };
        let value = reference.map(|price| i128::from(quantity) * rupees_to_paise(price));
        match self.caps.refusal(quantity, value) {
            Some(message) => Err(AppError::OrderRejected { message, order_id: None }),
            None => Ok(()),
        }
    }

    /// Places `leg` once; the broker's order id.
    pub async fn place(&self, leg: &OrderLeg) -> Result<String, AppError> {
        self.check_caps(leg)?;
        Ok(place_once(self.broker, &self.session, leg, &new_tag()).await?.order_id)
    }

    /// OpenAlgo's smart order on the broker's net position for the leg's symbol and product.
    pub async fn smart(&self, request: &SmartOrder) -> Result<SmartOutcome, AppError> {
        request.check_position_size()?;
        let leg = &request.leg;
        let positions = self.broker.positions(&self.session).await?;
        let current = positions
            .iter()
            .find(|p| {
                p.exchange == leg.exchange.as_str() && p.symbol == leg.symbol && p.product == leg.product.as_str()
            })
            .map_or(0, |position| position.quantity);
        match smart_step(request, current)? {
            SmartStep::Place(order_leg) => Ok(SmartOutcome::Placed(self.place(&order_leg).await?)),
            SmartStep::Matched(message) => Ok(SmartOutcome::Matched(message)),
        }
    }

    pub async fn modify(&self, request: &ModifyOrder) -> Result<String, AppError> {
        self.check_caps(&request.leg)?;
        Ok(self.broker.modify_order(&self.session, &request.order_id, &request.leg).await?.order_id)
    }

    pub async fn cancel(&self, order_id: &str) -> Result<String, AppError> {
        Ok(self.broker.cancel_order(&self.session, order_id).await?.order_id)
    }

    /// Cancels every open order: the ids cancelled, and those the broker refused with its reason.
    pub async fn cancel_all(&self) -> Result<(Vec<String>, Vec<(String, String)>), AppError> {
        let book = self.broker.order_book(&self.session).await?;
        let (mut cancelled, mut failed) = (Vec::new(), Vec::new());
        for order in book.into_iter().filter(BrokerOrder::is_open) {
            match self.cancel(&order.order_id).await {
                Ok(id) => cancelled.push(id),
                Err(error @ (AppError::BrokerSessionExpired | AppError::BrokerIpNotRegistered)) => return Err(error),
                Err(error) => failed.push((order.order_id, error.public_message())),
            }
        }
        Ok((cancelled, failed))
    }

    /// Flattens every net position with a MARKET order: the order ids, and the positions the
    /// broker refused to close (symbol, exchange, reason).
    pub async fn close_all(&self) -> Result<(Vec<String>, Vec<(String, String, String)>), AppError> {
        let positions = self.broker.positions(&self.session).await?;
        let (mut closed, mut failed) = (Vec::new(), Vec::new());
        for position in positions.into_iter().filter(|position| position.quantity != 0) {
            let outcome = match closing_leg(&position) {
                Some(leg) => self.place(&leg).await,
                None => Err(AppError::bad_request(format!(
                    "{} {} {} cannot be closed through Kavach: close it at the broker",
                    position.exchange, position.symbol, position.product
                ))),
            };
            match outcome {
                Ok(id) => closed.push(id),
                Err(error @ (AppError::BrokerSessionExpired | AppError::BrokerIpNotRegistered)) => return Err(error),
                Err(error) => failed.push((position.symbol, position.exchange, error.public_message())),
            }
        }
        Ok((closed, failed))
    }

    /// Each leg as its own order, BUY legs first, one after another.
    pub async fn basket(&self, request: &BasketOrder) -> Vec<LegOutcome> {
        let (buys, sells): (Vec<&OrderLeg>, Vec<&OrderLeg>) =
            request.orders.iter().partition(|leg| leg.action == Action::Buy);
        let mut outcomes = Vec::with_capacity(request.orders.len());
        for leg in buys.into_iter().chain(sells) {
            outcomes.push(LegOutcome { leg: leg.clone(), result: self.place(leg).await });
        }
        outcomes
    }

    pub async fn split(&self, request: &SplitOrder) -> Vec<LegOutcome> {
        let sizes = request.child_sizes();
        let mut outcomes = Vec::with_capacity(sizes.len());
        for quantity in sizes {
            let leg = OrderLeg { quantity: quantity as f64, ..request.leg.clone() };
            let result = self.place(&leg).await;
            outcomes.push(LegOutcome { leg, result });
        }
        outcomes
    }

    pub async fn order_book(&self) -> Result<Value, AppError> {
        Ok(order_book(&self.broker.order_book(&self.session).await?))
    }

    pub async fn order_status(&self, order_id: &str) -> Result<Value, AppError> {
        let book = self.broker.order_book(&self.session).await?;
        let order = book
            .iter()
            .find(|order| order.order_id == order_id)
            .ok_or_else(|| AppError::OrderNotFound { order_id: order_id.to_owned() })?;
        let mut row = order_row(order);
        row["price_type"] = json!(order.price_type);
        Ok(json!({ "data": row }))
    }

    pub async fn trade_book(&self) -> Result<Value, AppError> {
        Ok(trade_book(&self.broker.trade_book(&self.session).await?))
    }

    pub async fn position_book(&self) -> Result<Value, AppError> {
        Ok(position_book(&self.broker.positions(&self.session).await?))
    }

    /// The net quantity for (symbol, exchange, product), 0 if none.
    pub async fn open_position(&self, symbol: &str, exchange: &str, product: &str) -> Result<Value, AppError> {
        let positions = self.broker.positions(&self.session).await?;
        let quantity = positions
            .iter()
            .find(|p| p.symbol == symbol && p.exchange == exchange && p.product == product)
            .map_or(0, |position| position.quantity);
        Ok(json!({ "quantity": quantity }))
    }

    pub async fn holdings(&self) -> Result<Value, AppError> {
        Ok(holdings(&self.broker.holdings(&self.session).await?))
    }

    pub async fn funds(&self) -> Result<Value, AppError> {
        Ok(funds(&self.broker.funds(&self.session).await?))
    }

    /// One instrument's quote at the broker, or the sandbox's refusal for an unknown one.
    async fn quote(&self, instrument: &Instrument) -> Result<BrokerQuote, AppError> {
        let asked = [(instrument.exchange, instrument.symbol.as_str())];
        let mut quotes = self.broker.quotes(&self.session, &asked).await?;
        quotes.pop().flatten().ok_or_else(|| not_found(instrument))
    }

    pub async fn quotes(&self, instrument: &Instrument) -> Result<Value, AppError> {
        Ok(json!({ "data": quote_data(&self.quote(instrument).await?) }))
    }

    /// Every instrument in one broker call, each answered or refused on its own.
    pub async fn multi_quotes(&self, instruments: &[Instrument]) -> Result<Value, AppError> {
        let asked: Vec<(Exchange, &str)> = instruments.iter().map(|i| (i.exchange, i.symbol.as_str())).collect();
        let quotes = self.broker.quotes(&self.session, &asked).await?;
        let results: Vec<Value> = instruments
            .iter()
            .zip(quotes)
            .map(|(instrument, quote)| {
                let mut row = json!({ "symbol": instrument.symbol, "exchange": instrument.exchange.as_str() });
                match quote {
                    Some(quote) => row["data"] = quote_data(&quote),
                    None => row["error"] = json!(not_found(instrument).public_message()),
                }
                row
            })
            .collect();
        Ok(json!({ "results": results }))
    }

    pub async fn depth(&self, instrument: &Instrument) -> Result<Value, AppError> {
        let quote = self.quote(instrument).await?;
        let levels = |levels: &[DepthLevel]| -> Vec<Value> {
            levels.iter().map(|level| json!({ "price": level.price, "quantity": level.quantity })).collect()
        };
        Ok(json!({ "data": {
            "open": quote.open, "high": quote.high, "low": quote.low, "ltp": quote.ltp, "ltq": quote.ltq,
            "prev_close": quote.prev_close, "volume": quote.volume, "oi": quote.oi,
            "totalbuyqty": quote.total_buy_quantity, "totalsellqty": quote.total_sell_quantity,
            "bids": levels(&quote.bids), "asks": levels(&quote.asks),
        }}))
    }
}

/// The refusal for an instrument the broker does not quote, in the sandbox's words.
fn not_found(instrument: &Instrument) -> AppError {
    AppError::bad_request(format!("Symbol {} not found on {}", instrument.symbol, instrument.exchange.as_str()))
}

/// OpenAlgo's quote: the best bid and ask from the depth's top level.
fn quote_data(quote: &BrokerQuote) -> Value {
    let best = |levels: &[DepthLevel]| levels.first().map_or(0.0, |level| level.price);
    json!({
        "open": quote.open, "high": quote.high, "low": quote.low, "ltp": quote.ltp,
        "ask": best(&quote.asks), "bid": best(&quote.bids), "prev_close": quote.prev_close,
        "volume": quote.volume, "oi": quote.oi,
    })
}

/// The MARKET order that flattens `position`, if Kavach can name its instrument.
fn closing_leg(position: &BrokerPosition) -> Option<OrderLeg> {
    use crate::trading::orders::Product;
    let exchange = Exchange::CHOICES.iter().find(|(name, _)| *name == position.exchange)?.1;
    let product = Product::CHOICES.iter().find(|(name, _)| *name == position.product)?.1;
    Some(OrderLeg {
        exchange,
        symbol: position.symbol.clone(),
        action: if position.quantity > 0 { Action::Sell } else { Action::Buy },
        quantity: position.quantity.unsigned_abs() as f64,
        price_type: PriceType::Market,
        product,
        price: 0.0,
        trigger_price: 0.0,
        disclosed_quantity: 0,
    })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn order_row(order: &BrokerOrder) -> Value {
    json!({
        "orderid": order.order_id,
        "symbol": order.symbol,
        "exchange": order.exchange,
        "action": order.action,
        "quantity": order.quantity,
        "price": order.price,
        "trigger_price": order.trigger_price,
        "pricetype": order.price_type,
        "product": order.product,
        "order_status": order.status,
        "average_price": order.average_price,
        "filled_quantity": order.filled_quantity,
        "pending_quantity": order.pending_quantity,
        "rejection_reason": order.rejection_reason,
        "timestamp": order.timestamp,
    })
}

fn order_book(orders: &[BrokerOrder]) -> Value {
    let count = |predicate: &dyn Fn(&BrokerOrder) -> bool| orders.iter().filter(|order| predicate(order)).count();
    json!({
        "data": {
            "orders": orders.iter().map(order_row).collect::<Vec<_>>(),
            "statistics": {
                "total_buy_orders": count(&|o| o.action == "BUY"),
                "total_sell_orders": count(&|o| o.action == "SELL"),
                "total_completed_orders": count(&|o| o.status == "complete"),
                "total_open_orders": count(&|o| o.status == "open"),
                "total_rejected_orders": count(&|o| o.status == "rejected"),
                "total_trigger_pending_orders": count(&|o| o.status == "trigger pending"),
            }
        }
    })
}

fn trade_book(trades: &[BrokerTrade]) -> Value {
    let rows: Vec<Value> = trades
        .iter()
        .map(|trade| {
            json!({
                "tradeid": trade.trade_id,
                "orderid": trade.order_id,
                "symbol": trade.symbol,
                "exchange": trade.exchange,
                "action": trade.action,
                "quantity": trade.quantity,
                "average_price": trade.average_price,
                "price": trade.average_price,
                "trade_value": round2(trade.average_price * trade.quantity),
                "product": trade.product,
                "timestamp": trade.timestamp,
            })
        })
        .collect();
    json!({ "data": rows })
}

fn position_book(positions: &[BrokerPosition]) -> Value {
    let rows: Vec<Value> = positions
        .iter()
        .map(|position| {
            json!({
                "symbol": position.symbol,
                "exchange": position.exchange,
                "product": position.product,
                "quantity": position.quantity,
                "average_price": position.average_price,
                "ltp": position.ltp,
                "pnl": round2(position.pnl),
            })
        })
        .collect();
    json!({ "data": rows })
}

fn holdings(holdings: &[BrokerPosition]) -> Value {
    let (mut value, mut invested, mut pnl) = (0.0, 0.0, 0.0);
    let rows: Vec<Value> = holdings
        .iter()
        .map(|holding| {
            let cost = holding.average_price * holding.quantity as f64;
            value += holding.ltp * holding.quantity as f64;
            invested += cost;
            pnl += holding.pnl;
            json!({
                "symbol": holding.symbol,
                "exchange": holding.exchange,
                "product": holding.product,
                "quantity": holding.quantity,
                "pnl": round2(holding.pnl),
                "pnlpercent": if cost > 0.0 { round2(holding.pnl / cost * 100.0) } else { 0.0 },
            })
        })
        .collect();
    json!({
        "data": {
            "holdings": rows,
            "statistics": {
                "totalholdingvalue": round2(value),
                "totalinvvalue": round2(invested),
                "totalprofitandloss": round2(pnl),
                "totalpnlpercentage": if invested > 0.0 { round2(pnl / invested * 100.0) } else { 0.0 },
            }
        }
    })
}

/// OpenAlgo's live funds: each figure a string with two decimals, as its broker modules give them.
fn funds(funds: &BrokerFunds) -> Value {
    let two = |value: f64| format!("{value:.2}");
    json!({
        "data": {
            "availablecash": two(funds.available_cash),
            "collateral": two(funds.collateral),
            "m2mrealized": two(funds.m2m_realized),
            "m2munrealized": two(funds.m2m_unrealized),
            "utiliseddebits": two(funds.utilised_debits),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_fit_kites_twenty_alphanumerics_and_differ() {
        let (first, second) = (new_tag(), new_tag());
        assert_eq!(first.len(), crate::broker::kite::MAX_TAG_CHARS);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric()), "{first}");
        assert_ne!(first, second);
    }

    #[test]
    fn a_short_closes_with_a_buy_and_an_unknown_product_is_not_guessed() {
        let short = BrokerPosition {
            symbol: "SBIN".into(),
            exchange: "NSE".into(),
            product: "MIS".into(),
            quantity: -5,
            ..BrokerPosition::default()
        };
        let leg = closing_leg(&short).expect("closable");
        assert_eq!((leg.action, leg.quantity, leg.price_type), (Action::Buy, 5.0, PriceType::Market));
        assert!(closing_leg(&BrokerPosition { product: "MTF".into(), ..short }).is_none());
    }

    #[test]
    fn the_books_count_by_openalgos_statuses_and_funds_are_two_decimal_strings() {
        let order = |status: &str, action: &str| BrokerOrder {
            order_id: "1".into(),
            status: status.into(),
            action: action.into(),
            ..BrokerOrder::default()
        };
        let book = order_book(&[order("complete", "BUY"), order("open", "SELL"), order("trigger pending", "BUY")]);
        let statistics = &book["data"]["statistics"];
        assert_eq!(
            (statistics["total_buy_orders"].as_u64(), statistics["total_open_orders"].as_u64()),
            (Some(2), Some(1))
        );
        assert!(book.get("mode").is_none(), "live bodies carry no analyzer mode");
        let body = funds(&BrokerFunds { available_cash: 500000.0, utilised_debits: 801.456, ..BrokerFunds::default() });
        assert_eq!(
            (body["data"]["availablecash"].as_str(), body["data"]["utiliseddebits"].as_str()),
            (Some("500000.00"), Some("801.46"))
        );
    }
}
