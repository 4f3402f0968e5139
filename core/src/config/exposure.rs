//! Exposure modes (netclaw's `Daemon.ExposureMode`) and their cross-field rules: which bind
//! address and which trusted proxies each mode allows, and when a peer is a trusted proxy.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::ConfigError;
use crate::net::{canonical_ip, is_loopback_net};

/// How the daemon's public listener is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExposureMode {
    /// Only this host reaches the daemon; loopback peers are LocalProcess.
    Local,
    /// A reverse proxy forwards remote traffic; loopback earns nothing.
    ReverseProxy,
    /// `tailscale serve` forwards tailnet traffic over loopback.
    TailscaleServe,
    /// `tailscale funnel` forwards internet traffic over loopback.
    TailscaleFunnel,
    /// `cloudflared` forwards internet traffic over loopback.
    CloudflareTunnel,
}

impl ExposureMode {
    /// Every mode, in documentation order.
    pub const ALL: [ExposureMode; 5] = [
        Self::Local,
        Self::ReverseProxy,
        Self::TailscaleServe,
        Self::TailscaleFunnel,
        Self::CloudflareTunnel,
    ];

    /// The canonical kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::ReverseProxy => "reverse-proxy",
            Self::TailscaleServe => "tailscale-serve",
            Self::TailscaleFunnel => "tailscale-funnel",
            Self::CloudflareTunnel => "cloudflare-tunnel",
        }
    }

    /// Whether loopback peers are trusted as LocalProcess. Only in `local` mode.
    pub fn grants_loopback_trust(self) -> bool {
        self == Self::Local
    }

    /// The tunnel process this mode needs running, if any.
    pub fn tunnel_process(self) -> Option<&'static str> {
        match self {
            Self::TailscaleServe | Self::TailscaleFunnel => Some("tailscaled"),
            Self::CloudflareTunnel => Some("cloudflared"),
            Self::Local | Self::ReverseProxy => None,
        }
    }

    /// The systemd service of that tunnel process as its Debian/upstream package names it (the
    /// daemon is ordered after it by a drop-in that `netclaw daemon install` writes).
    pub fn tunnel_unit(self) -> Option<&'static str> {
        match self {
            Self::TailscaleServe | Self::TailscaleFunnel => Some("tailscaled.service"),
            Self::CloudflareTunnel => Some("cloudflared.service"),
            Self::Local | Self::ReverseProxy => None,
        }
    }
}

impl FromStr for ExposureMode {
    type Err = ConfigError;

    /// Case-insensitive; `reverse-proxy`, `ReverseProxy` and `reverse_proxy` are the same.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let folded: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().replace('-', "") == folded)
            .ok_or_else(|| ConfigError::Invalid {
                key: "Daemon.ExposureMode",
                reason: format!(
                    "{s:?} is not an exposure mode; use one of local, reverse-proxy, tailscale-serve, tailscale-funnel, cloudflare-tunnel"
                ),
            })
    }
}

impl fmt::Display for ExposureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cross-field rules of the public listener: `local` binds loopback only; `reverse-proxy`
/// binds a concrete non-loopback address and lists at least one trusted proxy, none of them
/// loopback.
pub(super) fn check_bind(
    mode: ExposureMode,
    host: IpAddr,
    trusted_proxies: &[IpNet],
) -> Result<(), ConfigError> {
    match mode {
        ExposureMode::Local if !host.is_loopback() => {
            Err(ConfigError::LocalModeNonLoopback { host })
        }
        ExposureMode::ReverseProxy if host.is_loopback() || host.is_unspecified() => {
            Err(ConfigError::ReverseProxyLoopback { host })
        }
        ExposureMode::ReverseProxy if trusted_proxies.is_empty() => {
            Err(ConfigError::ReverseProxyNoTrustedProxies)
        }
        ExposureMode::ReverseProxy => match trusted_proxies.iter().find(|n| is_loopback_net(n)) {
            Some(entry) => Err(ConfigError::ReverseProxyLoopbackProxy { entry: *entry }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Whether `peer` is a trusted proxy. In `reverse-proxy` mode a loopback peer never is, even
/// when a wider `TrustedProxies` range covers loopback.
pub(super) fn trusts_proxy(mode: ExposureMode, trusted_proxies: &[IpNet], peer: IpAddr) -> bool {
    let peer = canonical_ip(peer);
    if mode == ExposureMode::ReverseProxy && peer.is_loopback() {
        return false;
    }
    trusted_proxies.iter().any(|n| n.contains(&peer))
}
