//! Live trading through a linked broker: the interface every broker adapter implements, in
//! OpenAlgo's terms, and the rules that hold whichever broker it is.
//!
//! An adapter speaks one broker's HTTP API and maps it both ways: OpenAlgo's order fields to the
//! broker's, the broker's answers to OpenAlgo's books, and the broker's failures to the four
//! broker errors of [`AppError`] (`broker_rejected`, `broker_unavailable`,
//! `broker_session_expired`, `broker_ip_not_registered`). What no adapter decides for itself is
//! here: an order whose outcome is unknown is looked for in the broker's order book by its tag
//! before anything is answered, and it is never sent a second time ([`place_once`]).

pub mod http;
pub mod kite;
pub mod links;

use std::future::Future;
use std::pin::Pin;

use secrecy::SecretString;

use crate::core::error::AppError;
use crate::trading::orders::{Exchange, OrderLeg};

/// The brokers Kavach can link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrokerId {
    /// Zerodha, Kite Connect v3.
    Zerodha,
}

impl BrokerId {
    pub const ALL: &'static [BrokerId] = &[BrokerId::Zerodha];

    /// OpenAlgo's name for it (`ping` reports it as `broker`).
    pub const fn as_str(self) -> &'static str {
        match self {
            BrokerId::Zerodha => "zerodha",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|broker| broker.as_str() == text)
    }
}

/// What an adapter needs for one call on a trader's behalf: the trader's broker app and the
/// session's access token, decrypted for this request only.
#[derive(Debug)]
pub struct BrokerSession {
    pub broker: BrokerId,
    /// The trader's broker app (Kite's `api_key`): public by the broker's design.
    pub app_key: String,
    pub access_token: SecretString,
}

/// The broker's id for an order it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedOrder {
    pub order_id: String,
}

/// One order as the broker's order book shows it, in OpenAlgo's vocabulary: `action` BUY/SELL,
/// `price_type` MARKET/LIMIT/SL/SL-M, `status` open/complete/rejected/cancelled/trigger pending.
/// Exchange, symbol and product are the broker's strings as mapped back: a book can hold orders
/// placed outside Kavach, in products OpenAlgo does not name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerOrder {
    pub order_id: String,
    /// The tag the order was placed with, if the broker keeps it.
    pub tag: Option<String>,
    pub symbol: String,
    pub exchange: String,
    pub action: String,
    pub quantity: f64,
    pub price: f64,
    pub trigger_price: f64,
    pub price_type: String,
    pub product: String,
    pub status: String,
    pub average_price: f64,
    pub filled_quantity: f64,
    pub pending_quantity: f64,
    pub rejection_reason: String,
    /// IST, `YYYY-MM-DD HH:MM:SS`.
    pub timestamp: String,
}

impl BrokerOrder {
    /// Still working at the exchange: what cancel-all cancels.
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "open" | "trigger pending")
    }
}

/// One fill, as the broker's trade book shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerTrade {
    pub trade_id: String,
    pub order_id: String,
    pub symbol: String,
    pub exchange: String,
    pub action: String,
    pub quantity: f64,
    pub average_price: f64,
    pub product: String,
    pub timestamp: String,
}

/// One net position of the day, or one delivery holding: brokers describe both with these fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerPosition {
    pub symbol: String,
    pub exchange: String,
    pub product: String,
    /// Signed: negative is short.
    pub quantity: i64,
    pub average_price: f64,
    pub ltp: f64,
    pub pnl: f64,
}

/// One price level of a market-depth side.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DepthLevel {
    pub price: f64,
    pub quantity: u64,
}

/// An instrument's quote and five-level depth, as the broker sees the market now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerQuote {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub ltp: f64,
    /// The last trade's quantity.
    pub ltq: u64,
    pub prev_close: f64,
    pub volume: u64,
    pub oi: u64,
    pub total_buy_quantity: u64,
    pub total_sell_quantity: u64,
    /// Best first.
    pub bids: Vec<DepthLevel>,
    pub asks: Vec<DepthLevel>,
}

/// The account's money across segments, in rupees.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerFunds {
    pub available_cash: f64,
    pub collateral: f64,
    pub m2m_realized: f64,
    pub m2m_unrealized: f64,
    pub utilised_debits: f64,
}

pub type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AppError>> + Send + 'a>>;

/// One broker's API. Every method answers in OpenAlgo's terms, and fails only with a broker error
/// (or a validation error the adapter raises before calling out).
pub trait Broker: Send + Sync {
    fn id(&self) -> BrokerId;

