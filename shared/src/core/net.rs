//! IP addresses as every layer compares them.

use std::net::IpAddr;

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 address: one ban, one counter.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}
