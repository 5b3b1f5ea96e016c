//! Zerodha's Kite Connect v3: the request shapes, the checksums and the error mapping.
//!
//! Kite takes form-encoded bodies, answers `{"status":"success","data":…}` or
//! `{"status":"error","message":…,"error_type":…}`, and authenticates each call with
//! `Authorization: token <api_key>:<access_token>` and `X-Kite-Version: 3`. Its session is obtained
//! by exchanging the login redirect's `request_token` with SHA-256(api_key + request_token +
//! api_secret), and its postbacks carry SHA-256(order_id + order_timestamp + api_secret).

use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use http::Method;
use http::header::{AUTHORIZATION, HeaderName};

use super::http::{Answer, BrokerHttp, Call};
use super::{
    Broker, BrokerFunds, BrokerFuture, BrokerId, BrokerOrder, BrokerPosition, BrokerQuote, BrokerSession, BrokerTrade,
    DepthLevel, PlacedOrder,
};
use crate::core::error::AppError;
use crate::trading::orders::{Action, Exchange, OrderLeg, PriceType};

/// Kite's API root; a local stub's in the tests (`KITE_API_ROOT`).
pub const API_ROOT: &str = "https://api.kite.trade";
/// Kite's login site, whose `/connect/login` asks the trader to authorise the app (`KITE_LOGIN_ROOT`).
pub const LOGIN_ROOT: &str = "https://kite.zerodha.com";

/// Kite keeps an order's `tag` (at most 20 alphanumeric characters), which is how an order whose
/// answer was lost is found again.
pub const MAX_TAG_CHARS: usize = 20;

/// A MARKET or SL-M order without market protection is refused by Kite's API since 2026; `-1`
/// asks Kite to choose the protection itself.
const AUTOMATIC_MARKET_PROTECTION: &str = "-1";

/// SHA-256(api_key + request_token + api_secret), hex: the `checksum` of `POST /session/token`.
pub fn session_checksum(api_key: &str, request_token: &str, api_secret: &str) -> String {
    hex::encode(Sha256::digest(format!("{api_key}{request_token}{api_secret}")))
}

/// Whether a postback's `checksum` is SHA-256(order_id + order_timestamp + api_secret), compared
/// in constant time so the comparison leaks nothing about the expected value.
pub fn postback_is_authentic(order_id: &str, order_timestamp: &str, api_secret: &str, checksum: &str) -> bool {
    let expected = hex::encode(Sha256::digest(format!("{order_id}{order_timestamp}{api_secret}")));
    expected.as_bytes().ct_eq(checksum.trim().to_ascii_lowercase().as_bytes()).into()
}

/// The form of `POST /orders/regular` for `leg`, tagged with `tag`.
pub fn order_form(leg: &OrderLeg, tag: &str) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("exchange", leg.exchange.as_str().to_owned()),
        ("tradingsymbol", leg.symbol.clone()),
        ("transaction_type", if leg.action == Action::Buy { "BUY" } else { "SELL" }.to_owned()),
        ("product", leg.product.as_str().to_owned()),
        ("tag", tag.chars().filter(char::is_ascii_alphanumeric).take(MAX_TAG_CHARS).collect()),
    ];
    form.extend(terms_form(leg));
    form
}

/// What an order's terms are at Kite: its quantity, type and prices. `POST /orders/regular` sends
/// them with the instrument; `PUT /orders/regular/<id>` sends them alone, since an order's
/// instrument, side and product cannot change.
fn terms_form(leg: &OrderLeg) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("quantity", format!("{}", leg.quantity)),
        // OpenAlgo's price types are Kite's order types, by the same names.
        ("order_type", leg.price_type.as_str().to_owned()),
        ("validity", "DAY".to_owned()),
    ];
    if matches!(leg.price_type, PriceType::Limit | PriceType::StopLoss) {
        form.push(("price", format!("{}", leg.price)));
    }
    if matches!(leg.price_type, PriceType::StopLoss | PriceType::StopLossMarket) {
        form.push(("trigger_price", format!("{}", leg.trigger_price)));
    }
    if matches!(leg.price_type, PriceType::Market | PriceType::StopLossMarket) {
        form.push(("market_protection", AUTOMATIC_MARKET_PROTECTION.to_owned()));
    }
    if leg.disclosed_quantity > 0 {
        form.push(("disclosed_quantity", leg.disclosed_quantity.to_string()));
    }
    form
}

