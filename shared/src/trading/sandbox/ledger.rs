//! The sandbox broker's rules, as pure functions over one account's state: OpenAlgo's analyzer
//! mode (contract §4) with its known quirks fixed. Nothing here does I/O; the service loads a
//! [`Ledger`], applies an operation, and commits the recorded [`Changes`] as one transaction.
//!
//! The changes say what each write depends on, so the store can commit without locking the
//! account: funds move by deltas guarded only by the margin they block ([`Changes::blocked`]),
//! and a position that an order opens or grows moves by deltas guarded only by its direction
//! ([`Guard::Long`], [`Guard::Short`]), which is all the margin and the average depend on. Only an
//! order that reduces or reverses a position (its realised P&L needs the average as read) needs
//! the position exactly as read ([`Guard::Exact`]).
//!
//! Money is integer paise, so funds never drift by rounding; prices are stored to the paisa as
//! OpenAlgo stores DECIMAL(10,2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::clock::UnixMillis;
use crate::core::config::OrderCaps;
use crate::core::ist::{IstTime, last_boundary};
use crate::trading::market::{self, Instrument, Touch};
use crate::trading::orders::{Action, Exchange, OrderLeg, PriceType, Product};

pub type Paise = i64;

/// ₹1 crore, OpenAlgo's starting capital.
pub const STARTING_CAPITAL: Paise = 10_000_000 * 100;
/// When realised P&L for "today" resets and the order book starts afresh: 03:00 IST.
pub const SESSION_BOUNDARY_SECS: u32 = 3 * 3600;
/// MIS orders that open or grow a position are refused from square-off until 09:00 IST.
const MIS_RESUMES_SECS: u32 = 9 * 3600;

pub fn to_paise(rupees: f64) -> Paise {
    (rupees * 100.0).round() as Paise
}

pub fn rupees(paise: Paise) -> f64 {
    paise as f64 / 100.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "open")]
    Open,
    #[serde(rename = "trigger pending")]
    TriggerPending,
    #[serde(rename = "complete")]
    Complete,
    #[serde(rename = "rejected")]
    Rejected,
    #[serde(rename = "cancelled")]
    Cancelled,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::TriggerPending => "trigger pending",
            Status::Complete => "complete",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
        }
    }

    /// Waiting on the market: modifiable, cancellable, and matched by the fill engine.
    pub const fn is_resting(self) -> bool {
        matches!(self, Status::Open | Status::TriggerPending)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub strategy: String,
    pub exchange: Exchange,
    pub symbol: String,
    pub action: Action,
    pub quantity: i64,
    pub price_type: PriceType,
    pub product: Product,
    /// The limit price; for MARKET, the reference price margin was computed at (as the sandbox shows).
    pub price: Paise,
    pub trigger_price: Paise,
    pub status: Status,
    pub average_price: Paise,
    pub filled_quantity: i64,
    /// Margin blocked for this order at placement (moved to the position when it fills).
    pub margin: Paise,
    pub rejection_reason: String,
    pub placed_at: u64,
    pub updated_at: u64,
}

impl Order {
    pub fn position_key(&self) -> PositionKey {
        PositionKey { exchange: self.exchange, symbol: self.symbol.clone(), product: self.product }
    }

