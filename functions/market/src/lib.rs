//! Market data: quotes, multiquotes and depth from a live account's broker, from the simulated
//! market otherwise; history and intervals from the simulated market. No sandbox state is
//! touched, so this function holds no sandbox privileges at all.

use std::time::Duration;

/// What this function's cold start loads: the pepper, to verify API keys, and the brokers' keys,
/// to quote a live account at its broker.
pub const SECRETS: shared::app::bootstrap::Secrets = shared::app::bootstrap::Secrets::TRADING;

use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::core::clock::UnixMillis;
use shared::core::ist::{OFFSET_SECS as IST_OFFSET_SECS, civil_from_days, days_from_civil};
use shared::limits::LimitedAction;
use shared::pipeline::api::{self, Call};
use shared::pipeline::route::{Endpoint, Route, Routes};
use shared::trading::desk::Desk;
use shared::trading::market::{self, Candle, HISTORY_BEGINS, SESSION_CLOSE, SESSION_OPEN};
use shared::trading::reads::{History, Instrument, MultiQuotes};
use shared::{AppError, Deps};

/// Most candles one history request may return (1-second candles over a week would be 135 000).
pub const MAX_CANDLES: usize = 20_000;

/// The market-data routes: all reads.
#[derive(Clone, Copy, Debug)]
pub enum MarketRoute {
    Quotes,
    MultiQuotes,
    Depth,
    History,
    Intervals,
}

impl MarketRoute {
    pub const fn route(self) -> Route {
        const fn read(name: &'static str, path: &'static str) -> Route {
            Route::post(name, path, LimitedAction::Api, true)
        }
        match self {
            MarketRoute::Quotes => read("quotes", "/api/v1/quotes"),
            MarketRoute::MultiQuotes => read("multiquotes", "/api/v1/multiquotes"),
            MarketRoute::Depth => read("depth", "/api/v1/depth"),
            MarketRoute::History => read("history", "/api/v1/history"),
            MarketRoute::Intervals => read("intervals", "/api/v1/intervals"),
        }
    }
}

impl Routes for MarketRoute {
    const ALL: &'static [Self] = &[
        MarketRoute::Quotes,
        MarketRoute::MultiQuotes,
        MarketRoute::Depth,
        MarketRoute::History,
        MarketRoute::Intervals,
    ];

    fn endpoint(self) -> Endpoint {
        self.route().endpoint
    }
}

pub async fn handler(deps: &Deps, request: Request) -> Response<Body> {
    let Some(market_route) = MarketRoute::of(&request) else { return api::unknown_resource(&request) };
    let route = market_route.route();
    let now = deps.clock.now();
    let nothing_else = |_: &mut shared::http::validate::Fields| Some(());
    match market_route {
        MarketRoute::Quotes => api::run(deps, request, route, Instrument::parse, |c| quotes(deps, c, now)).await,
        MarketRoute::MultiQuotes => {
            api::run(deps, request, route, MultiQuotes::parse, |c| multi_quotes(deps, c, now)).await
        }
        MarketRoute::Depth => api::run(deps, request, route, Instrument::parse, |c| depth(deps, c, now)).await,
        MarketRoute::History => api::run(deps, request, route, History::parse, |c| history(c, now)).await,
        MarketRoute::Intervals => api::run(deps, request, route, nothing_else, |_| intervals()).await,
    }
}

fn lookup(instrument: &Instrument) -> Result<&'static market::Instrument, AppError> {
    market::instrument(&instrument.symbol, instrument.exchange).ok_or_else(|| {
        AppError::bad_request(format!("Symbol {} not found on {}", instrument.symbol, instrument.exchange.as_str()))
    })
}

fn quote_data(instrument: &market::Instrument, now: UnixMillis) -> Value {
    let quote = instrument.quote(now);
    json!({
        "open": quote.open, "high": quote.high, "low": quote.low, "ltp": quote.ltp, "ask": quote.ask,
        "bid": quote.bid, "prev_close": quote.prev_close, "volume": quote.volume, "oi": 0,
    })
}

