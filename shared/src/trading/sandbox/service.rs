//! Load → apply → commit. Each order is one DynamoDB transaction over the account's funds, the
//! order, its trade and its position, so a crash or a failed write leaves either all of them or
//! none. Nothing locks the account: funds and positions move by deltas whose conditions say only
//! what the order depends on (the margin it blocks is still available; the position it grows has
//! not turned the other way; a position it reduces is as read), so unrelated concurrent orders do
//! not conflict. When a condition fails the operation is re-run on fresh state, a bounded number
//! of times.
//!
//! An order that opens or grows a position (a BUY that is not covering a short) is first tried
//! without reading the account at all: placeorder is then the gate's round trip and one
//! transaction. If what it assumed was wrong (a short to cover, too little money, an old-layout
//! item), its conditions fail and it is re-run on the account as read.
//!
//! Every operation has one request id, fixed before its first attempt, which marks the orders it
//! writes and derives each attempt's `ClientRequestToken`, and its order id stays the same across
//! attempts (unless another request's order took it), so a commit whose answer was lost is read
//! back rather than booked twice or denied (see [`SandboxStore::commit`]).

use rand::Rng;

use super::ledger::{Ledger, Order, PositionKey, Rejection, SESSION_BOUNDARY_SECS};
use crate::core::clock::{Clock, UnixMillis};
use crate::core::config::OrderCaps;
use crate::core::error::AppError;
use crate::core::ist::{IstTime, last_boundary};
use crate::store::sandbox::{AccountState, Attempt, Commit, SandboxStore};
use crate::trading::orders::{
    Action, BasketOrder, LegOutcome, ModifyOrder, OrderLeg, PriceType, SmartOrder, SmartOutcome, SmartStep, SplitOrder,
    smart_step,
};

/// Conflicts are now between orders that depend on each other (closing the position another order
/// grows, spending the same last rupees), so a handful of attempts is plenty; the bound stays
/// generous because a refusal here is a 409 the trader has to retry.
const ATTEMPTS: u32 = 20;

/// A short random pause after a conflict, so the writers that lost do not collide again in step.
async fn back_off(attempt: u32) {
    let millis = rand::thread_rng().gen_range(0..=u64::from(attempt.min(10)) * 3);
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
}

/// The strategy label OpenAlgo's sandbox gives the orders that close positions.
pub const SQUARE_OFF_STRATEGY: &str = "AUTO_SQUARE_OFF";

impl From<Rejection> for AppError {
    fn from(rejection: Rejection) -> Self {
        AppError::OrderRejected { message: rejection.message, order_id: rejection.order_id }
    }
}

/// A 14-digit sandbox order id: IST `YYMMDD`, tenths of a second since IST midnight (6 digits),
/// and 2 random digits. Ids sort by time to the decisecond, so "today's orders" is one key range;
/// a clash of the random digits fails the commit's `attribute_not_exists` and is retried.
pub fn new_order_id(now: UnixMillis) -> String {
    format!("{:014}", order_id_decisecond(now) * 100 + rand::thread_rng().gen_range(0..100))
}

/// An order id's first 12 digits, as a number: IST `YYMMDD`, then tenths of a second since IST
/// midnight (6 digits).
fn order_id_decisecond(at: UnixMillis) -> u64 {
    let time = IstTime::at(at);
    time.yymmdd() * 1_000_000 + u64::from(time.millis_of_day / 100)
}

/// A request id: marks every order an operation writes, so its commit can be read back.
fn new_request_id() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 16]>())
}

/// Whether an operation may be tried on [`AccountState::assumed`] before reading the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    First,
    Assume,
}

/// The smallest id an order placed at or after `at` can have.
pub fn first_order_id_at(at: UnixMillis) -> String {
    format!("{:014}", order_id_decisecond(at) * 100)
}

#[derive(Clone, Copy, Debug)]
pub struct Sandbox<'a> {
    store: &'a SandboxStore,
    clock: &'a dyn Clock,
    caps: OrderCaps,
}

impl<'a> Sandbox<'a> {
    pub fn new(store: &'a SandboxStore, clock: &'a dyn Clock, caps: OrderCaps) -> Self {
        Self { store, clock, caps }
    }

    pub fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    pub fn store(&self) -> &SandboxStore {
        self.store
    }

    /// The account as it stands, for reads: funds and positions with the session rolled over.
    pub async fn ledger(&self, user: &str) -> Result<Ledger, AppError> {
        let state = self.store.account(user).await?;
        Ok(Ledger::new(state.funds, state.positions, self.now()))
    }