    fn signed_quantity(&self) -> i64 {
        match self.action {
            Action::Buy => self.quantity,
            Action::Sell => -self.quantity,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PositionKey {
    pub exchange: Exchange,
    pub symbol: String,
    pub product: Product,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub key: PositionKey,
    /// Net quantity: positive long, negative short.
    pub quantity: i64,
    /// What the open quantity cost, signed as the quantity is (quantity × average, unrounded):
    /// a sum, so concurrent orders that grow the position can each add to it.
    #[serde(default)]
    pub cost: Paise,
    /// Derived from `cost` and `quantity` ([`average_of`]).
    pub average_price: Paise,
    /// How many writes changed the average (grew, reversed or closed the position): a reduction
    /// commits only if this is as it read it.
    #[serde(default)]
    pub resets: u64,
    /// Margin held by the open quantity.
    pub margin: Paise,
    pub realized_today: Paise,
    /// The session (its 03:00 IST boundary, epoch ms) that `realized_today` belongs to.
    pub session: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Funds {
    pub available: Paise,
    pub used_margin: Paise,
    pub realized_total: Paise,
    pub realized_today: Paise,
    pub session: u64,
    pub opened_at: u64,
}

impl Funds {
    pub fn fresh(now: UnixMillis) -> Self {
        Self {
            available: STARTING_CAPITAL,
            used_margin: 0,
            realized_total: 0,
            realized_today: 0,
            session: last_boundary(now, SESSION_BOUNDARY_SECS).0,
            opened_at: now.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    pub id: String,
    pub order_id: String,
    pub strategy: String,
    pub exchange: Exchange,
    pub symbol: String,
    pub action: Action,
    pub product: Product,
    pub quantity: i64,
    pub price: Paise,
    pub at: u64,
}

/// The average price of an open quantity that cost `cost` (signed as `quantity` is), to the paisa,
/// rounded half away from zero.
pub fn average_of(cost: Paise, quantity: i64) -> Paise {
    if quantity == 0 {
        return 0;
    }
    let (cost, quantity) = (i128::from(cost.abs()), i128::from(quantity.abs()));
    i64::try_from((2 * cost + quantity) / (2 * quantity)).unwrap_or(Paise::MAX)
}

/// What a position write depends on, for the store's condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The order opened or grew a long (or flat) position: valid while the position is not short.
    Long,
    /// The order opened or grew a short (or flat) position: valid while it is not long.
    Short,
    /// The order reduced the position without closing or reversing it: valid while nothing grew
    /// or reset it since it was read (so the average is as read) and it still holds more than
    /// `closed` on the same side. Reductions only subtract at the average, which keeps it, so
    /// concurrent ones commute.
    Reduce { closed: i64, long: bool },
    /// Valid only on the position exactly as read.
    Exact,
}

/// A position an operation changed, and what that change depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionChange {
    pub key: PositionKey,
    pub guard: Guard,
}

/// An order write, with the status it must still have in the table when the write lands.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderWrite {
    Create(Order),
    Update { order: Order, expected: Status },
}

/// What an operation changed; committed together or not at all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub funds: bool,
    /// Margin newly blocked: the available balance must still hold at least this much.
    pub blocked: Paise,
    pub orders: Vec<OrderWrite>,
    pub trades: Vec<Trade>,
    pub positions: Vec<PositionChange>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.funds && self.orders.is_empty() && self.trades.is_empty() && self.positions.is_empty()
    }

    /// Whether every position write holds on any position in the direction read (none needs the
    /// position exactly as read).
    pub fn only_grows(&self) -> bool {
        self.positions.iter().all(|change| matches!(change.guard, Guard::Long | Guard::Short))
    }

    /// Makes every position write depend on the position exactly as read: for an operation whose
    /// decision depends on the quantity itself (a smart order's target).
    pub fn pin_positions(&mut self) {
        for change in &mut self.positions {
            change.guard = Guard::Exact;
        }
    }

    fn touch_position(&mut self, key: PositionKey, guard: Guard) {
        match self.positions.iter_mut().find(|change| change.key == key) {
            Some(change) if change.guard != guard => change.guard = Guard::Exact,
            Some(_) => {}
            None => self.positions.push(PositionChange { key, guard }),
        }
    }
}

/// An order the sandbox refused. `order_id` is set when the refusal is itself recorded as a
/// `rejected` order (a CNC sell without holdings), as OpenAlgo does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub message: String,
    pub order_id: Option<String>,
}

impl Rejection {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), order_id: None }
    }
}

/// One account's funds, positions and settled holdings, with the changes made to them so far.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub funds: Funds,
    pub positions: BTreeMap<PositionKey, Position>,
    pub changes: Changes,
    caps: Option<OrderCaps>,
    now: UnixMillis,
}

/// What the market says about a resting or new order right now.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Fill(Paise),
    Rest(Status),
}

impl Ledger {
    /// Builds the working state, rolling "today's" realised P&L over if a 03:00 IST boundary has
    /// passed since it was last written.
    pub fn new(funds: Option<Funds>, positions: Vec<Position>, now: UnixMillis) -> Self {
        let session = last_boundary(now, SESSION_BOUNDARY_SECS).0;
        let mut funds = funds.unwrap_or_else(|| Funds::fresh(now));
        if funds.session != session {
            funds.realized_today = 0;
            funds.session = session;
        }
        let positions = positions
            .into_iter()
            .map(|mut position| {
                if position.cost == 0 && position.quantity != 0 {
                    // Written before positions kept their cost: the average is all there is.
                    position.cost = position.quantity * position.average_price;
                }
                position.average_price = average_of(position.cost, position.quantity);
                if position.session != session {
                    position.realized_today = 0;
                    position.session = session;
                }
                (position.key.clone(), position)
            })
            .collect();
        Self { funds, positions, changes: Changes::default(), caps: None, now }
    }

    /// Refuses orders above the operator's per-order quantity and value caps.
    pub fn with_caps(mut self, caps: OrderCaps) -> Self {
        self.caps = Some(caps);
        self
    }

    fn check_caps(&self, quantity: i64, reference: Paise) -> Result<(), Rejection> {
        let Some(caps) = self.caps else { return Ok(()) };
        match caps.refusal(quantity, Some(i128::from(quantity) * i128::from(reference))) {
            Some(message) => Err(Rejection::new(message)),
            None => Ok(()),
        }
    }