async fn quotes(deps: &Deps, call: Call<Instrument>, now: UnixMillis) -> Result<Value, AppError> {
    if let Desk::Live(live) = deps.desk(&call.principal.user, &call.principal.broker).await? {
        return live.quotes(&call.input).await;
    }
    Ok(json!({ "data": quote_data(lookup(&call.input)?, now) }))
}

async fn multi_quotes(deps: &Deps, call: Call<MultiQuotes>, now: UnixMillis) -> Result<Value, AppError> {
    if let Desk::Live(live) = deps.desk(&call.principal.user, &call.principal.broker).await? {
        return live.multi_quotes(&call.input.symbols).await;
    }
    let results: Vec<Value> = call
        .input
        .symbols
        .iter()
        .map(|requested| {
            let mut row = json!({ "symbol": requested.symbol, "exchange": requested.exchange.as_str() });
            match lookup(requested) {
                Ok(instrument) => row["data"] = quote_data(instrument, now),
                Err(error) => row["error"] = json!(error.public_message()),
            }
            row
        })
        .collect();
    Ok(json!({ "results": results }))
}

async fn depth(deps: &Deps, call: Call<Instrument>, now: UnixMillis) -> Result<Value, AppError> {
    if let Desk::Live(live) = deps.desk(&call.principal.user, &call.principal.broker).await? {
        return live.depth(&call.input).await;
    }
    let instrument = lookup(&call.input)?;
    let quote = instrument.quote(now);
    let book = instrument.depth(now);
    let levels = |levels: &[market::Level]| -> Vec<Value> {
        levels.iter().map(|level| json!({ "price": level.price, "quantity": level.quantity })).collect()
    };
    Ok(json!({ "data": {
        "open": quote.open, "high": quote.high, "low": quote.low, "ltp": quote.ltp,
        "ltq": u64::from(instrument.lot_size), "prev_close": quote.prev_close, "volume": quote.volume, "oi": 0,
        "totalbuyqty": book.bids.iter().map(|l| l.quantity).sum::<u64>(),
        "totalsellqty": book.asks.iter().map(|l| l.quantity).sum::<u64>(),
        "bids": levels(&book.bids), "asks": levels(&book.asks),
    }}))
}

/// Seconds per candle for intraday intervals; `None` for D, W, M, Q and Y.
fn intraday_step(interval: &str) -> Option<Duration> {
    let (digits, unit) = interval.split_at(interval.len().saturating_sub(1));
    let count: u64 = digits.parse().ok()?;
    match unit {
        "s" => Some(Duration::from_secs(count)),
        "m" => Some(Duration::from_secs(count * 60)),
        "h" => Some(Duration::from_secs(count * 3600)),
        _ => None,
    }
}

/// IST midnight of `day` (days since the epoch).
fn ist_midnight(day: i64) -> UnixMillis {
    UnixMillis::from_secs(u64::try_from(day * 86_400 - IST_OFFSET_SECS).unwrap_or_default())
}

/// A date as days since the epoch.
fn day_number(date: (i32, u32, u32)) -> i64 {
    days_from_civil(i64::from(date.0), date.1, date.2)
}

/// Trading days (Monday to Friday) from day `first` to day `last`, as days since the epoch.
fn trading_days(first: i64, last: i64) -> impl Iterator<Item = i64> {
    // 1970-01-01 was a Thursday: day 0 → weekday 3 (Monday = 0).
    (first..=last).filter(|day| (day + 3).rem_euclid(7) < 5)
}

/// OpenAlgo's candle: `timestamp` in epoch seconds.
fn candle_json(candle: &Candle, timestamp: UnixMillis) -> Value {
    json!({
        "timestamp": timestamp.secs(), "open": candle.open, "high": candle.high, "low": candle.low,
        "close": candle.close, "volume": candle.volume, "oi": 0,
    })
}

/// The key that groups days into one candle: the day itself, its week (Monday), month, quarter or
/// year, as the day number of the period's first calendar day.
fn period_start(day: i64, interval: &str) -> i64 {
    let (year, month, _) = civil_from_days(day);
    match interval {
        "W" => day - (day + 3).rem_euclid(7),
        "M" => days_from_civil(year, month, 1),
        "Q" => days_from_civil(year, (month - 1) / 3 * 3 + 1, 1),
        "Y" => days_from_civil(year, 1, 1),
        _ => day,
    }
}

