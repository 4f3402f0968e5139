//! Address helpers shared by the daemon, the operator agent and the CLI.
//!
//! One definition of what "the same address" means (IPv4-mapped IPv6 folded to IPv4), which
//! address a client dials for a listener bound to a wildcard, and what an IP-or-CIDR entry is, so
//! the allow-lists, the certificate names and the endpoint resolution cannot drift apart.
//!
//! # Security
//!
//! [`parse_net`] rejects a CIDR with host bits set rather than silently widening or narrowing it;
//! [`is_loopback_net`] is true only when *every* address of the network is loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Maps IPv4-mapped IPv6 addresses to IPv4, so `::ffff:192.0.2.1` matches `192.0.2.1/32`.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The address a local client dials for a listener bound to `host`: the loopback address of the
/// same family for a wildcard bind, else `host` itself.
pub fn dial_ip(host: IpAddr) -> IpAddr {
    match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

/// Whether every address in `net` is a loopback address (127.0.0.0/8 and its IPv4-mapped form,
/// `::1`).
pub fn is_loopback_net(net: &IpNet) -> bool {
    match net {
        IpNet::V4(v4) => v4.prefix_len() >= 8 && v4.network().is_loopback(),
        IpNet::V6(v6) => match v6.network().to_ipv4_mapped() {
            Some(v4) => v6.prefix_len() >= 104 && v4.is_loopback(),
            None => v6.prefix_len() == 128 && v6.network().is_loopback(),
        },
    }
}

/// One IP or CIDR entry (a bare IP is a /32 or /128). Host bits in a CIDR are rejected.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if s.contains('/') {
        let net: IpNet = s.parse().ok()?;
        (net.trunc() == net).then_some(net)
    } else {
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| IpNet::from(canonical_ip(ip)))
    }
}

#[cfg(test)]
mod tests;