    pub fn now(&self) -> UnixMillis {
        self.now
    }

    pub fn session_start(&self) -> UnixMillis {
        UnixMillis(self.funds.session)
    }

    pub fn position_quantity(&self, key: &PositionKey) -> i64 {
        self.positions.get(key).map_or(0, |position| position.quantity)
    }

    fn quote(&self, instrument: &Instrument) -> Touch {
        instrument.touch(self.now)
    }

    /// Places one order: OpenAlgo's acceptance rules in their order (§4.3), then the fill model.
    pub fn place(&mut self, id: String, strategy: &str, leg: &OrderLeg) -> Result<Order, Rejection> {
        check_product(leg.exchange, leg.product)?;
        let quantity = leg.quantity as i64;
        let (price, trigger) = (to_paise(leg.price), to_paise(leg.trigger_price));
        let type_name = leg.price_type.as_str();
        if matches!(leg.price_type, PriceType::Limit | PriceType::StopLoss) && price <= 0 {
            return Err(Rejection::new(format!("{type_name} orders require price")));
        }
        if matches!(leg.price_type, PriceType::StopLoss | PriceType::StopLossMarket) && trigger <= 0 {
            return Err(Rejection::new(format!("{type_name} orders require trigger_price")));
        }
        let instrument = market::instrument(&leg.symbol, leg.exchange)
            .ok_or_else(|| Rejection::new(format!("Symbol {} not found on {}", leg.symbol, leg.exchange.as_str())))?;
        let lot = i64::from(instrument.lot_size);
        if is_lot_traded(leg.exchange) && quantity % lot != 0 {
            return Err(Rejection::new(format!("Quantity must be in multiples of lot size {lot}")));
        }
        let key = PositionKey { exchange: leg.exchange, symbol: leg.symbol.clone(), product: leg.product };
        let current = self.position_quantity(&key);
        let signed = match leg.action {
            Action::Buy => quantity,
            Action::Sell => -quantity,
        };
        let opening = opening_quantity(current, signed);
        if leg.product == Product::Mis && opening > 0 {
            check_mis_window(leg.exchange, self.now)?;
        }
        let quote = self.quote(instrument);
        let reference = match leg.price_type {
            PriceType::Market => to_paise(quote.ltp),
            PriceType::Limit | PriceType::StopLoss => price,
            PriceType::StopLossMarket => trigger,
        };
        self.check_caps(quantity, reference)?;
        let mut order = Order {
            id,
            strategy: strategy.to_owned(),
            exchange: leg.exchange,
            symbol: leg.symbol.clone(),
            action: leg.action,
            quantity,
            price_type: leg.price_type,
            product: leg.product,
            price: match leg.price_type {
                PriceType::Market => to_paise(quote.ltp),
                PriceType::Limit | PriceType::StopLoss => price,
                PriceType::StopLossMarket => 0,
            },
            trigger_price: match leg.price_type {
                PriceType::StopLoss | PriceType::StopLossMarket => trigger,
                PriceType::Market | PriceType::Limit => 0,
            },
            status: Status::Open,
            average_price: 0,
            filled_quantity: 0,
            margin: 0,
            rejection_reason: String::new(),
            placed_at: self.now.0,
            updated_at: self.now.0,
        };
        if leg.product == Product::Cnc && leg.action == Action::Sell {
            // The sandbox has no T+1 settlement yet, so the CNC position is everything held.
            if quantity > current {
                let message = format!(
                    "Cannot sell {quantity} {} in CNC: only {} held in the CNC position",
                    leg.symbol,
                    current.max(0)
                );
                order.status = Status::Rejected;
                order.rejection_reason.clone_from(&message);
                let order_id = order.id.clone();
                self.changes.orders.push(OrderWrite::Create(order));
                return Err(Rejection { message, order_id: Some(order_id) });
            }
        }
        order.margin = self.margin_for(&order, opening);
        self.block(order.margin)?;
        match evaluate(&order, &quote, true) {
            Step::Fill(at) => self.fill(&mut order, at),
            Step::Rest(status) => order.status = status,
        }
        self.changes.orders.push(OrderWrite::Create(order.clone()));
        Ok(order)
    }

    /// Margin for the part of `order` that opens exposure (§4.2): nothing for a CNC sell, and
    /// nothing for the part that only reduces an opposite position.
    fn margin_for(&self, order: &Order, opening: i64) -> Paise {
        let derivative = is_future(order.exchange, &order.symbol) || is_option(&order.symbol);
        let blocks = match order.action {
            Action::Buy => true,
            Action::Sell => derivative || order.product != Product::Cnc,
        };
        if !blocks || opening == 0 {
            return 0;
        }
        let reference = match order.price_type {
            PriceType::Market | PriceType::Limit => order.price,
            PriceType::StopLoss | PriceType::StopLossMarket => order.trigger_price,
        };
        let leverage = leverage(order.exchange, &order.symbol, order.product);
        (opening * reference + leverage - 1) / leverage
    }