async fn history(call: Call<History>, now: UnixMillis) -> Result<Value, AppError> {
    let input = &call.input;
    if input.end < input.start {
        return Err(AppError::bad_request("end_date must not be before start_date"));
    }
    let instrument = lookup(&input.instrument)?;
    let (first, (year, month, day)) = (day_number(input.start), HISTORY_BEGINS);
    if first < day_number(HISTORY_BEGINS) {
        return Err(AppError::bad_request(format!(
            "{} on {} has no history before {year:04}-{month:02}-{day:02}",
            instrument.symbol,
            instrument.exchange.as_str()
        )));
    }
    // Days after today have no candles yet: the range ends today at the latest.
    let today = (now.epoch_secs() + IST_OFFSET_SECS).div_euclid(86_400);
    let last = day_number(input.end).min(today);
    let mut rows = Vec::new();
    let too_many = || {
        AppError::bad_request(format!(
            "The range holds more than {MAX_CANDLES} {} candles; request a shorter range or a longer interval",
            input.interval
        ))
    };
    if let Some(step) = intraday_step(input.interval) {
        // The work is bounded before any of it is done: the candles the range holds, each sampled
        // at least once a minute, so at most MAX_CANDLES × 62 prices.
        let per_day = (SESSION_CLOSE - SESSION_OPEN).as_secs().div_ceil(step.as_secs().max(1));
        let candles = u64::try_from(trading_days(first, last).count()).unwrap_or(u64::MAX).saturating_mul(per_day);
        if candles > MAX_CANDLES as u64 {
            return Err(too_many());
        }
        let sampling = step.clamp(Duration::from_secs(1), Duration::from_secs(60));
        for day in trading_days(first, last) {
            let midnight = ist_midnight(day);
            let open = midnight.plus(SESSION_OPEN);
            let close = midnight.plus(SESSION_CLOSE).min(now.plus(Duration::from_secs(1)));
            let mut at = open;
            while at < close {
                if rows.len() == MAX_CANDLES {
                    return Err(too_many());
                }
                let candle = instrument.candle(at, at.plus(step).min(close), sampling);
                rows.push(candle_json(&candle, at));
                at = at.plus(step);
            }
        }
    } else {
        // One sampled session per trading day since HISTORY_BEGINS at most: a bounded amount of work
        // however long the periods.
        let mut periods: Vec<(i64, Candle)> = Vec::new();
        for day in trading_days(first, last) {
            let midnight = ist_midnight(day);
            let open = midnight.plus(SESSION_OPEN);
            if open > now {
                break;
            }
            let close = midnight.plus(SESSION_CLOSE).min(now.plus(Duration::from_secs(1)));
            let daily = instrument.candle(open, close, Duration::from_secs(300));
            let start = period_start(day, input.interval);
            match periods.last_mut() {
                Some((period, candle)) if *period == start => {
                    candle.high = candle.high.max(daily.high);
                    candle.low = candle.low.min(daily.low);
                    candle.close = daily.close;
                    candle.volume += daily.volume;
                }
                _ => periods.push((start, daily)),
            }
            if periods.len() > MAX_CANDLES {
                return Err(too_many());
            }
        }
        // Daily and longer candles carry IST midnight of their first day, as brokers do.
        rows = periods.iter().map(|(day, candle)| candle_json(candle, ist_midnight(*day))).collect();
    }
    Ok(json!({ "data": rows }))
}

async fn intervals() -> Result<Value, AppError> {
    let of = |unit: char| -> Vec<&str> {
        shared::trading::reads::INTERVALS.iter().copied().filter(|i| i.len() > 1 && i.ends_with(unit)).collect()
    };
    Ok(json!({ "data": {
        "seconds": of('s'), "minutes": of('m'), "hours": of('h'),
        "days": ["D"], "weeks": ["W"], "months": ["M"], "quarters": ["Q"], "years": ["Y"],
    }}))
}