    /// Sends `leg` once, tagged with `tag`: Kavach's id for this request, which the broker keeps on
    /// the order so that an unknown outcome can be looked up. An error whose outcome is unknown
    /// (a timeout, a 5xx) is `BrokerUnavailable`.
    fn send_order<'a>(
        &'a self,
        session: &'a BrokerSession,
        leg: &'a OrderLeg,
        tag: &'a str,
    ) -> BrokerFuture<'a, PlacedOrder>;

    /// Changes an open order's quantity, prices and type (the leg's exchange, symbol, action and
    /// product are the order's own and are not sent).
    fn modify_order<'a>(
        &'a self,
        session: &'a BrokerSession,
        order_id: &'a str,
        leg: &'a OrderLeg,
    ) -> BrokerFuture<'a, PlacedOrder>;

    fn cancel_order<'a>(&'a self, session: &'a BrokerSession, order_id: &'a str) -> BrokerFuture<'a, PlacedOrder>;

    /// Today's orders, newest first.
    fn order_book<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerOrder>>;

    /// Today's fills.
    fn trade_book<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerTrade>>;

    /// Today's net positions, closed ones included.
    fn positions<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerPosition>>;

    fn holdings<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerPosition>>;

    fn funds<'a>(&'a self, session: &'a BrokerSession) -> BrokerFuture<'a, BrokerFunds>;

    /// Quotes with depth for `instruments` (OpenAlgo's exchange and symbol), in one call: one
    /// answer per instrument, in order, `None` for one the broker does not know.
    fn quotes<'a>(
        &'a self,
        session: &'a BrokerSession,
        instruments: &'a [(Exchange, &'a str)],
    ) -> BrokerFuture<'a, Vec<Option<BrokerQuote>>>;
}

/// How many times [`place_once`] reads the order book after an unknown outcome: the broker may
/// take a moment to show an order it accepted.
const BOOK_LOOKUPS: usize = 3;
const BOOK_LOOKUP_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