/// Kite's name for one of OpenAlgo's index symbols (`NSE_INDEX`, `BSE_INDEX`): OpenAlgo's
/// symbol format names them by their trading root, Kite by the index's full name.
const INDEX_NAMES: &[(Exchange, &str, &str)] = &[
    (Exchange::NseIndex, "NIFTY", "NIFTY 50"),
    (Exchange::NseIndex, "BANKNIFTY", "NIFTY BANK"),
    (Exchange::NseIndex, "FINNIFTY", "NIFTY FIN SERVICE"),
    (Exchange::NseIndex, "MIDCPNIFTY", "NIFTY MID SELECT"),
    (Exchange::NseIndex, "NIFTYNXT50", "NIFTY NEXT 50"),
    (Exchange::NseIndex, "INDIAVIX", "INDIA VIX"),
    (Exchange::BseIndex, "SENSEX", "SENSEX"),
    (Exchange::BseIndex, "BANKEX", "BANKEX"),
];

/// Kite's `exchange:tradingsymbol` for a quote of OpenAlgo's `exchange` and `symbol`: equities by
/// the same symbol, the indices OpenAlgo names by their Kite names, derivatives not yet (see
/// [`instrument`]).
fn quote_key(exchange: Exchange, symbol: &str) -> Option<String> {
    match exchange {
        Exchange::Nse | Exchange::Bse => Some(format!("{}:{symbol}", exchange.as_str())),
        Exchange::NseIndex | Exchange::BseIndex => INDEX_NAMES
            .iter()
            .find(|(index_exchange, name, _)| *index_exchange == exchange && *name == symbol)
            .map(|(_, _, kite)| format!("{}:{kite}", if exchange == Exchange::NseIndex { "NSE" } else { "BSE" })),
        _ => None,
    }
}

/// Kite's instrument for OpenAlgo's `exchange` and `symbol`. Equities carry the same symbol on
/// both sides (`SBIN` is `SBIN`); derivatives do not (OpenAlgo's `NIFTY30DEC2526000CE` is a
/// weekly or monthly Kite symbol by expiry), and that mapping needs Kite's instrument list, which
/// Kavach does not load yet, so a derivative is refused before anything is sent rather than sent
/// under a symbol Kite may read as another contract.
fn instrument(leg: &OrderLeg) -> Result<(), AppError> {
    match leg.exchange {
        Exchange::Nse | Exchange::Bse => Ok(()),
        other => Err(AppError::bad_request(format!(
            "Live orders on {} are not available yet: Kavach trades NSE and BSE equities through Zerodha. Use analyzer mode for {} symbols.",
            other.as_str(),
            other.as_str()
        ))),
    }
}

/// Kite's answer envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    message: Option<String>,
    error_type: Option<String>,
}

/// A failed call in Kavach's terms, from the HTTP status and Kite's `error_type` and `message`.
/// - `TokenException` (403): the session is gone (expired at Kite's morning boundary, revoked).
/// - a refusal naming the source address: the static-IP rule for API orders.
/// - `NetworkException`, `DataException`, a 5xx, anything unreadable: the outcome is unknown.
/// - the rest (`InputException`, `OrderException`, `PermissionException`, 429): a definite refusal,
///   in Kite's words.
pub fn error_of(status: u16, error_type: Option<&str>, message: Option<&str>) -> AppError {
    let message = message.unwrap_or_default().trim();
    let mentions_ip = {
        let lower = message.to_ascii_lowercase();
        lower.contains("ip")
            && (lower.contains("not registered") || lower.contains("not allowed") || lower.contains("whitelist"))
    };
    match error_type {
        Some("TokenException") => AppError::BrokerSessionExpired,
        _ if mentions_ip => AppError::BrokerIpNotRegistered,
        Some("NetworkException" | "DataException") => {
            AppError::BrokerUnavailable(anyhow::anyhow!("Kite {status} {}: {message}", error_type.unwrap_or_default()))
        }
        _ if status >= 500 || message.is_empty() => {
            AppError::BrokerUnavailable(anyhow::anyhow!("Kite answered {status}: {message}"))
        }
        _ => AppError::BrokerRejected { message: message.chars().take(500).collect() },
    }
}

