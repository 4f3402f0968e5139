//! Where requests go: an endpoint's address (`http://HOST[:PORT][/prefix]`, `https://…` or
//! `unix:/path`), parsed and displayed. Choosing one is the `endpoint` module's job, dialling
//! one the `transport` module's; this module uses neither.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use hyper::Uri;

/// Where requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Plain HTTP.
    Http(HttpTarget),
    /// HTTPS (only `pair join` and explicit endpoints).
    Https(HttpTarget),
    /// HTTP over a Unix socket (the operator agent).
    Unix(PathBuf),
}

/// Host, port and base path of an `http(s)` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host as written (IP literal without brackets, or a DNS name).
    pub host: String,
    /// Port (scheme default when absent).
    pub port: u16,
    /// Path prefix without a trailing slash (`""` for none), for daemons behind a path prefix.
    pub base_path: String,
}

impl HttpTarget {
    /// The `Host` header value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the host is a loopback IP literal or `localhost`.
    pub fn is_loopback(&self) -> bool {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        }
    }
}

impl Endpoint {
    /// Parses `http://host[:port][/prefix]`, `https://…` or `unix:/absolute/path`.
    pub fn parse(s: &str) -> Result<Self, EndpointParseError> {
        let bad = |reason: &str| EndpointParseError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            let path = Path::new(path);
            if !path.is_absolute() {
                return Err(bad(
                    "a unix: endpoint needs an absolute path, e.g. unix:/run/netclaw/operator.sock",
                ));
            }
            return Ok(Self::Unix(path.to_owned()));
        }
        let uri: Uri = s.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("unsupported scheme")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let target = HttpTarget {
            host,
            port,
            base_path,
        };
        Ok(if https {
            Self::Https(target)
        } else {
            Self::Http(target)
        })
    }

    /// `http://127.0.0.1:<port>` for a daemon bound to `host` (wildcards map to loopback).
    pub fn loopback(host: IpAddr, port: u16) -> Self {
        let ip = match netclaw_core::net::dial_ip(host) {
            ip if ip.is_loopback() => ip,
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        Self::Http(HttpTarget {
            host: ip.to_string(),
            port,
            base_path: String::new(),
        })
    }

    /// Whether this is an `http(s)` endpoint.
    pub fn is_http(&self) -> bool {
        matches!(self, Self::Http(_) | Self::Https(_))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(t) => write!(f, "http://{}{}", t.authority(), t.base_path),
            Self::Https(t) => write!(f, "https://{}{}", t.authority(), t.base_path),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// An endpoint that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("endpoint {input:?}: {reason}; use http://HOST[:PORT], https://HOST[:PORT] or unix:/PATH")]
pub struct EndpointParseError {
    input: String,
    reason: String,
}

#[cfg(test)]
mod tests;