/// Places `leg` at most once. When the broker's answer is lost (a timeout, a 5xx), the order book
/// is searched for `tag` before anything is answered: found, the order is placed and its id is the
/// answer; not found after `BOOK_LOOKUPS` reads, the answer is `broker_unavailable` and the
/// order is not sent again, because a second send could be a duplicate position, the worst failure
/// a trader can have. A definite refusal (`broker_rejected`, an expired session, an unregistered
/// address) is answered as it is.
pub async fn place_once(
    broker: &dyn Broker,
    session: &BrokerSession,
    leg: &OrderLeg,
    tag: &str,
) -> Result<PlacedOrder, AppError> {
    let unknown = match broker.send_order(session, leg, tag).await {
        Err(AppError::BrokerUnavailable(cause)) => cause,
        definite => return definite,
    };
    for lookup in 0..BOOK_LOOKUPS {
        if lookup > 0 {
            tokio::time::sleep(BOOK_LOOKUP_PAUSE).await;
        }
        match broker.order_book(session).await {
            Ok(book) => {
                if let Some(order) = book.into_iter().find(|order| order.tag.as_deref() == Some(tag)) {
                    tracing::warn!(broker = broker.id().as_str(), order_id = %order.order_id, "order outcome was unknown; found it in the order book");
                    return Ok(PlacedOrder { order_id: order.order_id });
                }
            }
            Err(error) => {
                tracing::warn!(broker = broker.id().as_str(), error = %error, "order book unreadable after an unknown outcome")
            }
        }
    }
    Err(AppError::BrokerUnavailable(unknown.context("the order's outcome is unknown and it is not in the order book")))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::trading::orders::{Action, Exchange, PriceType, Product};

    /// A broker that accepts every order but loses the answer to the first `lost` of them, and
    /// whose book shows an accepted order only from its `visible_after`-th read.
    struct LossyBroker {
        lost: usize,
        refuse: bool,
        visible_after: usize,
        sent: AtomicUsize,
        reads: AtomicUsize,
        book: Mutex<Vec<BrokerOrder>>,
    }

    impl LossyBroker {
        fn new(lost: usize, visible_after: usize) -> Self {
            Self {
                lost,
                refuse: false,
                visible_after,
                sent: AtomicUsize::new(0),
                reads: AtomicUsize::new(0),
                book: Mutex::new(Vec::new()),
            }
        }
    }

    impl Broker for LossyBroker {
        fn id(&self) -> BrokerId {
            BrokerId::Zerodha
        }

        fn send_order<'a>(
            &'a self,
            _: &'a BrokerSession,
            _: &'a OrderLeg,
            tag: &'a str,
        ) -> BrokerFuture<'a, PlacedOrder> {
            Box::pin(async move {
                if self.refuse {
                    return Err(AppError::BrokerRejected { message: "Insufficient funds".into() });
                }
                let sent = self.sent.fetch_add(1, Ordering::SeqCst);
                let order_id = format!("2512010000{sent:05}");
                self.book.lock().expect("book").push(BrokerOrder {
                    order_id: order_id.clone(),
                    tag: Some(tag.into()),
                    ..BrokerOrder::default()
                });
                if sent < self.lost {
                    return Err(AppError::BrokerUnavailable(anyhow::anyhow!("read timed out")));
                }
                Ok(PlacedOrder { order_id })
            })
        }

        fn modify_order<'a>(
            &'a self,
            _: &'a BrokerSession,
            _: &'a str,
            _: &'a OrderLeg,
        ) -> BrokerFuture<'a, PlacedOrder> {
            unreachable!("place_once never modifies")
        }

        fn cancel_order<'a>(&'a self, _: &'a BrokerSession, _: &'a str) -> BrokerFuture<'a, PlacedOrder> {
            unreachable!("place_once never cancels")
        }

        fn trade_book<'a>(&'a self, _: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerTrade>> {
            unreachable!("place_once reads only the order book")
        }

        fn positions<'a>(&'a self, _: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerPosition>> {
            unreachable!("place_once reads only the order book")
        }

        fn holdings<'a>(&'a self, _: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerPosition>> {
            unreachable!("place_once reads only the order book")
        }

        fn funds<'a>(&'a self, _: &'a BrokerSession) -> BrokerFuture<'a, BrokerFunds> {
            unreachable!("place_once reads only the order book")
        }

        fn quotes<'a>(
            &'a self,
            _: &'a BrokerSession,
            _: &'a [(Exchange, &'a str)],
        ) -> BrokerFuture<'a, Vec<Option<BrokerQuote>>> {
            unreachable!("place_once reads only the order book")
        }

        fn order_book<'a>(&'a self, _: &'a BrokerSession) -> BrokerFuture<'a, Vec<BrokerOrder>> {
            Box::pin(async move {
                let read = self.reads.fetch_add(1, Ordering::SeqCst);
                if read < self.visible_after {
                    return Ok(Vec::new());
                }
                Ok(self.book.lock().expect("book").clone())
            })
        }
    }

    fn session() -> BrokerSession {
        BrokerSession { broker: BrokerId::Zerodha, app_key: "app".into(), access_token: SecretString::from("token") }
    }

    fn leg() -> OrderLeg {
        OrderLeg {
            exchange: Exchange::Nse,
            symbol: "SBIN".into(),
            action: Action::Buy,
            quantity: 1.0,
            price_type: PriceType::Market,
            product: Product::Mis,
            price: 0.0,
            trigger_price: 0.0,
            disclosed_quantity: 0,
        }
    }

    #[tokio::test]
    async fn a_lost_answer_is_found_in_the_book_and_never_sent_twice() {
        let broker = LossyBroker::new(1, 1);
        let placed = place_once(&broker, &session(), &leg(), "kv1").await.expect("found in the book");
        assert_eq!(placed.order_id, "251201000000000");
        assert_eq!(broker.sent.load(Ordering::SeqCst), 1, "sent once");
    }

    #[tokio::test]
    async fn an_order_not_in_the_book_is_unavailable_and_still_sent_once() {
        let broker = LossyBroker::new(1, usize::MAX);
        let error = place_once(&broker, &session(), &leg(), "kv2").await.expect_err("unknown");
        assert_eq!(error.code(), "broker_unavailable");
        assert_eq!(broker.sent.load(Ordering::SeqCst), 1, "never re-sent");
        assert_eq!(broker.reads.load(Ordering::SeqCst), BOOK_LOOKUPS, "looked for it {BOOK_LOOKUPS} times");
    }

    #[tokio::test]
    async fn a_definite_refusal_is_answered_without_reading_the_book() {
        let broker = LossyBroker { refuse: true, ..LossyBroker::new(0, 0) };
        let error = place_once(&broker, &session(), &leg(), "kv3").await.expect_err("refused");
        assert_eq!((error.code(), error.public_message().as_str()), ("broker_rejected", "Insufficient funds"));
        assert_eq!(broker.reads.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn broker_names_are_openalgos() {
        assert_eq!(BrokerId::parse("zerodha"), Some(BrokerId::Zerodha));
        assert_eq!(BrokerId::parse("Zerodha"), None);
    }
}