/// Kite Connect v3 over HTTPS.
#[derive(Clone, Debug)]
pub struct Kite {
    http: BrokerHttp,
    root: String,
}

const KITE_VERSION: HeaderName = HeaderName::from_static("x-kite-version");

/// A request to Kite that never waits longer than this: an order's outcome is then looked up.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Kite {
    pub fn new(http: BrokerHttp, root: &str) -> Self {
        Self { http, root: root.trim_end_matches('/').to_owned() }
    }

    /// A call with Kite's version header.
    fn unauthenticated(&self, method: Method, path: &str) -> Call {
        Call::new(method, format!("{}{path}", self.root)).header(KITE_VERSION, "3")
    }

    /// A call on the trader's session.
    fn request(&self, method: Method, path: &str, session: &BrokerSession) -> Call {
        let authorization = format!("token {}:{}", session.app_key, session.access_token.expose_secret());
        self.unauthenticated(method, path).header(AUTHORIZATION, authorization)
    }

    /// Sends and reads Kite's envelope; a transport failure is an unknown outcome.
    async fn call<T: serde::de::DeserializeOwned>(&self, call: Call) -> Result<T, AppError> {
        let Answer { status, body } = self.http.send(call, CALL_TIMEOUT).await?;
        match serde_json::from_slice::<Envelope<T>>(&body) {
            Ok(Envelope { status: ok, data: Some(data), .. }) if ok == "success" && status < 300 => Ok(data),
            Ok(envelope) => Err(error_of(status, envelope.error_type.as_deref(), envelope.message.as_deref())),
            Err(_) => Err(error_of(status, None, None)),
        }
    }
}

/// What `POST /session/token` grants: the day's access token for the Kite user.
#[derive(Deserialize)]
pub struct SessionGrant {
    pub user_id: String,
    pub access_token: secrecy::SecretString,
}

impl std::fmt::Debug for SessionGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionGrant").field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

impl Kite {
    /// Exchanges a login redirect's `request_token` for the day's session.
    pub async fn create_session(
        &self,
        api_key: &str,
        request_token: &str,
        api_secret: &secrecy::SecretString,
    ) -> Result<SessionGrant, AppError> {
        let checksum = session_checksum(api_key, request_token, api_secret.expose_secret());
        let call = self.unauthenticated(Method::POST, "/session/token").form(&[
            ("api_key", api_key),
            ("request_token", request_token),
            ("checksum", checksum.as_str()),
        ]);
        self.call(call).await
    }

