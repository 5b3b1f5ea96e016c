//! One traffic record per request. Its fields are an allow-list: method, path without query string,
//! status, duration, client IP, user and route. Bodies, headers, cookies and query strings never
//! enter it, so a secret cannot leak through it whatever a client sends.

use std::net::IpAddr;

use crate::core::clock::UnixMillis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficRecord {
    pub at: UnixMillis,
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub method: String,
    /// The path only: a query string may carry `apikey` on OpenAlgo's GET routes.
    pub path: String,
    pub status: u16,
    pub duration_us: u64,
    pub user: Option<String>,
    pub route: &'static str,
}

/// Records waiting to be written. The pipeline queues a record instead of writing it, so the write
/// never delays a response: on Lambda an internal extension flushes the queue after the response
/// has gone (`crate::pipeline::lambda`); the local gateway flushes in a task after responding.
pub type TrafficQueue = crate::core::pending::Pending<TrafficRecord>;

/// Strips the query string, replaces any segment that is an API key of ours (a client that put its
/// key in the URL), and caps the length, so a hostile URL can neither leak a key nor bloat the log.
pub fn loggable_path(path: &str) -> String {
    const MAX_CHARS: usize = 512;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut clean = String::with_capacity(path.len().min(MAX_CHARS));
    let mut kept = 0;
    'segments: for (index, segment) in path.split('/').enumerate() {
        let segment = if crate::crypto::api_key::ApiKey::parse(segment).is_some() { "[redacted]" } else { segment };
        let separator = (index > 0).then_some('/');
        for c in separator.into_iter().chain(segment.chars()).filter(|c| !c.is_control()) {
            if kept == MAX_CHARS {
                break 'segments;
            }
            clean.push(c);
            kept += 1;
        }
    }
    if clean.is_empty() {
        clean.push('/');
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_and_control_characters_never_reach_the_log() {
        assert_eq!(loggable_path("/api/v1/ticker/NSE:SBIN?apikey=kav_secret"), "/api/v1/ticker/NSE:SBIN");
        assert_eq!(loggable_path("/a\r\nInjected: 1"), "/aInjected: 1");
        assert_eq!(loggable_path(""), "/");
        assert_eq!(loggable_path(&"x".repeat(5000)).len(), 512);
    }
}
