//! `X-Forwarded-For` as the public listener reads it from a trusted proxy: the last non-empty
//! entry (one hop), in the forms proxies write, and a rate-limited warning when that entry is no
//! address.
//!
//! What this does not do: decide whom to trust (`DaemonConfig::forwarding_peers`, read by
//! the `caller` middleware) or produce a principal — a forwarded address only picks the pairing
//! limiter's bucket.
//!
//! # Security
//!
//! The input is untrusted text; parsing is pure and never panics. Only the last entry counts, so
//! what a client wrote before the proxy's entry cannot choose its bucket.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::line_budget::Warnings;

/// Counts requests from a trusted proxy whose last `X-Forwarded-For` entry is not an address
/// (so they are keyed on the proxy itself, sharing one limiter bucket), and warns about them at
/// most every [`WARN_EVERY`](crate::line_budget::WARN_EVERY) with the count, so that a misconfigured proxy is noticed
/// and a flood of such requests cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct UnparseableForwarded(Warnings);

impl UnparseableForwarded {
    /// Counts one such request from `peer`, and warns when a warning is due.
    pub(crate) fn seen(&self, peer: IpAddr, entry: &str) {
        if let Some(requests) = self.0.due() {
            let entry: String = entry.chars().take(64).collect();
            tracing::warn!(
                %peer,
                entry = ?entry,
                requests,
                "the trusted proxy's X-Forwarded-For does not end with a client address; those \
                 requests are rate-limited as the proxy's own (one bucket for all its clients): \
                 make the proxy append the client's IP"
            );
        }
    }
}

/// What the last `X-Forwarded-For` entry says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ForwardedFor<'a> {
    /// No header, or only empty entries.
    Absent,
    /// The client's address.
    Client(IpAddr),
    /// Something that is not an address (`unknown`, an obfuscated identifier, non-ASCII bytes).
    Unparseable(&'a str),
}

/// The last non-empty `X-Forwarded-For` entry (what the trusted proxy itself appended: one
/// hop), over every header line.
///
/// NOTE: a trailing empty entry (`203.0.113.7,`) is skipped, so a proxy that appended nothing
/// would let the entry before it count; proxies that append the peer's address never do that,
/// and the entry only picks a limiter bucket, never an identity.
pub(crate) fn forwarded_for(headers: &HeaderMap) -> ForwardedFor<'_> {
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return ForwardedFor::Unparseable("(not visible ASCII)");
        };
        if let Some(entry) = value.rsplit(',').map(str::trim).find(|e| !e.is_empty()) {
            return match client_address(entry) {
                Some(ip) => ForwardedFor::Client(ip),
                None => ForwardedFor::Unparseable(entry),
            };
        }
    }
    ForwardedFor::Absent
}

/// One `X-Forwarded-For` entry as an address, in the forms proxies write: `203.0.113.7`,
/// `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`, each with an
/// optional `%zone` (dropped). IPv4-mapped IPv6 becomes IPv4.
fn client_address(entry: &str) -> Option<IpAddr> {
    let host = match entry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            match after.strip_prefix(':') {
                Some(port) if is_port(port) => host,
                None if after.is_empty() => host,
                _ => return None,
            }
        }
        // Exactly one colon: IPv4 and a port (IPv6 has at least two).
        None => match entry.split_once(':') {
            Some((host, port)) if !port.contains(':') => {
                if !is_port(port) {
                    return None;
                }
                host
            }
            _ => entry,
        },
    };
    let host = host
        .split_once('%')
        .map_or(host, |(address, _zone)| address);
    host.parse().ok().map(netclaw_core::net::canonical_ip)
}

fn is_port(s: &str) -> bool {
    (1..=5).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