    fn block(&mut self, margin: Paise) -> Result<(), Rejection> {
        if margin > self.funds.available {
            return Err(Rejection::new(format!(
                "Insufficient funds. Required: ₹{:.2}, Available: ₹{:.2}, Shortage: ₹{:.2}",
                rupees(margin),
                rupees(self.funds.available),
                rupees(margin - self.funds.available)
            )));
        }
        if margin != 0 {
            self.funds.available -= margin;
            self.funds.used_margin += margin;
            self.changes.blocked += margin;
            self.changes.funds = true;
        }
        Ok(())
    }

    fn release(&mut self, margin: Paise) {
        if margin != 0 {
            self.funds.available += margin;
            self.funds.used_margin -= margin;
            self.changes.funds = true;
        }
    }

    /// Fills `order` completely at `price`: a trade, the position, realised P&L and margin.
    fn fill(&mut self, order: &mut Order, price: Paise) {
        order.status = Status::Complete;
        order.average_price = price;
        order.filled_quantity = order.quantity;
        order.updated_at = self.now.0;
        let trade = Trade {
            id: format!("TRADE-{}-{}", IstTime::at(self.now).compact(), &trade_suffix(&order.id)),
            order_id: order.id.clone(),
            strategy: order.strategy.clone(),
            exchange: order.exchange,
            symbol: order.symbol.clone(),
            action: order.action,
            product: order.product,
            quantity: order.quantity,
            price,
            at: self.now.0,
        };
        self.changes.trades.push(trade);

        let key = order.position_key();
        let session = self.funds.session;
        let position = self.positions.entry(key.clone()).or_insert_with(|| Position {
            key: key.clone(),
            quantity: 0,
            cost: 0,
            average_price: 0,
            resets: 0,
            margin: 0,
            realized_today: 0,
            session,
        });
        let before = position.quantity;
        let signed = order.signed_quantity();
        let mut realized = 0;
        let mut released = 0;
        let guard = if before == 0 || before.signum() == signed.signum() {
            // Opens or grows: the cost is a sum, so this holds whatever else grew it meanwhile.
            position.quantity = before + signed;
            position.cost += signed * price;
            position.resets += 1;
            if signed > 0 { Guard::Long } else { Guard::Short }
        } else {
            let closed = signed.abs().min(before.abs());
            realized = (price - position.average_price) * closed * before.signum();
            released = position.margin * closed / before.abs();
            position.margin -= released;
            position.quantity = before + signed;
            if position.quantity.signum() == before.signum() {
                position.cost = position.quantity * position.average_price;
                Guard::Reduce { closed, long: before > 0 }
            } else {
                // Closed, or reversed: the remainder opens at the fill price.
                position.cost = position.quantity * price;
                position.resets += 1;
                Guard::Exact
            }
        };
        position.average_price = average_of(position.cost, position.quantity);
        position.margin += order.margin;
        if position.quantity == 0 {
            released += position.margin;
            position.margin = 0;
            position.cost = 0;
            position.average_price = 0;
        }
        position.realized_today += realized;
        self.funds.realized_today += realized;
        self.funds.realized_total += realized;
        self.funds.available += realized;
        self.changes.funds = true;
        self.release(released);
        self.changes.touch_position(key, guard);
    }

    /// Cancels a resting order and releases its margin.
    pub fn cancel(&mut self, order: &Order) -> Result<Order, Rejection> {
        if !order.status.is_resting() {
            return Err(Rejection::new(format!("Cannot cancel order in {} status", order.status.as_str())));
        }
        let mut cancelled = order.clone();
        cancelled.status = Status::Cancelled;
        cancelled.updated_at = self.now.0;
        self.release(order.margin);
        self.changes.orders.push(OrderWrite::Update { order: cancelled.clone(), expected: order.status });
        Ok(cancelled)
    }