    /// The first order id of the current session (03:00 IST), for the books' key ranges.
    pub fn session_first_id(&self) -> String {
        first_order_id_at(last_boundary(self.now(), SESSION_BOUNDARY_SECS))
    }

    /// Runs `operation` (given the order id it may create) on the account and commits what it
    /// changed, retrying on a failed condition. A refusal that recorded something (a `rejected`
    /// order) is committed too. `pin` makes every position write conditional on the position
    /// exactly as read (for a decision on the quantity itself).
    async fn transact<R>(
        &self,
        user: &str,
        read: Read,
        pin: bool,
        mut operation: impl FnMut(&mut Ledger, &str) -> Result<R, AppError>,
    ) -> Result<R, AppError> {
        let request = new_request_id();
        let mut order_id = new_order_id(self.now());
        let mut assume = read == Read::Assume;
        for attempt in 0..ATTEMPTS {
            let state = if assume { AccountState::assumed(self.now()) } else { self.store.account(user).await? };
            let mut ledger = Ledger::new(state.funds.clone(), state.positions.clone(), self.now()).with_caps(self.caps);
            let outcome = operation(&mut ledger, &order_id);
            if pin {
                ledger.changes.pin_positions();
            }
            if assume && (outcome.is_err() || !ledger.changes.only_grows()) {
                // The outcome depends on what was assumed (a refusal, a position to reduce): read.
                assume = false;
                continue;
            }
            if ledger.changes.is_empty() {
                return outcome;
            }
            match self.store.commit(user, &state, &ledger, Attempt { request: &request, number: attempt }).await? {
                Commit::Done => return outcome,
                Commit::Stale => {
                    if !assume {
                        back_off(attempt).await;
                    }
                }
                Commit::IdTaken => order_id = new_order_id(self.now()),
            }
            assume = false;
        }
        Err(AppError::AccountBusy)
    }

    /// As [`Self::transact`], for an operation on one existing order.
    async fn transact_on_order<R>(
        &self,
        user: &str,
        order_id: &str,
        mut operation: impl FnMut(&mut Ledger, &Order) -> Result<R, AppError>,
    ) -> Result<R, AppError> {
        let request = new_request_id();
        for attempt in 0..ATTEMPTS {
            let (state, order) = tokio::try_join!(self.store.account(user), self.store.order(user, order_id))?;
            let order = order.ok_or_else(|| AppError::OrderNotFound { order_id: order_id.to_owned() })?;
            let mut ledger = Ledger::new(state.funds.clone(), state.positions.clone(), self.now()).with_caps(self.caps);
            let outcome = operation(&mut ledger, &order);
            if ledger.changes.is_empty() {
                return outcome;
            }
            match self.store.commit(user, &state, &ledger, Attempt { request: &request, number: attempt }).await? {
                Commit::Done => return outcome,
                Commit::Stale | Commit::IdTaken => back_off(attempt).await,
            }
        }
        Err(AppError::AccountBusy)
    }

    pub async fn place(&self, user: &str, strategy: &str, leg: &OrderLeg) -> Result<Order, AppError> {
        let read = if leg.action == Action::Buy { Read::Assume } else { Read::First };
        self.transact(user, read, false, |ledger, id| Ok(ledger.place(id.to_owned(), strategy, leg)?)).await
    }

    /// Reaches the target net position `position_size` for the leg's symbol, exchange and product.
    pub async fn smart(&self, user: &str, request: &SmartOrder) -> Result<SmartOutcome, AppError> {
        request.check_position_size()?;
        // The decision reads the position's quantity, so the order commits only on the position
        // exactly as read: a concurrent order on the same position makes it decide again.
        self.transact(user, Read::First, true, |ledger, id| {
            let leg = &request.leg;
            let key = PositionKey { exchange: leg.exchange, symbol: leg.symbol.clone(), product: leg.product };
            match smart_step(request, ledger.position_quantity(&key))? {
                SmartStep::Place(order_leg) => {
                    Ok(SmartOutcome::Placed(ledger.place(id.to_owned(), &request.strategy, &order_leg)?.id))
                }
                SmartStep::Matched(message) => Ok(SmartOutcome::Matched(message)),
            }
        })
        .await
    }

    pub async fn modify(&self, user: &str, request: &ModifyOrder) -> Result<Order, AppError> {
        self.transact_on_order(user, &request.order_id, |ledger, order| Ok(ledger.modify(order, &request.leg)?)).await
    }

    pub async fn cancel(&self, user: &str, order_id: &str) -> Result<Order, AppError> {
        self.transact_on_order(user, order_id, |ledger, order| Ok(ledger.cancel(order)?)).await
    }