    /// Ends the session at Kite (`DELETE /session/token`), so a copy of the token is worthless.
    pub async fn revoke(&self, session: &BrokerSession) -> Result<(), AppError> {
        let call = self
            .request(Method::DELETE, "/session/token", session)
            .query(&[("api_key", session.app_key.as_str()), ("access_token", session.access_token.expose_secret())]);
        let _: serde_json::Value = self.call(call).await?;
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct OrderIdData {
    order_id: String,
}

/// Kite sends `null` for numbers and strings it has no value for (an unfilled order's
/// `average_price`, an accepted one's `status_message`): read as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An order in Kite's book (`GET /orders`), the fields OpenAlgo shows.
#[derive(Debug, Deserialize)]
struct KiteOrder {
    order_id: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    tradingsymbol: String,
    #[serde(default, deserialize_with = "null_as_default")]
    exchange: String,
    #[serde(default, deserialize_with = "null_as_default")]
    transaction_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    order_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    product: String,
    #[serde(default, deserialize_with = "null_as_default")]
    status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    status_message: String,
    #[serde(default, deserialize_with = "null_as_default")]
    order_timestamp: String,
    #[serde(default, deserialize_with = "null_as_default")]
    quantity: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    trigger_price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    average_price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    filled_quantity: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    pending_quantity: f64,
}

/// Kite's order states in OpenAlgo's words. The transitional ones (`OPEN PENDING`, `MODIFY
/// PENDING`, `VALIDATION PENDING`, …) are orders still working: open.
fn status_of(kite: &str) -> String {
    match kite {
        "COMPLETE" => "complete".into(),
        "REJECTED" => "rejected".into(),
        "CANCELLED" => "cancelled".into(),
        "TRIGGER PENDING" => "trigger pending".into(),
        "OPEN" => "open".into(),
        other if other.contains("PENDING") || other.contains("RECEIVED") => "open".into(),
        other => other.to_ascii_lowercase(),
    }
}

impl From<KiteOrder> for BrokerOrder {
    fn from(order: KiteOrder) -> Self {
        BrokerOrder {
            status: status_of(&order.status),
            order_id: order.order_id,
            tag: order.tag,
            symbol: order.tradingsymbol,
            exchange: order.exchange,
            action: order.transaction_type,
            quantity: order.quantity,
            price: order.price,
            trigger_price: order.trigger_price,
            price_type: order.order_type,
            product: order.product,
            average_price: order.average_price,
            filled_quantity: order.filled_quantity,
            pending_quantity: order.pending_quantity,
            rejection_reason: order.status_message,
            timestamp: order.order_timestamp,
        }
    }
}

#[derive(Debug, Deserialize)]
struct KiteTrade {
    #[serde(default, deserialize_with = "null_as_default")]
    trade_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    order_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    tradingsymbol: String,
    #[serde(default, deserialize_with = "null_as_default")]
    exchange: String,
    #[serde(default, deserialize_with = "null_as_default")]
    transaction_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    product: String,
    #[serde(default, deserialize_with = "null_as_default")]
    quantity: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    average_price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    fill_timestamp: String,
}

/// A position or a holding: Kite names their common fields alike.
#[derive(Debug, Deserialize)]
struct KiteHolding {
    #[serde(default, deserialize_with = "null_as_default")]
    tradingsymbol: String,
    #[serde(default, deserialize_with = "null_as_default")]
    exchange: String,
    #[serde(default, deserialize_with = "null_as_default")]
    product: String,
    #[serde(default, deserialize_with = "null_as_default")]
    quantity: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    average_price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    last_price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    pnl: f64,
}

impl From<KiteHolding> for BrokerPosition {
    fn from(kite: KiteHolding) -> Self {
        BrokerPosition {
            symbol: kite.tradingsymbol,
            exchange: kite.exchange,
            product: kite.product,
            quantity: kite.quantity,
            average_price: kite.average_price,
            ltp: kite.last_price,
            pnl: kite.pnl,
        }
    }
}

#[derive(Debug, Deserialize)]
struct KitePositions {
    #[serde(default)]
    net: Vec<KiteHolding>,
}

#[derive(Debug, Default, Deserialize)]
struct KiteMarginAvailable {
    #[serde(default, deserialize_with = "null_as_default")]
    collateral: f64,
}

#[derive(Debug, Default, Deserialize)]
struct KiteMarginUtilised {
    #[serde(default, deserialize_with = "null_as_default")]
    debits: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    m2m_realised: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    m2m_unrealised: f64,
}

/// One segment of `GET /user/margins`.
#[derive(Debug, Default, Deserialize)]
struct KiteSegment {
    #[serde(default, deserialize_with = "null_as_default")]
    net: f64,
    #[serde(default)]
    available: KiteMarginAvailable,
    #[serde(default)]
    utilised: KiteMarginUtilised,
}

#[derive(Debug, Deserialize)]
struct KiteMargins {
    #[serde(default)]
    equity: KiteSegment,
    #[serde(default)]
    commodity: KiteSegment,
}

/// OpenAlgo's funds from Kite's margins, as OpenAlgo's Zerodha module sums them: both segments'
/// net, collateral, debits and mark-to-market.
fn funds_of(margins: &KiteMargins) -> BrokerFunds {
    let segments = [&margins.equity, &margins.commodity];
    let sum = |field: fn(&KiteSegment) -> f64| segments.iter().map(|segment| field(segment)).sum();
    BrokerFunds {
        available_cash: sum(|segment| segment.net),
        collateral: sum(|segment| segment.available.collateral),
        m2m_realized: sum(|segment| segment.utilised.m2m_realised),
        m2m_unrealized: sum(|segment| segment.utilised.m2m_unrealised),
        utilised_debits: sum(|segment| segment.utilised.debits),
    }
}

impl Broker for Kite {
    fn id(&self) -> BrokerId {
        BrokerId::Zerodha
    }

    fn send_order<'a>(
        &'a self,
        session: &'a BrokerSession,
        leg: &'a OrderLeg,
        tag: &'a str,
    ) -> BrokerFuture<'a, PlacedOrder> {
        Box::pin(async move {
            instrument(leg)?;
            let call = self.request(Method::POST, "/orders/regular", session).form(&order_form(leg, tag));
            let placed: OrderIdData = self.call(call).await?;
            Ok(PlacedOrder { order_id: placed.order_id })
        })
    }

