//! Exposure modes (netclaw's `Daemon.ExposureMode`) and their cross-field rules: which bind
//! address and which trusted proxies each mode allows, and whose forwarded headers are honoured
//! ([`ForwardingPeers`], derived once from the mode and `Daemon.TrustedProxies`).

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

/// The peers whose `X-Forwarded-For` the public listener honours, derived once from the mode and
/// `Daemon.TrustedProxies`. Honoured means one hop (the last entry) and only for the client
/// address the rate limiter keys on: never for a principal.
///
/// # Security
///
/// * `reverse-proxy` never trusts a loopback peer, even when a listed range covers loopback: a
///   proxy or tunnel on this host forwards remote traffic over loopback.
/// * A tunnel mode (`tailscale-serve`, `tailscale-funnel`, `cloudflare-tunnel`) with an empty
///   `TrustedProxies` trusts the loopback peer: the tunnel process forwards every remote client
///   over loopback, so without its forwarded address every client would share one limiter
///   bucket and one stranger's wrong codes would lock pairing for everybody. Tunnel modes never
///   grant loopback trust ([`ExposureMode::grants_loopback_trust`]), so this changes no
///   principal; a local process that forges the header only picks its own limiter bucket.
/// * Otherwise the listed entries, as listed (an explicit `TrustedProxies` keeps its meaning in
///   every mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardingPeers(Forwarders);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Forwarders {
    /// `Daemon.TrustedProxies` as listed.
    Listed(Vec<IpNet>),
    /// `reverse-proxy`: the listed proxies, never a loopback peer.
    ListedButLoopback(Vec<IpNet>),
    /// A tunnel mode without `TrustedProxies`: the loopback peer is the tunnel.
    TunnelOverLoopback,
}

impl ForwardingPeers {
    /// The set for `mode` and the validated `TrustedProxies` list.
    pub(super) fn derive(mode: ExposureMode, trusted_proxies: &[IpNet]) -> Self {
        let listed = trusted_proxies.to_vec();
        Self(match mode {
            ExposureMode::ReverseProxy => Forwarders::ListedButLoopback(listed),
            _ if mode.tunnel_process().is_some() && listed.is_empty() => {
                Forwarders::TunnelOverLoopback
            }
            _ => Forwarders::Listed(listed),
        })
    }

    /// Whether `peer`'s `X-Forwarded-For` is honoured.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        match &self.0 {
            Forwarders::Listed(nets) => nets.iter().any(|n| n.contains(&peer)),
            Forwarders::ListedButLoopback(nets) => {
                !peer.is_loopback() && nets.iter().any(|n| n.contains(&peer))
            }
            Forwarders::TunnelOverLoopback => peer.is_loopback(),
        }
    }

    /// Whether the set is the tunnel's loopback hop, derived rather than listed.
    pub fn is_tunnel_loopback(&self) -> bool {
        self.0 == Forwarders::TunnelOverLoopback
    }
}
