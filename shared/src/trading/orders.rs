//! OpenAlgo's order schemas (`restx_api/schemas.py`), field for field: the same required fields,
//! defaults, enums, ranges and messages, with numbers accepted as JSON numbers or numeric strings
//! (the SDK and TradingView send `"quantity":"1"`). Caps OpenAlgo lacks (basket size, split
//! children) are added and say so in their messages.

use serde_json::Value;

use crate::http::validate::Fields;

/// Longest symbol accepted: OpenAlgo's longest (options) symbols are about 30 characters.
const SYMBOL_CHARS: std::ops::RangeInclusive<usize> = 1..=64;
/// A strategy is a free label; OpenAlgo has no bound, we keep it to something a log can show.
const STRATEGY_CHARS: std::ops::RangeInclusive<usize> = 0..=256;
const ORDER_ID_CHARS: std::ops::RangeInclusive<usize> = 1..=64;
pub const MAX_BASKET_ORDERS: usize = 50;
pub const MAX_SPLIT_CHILDREN: u64 = 100;

macro_rules! string_enum {
    ($name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const CHOICES: &'static [(&'static str, $name)] = &[$(($wire, $name::$variant)),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        wire_name_serde!($name);
    };
}

/// Stored and serialised by wire name, so a stored order reads like the request that made it.
macro_rules! wire_name_serde {
    ($name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let wire = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::CHOICES
                    .iter()
                    .find(|(name, _)| *name == wire)
                    .map(|(_, value)| *value)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown {} `{wire}`", stringify!($name))))
            }
        }
    };
}

string_enum!(Exchange {
    Nse => "NSE", Nfo => "NFO", Cds => "CDS", Bse => "BSE", Bfo => "BFO", Bcd => "BCD", Mcx => "MCX",
    Ncdex => "NCDEX", Nco => "NCO", NseIndex => "NSE_INDEX", BseIndex => "BSE_INDEX",
    McxIndex => "MCX_INDEX", GlobalIndex => "GLOBAL_INDEX", Crypto => "CRYPTO",
});
string_enum!(PriceType { Market => "MARKET", Limit => "LIMIT", StopLoss => "SL", StopLossMarket => "SL-M" });
string_enum!(Product { Mis => "MIS", Nrml => "NRML", Cnc => "CNC" });

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Buy,
    Sell,
}

impl Action {
    /// Upper or lower case, not mixed: exactly OpenAlgo's list.
    pub const CHOICES: &'static [(&'static str, Action)] =
        &[("BUY", Action::Buy), ("SELL", Action::Sell), ("buy", Action::Buy), ("sell", Action::Sell)];

    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Buy => "BUY",
            Action::Sell => "SELL",
        }
    }
}

wire_name_serde!(Action);

/// The fields every order leg has.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderLeg {
    pub exchange: Exchange,
    pub symbol: String,
    pub action: Action,
    /// Whole for every exchange but CRYPTO.
    pub quantity: f64,
    pub price_type: PriceType,
    pub product: Product,
    pub price: f64,
    pub trigger_price: f64,
    pub disclosed_quantity: u64,
}

/// `POST /placeorder`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaceOrder {
    pub strategy: String,
    pub leg: OrderLeg,
    pub underlying_ltp: Option<f64>,
}

/// `POST /placesmartorder`: reach the net position `position_size`.
#[derive(Clone, Debug, PartialEq)]
pub struct SmartOrder {
    pub strategy: String,
    pub leg: OrderLeg,
    pub position_size: f64,
}

/// `POST /modifyorder`: every field required.
#[derive(Clone, Debug, PartialEq)]
pub struct ModifyOrder {
    pub strategy: String,
    pub order_id: String,
    pub leg: OrderLeg,
}

/// `POST /cancelorder`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelOrder {
    pub strategy: String,
    pub order_id: String,
}

/// `POST /cancelallorder` and `POST /closeposition`: the strategy is only a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyOnly {
    pub strategy: String,
}

/// `POST /basketorder`.
#[derive(Clone, Debug, PartialEq)]
pub struct BasketOrder {
    pub strategy: String,
    pub orders: Vec<OrderLeg>,
}