    fn modify_order<'a>(
        &'a self,
        session: &'a BrokerSession,
        order_id: &'a str,
        leg: &'a OrderLeg,
    ) -> BrokerFuture<'a, PlacedOrder> {
        Box::pin(async move {
            let path = format!("/orders/regular/{}", path_segment(order_id)?);
            let call = self.request(Method::PUT, &path, session).form(&terms_form(leg));
            let modified: OrderIdData = self.call(call).await?;
            Ok(PlacedOrder { order_id: modified.order_id })
        })
    }

    fn cancel_order<'a>(&'a self, session: &'a BrokerSession, order_id: &'a str) -> BrokerFuture<'a, PlacedOrder> {
        Box::pin(async move {
            let path = format!("/orders/regular/{}", path_segment(order_id)?);
            let cancelled: OrderIdData = self.call(self.request(Method::DELETE, &path, session)).await?;
            Ok(PlacedOrder { order_id: cancelled.order_id })
        })
    }

    fn order_book<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerOrder>> {
        Box::pin(async move {
            let orders: Vec<KiteOrder> = self.call(self.request(Method::GET, "/orders", session)).await?;
            // Kite lists the day's orders oldest first; OpenAlgo's book is newest first.
            Ok(orders.into_iter().rev().map(BrokerOrder::from).collect())
        })
    }

    fn trade_book<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerTrade>> {
        Box::pin(async move {
            let trades: Vec<KiteTrade> = self.call(self.request(Method::GET, "/trades", session)).await?;
            Ok(trades
                .into_iter()
                .map(|trade| BrokerTrade {
                    trade_id: trade.trade_id,
                    order_id: trade.order_id,
                    symbol: trade.tradingsymbol,
                    exchange: trade.exchange,
                    action: trade.transaction_type,
                    quantity: trade.quantity,
                    average_price: trade.average_price,
                    product: trade.product,
                    timestamp: trade.fill_timestamp,
                })
                .collect())
        })
    }

    fn positions<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerPosition>> {
        Box::pin(async move {
            let positions: KitePositions =
                self.call(self.request(Method::GET, "/portfolio/positions", session)).await?;
            Ok(positions.net.into_iter().map(BrokerPosition::from).collect())
        })
    }

    fn holdings<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerPosition>> {
        Box::pin(async move {
            let holdings: Vec<KiteHolding> =
                self.call(self.request(Method::GET, "/portfolio/holdings", session)).await?;
            Ok(holdings.into_iter().map(BrokerPosition::from).collect())
        })
    }

    fn funds<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, BrokerFunds> {
        Box::pin(async move {
            let margins: KiteMargins = self.call(self.request(Method::GET, "/user/margins", session)).await?;
            Ok(funds_of(&margins))
        })
    }

    fn quotes<'a>(
        &'a self,
        session: &'a BrokerSession,
        instruments: &'a [(Exchange, &'a str)],
    ) -> BrokerFuture<'a, Vec<Option<BrokerQuote>>> {
        Box::pin(async move {
            let keys: Vec<Option<String>> =
                instruments.iter().map(|(exchange, symbol)| quote_key(*exchange, symbol)).collect();
            let asked: Vec<(&str, &str)> = keys.iter().flatten().map(|key| ("i", key.as_str())).collect();
            if asked.is_empty() {
                return Ok(vec![None; instruments.len()]);
            }
            // Kite leaves out the instruments it does not know.
            let mut found: std::collections::HashMap<String, KiteQuote> =
                self.call(self.request(Method::GET, "/quote", session).query(&asked)).await?;
            Ok(keys.iter().map(|key| key.as_ref().and_then(|key| found.remove(key)).map(BrokerQuote::from)).collect())
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct KiteOhlc {
    #[serde(default, deserialize_with = "null_as_default")]
    open: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    high: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    low: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    close: f64,
}

#[derive(Debug, Deserialize)]
struct KiteLevel {
    #[serde(default, deserialize_with = "null_as_default")]
    price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    quantity: u64,
}

#[derive(Debug, Default, Deserialize)]
struct KiteDepth {
    #[serde(default)]
    buy: Vec<KiteLevel>,
    #[serde(default)]
    sell: Vec<KiteLevel>,
}

/// One instrument of `GET /quote` (the full quote).
#[derive(Debug, Deserialize)]
struct KiteQuote {
    #[serde(default, deserialize_with = "null_as_default")]
    last_price: f64,
    #[serde(default, deserialize_with = "null_as_default")]
    last_quantity: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    volume: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    oi: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    buy_quantity: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    sell_quantity: u64,
    #[serde(default)]
    ohlc: KiteOhlc,
    #[serde(default)]
    depth: KiteDepth,
}

impl From<KiteQuote> for BrokerQuote {
    fn from(quote: KiteQuote) -> Self {
        let levels = |levels: Vec<KiteLevel>| -> Vec<DepthLevel> {
            levels.into_iter().map(|level| DepthLevel { price: level.price, quantity: level.quantity }).collect()
        };
        BrokerQuote {
            open: quote.ohlc.open,
            high: quote.ohlc.high,
            low: quote.ohlc.low,
            ltp: quote.last_price,
            ltq: quote.last_quantity,
            // Kite's `ohlc.close` is the previous session's close until today's session ends.
            prev_close: quote.ohlc.close,
            volume: quote.volume,
            oi: quote.oi,
            total_buy_quantity: quote.buy_quantity,
            total_sell_quantity: quote.sell_quantity,
            bids: levels(quote.depth.buy),
            asks: levels(quote.depth.sell),
        }
    }
}

/// An order id as a path segment: Kite's ids are digits; anything else would change the path.
fn path_segment(order_id: &str) -> Result<&str, AppError> {
    if !order_id.is_empty() && order_id.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        Ok(order_id)
    } else {
        Err(AppError::OrderNotFound { order_id: order_id.chars().take(64).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trading::orders::{Exchange, Product};

    fn leg(price_type: PriceType) -> OrderLeg {
        OrderLeg {
            exchange: Exchange::Nse,
            symbol: "SBIN".into(),
            action: Action::Sell,
            quantity: 10.0,
            price_type,
            product: Product::Cnc,
            price: 801.5,
            trigger_price: 800.0,
            disclosed_quantity: 0,
        }
    }

    fn field<'a>(form: &'a [(&str, String)], name: &str) -> Option<&'a str> {
        form.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_session_checksum_is_kites() {
        // SHA-256 of "api_key" + "request_token" + "api_secret", as Kite's documentation defines it.
        let expected = hex::encode(Sha256::digest(b"kitekeyreqtoken123secret"));
        assert_eq!(session_checksum("kitekey", "reqtoken123", "secret"), expected);
    }

    #[test]
    fn postbacks_verify_only_with_the_right_checksum() {
        let good = hex::encode(Sha256::digest(b"2512010000001232025-12-01 09:15:02secret"));
        assert!(postback_is_authentic("251201000000123", "2025-12-01 09:15:02", "secret", &good));
        assert!(postback_is_authentic("251201000000123", "2025-12-01 09:15:02", "secret", &good.to_uppercase()));
        assert!(!postback_is_authentic("251201000000124", "2025-12-01 09:15:02", "secret", &good));
        assert!(!postback_is_authentic("251201000000123", "2025-12-01 09:15:02", "other", &good));
        assert!(!postback_is_authentic("251201000000123", "2025-12-01 09:15:02", "secret", ""));
    }

    #[test]
    fn market_orders_carry_market_protection_and_only_the_prices_their_type_has() {
        let market = order_form(&leg(PriceType::Market), "kv-1234");
        assert_eq!(field(&market, "order_type"), Some("MARKET"));
        assert_eq!(field(&market, "market_protection"), Some("-1"));
        assert_eq!((field(&market, "price"), field(&market, "trigger_price")), (None, None));
        assert_eq!(field(&market, "tag"), Some("kv1234"), "alphanumeric only");
        let limit = order_form(&leg(PriceType::Limit), "t");
        assert_eq!((field(&limit, "price"), field(&limit, "market_protection")), (Some("801.5"), None));
        let stop = order_form(&leg(PriceType::StopLoss), "t");
        assert_eq!((field(&stop, "price"), field(&stop, "trigger_price")), (Some("801.5"), Some("800")));
        let stop_market = order_form(&leg(PriceType::StopLossMarket), "t");
        assert_eq!(field(&stop_market, "order_type"), Some("SL-M"));
        assert_eq!(
            (field(&stop_market, "trigger_price"), field(&stop_market, "market_protection")),
            (Some("800"), Some("-1"))
        );
        assert_eq!(field(&stop_market, "transaction_type"), Some("SELL"));
        assert_eq!(field(&stop_market, "product"), Some("CNC"));
        let long_tag = order_form(&leg(PriceType::Market), &"a".repeat(40));
        assert_eq!(field(&long_tag, "tag").map(str::len), Some(MAX_TAG_CHARS));
    }

    #[test]
    fn kite_errors_map_to_the_four_broker_errors() {
        let code = |status, kind: Option<&str>, message: &str| error_of(status, kind, Some(message)).code();
        assert_eq!(
            code(403, Some("TokenException"), "Incorrect `api_key` or `access_token`."),
            "broker_session_expired"
        );
        assert_eq!(code(400, Some("InputException"), "Invalid `tradingsymbol`."), "broker_rejected");
        assert_eq!(code(400, Some("OrderException"), "Insufficient funds."), "broker_rejected");
        assert_eq!(code(503, Some("NetworkException"), "Gateway timed out."), "broker_unavailable");
        assert_eq!(code(502, None, "bad gateway"), "broker_unavailable");
        assert_eq!(code(200, None, ""), "broker_unavailable", "an unreadable answer is an unknown outcome");
        let ip = "Order request is from an IP not registered with the app.";
        assert_eq!(code(403, Some("PermissionException"), ip), "broker_ip_not_registered");
        let rejected = error_of(400, Some("OrderException"), Some("Insufficient funds."));
        assert_eq!(rejected.public_message(), "Insufficient funds.", "the broker's own words");
    }
}
