//! OpenAlgo's schemas for account reads, market data and the analyzer switch. Routes that take
//! only `apikey` (orderbook, tradebook, positionbook, holdings, funds, intervals, analyzer) need no
//! schema of their own: the pipeline already takes `apikey` and rejects anything else.

use serde_json::Value;

use crate::http::validate::Fields;
use crate::trading::orders::{Exchange, Product};

const SYMBOL_CHARS: std::ops::RangeInclusive<usize> = 1..=64;
const STRATEGY_CHARS: std::ops::RangeInclusive<usize> = 0..=256;
pub const MAX_MULTIQUOTE_SYMBOLS: usize = 50;

/// `POST /orderstatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderStatus {
    pub strategy: String,
    pub order_id: String,
}

impl OrderStatus {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = fields.string_in("strategy", STRATEGY_CHARS, true);
        let order_id = fields.string_in("orderid", 1..=64, true);
        Some(Self { strategy: strategy?, order_id: order_id? })
    }
}

/// `POST /openposition`. OpenAlgo does not enum-check this exchange; neither do we, so a client
/// asking about an exchange we don't know gets quantity 0 rather than an error, as it does there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenPosition {
    pub strategy: String,
    pub symbol: String,
    pub exchange: String,
    pub product: Product,
}

impl OpenPosition {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = fields.string_in("strategy", STRATEGY_CHARS, true);
        let symbol = fields.string_in("symbol", SYMBOL_CHARS, true);
        let exchange = fields.string_in("exchange", 1..=32, true);
        let product = fields.one_of("product", Product::CHOICES, None);
        Some(Self { strategy: strategy?, symbol: symbol?, exchange: exchange?, product: product? })
    }
}

/// `POST /quotes` and `POST /depth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    pub symbol: String,
    pub exchange: Exchange,
}

impl Instrument {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let symbol = fields.string_in("symbol", SYMBOL_CHARS, true);
        let exchange = fields.one_of("exchange", Exchange::CHOICES, None);
        Some(Self { symbol: symbol?, exchange: exchange? })
    }
}

/// `POST /multiquotes`: at least one instrument, at most [`MAX_MULTIQUOTE_SYMBOLS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiQuotes {
    pub symbols: Vec<Instrument>,
}

impl MultiQuotes {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let items: Vec<Value> = fields.list("symbols")?;
        if items.is_empty() || items.len() > MAX_MULTIQUOTE_SYMBOLS {
            fields.fail("symbols", format!("Symbols must contain 1 to {MAX_MULTIQUOTE_SYMBOLS} items."));
            return None;
        }
        let symbols = fields.objects("symbols", items, Instrument::parse);
        Some(Self { symbols }).filter(|_| fields.is_clean())
    }
}

/// The history intervals OpenAlgo's schema allows (the broker decides which it serves).
pub const INTERVALS: &[&str] = &[
    "1s", "5s", "10s", "15s", "30s", "45s", "1m", "2m", "3m", "5m", "10m", "15m", "20m", "30m", "1h", "2h", "3h", "4h",
    "D", "W", "M", "Q", "Y",
];

/// `POST /history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub instrument: Instrument,
    pub interval: &'static str,
    pub start: (i32, u32, u32),
    pub end: (i32, u32, u32),
    /// `api` (the broker) or `db` (stored candles).
    pub source: &'static str,
}

impl History {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let instrument = Instrument::parse(fields);
        let choices: Vec<(&str, &'static str)> = INTERVALS.iter().map(|interval| (*interval, *interval)).collect();
        let interval = fields.one_of("interval", &choices, None);
        let start = fields.date("start_date");
        let end = fields.date("end_date");
        let source = fields.one_of("source", &[("api", "api"), ("db", "db")], Some("api"));
        let (start, end) = (start?, end?);
        if end < start {
            fields.fail("end_date", "end_date must not be before start_date.");
            return None;
        }
        Some(Self { instrument: instrument?, interval: interval?, start, end, source: source? })
    }
}