/// `POST /splitorder`.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitOrder {
    pub strategy: String,
    pub leg: OrderLeg,
    pub split_size: u64,
}

impl SplitOrder {
    /// The children's quantities: ⌊quantity / split_size⌋ orders of `split_size`, then the
    /// remainder.
    pub fn child_sizes(&self) -> Vec<u64> {
        let total = self.leg.quantity as u64;
        let size = self.split_size.max(1);
        let mut sizes = vec![size; usize::try_from(total / size).unwrap_or(0)];
        if !total.is_multiple_of(size) {
            sizes.push(total % size);
        }
        sizes
    }
}

/// What a smart order did, on either desk: the order it placed (its id), or OpenAlgo's message
/// for why none was needed.
#[derive(Debug)]
pub enum SmartOutcome {
    Placed(String),
    Matched(&'static str),
}

/// One leg's outcome in a basket or split: its order id, or why it was refused.
#[derive(Debug)]
pub struct LegOutcome {
    pub leg: OrderLeg,
    pub result: Result<String, crate::core::error::AppError>,
}

impl SmartOrder {
    /// A target position must be a whole number of shares or lots: refused before any account or
    /// broker is read.
    pub fn check_position_size(&self) -> Result<(), crate::core::error::AppError> {
        if self.position_size.fract() != 0.0 || self.position_size.abs() > 1e15 {
            return Err(crate::core::error::AppError::OrderRejected {
                message: format!("position_size ({}) must be a whole number of shares or lots", self.position_size),
                order_id: None,
            });
        }
        Ok(())
    }
}

/// What a smart order should do on a position of `current`.
#[derive(Debug, PartialEq)]
pub enum SmartStep {
    Place(OrderLeg),
    Matched(&'static str),
}

/// OpenAlgo's smart-order rule: the order that takes the position from `current` to the request's
/// `position_size`, or the message for when it is there already. With `position_size` 0 and no
/// position, the leg is placed as given (an entry, not an exit).
pub fn smart_step(request: &SmartOrder, current: i64) -> Result<SmartStep, crate::core::error::AppError> {
    request.check_position_size()?;
    let target = request.position_size as i64;
    let leg = &request.leg;
    let (action, quantity) = if target == 0 && current == 0 && leg.quantity != 0.0 {
        (leg.action, leg.quantity)
    } else if target == current {
        return Ok(SmartStep::Matched(if leg.quantity == 0.0 && current == 0 {
            "No OpenPosition Found. Not placing Exit order."
        } else {
            "Positions Already Matched. No Action needed."
        }));
    } else if target > current {
        (Action::Buy, (target - current) as f64)
    } else {
        (Action::Sell, (current - target) as f64)
    };
    Ok(SmartStep::Place(OrderLeg { action, quantity, ..leg.clone() }))
}

/// How a leg's quantity is checked: OpenAlgo words the rule differently per route.
#[derive(Clone, Copy)]
enum QuantityRule {
    /// > 0, `Quantity must be a positive number.`
    Positive,
    /// ≥ 0 (smart orders may target a position with quantity 0).
    NonNegative,
    /// > 0, `Total quantity must be a positive number.` (split orders)
    PositiveTotal,
}

struct LegRules {
    quantity: QuantityRule,
    /// modifyorder requires what the others default.
    all_required: bool,
}

fn leg(fields: &mut Fields, rules: &LegRules) -> Option<OrderLeg> {
    let required = rules.all_required;
    let exchange = fields.one_of("exchange", Exchange::CHOICES, None);
    let symbol = fields.string_in("symbol", SYMBOL_CHARS, true);
    let action = fields.one_of("action", Action::CHOICES, None);
    let price_type =
        fields.one_of("pricetype", PriceType::CHOICES, if required { None } else { Some(PriceType::Market) });
    let product = fields.one_of("product", Product::CHOICES, if required { None } else { Some(Product::Mis) });
    let quantity = fields.number("quantity", true).and_then(|quantity| {
        let (ok, message) = match rules.quantity {
            QuantityRule::Positive => (quantity > 0.0, "Quantity must be a positive number."),
            QuantityRule::NonNegative => (quantity >= 0.0, "Quantity must be a non-negative number."),
            QuantityRule::PositiveTotal => (quantity > 0.0, "Total quantity must be a positive number."),
        };
        if !ok {
            fields.fail("quantity", message);
        }
        ok.then_some(quantity)
    });
    let price = non_negative(fields, "price", required);
    let trigger_price = non_negative(fields, "trigger_price", required);
    let disclosed_quantity = match fields.integer("disclosed_quantity", required) {
        Some(value) if value < 0 => {
            fields.fail("disclosed_quantity", "Must be greater than or equal to 0.");
            None
        }
        Some(value) => u64::try_from(value).ok(),
        None if required => None,
        None => Some(0),
    };
    let (exchange, quantity) = (exchange?, quantity?);
    if exchange != Exchange::Crypto && quantity.fract() != 0.0 {
        fields.fail("quantity", format!("Fractional quantity ({quantity}) is not allowed for non-crypto exchanges."));
        return None;
    }
    Some(OrderLeg {
        exchange,
        symbol: symbol?,
        action: action?,
        quantity,
        price_type: price_type?,
        product: product?,
        price: price?,
        trigger_price: trigger_price?,
        disclosed_quantity: disclosed_quantity?,
    })
}

/// A price-like field: ≥ 0, defaulting to 0 when optional.
fn non_negative(fields: &mut Fields, field: &str, required: bool) -> Option<f64> {
    match fields.number(field, required) {
        Some(value) if value < 0.0 => {
            fields.fail(field, "Must be greater than or equal to 0.");
            None
        }
        Some(value) => Some(value),
        None if required => None,
        None => Some(0.0),
    }
}

fn strategy(fields: &mut Fields) -> Option<String> {
    fields.string_in("strategy", STRATEGY_CHARS, true)
}

const PLAIN: LegRules = LegRules { quantity: QuantityRule::Positive, all_required: false };

impl PlaceOrder {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = strategy(fields);
        let leg = leg(fields, &PLAIN);
        let underlying_ltp = fields.number("underlying_ltp", false);
        Some(Self { strategy: strategy?, leg: leg?, underlying_ltp })
    }
}

impl SmartOrder {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = strategy(fields);
        let leg = leg(fields, &LegRules { quantity: QuantityRule::NonNegative, all_required: false });
        let position_size = fields.number("position_size", true);
        Some(Self { strategy: strategy?, leg: leg?, position_size: position_size? })
    }
}

