//! Typed configuration, read once at cold start. Every error names the variable at fault.
//!
//! No secret is ever configured here: the pepper and the key ring live in Secrets Manager and are
//! fetched by [`crate::app::bootstrap`].

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::limits::{LimitedAction, RateLimit};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration: {0} is not set")]
    Missing(&'static str),
    #[error("configuration: {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

#[derive(Clone, Debug)]
pub struct Tables {
    /// Bans, offender history, detector trackers, security settings: what the dashboard lists.
    pub security: String,
    /// Rate-limit counters only: one short-lived item per subject and window, kept out of the
    /// security table so the dashboard never reads past them.
    pub rate_limits: String,
    /// Users, API keys, sessions.
    pub identity: String,
    /// The request log (14-day TTL).
    pub traffic: String,
    /// The sandbox broker: funds, positions, orders and trades per account.
    pub sandbox: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub tables: Tables,
    /// Secrets Manager id of the app secret: `{"pepper": …, "keyring": <KMS ciphertext>}`.
    pub secret_id: String,
    /// KMS key (id, ARN or `alias/…`) the key ring is encrypted under; Decrypt is pinned to it.
    pub kms_key_id: String,
    /// Free text bound into the KMS encryption context, so a ring from another stack won't decrypt.
    pub stack_name: String,
    pub rate_limits: HashMap<LimitedAction, RateLimit>,
    /// Request bodies above this are refused with 413 before parsing.
    pub max_body_bytes: usize,
    /// Addresses that may never be banned or tracked.
    pub never_ban: NeverBan,
    /// `SHARED_SENDERS`: relays that carry other people's requests as well as the trader's
    /// (TradingView's webhook addresses by default). Never banned by a detector, never counted by
    /// one, and their failures never refuse a valid credential; manual bans still apply.
    pub shared_senders: SharedSenders,
    pub traffic_retention_days: u64,
    pub order_caps: OrderCaps,
    /// `SESSION_EXPIRY_TIME` (`HH:MM` IST, default 03:00): every web session ends at this boundary.
    pub session_expiry: crate::core::ist::DailyExpiry,
    /// `PUBLIC_BASE_URL`: the only origin outbound links (password-reset mail) are built from,
    /// never the request's `Host`. Without it, reset by email is unavailable. Only its origin is
    /// kept (the stack's `ApiUrl` output, `…/prod`, may be pasted as is): the path in front of a
    /// link is the base path the page was served under (`crate::http::base_path`).
    pub public_base_url: Option<String>,
    /// `STORE_OUTAGE_READS`: what read-only API routes do when their ban and rate-limit lookups fail.
    pub store_outage: StoreOutage,
    /// Where the brokers are: their own servers unless a variable names another (a local stub).
    pub brokers: BrokerEndpoints,
}

/// Each broker's origins, from `KITE_API_ROOT` and `KITE_LOGIN_ROOT` when set (tests point them
/// at the local stub), the broker's published ones otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerEndpoints {
    /// Kite Connect's REST API (`https://api.kite.trade`).
    pub kite_api: String,
    /// Kite's login site, which serves the consent page (`https://kite.zerodha.com`).
    pub kite_login: String,
}

/// `url` as an origin (`scheme://host[:port]`, any path dropped): https, or plain http only when
/// the host is exactly loopback. A prefix test would also pass `http://localhost.evil.example`,
/// and what goes to that origin (reset links, broker secrets) would travel in clear.
fn origin_of(var: &'static str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let loopback_http = url.strip_prefix("http://").is_some_and(|rest| {
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => authority,
        };
        host == "localhost" || host == "127.0.0.1"
    });
    let scheme_ok = url.starts_with("https://") || loopback_http;
    let host_ok = url.split_once("://").is_some_and(|(_, rest)| !rest.is_empty() && !rest.contains(['?', '#', ' ']));
    if !(scheme_ok && host_ok) {
        return Err(ConfigError::Invalid {
            var,
            reason: format!("`{url}` is not an https:// origin (http:// only for localhost)"),
        });
    }
    let (scheme, rest) = url.split_once("://").unwrap_or_default();
    Ok(format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()))
}

/// What read-only API routes do when the security table (bans, rate-limit counters) cannot be
/// reached. Login, TOTP and every route that changes state always fail closed with 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StoreOutage {
    /// `refuse` (default): 503, like every other route. Nothing is served unmetered.
    #[default]
    Refuse,
    /// `serve`: answer reads (funds, books, quotes, ping) without the ban and rate-limit checks,
    /// still authenticating the key. Trades availability of positions and quotes during a
    /// security-table outage for a window in which a banned address could read.
    ServeReads,
}

