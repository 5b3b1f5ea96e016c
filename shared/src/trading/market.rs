//! The sandbox's simulated market: a deterministic price for every symbol at every second.
//!
//! The price is a pure function of (symbol, time), so every Lambda, the fill engine and (later) the
//! WebSocket container agree without sharing state. The log-price is a seeded walk built from
//! octaves of smoothed value noise whose amplitudes grow with the square root of their period, as
//! a Brownian path's do. Tests inject the time, so nothing depends on market hours.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::core::clock::UnixMillis;
use crate::trading::orders::Exchange;

/// One simulated instrument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Instrument {
    pub symbol: &'static str,
    pub exchange: Exchange,
    pub base_price: f64,
    pub tick_size: f64,
    pub lot_size: u32,
    /// Typical daily move as a fraction of price.
    pub daily_volatility: f64,
}

/// The symbols the sandbox knows. Anything else is "symbol not found".
pub const INSTRUMENTS: &[Instrument] = &[
    Instrument {
        symbol: "SBIN",
        exchange: Exchange::Nse,
        base_price: 800.0,
        tick_size: 0.05,
        lot_size: 1,
        daily_volatility: 0.015,
    },
    Instrument {
        symbol: "INFY",
        exchange: Exchange::Nse,
        base_price: 1500.0,
        tick_size: 0.05,
        lot_size: 1,
        daily_volatility: 0.014,
    },
    Instrument {
        symbol: "RELIANCE",
        exchange: Exchange::Nse,
        base_price: 2900.0,
        tick_size: 0.05,
        lot_size: 1,
        daily_volatility: 0.013,
    },
    Instrument {
        symbol: "TCS",
        exchange: Exchange::Nse,
        base_price: 3800.0,
        tick_size: 0.05,
        lot_size: 1,
        daily_volatility: 0.012,
    },
    Instrument {
        symbol: "HDFCBANK",
        exchange: Exchange::Nse,
        base_price: 1650.0,
        tick_size: 0.05,
        lot_size: 1,
        daily_volatility: 0.012,
    },
    Instrument {
        symbol: "SBIN",
        exchange: Exchange::Bse,
        base_price: 800.0,
        tick_size: 0.05,
        lot_size: 1,
        daily_volatility: 0.015,
    },
    Instrument {
        symbol: "NIFTY",
        exchange: Exchange::NseIndex,
        base_price: 24000.0,
        tick_size: 0.05,
        lot_size: 75,
        daily_volatility: 0.009,
    },
    Instrument {
        symbol: "BANKNIFTY",
        exchange: Exchange::NseIndex,
        base_price: 52000.0,
        tick_size: 0.05,
        lot_size: 35,
        daily_volatility: 0.011,
    },
];

pub fn instrument(symbol: &str, exchange: Exchange) -> Option<&'static Instrument> {
    INSTRUMENTS.iter().find(|i| i.symbol == symbol && i.exchange == exchange)
}

/// Octave k has a period of 2^k seconds; 2^0 … 2^22 s spans a second to about seven weeks.
const OCTAVES: u32 = 23;
/// IST is UTC+05:30 all year.
use crate::core::ist::OFFSET_SECS as IST_OFFSET_SECS;
/// The equity session in IST seconds of day: 09:15 to 15:30.
const SESSION_OPEN_SECS: i64 = 9 * 3600 + 15 * 60;
const SESSION_CLOSE_SECS: i64 = 15 * 3600 + 30 * 60;
/// The first trading day of the simulated history, the same for every instrument: earlier dates
/// are refused, not computed.
pub const HISTORY_BEGINS: (i32, u32, u32) = (2000, 1, 3);
/// The same, as times after IST midnight.
pub const SESSION_OPEN: Duration = Duration::from_secs(SESSION_OPEN_SECS as u64);
pub const SESSION_CLOSE: Duration = Duration::from_secs(SESSION_CLOSE_SECS as u64);

