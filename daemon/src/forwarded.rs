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
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// Warnings about unparseable forwarded addresses come at most this often.
pub(crate) const UNPARSEABLE_WARN_EVERY: Duration = Duration::from_secs(60);

/// Counts requests from a trusted proxy whose last `X-Forwarded-For` entry is not an address
/// (so they are keyed on the proxy itself, sharing one limiter bucket), and warns about them at
/// most every [`UNPARSEABLE_WARN_EVERY`] with the count, so that a misconfigured proxy is noticed
/// and a flood of such requests cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct UnparseableForwarded(Mutex<WarnEvery>);

impl UnparseableForwarded {
    /// Counts one such request from `peer`, and warns when a warning is due.
    pub(crate) fn seen(&self, peer: IpAddr, entry: &str) {
        let due = match self.0.lock() {
            Ok(mut w) => w.count(Instant::now()),
            Err(_) => return,
        };
        if let Some(requests) = due {
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

/// A counter that says when a warning is due: the first time, then once `every` has passed since
/// the last warning, with how many were counted since (this one included).
#[derive(Debug)]
struct WarnEvery {
    every: Duration,
    last_warning: Option<Instant>,
    unreported: u64,
}

impl Default for WarnEvery {
    fn default() -> Self {
        Self {
            every: UNPARSEABLE_WARN_EVERY,
            last_warning: None,
            unreported: 0,
        }
    }
}

impl WarnEvery {
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let due = self
            .last_warning
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.unreported))
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