    /// Changes quantity, price and trigger of a resting order, re-blocking margin for the
    /// difference (OpenAlgo keeps the original block; a bigger order should need more margin).
    pub fn modify(&mut self, order: &Order, leg: &OrderLeg) -> Result<Order, Rejection> {
        if !order.status.is_resting() {
            return Err(Rejection::new(format!("Cannot modify order in {} status", order.status.as_str())));
        }
        if leg.symbol != order.symbol || leg.exchange != order.exchange {
            return Err(Rejection::new(format!(
                "Order {} is for {} on {}; symbol and exchange cannot be modified",
                order.id,
                order.symbol,
                order.exchange.as_str()
            )));
        }
        let (price, trigger) = (to_paise(leg.price), to_paise(leg.trigger_price));
        let type_name = order.price_type.as_str();
        match order.price_type {
            PriceType::Market | PriceType::StopLossMarket if price > 0 => {
                return Err(Rejection::new(format!("{type_name} orders do not accept a price")));
            }
            PriceType::Market | PriceType::Limit if trigger > 0 => {
                return Err(Rejection::new(format!("{type_name} orders do not accept a trigger_price")));
            }
            PriceType::Limit | PriceType::StopLoss if price <= 0 => {
                return Err(Rejection::new(format!("{type_name} orders require price")));
            }
            PriceType::StopLoss | PriceType::StopLossMarket if trigger <= 0 => {
                return Err(Rejection::new(format!("{type_name} orders require trigger_price")));
            }
            _ => {}
        }
        let instrument = market::instrument(&order.symbol, order.exchange)
            .ok_or_else(|| Rejection::new(format!("Symbol {} not found", order.symbol)))?;
        let quantity = leg.quantity as i64;
        if is_lot_traded(order.exchange) && quantity % i64::from(instrument.lot_size) != 0 {
            return Err(Rejection::new(format!("Quantity must be in multiples of lot size {}", instrument.lot_size)));
        }
        let reference = if order.price_type == PriceType::StopLossMarket { trigger } else { price.max(order.price) };
        self.check_caps(quantity, reference)?;
        let mut modified = order.clone();
        modified.quantity = quantity;
        modified.price = price;
        modified.trigger_price = trigger;
        modified.updated_at = self.now.0;
        let current = self.position_quantity(&order.position_key());
        let margin = self.margin_for(&modified, opening_quantity(current, modified.signed_quantity()));
        if margin > order.margin {
            self.block(margin - order.margin)?;
        } else {
            self.release(order.margin - margin);
        }
        modified.margin = margin;
        let quote = self.quote(instrument);
        if let Step::Fill(at) = evaluate(&modified, &quote, false) {
            self.fill(&mut modified, at);
        }
        self.changes.orders.push(OrderWrite::Update { order: modified.clone(), expected: order.status });
        Ok(modified)
    }

    /// The fill engine's step for one resting order: fill, trigger, or leave it. Returns whether
    /// anything changed.
    pub fn match_resting(&mut self, order: &Order) -> bool {
        let Some(instrument) = market::instrument(&order.symbol, order.exchange) else {
            return false;
        };
        let quote = self.quote(instrument);
        let mut next = order.clone();
        match evaluate(order, &quote, false) {
            Step::Fill(at) => self.fill(&mut next, at),
            Step::Rest(status) if status != order.status => {
                next.status = status;
                next.updated_at = self.now.0;
            }
            Step::Rest(_) => return false,
        }
        self.changes.orders.push(OrderWrite::Update { order: next, expected: order.status });
        true
    }
}

/// How much of a signed order `signed` opens or grows exposure, given the current net `current`.
fn opening_quantity(current: i64, signed: i64) -> i64 {
    if current == 0 || current.signum() == signed.signum() {
        signed.abs()
    } else {
        (signed.abs() - current.abs()).max(0)
    }
}

/// Fill, rest, or trigger (§4.4). At placement a marketable LIMIT fills at the last price (price
/// improvement); resting, it fills at its limit.
fn evaluate(order: &Order, quote: &Touch, at_placement: bool) -> Step {
    let ltp = to_paise(quote.ltp);
    let buy = order.action == Action::Buy;
    let limit_met = if buy { ltp <= order.price } else { ltp >= order.price };
    let trigger_met = if buy { ltp >= order.trigger_price } else { ltp <= order.trigger_price };
    match order.price_type {
        PriceType::Market => {
            let side = to_paise(if buy { quote.ask } else { quote.bid });
            Step::Fill(if side > 0 { side } else { ltp })
        }
        PriceType::Limit if limit_met => Step::Fill(if at_placement { ltp } else { order.price }),
        PriceType::Limit => Step::Rest(Status::Open),
        PriceType::StopLossMarket if trigger_met => Step::Fill(ltp),
        PriceType::StopLossMarket => Step::Rest(Status::TriggerPending),
        PriceType::StopLoss => {
            let triggered = trigger_met || order.status == Status::Open && !at_placement;
            match (triggered, limit_met) {
                (true, true) => Step::Fill(ltp),
                (true, false) => Step::Rest(Status::Open),
                (false, _) => Step::Rest(Status::TriggerPending),
            }
        }
    }
}

