//! Fetch Metadata: what a browser says about who made it send a request. Browsers set
//! `Sec-Fetch-Site` themselves and pages cannot change it, so a request another site's page caused
//! (an `<img>`, a `no-cors` POST, a navigation) is marked as such. Clients that are not browsers
//! (the SDK, curl, TradingView) send no such header.
//!
//! A non-browser client can forge the header, so a mark is only ever used to *spare* a request
//! something (detector counting, a state change's trust), never to grant it anything.

use http::HeaderMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// No metadata (not a browser), or a browser acting on this site's own pages (`same-origin`)
    /// or on the user's own typing or bookmark (`none`).
    Direct,
    /// A browser request another site's page caused: `cross-site`, or `same-site` (a sibling
    /// host under the same registrable domain, which is not this origin either).
    OtherSite,
}

impl Initiator {
    pub fn of(headers: &HeaderMap) -> Self {
        match headers.get("sec-fetch-site").map(|value| value.as_bytes()) {
            None | Some(b"same-origin") | Some(b"none") => Initiator::Direct,
            Some(_) => Initiator::OtherSite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_site(value: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert("sec-fetch-site", http::HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_another_sites_requests_are_marked() {
        for direct in [None, Some("same-origin"), Some("none")] {
            assert_eq!(Initiator::of(&with_site(direct)), Initiator::Direct, "{direct:?}");
        }
        for other in ["cross-site", "same-site", "garbage"] {
            assert_eq!(Initiator::of(&with_site(Some(other))), Initiator::OtherSite, "{other}");
        }
    }
}