impl ModifyOrder {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = strategy(fields);
        let order_id = fields.string_in("orderid", ORDER_ID_CHARS, true);
        let leg = leg(fields, &LegRules { quantity: QuantityRule::Positive, all_required: true });
        Some(Self { strategy: strategy?, order_id: order_id?, leg: leg? })
    }
}

impl CancelOrder {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = strategy(fields);
        let order_id = fields.string_in("orderid", ORDER_ID_CHARS, true);
        Some(Self { strategy: strategy?, order_id: order_id? })
    }
}

impl StrategyOnly {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        Some(Self { strategy: strategy(fields)? })
    }
}

impl BasketOrder {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = strategy(fields);
        let items: Vec<Value> = fields.list("orders")?;
        if items.len() > MAX_BASKET_ORDERS {
            fields.fail(
                "orders",
                format!("A basket may hold at most {MAX_BASKET_ORDERS} orders; this one has {}.", items.len()),
            );
            return None;
        }
        let orders = fields.objects("orders", items, |leg_fields| leg(leg_fields, &PLAIN));
        Some(Self { strategy: strategy?, orders }).filter(|_| fields.is_clean())
    }
}

impl SplitOrder {
    pub fn parse(fields: &mut Fields) -> Option<Self> {
        let strategy = strategy(fields);
        let leg = leg(fields, &LegRules { quantity: QuantityRule::PositiveTotal, all_required: false });
        let split_size = match fields.integer("splitsize", true) {
            Some(size) if size >= 1 => u64::try_from(size).ok(),
            Some(_) => {
                fields.fail("splitsize", "Split size must be a positive integer.");
                None
            }
            None => None,
        };
        let (leg, split_size) = (leg?, split_size?);
        // Quantities here are whole (fractional ones were refused above unless CRYPTO).
        let children = (leg.quantity / split_size as f64).ceil() as u64;
        if children > MAX_SPLIT_CHILDREN {
            fields.fail(
                "splitsize",
                format!("Total number of orders would exceed maximum limit of {MAX_SPLIT_CHILDREN}"),
            );
            return None;
        }
        Some(Self { strategy: strategy?, leg, split_size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::validate::run_schema as run;

    const SDK_PLACEORDER: &str = r#"{"apikey":"k","strategy":"Python","symbol":"SBIN","action":"BUY","exchange":"NSE","pricetype":"MARKET","product":"MIS","quantity":"1"}"#;

    #[test]
    fn the_sdks_placeorder_parses_with_string_numbers() {
        let order = run(SDK_PLACEORDER, PlaceOrder::parse).expect("valid");
        assert_eq!(order.strategy, "Python");
        assert_eq!(order.leg.exchange, Exchange::Nse);
        assert_eq!(order.leg.action, Action::Buy);
        assert_eq!(order.leg.quantity, 1.0);
        assert_eq!((order.leg.price, order.leg.trigger_price, order.leg.disclosed_quantity), (0.0, 0.0, 0));
    }

    #[test]
    fn defaults_apply_and_tradingview_lowercase_actions_pass() {
        let order = run(
            r#"{"apikey":"k","strategy":"tv","symbol":"INFY","action":"sell","exchange":"NSE","quantity":5}"#,
            PlaceOrder::parse,
        )
        .expect("valid");
        assert_eq!(
            (order.leg.action, order.leg.price_type, order.leg.product),
            (Action::Sell, PriceType::Market, Product::Mis)
        );
    }

    #[test]
    fn openalgo_messages_for_bad_fields() {
        let errors = run(
            r#"{"apikey":"k","strategy":"s","symbol":"SBIN","action":"Buy","exchange":"NSEX","quantity":"0","pricetype":"STOP","product":"X","price":"-1","target":5}"#,
            PlaceOrder::parse,
        )
        .expect_err("invalid");
        assert_eq!(errors["action"], vec!["Must be one of: BUY, SELL, buy, sell."]);
        assert!(errors["exchange"][0].starts_with("Must be one of: NSE, NFO,"));
        assert_eq!(errors["quantity"], vec!["Quantity must be a positive number."]);
        assert_eq!(errors["pricetype"], vec!["Must be one of: MARKET, LIMIT, SL, SL-M."]);
        assert_eq!(errors["product"], vec!["Must be one of: MIS, NRML, CNC."]);
        assert_eq!(errors["price"], vec!["Must be greater than or equal to 0."]);
        assert_eq!(errors["target"], vec!["Unknown field."]);
    }

    #[test]
    fn fractional_quantity_only_on_crypto() {
        let body = |exchange: &str| {
            format!(
                r#"{{"apikey":"k","strategy":"s","symbol":"BTC","action":"BUY","exchange":"{exchange}","quantity":"1.5"}}"#
            )
        };
        let errors = run(&body("NSE"), PlaceOrder::parse).expect_err("fractional");
        assert_eq!(errors["quantity"], vec!["Fractional quantity (1.5) is not allowed for non-crypto exchanges."]);
        assert_eq!(run(&body("CRYPTO"), PlaceOrder::parse).expect("crypto").leg.quantity, 1.5);
        assert_eq!(run(&body("NSE").replace("1.5", "2.0"), PlaceOrder::parse).expect("integral").leg.quantity, 2.0);
    }

    #[test]
    fn smart_order_allows_zero_quantity_and_signed_position_size() {
        let body = r#"{"apikey":"k","strategy":"s","symbol":"SBIN","action":"BUY","exchange":"NSE","quantity":"0","position_size":"-5"}"#;
        let order = run(body, SmartOrder::parse).expect("valid");
        assert_eq!((order.leg.quantity, order.position_size), (0.0, -5.0));
        let errors = run(&body.replace(r#","position_size":"-5""#, ""), SmartOrder::parse).expect_err("missing");
        assert_eq!(errors["position_size"], vec!["Missing data for required field."]);
    }

    #[test]
    fn modify_requires_every_field() {
        let errors = run(r#"{"apikey":"k","strategy":"s","orderid":"1"}"#, ModifyOrder::parse).expect_err("missing");
        for field in [
            "exchange",
            "symbol",
            "action",
            "product",
            "pricetype",
            "price",
            "quantity",
            "disclosed_quantity",
            "trigger_price",
        ] {
            assert_eq!(errors[field], vec!["Missing data for required field."], "{field}");
        }
        let sdk = r#"{"apikey":"k","orderid":"1","strategy":"Python","symbol":"SBIN","action":"BUY","exchange":"NSE","pricetype":"LIMIT","product":"MIS","quantity":"1","price":"800","disclosed_quantity":"0","trigger_price":"0"}"#;
        assert_eq!(run(sdk, ModifyOrder::parse).expect("sdk body").leg.price, 800.0);
    }

    #[test]
    fn cancel_and_strategy_only() {
        assert_eq!(
            run(r#"{"apikey":"k","strategy":"s","orderid":"42"}"#, CancelOrder::parse).expect("ok").order_id,
            "42"
        );
        let errors = run(r#"{"apikey":"k"}"#, StrategyOnly::parse).expect_err("missing");
        assert_eq!(errors["strategy"], vec!["Missing data for required field."]);
    }

    #[test]
    fn basket_legs_are_validated_by_index_and_capped() {
        let good =
            r#"{"symbol":"SBIN","exchange":"NSE","action":"BUY","quantity":"1","pricetype":"MARKET","product":"MIS"}"#;
        let body = format!(
            r#"{{"apikey":"k","strategy":"s","orders":[{good},{{"symbol":"X","exchange":"NSE","action":"BUY","quantity":"0"}},7]}}"#
        );
        let errors = run(&body, BasketOrder::parse).expect_err("bad legs");
        assert_eq!(errors["orders[1].quantity"], vec!["Quantity must be a positive number."]);
        assert_eq!(errors["orders[2]"], vec!["Invalid input type."]);
        assert!(!errors.keys().any(|key| key.starts_with("orders[0]")));

        let ok = format!(r#"{{"apikey":"k","strategy":"s","orders":[{good},{good}]}}"#);
        assert_eq!(run(&ok, BasketOrder::parse).expect("valid").orders.len(), 2);

        let many = vec![good; MAX_BASKET_ORDERS + 1].join(",");
        let errors =
            run(&format!(r#"{{"apikey":"k","strategy":"s","orders":[{many}]}}"#), BasketOrder::parse).expect_err("cap");
        assert_eq!(errors["orders"], vec!["A basket may hold at most 50 orders; this one has 51."]);
    }

    #[test]
    fn split_size_rules_and_the_100_child_cap() {
        let body = |quantity: &str, size: &str| {
            format!(
                r#"{{"apikey":"k","strategy":"s","symbol":"SBIN","action":"SELL","exchange":"NSE","quantity":"{quantity}","splitsize":"{size}","pricetype":"MARKET","product":"MIS"}}"#
            )
        };
        assert_eq!(run(&body("105", "20"), SplitOrder::parse).expect("valid").split_size, 20);
        assert_eq!(run(&body("100", "1"), SplitOrder::parse).expect("exactly 100 children").split_size, 1);
        let errors = run(&body("101", "1"), SplitOrder::parse).expect_err("101 children");
        assert_eq!(errors["splitsize"], vec!["Total number of orders would exceed maximum limit of 100"]);
        let errors = run(&body("10", "0"), SplitOrder::parse).expect_err("zero size");
        assert_eq!(errors["splitsize"], vec!["Split size must be a positive integer."]);
        let errors = run(&body("0", "5"), SplitOrder::parse).expect_err("zero total");
        assert_eq!(errors["quantity"], vec!["Total quantity must be a positive number."]);
    }
}