/// `POST /analyzer/toggle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalyzerToggle {
    /// `true` switches to analyze (sandbox) mode.
    pub analyze: bool,
}

impl AnalyzerToggle {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        Some(Self { analyze: fields.boolean("mode")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::validate::run_schema as run;

    #[test]
    fn the_sdks_read_bodies_parse() {
        let status =
            run(r#"{"apikey":"K","strategy":"Python","orderid":"1"}"#, OrderStatus::parse).expect("orderstatus");
        assert_eq!(status.order_id, "1");
        let position = run(
            r#"{"apikey":"K","strategy":"Python","symbol":"SBIN","exchange":"NSE","product":"MIS"}"#,
            OpenPosition::parse,
        )
        .expect("openposition");
        assert_eq!(position.product, Product::Mis);
        let history = run(
            r#"{"apikey":"K","symbol":"SBIN","exchange":"NSE","interval":"5m","start_date":"2025-01-01","end_date":"2025-01-02","source":"api"}"#,
            History::parse,
        )
        .expect("history");
        assert_eq!((history.interval, history.start, history.source), ("5m", (2025, 1, 1), "api"));
        assert!(run(r#"{"apikey":"K","mode":true}"#, AnalyzerToggle::parse).expect("toggle").analyze);
        assert!(!run(r#"{"apikey":"K","mode":"off"}"#, AnalyzerToggle::parse).expect("toggle").analyze);
    }

    #[test]
    fn openposition_exchange_is_not_enum_checked_but_product_is() {
        let errors = run(
            r#"{"apikey":"K","strategy":"s","symbol":"SBIN","exchange":"ANYWHERE","product":"BO"}"#,
            OpenPosition::parse,
        )
        .expect_err("bad product");
        assert!(!errors.contains_key("exchange"));
        assert_eq!(errors["product"], vec!["Must be one of: MIS, NRML, CNC."]);
    }

    #[test]
    fn quotes_need_a_known_exchange_and_history_a_known_interval_and_order() {
        let errors =
            run(r#"{"apikey":"K","symbol":"SBIN","exchange":"LSE"}"#, Instrument::parse).expect_err("exchange");
        assert!(errors["exchange"][0].starts_with("Must be one of:"));
        let errors = run(
            r#"{"apikey":"K","symbol":"SBIN","exchange":"NSE","interval":"7m","start_date":"2025-01-02","end_date":"2025-01-01"}"#,
            History::parse,
        )
        .expect_err("interval and order");
        assert!(errors["interval"][0].starts_with("Must be one of: 1s, 5s,"));
        assert_eq!(errors["end_date"], vec!["end_date must not be before start_date."]);
    }

    #[test]
    fn multiquotes_bounds_and_per_item_errors() {
        let errors = run(r#"{"apikey":"K","symbols":[]}"#, MultiQuotes::parse).expect_err("empty");
        assert_eq!(errors["symbols"], vec!["Symbols must contain 1 to 50 items."]);
        let errors = run(
            r#"{"apikey":"K","symbols":[{"symbol":"SBIN","exchange":"NSE"},{"symbol":"INFY"}]}"#,
            MultiQuotes::parse,
        )
        .expect_err("missing exchange");
        assert_eq!(errors["symbols[1].exchange"], vec!["Missing data for required field."]);
        let ok = run(
            r#"{"apikey":"K","symbols":[{"symbol":"SBIN","exchange":"NSE"},{"symbol":"NIFTY","exchange":"NSE_INDEX"}]}"#,
            MultiQuotes::parse,
        )
        .expect("valid");
        assert_eq!(ok.symbols[1].exchange, Exchange::NseIndex);
    }

    #[test]
    fn analyzer_toggle_rejects_non_booleans() {
        let errors = run(r#"{"apikey":"K","mode":"sandbox"}"#, AnalyzerToggle::parse).expect_err("bad");
        assert_eq!(errors["mode"], vec!["Not a valid boolean."]);
    }
}