/// Per-order ceilings OpenAlgo lacks: a fat-fingered quantity or a mis-scaled alert is refused
/// before it reaches any broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderCaps {
    /// `MAX_ORDER_QUANTITY`, default 100 000.
    pub max_quantity: u64,
    /// `MAX_ORDER_VALUE` in rupees (quantity × price, or the last price for MARKET), default ₹5 crore.
    pub max_value_rupees: u64,
}

impl OrderCaps {
    /// Why an order of `quantity` worth `value_paise` (when its price is known) is over the
    /// operator's caps, or `None`: the one rule the sandbox and live orders share.
    pub fn refusal(self, quantity: i64, value_paise: Option<i128>) -> Option<String> {
        if u64::try_from(quantity).unwrap_or(u64::MAX) > self.max_quantity {
            return Some(format!(
                "Quantity {quantity} exceeds the per-order cap of {} (MAX_ORDER_QUANTITY)",
                self.max_quantity
            ));
        }
        let value = value_paise?;
        (value > i128::from(self.max_value_rupees) * 100).then(|| {
            format!(
                "Order value ₹{:.2} exceeds the per-order cap of ₹{} (MAX_ORDER_VALUE)",
                value as f64 / 100.0,
                self.max_value_rupees
            )
        })
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| -> Result<String, ConfigError> {
            match lookup(var) {
                Some(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
                _ => Err(ConfigError::Missing(var)),
            }
        };
        let optional = |var: &'static str| lookup(var).filter(|value| !value.trim().is_empty());

        let mut rate_limits = HashMap::new();
        for action in LimitedAction::ALL {
            let limit = match optional(action.env_var()) {
                Some(text) => text.parse().map_err(|reason| ConfigError::Invalid { var: action.env_var(), reason })?,
                None => action.default_limit(),
            };
            rate_limits.insert(action, limit);
        }

        let max_body_bytes = match optional("MAX_BODY_BYTES") {
            Some(text) => match text.trim().parse::<usize>() {
                Ok(bytes) if (1024..=10 * 1024 * 1024).contains(&bytes) => bytes,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "MAX_BODY_BYTES",
                        reason: format!("`{text}` is not a byte count between 1024 and 10485760"),
                    });
                }
            },
            None => 64 * 1024,
        };

        let never_ban = match optional("NEVER_BAN_CIDRS") {
            Some(text) => {
                NeverBan::parse(&text).map_err(|reason| ConfigError::Invalid { var: "NEVER_BAN_CIDRS", reason })?
            }
            None => NeverBan::all_non_global(),
        };
        let shared_senders = match optional("SHARED_SENDERS") {
            // `none` turns the default list off; an empty value keeps it, like every other variable.
            Some(text) if text.trim().eq_ignore_ascii_case("none") => SharedSenders(Vec::new()),
            Some(text) => SharedSenders(
                parse_cidrs(&text).map_err(|reason| ConfigError::Invalid { var: "SHARED_SENDERS", reason })?,
            ),
            None => SharedSenders::tradingview(),
        };

        let whole = |var: &'static str, range: std::ops::RangeInclusive<u64>, default: u64| match optional(var) {
            Some(text) => match text.trim().parse::<u64>() {
                Ok(value) if range.contains(&value) => Ok(value),
                _ => Err(ConfigError::Invalid {
                    var,
                    reason: format!("`{text}` is not a whole number between {} and {}", range.start(), range.end()),
                }),
            },
            None => Ok(default),
        };
        let traffic_retention_days = whole("TRAFFIC_RETENTION_DAYS", 1..=365, 14)?;
        let order_caps = OrderCaps {
            max_quantity: whole("MAX_ORDER_QUANTITY", 1..=u64::from(u32::MAX), 100_000)?,
            max_value_rupees: whole("MAX_ORDER_VALUE", 1..=1_000_000_000_000, 50_000_000)?,
        };

        let session_expiry = match optional("SESSION_EXPIRY_TIME") {
            Some(text) => text.parse().map_err(|reason| ConfigError::Invalid { var: "SESSION_EXPIRY_TIME", reason })?,
            None => crate::core::ist::DailyExpiry::default(),
        };
        let public_base_url = optional("PUBLIC_BASE_URL").map(|url| origin_of("PUBLIC_BASE_URL", &url)).transpose()?;
        let broker_origin = |var: &'static str, default: &str| {
            optional(var).map_or_else(|| Ok(default.to_owned()), |url| origin_of(var, &url))
        };
        let brokers = BrokerEndpoints {
            kite_api: broker_origin("KITE_API_ROOT", crate::broker::kite::API_ROOT)?,
            kite_login: broker_origin("KITE_LOGIN_ROOT", crate::broker::kite::LOGIN_ROOT)?,
        };

        let store_outage = match optional("STORE_OUTAGE_READS").as_deref().map(str::trim) {
            None | Some("refuse") => StoreOutage::Refuse,
            Some("serve") => StoreOutage::ServeReads,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "STORE_OUTAGE_READS",
                    reason: format!("`{other}` is neither `refuse` nor `serve`"),
                });
            }
        };

        Ok(Self {
            tables: Tables {
                security: required("SECURITY_TABLE")?,
                rate_limits: required("RATE_LIMIT_TABLE")?,
                identity: required("IDENTITY_TABLE")?,
                traffic: required("TRAFFIC_TABLE")?,
                sandbox: required("SANDBOX_TABLE")?,
            },
            secret_id: required("APP_SECRET_ID")?,
            kms_key_id: required("KMS_KEY_ID")?,
            stack_name: required("STACK_NAME")?,
            rate_limits,
            max_body_bytes,
            never_ban,
            shared_senders,
            traffic_retention_days,
            order_caps,
            session_expiry,
            public_base_url,
            store_outage,
            brokers,
        })
    }

    pub fn rate_limit(&self, action: LimitedAction) -> RateLimit {
        self.rate_limits.get(&action).copied().unwrap_or(action.default_limit())
    }
}

