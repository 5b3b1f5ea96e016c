//! The market-data routes over HTTP: `history`'s work is bounded before any of it is done.

use kavach_tests::{call, gateway_with_user, market_morning};
use serde_json::json;

fn history(interval: &str, start: &str, end: &str) -> serde_json::Value {
    json!({ "symbol": "SBIN", "exchange": "NSE", "interval": interval, "start_date": start, "end_date": end })
}

#[tokio::test]
async fn history_before_the_simulated_market_begins_is_400_naming_the_first_day() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    // Yearly candles from year 1 once meant computing every trading day since then (minutes of CPU).
    let reply = call(gateway, "history", &key, history("Y", "0001-01-01", "2025-09-30")).await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert_eq!(reply.body["message"], "SBIN on NSE has no history before 2000-01-03");
}

#[tokio::test]
async fn an_intraday_range_over_the_candle_cap_is_400_before_any_candle_is_made() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let reply = call(gateway, "history", &key, history("1m", "2000-01-03", "2025-09-30")).await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("more than 20000 1m candles"), "{message}");
}

#[tokio::test]
async fn the_longest_allowed_history_answers_one_candle_per_year() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    // From the first day to long after today (2025-10-01): the range ends today.
    let reply = call(gateway, "history", &key, history("Y", "2000-01-03", "2099-12-31")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["data"].as_array().map(Vec::len), Some(26), "2000 to 2025");
}

#[tokio::test]
async fn a_day_of_five_minute_candles_is_the_session_in_75_candles() {
    let (_, gateway, key) = gateway_with_user(&[], market_morning()).await;
    let reply = call(gateway, "history", &key, history("5m", "2025-09-30", "2025-09-30")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let candles = reply.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(candles.len(), 75, "09:15 to 15:30");
    assert!(candles.iter().all(|candle| candle["low"].as_f64() <= candle["high"].as_f64()));
}
