//! Typed subject alternative names and certificate roles.
//!
//! [`crate::verify::inspect`] reports a certificate's names in their printed form (`IP:…`,
//! `DNS:…`, `URI:…`, the form `openssl x509 -text` and `netclaw pki status` show);
//! [`SubjectAltName`] is the typed view every consumer matches on instead of string prefixes.
//! [`CertificateRole`] names the four PKI files a host holds, in reports and checks.
//!
//! # Security
//!
//! A name that does not parse as its kind (an IP SAN of the wrong length) is
//! [`SubjectAltName::Other`], which matches no listener address and no SPIFFE id.

use std::fmt;
use std::net::IpAddr;

use rustls_pki_types::ServerName;
use serde::Serialize;

use crate::issue::ListenerNames;
use crate::verify::CertificateInfo;

/// One subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectAltName {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name.
    Dns(String),
    /// A URI (the agent's SPIFFE id).
    Uri(String),
    /// Any other or malformed name, in its printed form.
    Other(String),
}

impl SubjectAltName {
    /// Reads the printed form (`IP:192.0.2.10`, `DNS:host`, `URI:spiffe://…`).
    pub fn parse(s: &str) -> Self {
        if let Some(ip) = s.strip_prefix("IP:") {
            return ip
                .parse()
                .map_or_else(|_| Self::Other(s.to_owned()), Self::Ip);
        }
        if let Some(d) = s.strip_prefix("DNS:") {
            return Self::Dns(d.to_owned());
        }
        if let Some(u) = s.strip_prefix("URI:") {
            return Self::Uri(u.to_owned());
        }
        Self::Other(s.to_owned())
    }

    /// The name a TLS client checks this name as, for IP and DNS names.
    pub fn server_name(&self) -> Option<ServerName<'static>> {
        match self {
            Self::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
            Self::Dns(d) => ServerName::try_from(d.clone()).ok(),
            Self::Uri(_) | Self::Other(_) => None,
        }
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "IP:{ip}"),
            Self::Dns(d) => write!(f, "DNS:{d}"),
            Self::Uri(u) => write!(f, "URI:{u}"),
            Self::Other(o) => f.write_str(o),
        }
    }
}

impl CertificateInfo {
    /// The subject alternative names, typed.
    pub fn alt_names(&self) -> impl Iterator<Item = SubjectAltName> + '_ {
        self.sans.iter().map(|s| SubjectAltName::parse(s))
    }
}

impl ListenerNames {
    /// The names as subject alternative names: IPs first, then DNS names.
    pub fn alt_names(&self) -> impl Iterator<Item = SubjectAltName> + '_ {
        self.ips
            .iter()
            .copied()
            .map(SubjectAltName::Ip)
            .chain(self.dns.iter().cloned().map(SubjectAltName::Dns))
    }

    /// The IP and DNS names among `names` (others are ignored).
    pub fn from_alt_names(names: impl IntoIterator<Item = SubjectAltName>) -> Self {
        let mut out = Self {
            ips: Vec::new(),
            dns: Vec::new(),
        };
        for name in names {
            match name {
                SubjectAltName::Ip(ip) => out.ips.push(ip),
                SubjectAltName::Dns(d) => out.dns.push(d),
                SubjectAltName::Uri(_) | SubjectAltName::Other(_) => {}
            }
        }
        out
    }
}

/// Which of a host's PKI files a certificate or key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateRole {
    /// The daemon's operator CA.
    OperatorCa,
    /// The operator listener's server certificate.
    OperatorListener,
    /// The agent's client certificate.
    OperatorAgent,
    /// The CA bundle the agent trusts.
    AgentCaBundle,
}

impl CertificateRole {
    /// The name reports and `netclaw pki status --json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperatorCa => "operator-ca",
            Self::OperatorListener => "operator-listener",
            Self::OperatorAgent => "operator-agent",
            Self::AgentCaBundle => "agent-ca-bundle",
        }
    }
}

impl fmt::Display for CertificateRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_forms_round_trip() {
        for s in [
            "IP:192.0.2.10",
            "IP:2001:db8::1",
            "DNS:daemon-host",
            "URI:spiffe://netclaw.internal/host/00/operator-agent",
            "IP:<malformed>",
        ] {
            assert_eq!(SubjectAltName::parse(s).to_string(), s);
        }
        assert_eq!(
            SubjectAltName::parse("IP:<malformed>"),
            SubjectAltName::Other("IP:<malformed>".into())
        );
        assert!(SubjectAltName::parse("IP:<malformed>")
            .server_name()
            .is_none());
        assert!(SubjectAltName::parse("DNS:daemon-host")
            .server_name()
            .is_some());
    }

    #[test]
    fn listener_names_keep_ips_and_dns_only() {
        let names = ListenerNames::from_alt_names([
            SubjectAltName::parse("URI:spiffe://x/host/y/operator-agent"),
            SubjectAltName::parse("DNS:daemon-host"),
            SubjectAltName::parse("IP:192.0.2.10"),
        ]);
        assert_eq!(names.ips, vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(names.dns, vec!["daemon-host".to_owned()]);
        let printed: Vec<String> = names.alt_names().map(|n| n.to_string()).collect();
        assert_eq!(printed, ["IP:192.0.2.10", "DNS:daemon-host"]);
    }

    #[test]
    fn roles_serialize_as_their_names() {
        for role in [
            CertificateRole::OperatorCa,
            CertificateRole::OperatorListener,
            CertificateRole::OperatorAgent,
            CertificateRole::AgentCaBundle,
        ] {
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
        }
    }
}