/// The set of addresses that are never banned and never feed a tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeverBan(Vec<IpNet>);

impl NeverBan {
    /// Every range that is not globally routable: a ban on one of these would lock out the
    /// operator's own network, a NAT gateway, or a whole Docker bridge (OpenAlgo #2015).
    pub const NON_GLOBAL: &'static [&'static str] = &[
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ];

    pub fn all_non_global() -> Self {
        Self(Self::NON_GLOBAL.iter().filter_map(|cidr| cidr.parse().ok()).collect())
    }

    /// A comma-separated CIDR list. Tests narrow it (e.g. to `127.0.0.1/32`) so that other loopback
    /// addresses can stand in for attackers.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse_cidrs(text).map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        any_contains(&self.0, ip)
    }
}

/// Relays that send the trader's requests and anyone else's from the same addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedSenders(Vec<IpNet>);

impl SharedSenders {
    /// The addresses TradingView publishes for its webhook alerts, which every TradingView user's
    /// alerts come from, an attacker's included.
    pub const TRADINGVIEW: &'static [&'static str] =
        &["52.89.214.238/32", "34.212.75.30/32", "54.218.53.128/32", "52.32.178.7/32"];

    pub fn tradingview() -> Self {
        Self(Self::TRADINGVIEW.iter().filter_map(|cidr| cidr.parse().ok()).collect())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        any_contains(&self.0, ip)
    }
}

/// A comma-separated CIDR list; every entry must parse.
fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<IpNet>().map_err(|_| format!("`{part}` is not a CIDR range like 127.0.0.1/32")))
        .collect()
}

fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = crate::core::net::canonical(ip);
    nets.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(name: &str) -> Option<String> {
        let value = match name {
            "SECURITY_TABLE" => "kavach-security",
            "RATE_LIMIT_TABLE" => "kavach-rate-limits",
            "IDENTITY_TABLE" => "kavach-identity",
            "TRAFFIC_TABLE" => "kavach-traffic",
            "SANDBOX_TABLE" => "kavach-sandbox",
            "APP_SECRET_ID" => "kavach/app",
            "KMS_KEY_ID" => "alias/kavach",
            "STACK_NAME" => "kavach",
            _ => return None,
        };
        Some(value.to_owned())
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_absent() {
        let config = Config::from_lookup(complete).expect("complete config");
        assert_eq!(config.rate_limit(LimitedAction::Api), RateLimit::per_second(50));
        assert_eq!(config.rate_limit(LimitedAction::Order), RateLimit::per_second(10));
        assert_eq!(config.rate_limit(LimitedAction::SmartOrder), RateLimit::per_second(10));
        assert_eq!(config.max_body_bytes, 65_536);
        assert_eq!(config.traffic_retention_days, 14);
        assert!(config.never_ban.contains("127.0.0.2".parse().expect("ip")));
        assert!(config.never_ban.contains("100.64.1.1".parse().expect("ip")));
        assert!(!config.never_ban.contains("8.8.8.8".parse().expect("ip")));
        assert!(config.shared_senders.contains("52.89.214.238".parse().expect("ip")));
        assert!(config.shared_senders.contains("::ffff:52.32.178.7".parse().expect("ip")));
        assert!(!config.shared_senders.contains("8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn refuses_each_missing_required_variable_by_name() {
        for missing in [
            "SECURITY_TABLE",
            "RATE_LIMIT_TABLE",
            "IDENTITY_TABLE",
            "TRAFFIC_TABLE",
            "SANDBOX_TABLE",
            "APP_SECRET_ID",
            "KMS_KEY_ID",
            "STACK_NAME",
        ] {
            let err =
                Config::from_lookup(|name| if name == missing { None } else { complete(name) }).expect_err(missing);
            assert_eq!(err, ConfigError::Missing(missing));
            assert!(err.to_string().contains(missing));
        }
        let blank = Config::from_lookup(|name| if name == "KMS_KEY_ID" { Some("  ".into()) } else { complete(name) });
        assert_eq!(blank.expect_err("blank"), ConfigError::Missing("KMS_KEY_ID"));
    }

    #[test]
    fn public_base_url_allows_plain_http_only_for_exact_loopback_hosts() {
        let accepted = |value: &'static str| {
            Config::from_lookup(move |name| if name == "PUBLIC_BASE_URL" { Some(value.into()) } else { complete(name) })
                .map(|config| config.public_base_url)
        };
        assert_eq!(accepted("https://kavach.example.in/"), Ok(Some("https://kavach.example.in".into())));
        assert_eq!(accepted("http://127.0.0.1:3000"), Ok(Some("http://127.0.0.1:3000".into())));
        assert_eq!(accepted("http://localhost"), Ok(Some("http://localhost".into())));
        // The stack's ApiUrl output: its stage is the request's base path, not part of the origin.
        let api_url = "https://abc123.execute-api.ap-south-1.amazonaws.com/prod";
        assert_eq!(accepted(api_url), Ok(Some("https://abc123.execute-api.ap-south-1.amazonaws.com".into())));
    }

    #[test]
    fn refuses_invalid_values_naming_the_variable() {
        let with = |var: &'static str, value: &'static str| {
            Config::from_lookup(move |name| if name == var { Some(value.into()) } else { complete(name) })
                .expect_err(var)
                .to_string()
        };
        assert!(with("API_RATE_LIMIT", "fifty per second").contains("API_RATE_LIMIT"));
        assert!(with("ORDER_RATE_LIMIT", "10 per fortnight").contains("ORDER_RATE_LIMIT"));
        assert!(with("MAX_BODY_BYTES", "12").contains("MAX_BODY_BYTES"));
        assert!(with("NEVER_BAN_CIDRS", "127.0.0.1/33").contains("NEVER_BAN_CIDRS"));
        assert!(with("TRAFFIC_RETENTION_DAYS", "0").contains("TRAFFIC_RETENTION_DAYS"));
        assert!(with("SESSION_EXPIRY_TIME", "25:00").contains("SESSION_EXPIRY_TIME"));
        assert!(with("PUBLIC_BASE_URL", "http://evil.example").contains("PUBLIC_BASE_URL"));
        assert!(with("PUBLIC_BASE_URL", "http://localhost.evil.example").contains("PUBLIC_BASE_URL"));
        assert!(with("PUBLIC_BASE_URL", "http://127.0.0.1.evil.example:3000").contains("PUBLIC_BASE_URL"));
        assert!(with("LOGIN_RATE_LIMIT_MIN", "5 per fortnight").contains("LOGIN_RATE_LIMIT_MIN"));
        assert!(with("STORE_OUTAGE_READS", "maybe").contains("STORE_OUTAGE_READS"));
        // A broker's secrets and tokens go to these origins: never in clear beyond loopback.
        assert!(with("KITE_API_ROOT", "http://api.kite.trade").contains("KITE_API_ROOT"));
        assert!(with("KITE_LOGIN_ROOT", "kite.zerodha.com").contains("KITE_LOGIN_ROOT"));
    }

    #[test]
    fn brokers_are_their_own_servers_unless_a_stub_is_named() {
        let defaults = Config::from_lookup(complete).expect("config").brokers;
        assert_eq!(defaults.kite_api, "https://api.kite.trade");
        assert_eq!(defaults.kite_login, "https://kite.zerodha.com");
        let stub = Config::from_lookup(|name| match name {
            "KITE_API_ROOT" | "KITE_LOGIN_ROOT" => Some("http://127.0.0.1:8123/".into()),
            _ => complete(name),
        })
        .expect("config")
        .brokers;
        assert_eq!(
            (stub.kite_api.as_str(), stub.kite_login.as_str()),
            ("http://127.0.0.1:8123", "http://127.0.0.1:8123")
        );
    }

    #[test]
    fn narrowed_never_ban_set_and_mapped_addresses() {
        let narrow = NeverBan::parse("127.0.0.1/32, ::1/128").expect("cidrs");
        assert!(narrow.contains("127.0.0.1".parse().expect("ip")));
        assert!(narrow.contains("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!narrow.contains("127.0.0.2".parse().expect("ip")));
    }
}