    /// Cancels every resting order, `trigger pending` ones included (OpenAlgo's sandbox misses
    /// those). Returns the cancelled ids and the failures.
    pub async fn cancel_all(&self, user: &str) -> Result<(Vec<String>, Vec<(String, String)>), AppError> {
        let resting = self.store.resting_orders(user).await?;
        let mut cancelled = Vec::new();
        let mut failed = Vec::new();
        for order in resting {
            match self.cancel(user, &order.id).await {
                Ok(order) => cancelled.push(order.id),
                // Filled or cancelled since the index was read: nothing left to cancel.
                Err(AppError::OrderRejected { .. }) => {}
                Err(error) if error.is_server_error() => return Err(error),
                Err(error) => failed.push((order.id, error.public_message())),
            }
        }
        Ok((cancelled, failed))
    }

    /// Flattens every open position with a MARKET order, each in its own transaction.
    pub async fn close_all(&self, user: &str) -> Result<(Vec<Order>, Vec<(PositionKey, String)>), AppError> {
        let state = self.store.account(user).await?;
        let mut closed = Vec::new();
        let mut failed = Vec::new();
        for position in state.positions.iter().filter(|position| position.quantity != 0) {
            let key = position.key.clone();
            let outcome = self
                .transact(user, Read::First, true, |ledger, id| {
                    let quantity = ledger.position_quantity(&key);
                    if quantity == 0 {
                        return Ok(None);
                    }
                    let leg = OrderLeg {
                        exchange: key.exchange,
                        symbol: key.symbol.clone(),
                        action: if quantity > 0 { Action::Sell } else { Action::Buy },
                        quantity: quantity.unsigned_abs() as f64,
                        price_type: PriceType::Market,
                        product: key.product,
                        price: 0.0,
                        trigger_price: 0.0,
                        disclosed_quantity: 0,
                    };
                    Ok(Some(ledger.place(id.to_owned(), SQUARE_OFF_STRATEGY, &leg)?))
                })
                .await;
            match outcome {
                Ok(Some(order)) => closed.push(order),
                Ok(None) => {}
                Err(error) if error.is_server_error() => return Err(error),
                Err(error) => failed.push((key, error.public_message())),
            }
        }
        Ok((closed, failed))
    }

    /// Places each leg as its own order, BUY legs first (OpenAlgo frees margin that way round).
    pub async fn basket(&self, user: &str, request: &BasketOrder) -> Vec<LegOutcome> {
        let (buys, sells): (Vec<&OrderLeg>, Vec<&OrderLeg>) =
            request.orders.iter().partition(|leg| leg.action == Action::Buy);
        let mut outcomes = Vec::with_capacity(request.orders.len());
        for leg in buys.into_iter().chain(sells) {
            let result = self.place(user, &request.strategy, leg).await.map(|order| order.id);
            outcomes.push(LegOutcome { leg: leg.clone(), result });
        }
        outcomes
    }

    /// ⌊quantity / split_size⌋ orders of `split_size`, then the remainder.
    pub async fn split(&self, user: &str, request: &SplitOrder) -> Vec<LegOutcome> {
        let sizes = request.child_sizes();
        let mut outcomes = Vec::with_capacity(sizes.len());
        for quantity in sizes {
            let leg = OrderLeg { quantity: quantity as f64, ..request.leg.clone() };
            let result = self.place(user, &request.strategy, &leg).await.map(|order| order.id);
            outcomes.push(LegOutcome { leg, result });
        }
        outcomes
    }

    /// The fill engine: matches every resting order of every account against the market now.
    /// Returns how many orders changed. Each order is its own transaction, so one account's
    /// trouble never holds up another's fills.
    pub async fn match_resting_orders(&self) -> Result<usize, AppError> {
        let mut changed = 0;
        for (user, order) in self.store.all_resting_orders().await? {
            let outcome =
                self.transact_on_order(&user, &order.id, |ledger, current| Ok(ledger.match_resting(current))).await;
            match outcome {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(error) => tracing::warn!(error = %error, order = %order.id, "resting order not matched"),
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ist::ist_midnight_epoch;

    #[test]
    fn order_ids_are_14_digits_and_sort_by_time() {
        let morning = UnixMillis((ist_midnight_epoch(2025, 10, 1) as u64 + 9 * 3600) * 1000);
        let id = new_order_id(morning);
        assert_eq!(id.len(), 14);
        assert!(id.starts_with("251001324000"), "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        let later = UnixMillis(morning.0 + 100);
        assert!(first_order_id_at(later).as_str() <= new_order_id(later).as_str());
        assert!(first_order_id_at(morning).as_str() <= id.as_str());
        assert!(id.as_str() < first_order_id_at(UnixMillis(morning.0 + 100)).as_str());
    }
}
