//! SPIFFE identities of operator agents.
//!
//! The only identity this product issues or accepts is
//! `spiffe://<trust-domain>/host/<host-id>/operator-agent`. Parsing is strict: anything that is not
//! exactly of that form (other paths, percent-encoding, ports, user info, query, fragment, dot or
//! empty segments, upper case) is rejected rather than normalised.

use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";
const WORKLOAD: &str = "operator-agent";
/// Length of a host-id in hex characters (16 bytes).
pub const HOST_ID_HEX_LEN: usize = 32;

/// A SPIFFE id, trust domain or host-id that does not parse (`PkiError::InvalidSpiffeId` where a
/// PKI operation meets one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid SPIFFE identity {input:?}: {reason}")]
pub struct SpiffeError {
    /// The input (its first 300 characters).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn invalid(input: &str, reason: &'static str) -> SpiffeError {
    SpiffeError {
        input: input.chars().take(300).collect(),
        reason,
    }
}

/// A SPIFFE trust domain: 1–255 characters of `a-z 0-9 . - _`, not starting or ending with a dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// The trust domain used when the configuration names none.
    pub const DEFAULT: &'static str = "netclaw.internal";

    /// The trust domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeError;

    fn from_str(s: &str) -> Result<Self, SpiffeError> {
        if s.is_empty() || s.len() > 255 {
            return Err(invalid(s, "trust domain must be 1 to 255 characters"));
        }
        if !s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        }) {
            return Err(invalid(
                s,
                "trust domain may only contain lowercase letters, digits, '.', '-' and '_'",
            ));
        }
        if s.starts_with('.') || s.ends_with('.') || s.contains("..") {
            return Err(invalid(s, "trust domain has an empty label"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An application-specific host identifier: 32 lowercase hex characters.
///
/// See the `hostid` module for how it is derived; it is never the raw machine-id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostId(String);

impl HostId {
    /// The host-id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_bytes(bytes: &[u8; 16]) -> Self {
        Self(hex::encode(bytes))
    }
}

impl FromStr for HostId {
    type Err = SpiffeError;

    fn from_str(s: &str) -> Result<Self, SpiffeError> {
        if s.len() != HOST_ID_HEX_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(s, "host-id must be 32 lowercase hex characters"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `spiffe://<trust-domain>/host/<host-id>/operator-agent`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    host_id: HostId,
}

impl SpiffeId {
    /// The operator-agent identity for `host_id` in `trust_domain`.
    pub fn operator_agent(trust_domain: TrustDomain, host_id: HostId) -> Self {
        Self {
            trust_domain,
            host_id,
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The host-id.
    pub fn host_id(&self) -> &HostId {
        &self.host_id
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeError;

    fn from_str(s: &str) -> Result<Self, SpiffeError> {
        if s.len() > 2048 {
            return Err(invalid(s, "SPIFFE id longer than 2048 bytes"));
        }
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid(s, "SPIFFE id must start with spiffe://"))?;
        if rest.contains(['?', '#', '%', '@', ':']) {
            return Err(invalid(
                s,
                "SPIFFE id must not carry a query, fragment, percent-encoding, user info or port",
            ));
        }
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid(s, "SPIFFE id has no path"))?;
        let trust_domain: TrustDomain = domain
            .parse()
            .map_err(|_| invalid(s, "SPIFFE id trust domain is not a valid trust domain"))?;
        let mut segments = path.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("host"), Some(host), Some(WORKLOAD), None) => {
                let host_id = host
                    .parse()
                    .map_err(|_| invalid(s, "SPIFFE id host segment is not a valid host-id"))?;
                Ok(Self {
                    trust_domain,
                    host_id,
                })
            }
            _ => Err(invalid(
                s,
                "SPIFFE id path must be exactly /host/<host-id>/operator-agent",
            )),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/host/{}/{WORKLOAD}",
            self.trust_domain, self.host_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip() {
        let s = format!("spiffe://netclaw.internal/host/{HOST}/operator-agent");
        let id: SpiffeId = s.parse().unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(id.trust_domain().as_str(), "netclaw.internal");
        assert_eq!(id.host_id().as_str(), HOST);
    }

    #[test]
    fn rejects_malformed() {
        let bad = [
            String::new(),
            "spiffe://".into(),
            format!("https://netclaw.internal/host/{HOST}/operator-agent"),
            format!("SPIFFE://netclaw.internal/host/{HOST}/operator-agent"),
            format!("spiffe://Netclaw.internal/host/{HOST}/operator-agent"),
            format!("spiffe://netclaw.internal:443/host/{HOST}/operator-agent"),
            format!("spiffe://user@netclaw.internal/host/{HOST}/operator-agent"),
            format!("spiffe://netclaw.internal/host/{HOST}/operator-agent/"),
            format!("spiffe://netclaw.internal/host/{HOST}/operator-agent?x=1"),
            format!("spiffe://netclaw.internal/host/{HOST}/operator-agent#f"),
            format!("spiffe://netclaw.internal/host/{HOST}/other"),
            format!("spiffe://netclaw.internal//host/{HOST}/operator-agent"),
            format!("spiffe://netclaw.internal/host/../{HOST}/operator-agent"),
            format!(
                "spiffe://netclaw.internal/host/{}/operator-agent",
                HOST.to_uppercase()
            ),
            "spiffe://netclaw.internal/host/abc/operator-agent".into(),
            format!("spiffe://netclaw.internal/host/%30{HOST}/operator-agent"),
            format!("spiffe://.netclaw/host/{HOST}/operator-agent"),
            format!("spiffe:///host/{HOST}/operator-agent"),
            format!("spiffe://a..b/host/{HOST}/operator-agent"),
        ];
        for s in bad {
            assert!(s.parse::<SpiffeId>().is_err(), "accepted {s:?}");
        }
    }
}