fn check_product(exchange: Exchange, product: Product) -> Result<(), Rejection> {
    let equity = matches!(exchange, Exchange::Nse | Exchange::Bse);
    if equity && product == Product::Nrml {
        return Err(Rejection::new(format!(
            "NRML product not allowed for {} equity segment. Use CNC for delivery or MIS for intraday.",
            exchange.as_str()
        )));
    }
    let derivative = matches!(
        exchange,
        Exchange::Nfo
            | Exchange::Bfo
            | Exchange::Mcx
            | Exchange::Cds
            | Exchange::Bcd
            | Exchange::Ncdex
            | Exchange::Crypto
    );
    if derivative && product == Product::Cnc {
        return Err(Rejection::new(format!(
            "CNC product not allowed for {} derivatives segment. Use NRML for carryforward or MIS for intraday.",
            exchange.as_str()
        )));
    }
    if matches!(exchange, Exchange::NseIndex | Exchange::BseIndex | Exchange::McxIndex | Exchange::GlobalIndex) {
        return Err(Rejection::new(format!("{} instruments are indices and cannot be traded", exchange.as_str())));
    }
    Ok(())
}

fn is_lot_traded(exchange: Exchange) -> bool {
    matches!(
        exchange,
        Exchange::Nfo
            | Exchange::Bfo
            | Exchange::Cds
            | Exchange::Bcd
            | Exchange::Mcx
            | Exchange::Ncdex
            | Exchange::Crypto
    )
}

fn is_option(symbol: &str) -> bool {
    symbol.ends_with("CE") || symbol.ends_with("PE")
}

fn is_future(exchange: Exchange, symbol: &str) -> bool {
    (is_lot_traded(exchange) && symbol.ends_with("FUT")) || (exchange == Exchange::Crypto && !is_option(symbol))
}

fn leverage(exchange: Exchange, symbol: &str, product: Product) -> i64 {
    if matches!(exchange, Exchange::Nse | Exchange::Bse) && product == Product::Mis {
        5
    } else if is_future(exchange, symbol) {
        10
    } else {
        1
    }
}

/// Square-off time per exchange (IST seconds of day), as OpenAlgo's sandbox configures it.
fn square_off_secs(exchange: Exchange) -> u32 {
    match exchange {
        Exchange::Cds | Exchange::Bcd => 16 * 3600 + 45 * 60,
        Exchange::Mcx => 23 * 3600 + 30 * 60,
        Exchange::Ncdex => 17 * 3600,
        _ => 15 * 3600 + 15 * 60,
    }
}

fn check_mis_window(exchange: Exchange, now: UnixMillis) -> Result<(), Rejection> {
    let cutoff = square_off_secs(exchange);
    let time = IstTime::at(now).seconds_of_day();
    if time >= cutoff || time < MIS_RESUMES_SECS {
        return Err(Rejection::new(format!(
            "MIS orders cannot be placed after square-off time ({:02}:{:02} IST). Trading resumes at 09:00 AM IST.",
            cutoff / 3600,
            cutoff / 60 % 60
        )));
    }
    Ok(())
}