/// splitmix64's finaliser: a fast, well-mixed integer hash (simulation, not security).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in [-1, 1) from (seed, stream, cell).
fn noise(seed: u64, stream: u32, cell: i64) -> f64 {
    let bits = mix(seed ^ mix(u64::from(stream) ^ mix(cell as u64)));
    (bits >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// Noise streams beside the price octaves (which use 0..OCTAVES).
const VOLUME_STREAM: u32 = 100;
const BID_DEPTH_STREAM: u32 = 200;
const ASK_DEPTH_STREAM: u32 = 201;

impl Instrument {
    fn seed(&self) -> u64 {
        let digest = Sha256::new()
            .chain_update(b"kavach-market-v1")
            .chain_update(self.exchange.as_str())
            .chain_update(self.symbol)
            .finalize();
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(bytes)
    }

    fn round_to_tick(&self, price: f64) -> f64 {
        ((price / self.tick_size).round() * self.tick_size * 100.0).round() / 100.0
    }

    /// The last traded price at `at`, on the tick grid. The walk moves once a second.
    pub fn price_at(&self, at: UnixMillis) -> f64 {
        self.price_at_second(at.epoch_secs())
    }

    /// The price walk on its own grid, whole epoch seconds (signed: the octaves look back).
    fn price_at_second(&self, epoch_secs: i64) -> f64 {
        let seed = self.seed();
        let t = epoch_secs as f64;
        let mut walk = 0.0;
        for octave in 0..OCTAVES {
            let period = f64::from(1u32 << octave);
            let cell = (t / period).floor();
            let fraction = t / period - cell;
            let smooth = fraction * fraction * (3.0 - 2.0 * fraction);
            let cell = cell as i64;
            let value = noise(seed, octave, cell) * (1.0 - smooth) + noise(seed, octave, cell + 1) * smooth;
            walk += value * period.sqrt();
        }
        // With amplitudes of √period, the walk's change over Δt seconds has a standard deviation of
        // about √Δt; dividing by √86 400 makes one day's typical move `daily_volatility`.
        self.round_to_tick(self.base_price * (walk * self.daily_volatility / 86_400f64.sqrt()).exp())
    }

    /// The session containing `epoch_secs`: the latest 09:15 IST at or before it.
    fn session_open(epoch_secs: i64) -> i64 {
        let local = epoch_secs + IST_OFFSET_SECS;
        let midnight = local.div_euclid(86_400) * 86_400;
        let open = midnight + SESSION_OPEN_SECS;
        let open = if local >= open { open } else { open - 86_400 };
        open - IST_OFFSET_SECS
    }

    /// A candle over [from, to) sampled every `step` (and at both ends), to the second.
    pub fn candle(&self, from: UnixMillis, to: UnixMillis, step: Duration) -> Candle {
        let step = i64::try_from(step.as_secs()).unwrap_or(i64::MAX);
        self.candle_of_seconds(from.epoch_secs(), to.epoch_secs(), step)
    }

    fn candle_of_seconds(&self, from: i64, to: i64, step: i64) -> Candle {
        let step = step.max(1);
        let open = self.price_at_second(from);
        let close = self.price_at_second((to - 1).max(from));
        let (mut high, mut low) = (open.max(close), open.min(close));
        let mut at = from + step;
        while at < to {
            let price = self.price_at_second(at);
            high = high.max(price);
            low = low.min(price);
            at += step;
        }
        let timestamp = UnixMillis::from_secs(u64::try_from(from).unwrap_or_default());
        Candle { timestamp, open, high, low, close, volume: self.volume_of_seconds(from, to) }
    }

    /// Shares traded in [from, to): a deterministic amount per minute.
    fn volume_of_seconds(&self, from: i64, to: i64) -> u64 {
        let seed = self.seed();
        let per_lot = 1000.0 * f64::from(self.lot_size);
        (from.div_euclid(60)..to.div_euclid(60).max(from.div_euclid(60) + 1))
            .map(|minute| ((noise(seed, VOLUME_STREAM, minute) + 1.0) * per_lot) as u64)
            .sum()
    }

    /// The last price and the best bid and ask around it: all a fill needs, without the session's
    /// candle that a full [`Self::quote`] samples.
    pub fn touch(&self, at: UnixMillis) -> Touch {
        let ltp = self.price_at(at);
        Touch { ltp, bid: self.round_to_tick(ltp - self.tick_size), ask: self.round_to_tick(ltp + self.tick_size) }
    }

    /// A quote at `at`, the session being the one that opened at the latest 09:15 IST.
    pub fn quote(&self, at: UnixMillis) -> Quote {
        let epoch_secs = at.epoch_secs();
        let open_at = Self::session_open(epoch_secs);
        let session = self.candle_of_seconds(open_at, epoch_secs + 1, 60);
        let Touch { ltp, bid, ask } = self.touch(at);
        let prev_close = self.price_at_second(open_at - 86_400 + (SESSION_CLOSE_SECS - SESSION_OPEN_SECS));
        Quote {
            ltp,
            open: session.open,
            high: session.high.max(ltp),
            low: session.low.min(ltp),
            prev_close,
            bid,
            ask,
            volume: session.volume,
        }
    }

    /// Five price levels each side of the last price, with deterministic quantities.
    pub fn depth(&self, at: UnixMillis) -> Depth {
        let epoch_secs = at.epoch_secs();
        let ltp = self.price_at(at);
        let seed = self.seed();
        let level = |direction: f64, stream: u32, n: i64| Level {
            price: self.round_to_tick(ltp + direction * (n + 1) as f64 * self.tick_size),
            quantity: ((noise(seed, stream, epoch_secs * 8 + n) + 1.0) * 500.0) as u64 + u64::from(self.lot_size),
        };
        Depth {
            bids: (0..5).map(|n| level(-1.0, BID_DEPTH_STREAM, n)).collect(),
            asks: (0..5).map(|n| level(1.0, ASK_DEPTH_STREAM, n)).collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candle {
    /// The candle's first second.
    pub timestamp: UnixMillis,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Touch {
    pub ltp: f64,
    pub bid: f64,
    pub ask: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quote {
    pub ltp: f64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub prev_close: f64,
    pub bid: f64,
    pub ask: f64,
    pub volume: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub price: f64,
    pub quantity: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Depth {
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_000_000; // 2026-11-18, a weekday, 13:56 IST

    /// The instant `secs` after the epoch.
    fn at(secs: i64) -> UnixMillis {
        UnixMillis::from_secs(u64::try_from(secs).expect("after the epoch"))
    }

    fn sbin() -> &'static Instrument {
        instrument("SBIN", Exchange::Nse).expect("SBIN")
    }

    #[test]
    fn the_required_symbols_exist_and_others_do_not() {
        for (symbol, exchange) in [
            ("SBIN", Exchange::Nse),
            ("INFY", Exchange::Nse),
            ("RELIANCE", Exchange::Nse),
            ("NIFTY", Exchange::NseIndex),
            ("BANKNIFTY", Exchange::NseIndex),
        ] {
            assert!(instrument(symbol, exchange).is_some(), "{symbol}");
        }
        assert!(instrument("NOPE", Exchange::Nse).is_none());
        assert!(instrument("NIFTY", Exchange::Nse).is_none(), "indices live on NSE_INDEX");
    }

    #[test]
    fn prices_are_deterministic_on_the_tick_grid_and_differ_by_symbol() {
        let a = sbin().price_at(at(T));
        assert_eq!(a, sbin().price_at(at(T)));
        assert!(((a / 0.05).round() * 0.05 - a).abs() < 1e-9, "{a} on the 0.05 grid");
        assert_ne!(sbin().price_at(at(T)), instrument("SBIN", Exchange::Bse).expect("bse").price_at(at(T)));
    }

    #[test]
    fn moves_are_small_per_second_and_plausible_per_day() {
        let instrument = sbin();
        let mut worst_second: f64 = 0.0;
        let mut lowest = f64::MAX;
        let mut highest: f64 = 0.0;
        for t in (T..T + 86_400 * 30).step_by(37) {
            let (now, next) = (instrument.price_at(at(t)), instrument.price_at(at(t + 1)));
            worst_second = worst_second.max((next - now).abs() / now);
            lowest = lowest.min(now);
            highest = highest.max(now);
        }
        assert!(worst_second < 0.002, "a one-second move of {:.4}%", worst_second * 100.0);
        assert!(lowest > 400.0 && highest < 1600.0, "a month within a sane band: {lowest}..{highest}");
        assert!(highest - lowest > 8.0, "but it does move: {lowest}..{highest}");
    }

    #[test]
    fn typical_daily_move_matches_the_configured_volatility() {
        let instrument = sbin();
        let moves: Vec<f64> = (0..400)
            .map(|day| {
                let t = T + day * 86_400;
                (instrument.price_at(at(t + 86_400)) / instrument.price_at(at(t))).ln()
            })
            .collect();
        let rms = (moves.iter().map(|m| m * m).sum::<f64>() / moves.len() as f64).sqrt();
        assert!((0.6 * 0.015..1.6 * 0.015).contains(&rms), "daily RMS move {rms:.4} for a 0.015 target");
    }

    #[test]
    fn candles_and_quotes_are_internally_consistent() {
        let candle = sbin().candle(at(T), at(T + 300), Duration::from_secs(10));
        assert!(candle.low <= candle.open.min(candle.close) && candle.high >= candle.open.max(candle.close));
        assert!(candle.volume > 0);
        let quote = sbin().quote(at(T));
        assert!(quote.low <= quote.ltp && quote.ltp <= quote.high);
        assert!(quote.bid < quote.ltp && quote.ltp < quote.ask);
        assert!(quote.low <= quote.open && quote.open <= quote.high);
        let depth = sbin().depth(at(T));
        assert_eq!((depth.bids.len(), depth.asks.len()), (5, 5));
        assert!(depth.bids.windows(2).all(|w| w[0].price > w[1].price));
        assert!(depth.asks.windows(2).all(|w| w[0].price < w[1].price));
        assert!(depth.bids[0].price < depth.asks[0].price);
    }

    #[test]
    fn sessions_open_at_0915_ist() {
        // 2026-11-18 09:15 IST = 03:45 UTC.
        let open = Instrument::session_open(T);
        assert_eq!((open + IST_OFFSET_SECS).rem_euclid(86_400), SESSION_OPEN_SECS);
        assert!(open <= T && T - open < 86_400);
        // Before 09:15 IST the session is the previous day's.
        let early = open - 60;
        assert_eq!(Instrument::session_open(early), open - 86_400);
    }
}
