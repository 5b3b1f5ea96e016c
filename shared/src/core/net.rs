//! IP addresses as every layer compares them.

use std::net::IpAddr;

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 address: one ban, one counter.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address a request is held to account by: bans, detector counts and per-address budgets.
/// An IPv4 address is itself; an IPv6 address is its /64, the smallest block a subscriber is given,
/// so rotating through the 2^64 addresses of one's own network neither escapes a ban nor resets
/// a count.
pub fn accountable(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn ipv6_is_held_to_account_by_its_64_and_ipv4_by_itself() {
        assert_eq!(accountable(ip("2001:db8:1:2::a")), ip("2001:db8:1:2::"));
        assert_eq!(accountable(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), ip("2001:db8:1:2::"));
        assert_ne!(accountable(ip("2001:db8:1:3::a")), accountable(ip("2001:db8:1:2::a")));
        assert_eq!(accountable(ip("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(accountable(ip("::ffff:203.0.113.9")), ip("203.0.113.9"), "mapped IPv4 is IPv4");
    }
}