/// Eight hex characters derived from the order id: one trade per order, so unique per account.
fn trade_suffix(order_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(order_id.as_bytes())[..4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ist::ist_midnight_epoch;

    /// 2025-10-01 at `hh:mm` IST.
    fn at(hh: u64, mm: u64) -> UnixMillis {
        UnixMillis((ist_midnight_epoch(2025, 10, 1) as u64 + hh * 3600 + mm * 60) * 1000)
    }

    fn leg(symbol: &str, action: Action, quantity: f64, price_type: PriceType, product: Product) -> OrderLeg {
        OrderLeg {
            exchange: Exchange::Nse,
            symbol: symbol.into(),
            action,
            quantity,
            price_type,
            product,
            price: 0.0,
            trigger_price: 0.0,
            disclosed_quantity: 0,
        }
    }

    fn ledger(now: UnixMillis) -> Ledger {
        Ledger::new(None, Vec::new(), now)
    }

    fn sbin_ltp(now: UnixMillis) -> Paise {
        to_paise(market::instrument("SBIN", Exchange::Nse).expect("SBIN").price_at(now))
    }

    #[test]
    fn a_market_buy_fills_at_the_ask_and_blocks_margin_at_the_leverage() {
        let now = at(10, 0);
        let mut book = ledger(now);
        let order = book
            .place("1".into(), "s", &leg("SBIN", Action::Buy, 10.0, PriceType::Market, Product::Mis))
            .expect("placed");
        assert_eq!(order.status, Status::Complete);
        let ltp = sbin_ltp(now);
        assert_eq!(order.average_price, ltp + 5, "ask is one 5-paise tick above the last price");
        assert_eq!(order.margin, (10 * ltp + 4) / 5, "MIS equity at 5×");
        assert_eq!(book.funds.available, STARTING_CAPITAL - order.margin);
        assert_eq!(book.funds.used_margin, order.margin);
        let key = order.position_key();
        assert_eq!(book.positions[&key].quantity, 10);
        assert_eq!(book.positions[&key].margin, order.margin);
        assert_eq!(book.changes.trades.len(), 1);
    }

    #[test]
    fn closing_a_position_realises_pnl_and_releases_all_margin() {
        let mut book = ledger(at(10, 0));
        let buy =
            book.place("1".into(), "s", &leg("SBIN", Action::Buy, 10.0, PriceType::Market, Product::Cnc)).expect("buy");
        book.now = at(11, 0);
        let sell = book
            .place("2".into(), "s", &leg("SBIN", Action::Sell, 10.0, PriceType::Market, Product::Cnc))
            .expect("sell");
        assert_eq!(sell.margin, 0, "a CNC sell against the day position blocks nothing");
        let realized = (sell.average_price - buy.average_price) * 10;
        assert_eq!(book.funds.realized_today, realized);
        assert_eq!(book.funds.used_margin, 0);
        assert_eq!(book.funds.available, STARTING_CAPITAL + realized);
        let position = &book.positions[&buy.position_key()];
        assert_eq!((position.quantity, position.margin, position.average_price), (0, 0, 0));
    }

    #[test]
    fn reversal_blocks_margin_only_for_the_excess_and_opens_the_rest_at_the_fill() {
        let mut book = ledger(at(10, 0));
        book.place("1".into(), "s", &leg("SBIN", Action::Buy, 2.0, PriceType::Market, Product::Mis)).expect("buy");
        let sell = book
            .place("2".into(), "s", &leg("SBIN", Action::Sell, 5.0, PriceType::Market, Product::Mis))
            .expect("sell");
        assert_eq!(sell.margin, (3 * sell.price + 4) / 5);
        let position = &book.positions[&sell.position_key()];
        assert_eq!((position.quantity, position.average_price), (-3, sell.average_price));
        assert_eq!(position.margin, sell.margin, "the long's margin was released in full");
        assert_eq!(book.funds.used_margin, sell.margin);
    }

    #[test]
    fn a_limit_below_the_market_rests_and_cancelling_releases_its_margin() {
        let mut book = ledger(at(10, 0));
        let mut buy = leg("SBIN", Action::Buy, 1.0, PriceType::Limit, Product::Cnc);
        buy.price = 1.0;
        let order = book.place("1".into(), "s", &buy).expect("placed");
        assert_eq!((order.status, order.margin), (Status::Open, 100));
        assert_eq!(book.funds.available, STARTING_CAPITAL - 100);
        let mut more = buy.clone();
        more.quantity = 2.0;
        more.price = 2.0;
        let modified = book.modify(&order, &more).expect("modified");
        assert_eq!((modified.status, modified.margin), (Status::Open, 400));
        assert_eq!(book.funds.available, STARTING_CAPITAL - 400, "modify re-blocks the difference");
        let cancelled = book.cancel(&modified).expect("cancelled");
        assert_eq!(cancelled.status, Status::Cancelled);
        assert_eq!((book.funds.available, book.funds.used_margin), (STARTING_CAPITAL, 0));
        assert_eq!(book.cancel(&cancelled), Err(Rejection::new("Cannot cancel order in cancelled status")));
    }

    #[test]
    fn a_marketable_limit_fills_at_the_last_price_and_a_resting_one_at_its_limit() {
        let now = at(10, 0);
        let mut book = ledger(now);
        let ltp = sbin_ltp(now);
        let mut buy = leg("SBIN", Action::Buy, 1.0, PriceType::Limit, Product::Cnc);
        buy.price = rupees(ltp + 1000);
        let order = book.place("1".into(), "s", &buy).expect("placed");
        assert_eq!((order.status, order.average_price), (Status::Complete, ltp));

        // A limit at the lowest price of the next hour: below the market now, reached later.
        let (later, low) = (1..3_600u64)
            .map(|s| UnixMillis(now.0 + s * 1000))
            .map(|t| (t, sbin_ltp(t)))
            .min_by_key(|(_, price)| *price)
            .expect("an hour of prices");
        assert!(low < ltp, "the walk dips below {ltp} within the hour");
        let mut resting = buy.clone();
        resting.price = rupees(low);
        let order = book.place("2".into(), "s", &resting).expect("placed");
        assert_eq!(order.status, Status::Open);
        book.now = later;
        assert!(book.match_resting(&order));
        let Some(OrderWrite::Update { order: filled, expected }) = book.changes.orders.last() else {
            panic!("an update")
        };
        assert_eq!((filled.status, filled.average_price, *expected), (Status::Complete, order.price, Status::Open));
    }

    #[test]
    fn stop_orders_wait_for_their_trigger() {
        let now = at(10, 0);
        let mut book = ledger(now);
        let mut stop = leg("SBIN", Action::Buy, 1.0, PriceType::StopLoss, Product::Cnc);
        stop.price = 999_999.0;
        stop.trigger_price = 999_998.0;
        let order = book.place("1".into(), "s", &stop).expect("placed");
        assert_eq!(order.status, Status::TriggerPending);
        assert!(!book.match_resting(&order), "nothing to do while the trigger is far away");
        let mut stop_market = leg("SBIN", Action::Sell, 1.0, PriceType::StopLossMarket, Product::Mis);
        stop_market.trigger_price = rupees(sbin_ltp(now)) + 1.0;
        let order = book.place("2".into(), "s", &stop_market).expect("placed");
        assert_eq!(order.status, Status::Complete, "a sell stop above the market triggers at once");
    }

    #[test]
    fn acceptance_rules_in_openalgos_words() {
        let mut book = ledger(at(10, 0));
        let mut nrml = leg("SBIN", Action::Buy, 1.0, PriceType::Market, Product::Nrml);
        assert!(
            book.place("1".into(), "s", &nrml).unwrap_err().message.starts_with("NRML product not allowed for NSE")
        );
        nrml.product = Product::Cnc;
        nrml.symbol = "NOPE".into();
        assert_eq!(book.place("1".into(), "s", &nrml).unwrap_err().message, "Symbol NOPE not found on NSE");
        let limit = leg("SBIN", Action::Buy, 1.0, PriceType::Limit, Product::Cnc);
        assert_eq!(book.place("1".into(), "s", &limit).unwrap_err().message, "LIMIT orders require price");
        let big = leg("SBIN", Action::Buy, 1_000_000.0, PriceType::Market, Product::Cnc);
        assert!(book.place("1".into(), "s", &big).unwrap_err().message.starts_with("Insufficient funds. Required: ₹"));
        assert!(book.changes.is_empty(), "refusals change nothing");
    }

    #[test]
    fn per_order_caps_name_their_setting() {
        let caps = OrderCaps { max_quantity: 100, max_value_rupees: 50_000 };
        let mut book = ledger(at(10, 0)).with_caps(caps);
        let too_many = leg("SBIN", Action::Buy, 101.0, PriceType::Market, Product::Cnc);
        assert_eq!(
            book.place("1".into(), "s", &too_many).unwrap_err().message,
            "Quantity 101 exceeds the per-order cap of 100 (MAX_ORDER_QUANTITY)"
        );
        let mut too_dear = leg("SBIN", Action::Buy, 100.0, PriceType::Limit, Product::Cnc);
        too_dear.price = 600.0;
        assert_eq!(
            book.place("1".into(), "s", &too_dear).unwrap_err().message,
            "Order value ₹60000.00 exceeds the per-order cap of ₹50000 (MAX_ORDER_VALUE)"
        );
    }

    #[test]
    fn a_cnc_sell_without_holdings_is_stored_as_rejected() {
        let mut book = ledger(at(10, 0));
        let sell = leg("SBIN", Action::Sell, 1.0, PriceType::Market, Product::Cnc);
        let rejection = book.place("7".into(), "s", &sell).unwrap_err();
        assert_eq!(rejection.order_id.as_deref(), Some("7"));
        let [OrderWrite::Create(order)] = book.changes.orders.as_slice() else { panic!("one stored order") };
        assert_eq!(order.status, Status::Rejected);
        assert!(!book.changes.funds);
    }

    #[test]
    fn mis_opening_orders_are_refused_after_square_off_but_reducing_ones_pass() {
        let mut book = ledger(at(15, 0));
        book.place("1".into(), "s", &leg("SBIN", Action::Buy, 1.0, PriceType::Market, Product::Mis))
            .expect("before 15:15");
        book.now = at(15, 20);
        let message = book
            .place("2".into(), "s", &leg("SBIN", Action::Buy, 1.0, PriceType::Market, Product::Mis))
            .unwrap_err()
            .message;
        assert_eq!(
            message,
            "MIS orders cannot be placed after square-off time (15:15 IST). Trading resumes at 09:00 AM IST."
        );
        book.place("3".into(), "s", &leg("SBIN", Action::Sell, 1.0, PriceType::Market, Product::Mis))
            .expect("reducing");
        book.now = at(8, 59);
        assert!(book.place("4".into(), "s", &leg("SBIN", Action::Buy, 1.0, PriceType::Market, Product::Mis)).is_err());
    }

    #[test]
    fn todays_realised_pnl_resets_at_0300_ist() {
        let mut book = ledger(at(10, 0));
        book.place("1".into(), "s", &leg("SBIN", Action::Buy, 1.0, PriceType::Market, Product::Cnc)).expect("buy");
        book.now = at(14, 0);
        book.place("2".into(), "s", &leg("SBIN", Action::Sell, 1.0, PriceType::Market, Product::Cnc)).expect("sell");
        let realized = book.funds.realized_today;
        let next_day = UnixMillis(at(3, 0).0 + 86_400_000);
        let rolled = Ledger::new(Some(book.funds.clone()), book.positions.values().cloned().collect(), next_day);
        assert_eq!(rolled.funds.realized_today, 0);
        assert_eq!(rolled.funds.realized_total, realized);
        assert!(rolled.positions.values().all(|p| p.realized_today == 0));
    }
}
