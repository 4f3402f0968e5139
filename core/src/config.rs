//! `netclaw.json`: netclaw's `Daemon` keys plus the `Operator` section.
//!
//! Loading is two-step (as nextest's config elements): the file, with `NETCLAW_Section__Key`
//! environment overrides applied, is deserialized into raw types that reject unknown keys, then
//! turned into a validated [`Config`] whose fields are private. Cross-field rules (exposure mode
//! against bind address, trusted proxies, ports) have their own error variants, each naming the key
//! and the fix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use netclaw_pki::issue::CertificateLifetime;
use netclaw_pki::TrustDomain;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::env::Env;
use crate::layout::InstallLayout;
use crate::net::{canonical_ip, is_loopback_net, parse_net};

/// Default public listener port (netclaw's).
pub const DEFAULT_DAEMON_PORT: u16 = 5199;
/// Default operator listener port.
pub const DEFAULT_OPERATOR_PORT: u16 = 5200;
/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "NETCLAW_CONFIG";
/// Prefix of override variables, e.g. `NETCLAW_Daemon__Host`.
pub const OVERRIDE_PREFIX: &str = "NETCLAW_";

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

/// A configuration error. Each names the key and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}; {fix}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        fix: String,
    },
    /// The JSON is malformed or has unknown keys or wrong types.
    #[error("configuration {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// An environment override is not a known setting.
    #[error("environment variable {var} does not name a setting ({reason})")]
    Override { var: String, reason: String },
    /// A value is invalid.
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// `local` mode with a non-loopback bind.
    #[error(
        "Daemon.Host is {host} but Daemon.ExposureMode is local: local mode trusts loopback peers and must bind a loopback address; \
         set Daemon.Host to 127.0.0.1, or choose the exposure mode that matches how the daemon is reached (e.g. reverse-proxy)"
    )]
    LocalModeNonLoopback { host: IpAddr },
    /// `reverse-proxy` mode with a loopback or wildcard bind.
    #[error(
        "Daemon.Host is {host} but Daemon.ExposureMode is reverse-proxy: a proxy on this host would forward remote traffic over loopback; \
         set Daemon.Host to this host's internal (non-loopback) IP address that the proxy connects to"
    )]
    ReverseProxyLoopback { host: IpAddr },
    /// `reverse-proxy` mode with a loopback entry in `TrustedProxies`.
    #[error(
        "Daemon.TrustedProxies lists {entry}, a loopback address, but Daemon.ExposureMode is reverse-proxy: \
         a loopback final hop is never trusted there (a proxy or tunnel on this host forwards remote traffic over loopback); \
         list the address the proxy connects from instead — a proxy on this host reaches Daemon.Host from that same address"
    )]
    ReverseProxyLoopbackProxy { entry: IpNet },
    /// `reverse-proxy` mode without trusted proxies.
    #[error(
        "Daemon.TrustedProxies is empty but Daemon.ExposureMode is reverse-proxy; \
         list the proxy's address (IP or CIDR), e.g. \"TrustedProxies\": [\"192.0.2.1\"]"
    )]
    ReverseProxyNoTrustedProxies,
    /// Both listeners on the same address and port.
    #[error("Operator.Port {port} is also Daemon.Port on {host}; give the operator listener its own port (default 5200)")]
    PortClash { host: IpAddr, port: u16 },
}

impl ConfigError {
    fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw types: what the file may contain.

/// The file as written: every key optional, unknown keys rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RawConfig {
    /// `Daemon` section.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// `Operator` section.
    #[serde(default)]
    pub operator: RawOperator,
}

/// `Daemon` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RawDaemon {
    /// Public listener address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Public listener port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Exposure mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_mode: Option<String>,
    /// Proxies whose forwarded headers are honoured.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Skip the tunnel process check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_tunnel_process_check: Option<bool>,
    /// Device registry, audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_directory: Option<PathBuf>,
}

/// `Operator` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RawOperator {
    /// Operator listener address (default: `Daemon.Host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Operator listener port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The agent's Unix socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Source addresses allowed on the operator listener (default: this host's addresses).
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_sources: Option<Vec<String>>,
    /// Users allowed on the agent socket besides root and the agent's own user.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_users: Option<Vec<String>>,
    /// Groups whose members are allowed on the agent socket.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_groups: Option<Vec<String>>,
    /// SPIFFE trust domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// Agent certificate lifetime, e.g. `30d`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_lifetime: Option<String>,
    /// How long a superseded agent serial stays usable after a rotation, e.g. `60s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_grace: Option<String>,
    /// Revoke every agent serial when a superseded one is used after its successor (a
    /// possible key clone), until an operator re-issues with `netclaw pki rotate --offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_on_suspected_clone: Option<bool>,
    /// Daemon PKI directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pki_directory: Option<PathBuf>,
    /// Agent credential directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_directory: Option<PathBuf>,
}

/// Accepts a JSON list or, from an environment override, a comma-separated string.
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::Many(v)) => Some(v),
        Some(OneOrMany::One(s)) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Validated types.

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    daemon: DaemonConfig,
    operator: OperatorConfig,
}

/// Validated `Daemon` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    host: IpAddr,
    port: u16,
    exposure: ExposureMode,
    trusted_proxies: Vec<IpNet>,
    skip_tunnel_process_check: bool,
    state_dir: PathBuf,
}

/// Validated `Operator` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorConfig {
    host: IpAddr,
    port: u16,
    socket: PathBuf,
    allowed_sources: Option<Vec<IpNet>>,
    allowed_users: Vec<String>,
    allowed_groups: Vec<String>,
    trust_domain: TrustDomain,
    lifetime: CertificateLifetime,
    rotation_grace: Duration,
    lock_on_clone: bool,
    pki_dir: PathBuf,
    agent_dir: PathBuf,
}

impl Config {
    /// The `Daemon` section.
    pub fn daemon(&self) -> &DaemonConfig {
        &self.daemon
    }
    /// The `Operator` section.
    pub fn operator(&self) -> &OperatorConfig {
        &self.operator
    }

    /// Reads, overrides and validates the file at `path`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            fix: if source.kind() == std::io::ErrorKind::NotFound {
                "run `netclaw daemon install`, or point --config / NETCLAW_CONFIG at the file"
                    .into()
            } else {
                "check that this user may read it".into()
            },
            source,
        })?;
        Self::from_json(path, &text, env)
    }

    /// Parses, overrides and validates `text` (the contents of `path`).
    pub fn from_json(path: &Path, text: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let parse_err = |e: serde_json::Error| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut value: Value = serde_json::from_str(text).map_err(parse_err)?;
        for (name, section) in value.as_object().into_iter().flatten() {
            if !section.is_object() {
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    reason: format!("{name} must be a JSON object"),
                });
            }
        }
        if !value.is_object() {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                reason: "the file must hold one JSON object with Daemon and Operator sections"
                    .into(),
            });
        }
        apply_overrides(&mut value, env)?;
        let raw: RawConfig = serde_json::from_value(value).map_err(parse_err)?;
        Self::try_from(raw)
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let d = raw.daemon;
        let o = raw.operator;
        let defaults = InstallLayout::system();

        let host = match &d.host {
            Some(h) => parse_host("Daemon.Host", h)?,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let exposure = match &d.exposure_mode {
            Some(m) => m.parse()?,
            None => ExposureMode::Local,
        };
        let trusted_proxies = parse_nets(
            "Daemon.TrustedProxies",
            d.trusted_proxies.unwrap_or_default(),
        )?;
        let daemon = DaemonConfig {
            host,
            port: nonzero_port("Daemon.Port", d.port.unwrap_or(DEFAULT_DAEMON_PORT))?,
            exposure,
            trusted_proxies,
            skip_tunnel_process_check: d.skip_tunnel_process_check.unwrap_or(false),
            state_dir: absolute(
                "Daemon.StateDirectory",
                d.state_directory.unwrap_or(defaults.state_dir),
            )?,
        };

        match daemon.exposure {
            ExposureMode::Local if !daemon.host.is_loopback() => {
                return Err(ConfigError::LocalModeNonLoopback { host: daemon.host })
            }
            ExposureMode::ReverseProxy
                if daemon.host.is_loopback() || daemon.host.is_unspecified() =>
            {
                return Err(ConfigError::ReverseProxyLoopback { host: daemon.host })
            }
            ExposureMode::ReverseProxy if daemon.trusted_proxies.is_empty() => {
                return Err(ConfigError::ReverseProxyNoTrustedProxies)
            }
            ExposureMode::ReverseProxy => {
                if let Some(entry) = daemon.trusted_proxies.iter().find(|n| is_loopback_net(n)) {
                    return Err(ConfigError::ReverseProxyLoopbackProxy { entry: *entry });
                }
            }
            _ => {}
        }

        let op_host = match &o.host {
            Some(h) => parse_host("Operator.Host", h)?,
            None => daemon.host,
        };
        let op_port = nonzero_port("Operator.Port", o.port.unwrap_or(DEFAULT_OPERATOR_PORT))?;
        if op_port == daemon.port
            && (op_host == daemon.host || op_host.is_unspecified() || daemon.host.is_unspecified())
        {
            return Err(ConfigError::PortClash {
                host: op_host,
                port: op_port,
            });
        }
        let allowed_sources = match o.allowed_sources {
            Some(list) => Some(parse_nets("Operator.AllowedSources", list)?),
            None => None,
        };
        let trust_domain = match &o.trust_domain {
            Some(t) => t
                .parse()
                .map_err(|e| ConfigError::invalid("Operator.TrustDomain", format!("{e}")))?,
            None => TrustDomain::DEFAULT
                .parse()
                .map_err(|e| ConfigError::invalid("Operator.TrustDomain", format!("{e}")))?,
        };
        let lifetime = match &o.certificate_lifetime {
            Some(l) => l
                .parse()
                .map_err(|e: String| ConfigError::invalid("Operator.CertificateLifetime", e))?,
            None => CertificateLifetime::default(),
        };
        let rotation_grace = match &o.rotation_grace {
            Some(g) => {
                parse_grace(g).map_err(|e| ConfigError::invalid("Operator.RotationGrace", e))?
            }
            None => DEFAULT_ROTATION_GRACE,
        };
        let operator = OperatorConfig {
            host: op_host,
            port: op_port,
            socket: absolute("Operator.Socket", o.socket.unwrap_or(defaults.socket))?,
            allowed_sources,
            allowed_users: names("Operator.AllowedUsers", o.allowed_users.unwrap_or_default())?,
            allowed_groups: names(
                "Operator.AllowedGroups",
                o.allowed_groups.unwrap_or_default(),
            )?,
            trust_domain,
            lifetime,
            rotation_grace,
            lock_on_clone: o.lock_on_suspected_clone.unwrap_or(false),
            pki_dir: absolute(
                "Operator.PkiDirectory",
                o.pki_directory.unwrap_or(defaults.pki_dir),
            )?,
            agent_dir: absolute(
                "Operator.AgentDirectory",
                o.agent_directory.unwrap_or(defaults.agent_dir),
            )?,
        };
        Ok(Self { daemon, operator })
    }
}

impl DaemonConfig {
    /// Public listener address.
    pub fn host(&self) -> IpAddr {
        self.host
    }
    /// Public listener port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Exposure mode.
    pub fn exposure(&self) -> ExposureMode {
        self.exposure
    }
    /// Proxies whose forwarded headers are honoured.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }
    /// Whether the tunnel process check is skipped.
    pub fn skip_tunnel_process_check(&self) -> bool {
        self.skip_tunnel_process_check
    }
    /// State directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    /// Whether `peer` is a trusted proxy. In `reverse-proxy` mode a loopback peer never is, even
    /// when a wider `TrustedProxies` range covers loopback.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        if self.exposure == ExposureMode::ReverseProxy && peer.is_loopback() {
            return false;
        }
        self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }
}

impl OperatorConfig {
    /// Operator listener address.
    pub fn host(&self) -> IpAddr {
        self.host
    }
    /// Operator listener port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Agent socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    /// Explicit allowed sources, or `None` for "this host's interface addresses".
    pub fn allowed_sources(&self) -> Option<&[IpNet]> {
        self.allowed_sources.as_deref()
    }
    /// Users allowed on the agent socket.
    pub fn allowed_users(&self) -> &[String] {
        &self.allowed_users
    }
    /// Groups allowed on the agent socket.
    pub fn allowed_groups(&self) -> &[String] {
        &self.allowed_groups
    }
    /// Trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    /// Agent certificate lifetime.
    pub fn certificate_lifetime(&self) -> CertificateLifetime {
        self.lifetime
    }
    /// How long a superseded agent serial stays usable after a rotation.
    pub fn rotation_grace(&self) -> Duration {
        self.rotation_grace
    }
    /// Whether a suspected key clone locks the agent identity.
    pub fn lock_on_suspected_clone(&self) -> bool {
        self.lock_on_clone
    }
    /// Daemon PKI directory.
    pub fn pki_dir(&self) -> &Path {
        &self.pki_dir
    }
    /// Agent credential directory.
    pub fn agent_dir(&self) -> &Path {
        &self.agent_dir
    }
}

/// Default `Operator.RotationGrace`.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(60);
/// Longest accepted `Operator.RotationGrace`.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(3600);

/// Parses `Operator.RotationGrace`: a number and `s`, `m` or `h`, from 0 s to 1 h.
fn parse_grace(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration from 0s to 1h; write e.g. \"60s\" or \"2m\"");
    let (digits, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        _ => return Err(bad()),
    };
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let d = Duration::from_secs(digits.parse::<u64>().map_err(|_| bad())? * mult);
    if d > MAX_ROTATION_GRACE {
        return Err(bad());
    }
    Ok(d)
}

fn parse_host(key: &'static str, s: &str) -> Result<IpAddr, ConfigError> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.parse::<IpAddr>().map(canonical_ip).map_err(|_| {
        ConfigError::invalid(
            key,
            format!(
                "{s:?} is not an IP address; bind an IP literal such as 192.0.2.10 or 127.0.0.1"
            ),
        )
    })
}

/// Parses IP or CIDR entries all-or-nothing: one bad entry rejects the whole list.
pub fn parse_nets(key: &'static str, entries: Vec<String>) -> Result<Vec<IpNet>, ConfigError> {
    entries
        .iter()
        .map(|e| parse_net(e).ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!("{:?} is not an IP address or CIDR; the whole list is rejected, fix the entry", e.chars().take(100).collect::<String>()),
            )
        }))
        .collect()
}

fn nonzero_port(key: &'static str, p: u16) -> Result<u16, ConfigError> {
    if p == 0 {
        return Err(ConfigError::invalid(
            key,
            "port 0 is not allowed; choose a fixed port",
        ));
    }
    Ok(p)
}

fn absolute(key: &'static str, p: PathBuf) -> Result<PathBuf, ConfigError> {
    if !p.is_absolute() {
        return Err(ConfigError::invalid(
            key,
            format!("{} is not an absolute path", p.display()),
        ));
    }
    Ok(p)
}

fn names(key: &'static str, v: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for n in &v {
        let ok = !n.is_empty()
            && n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !n.starts_with('-');
        if !ok {
            return Err(ConfigError::invalid(
                key,
                format!("{n:?} is not a user or group name"),
            ));
        }
    }
    Ok(v)
}

/// Applies `NETCLAW_<Section>__<Key>` variables. Section and key match case-insensitively; a
/// variable of that shape that names no setting is an error (a typo must not silently do nothing).
fn apply_overrides(value: &mut Value, env: &dyn Env) -> Result<(), ConfigError> {
    const SECTIONS: [(&str, &[&str]); 2] = [
        (
            "Daemon",
            &[
                "Host",
                "Port",
                "ExposureMode",
                "TrustedProxies",
                "SkipTunnelProcessCheck",
                "StateDirectory",
            ],
        ),
        (
            "Operator",
            &[
                "Host",
                "Port",
                "Socket",
                "AllowedSources",
                "AllowedUsers",
                "AllowedGroups",
                "TrustDomain",
                "CertificateLifetime",
                "RotationGrace",
                "LockOnSuspectedClone",
                "PkiDirectory",
                "AgentDirectory",
            ],
        ),
    ];
    let mut vars = env.vars();
    vars.sort();
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(OVERRIDE_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let err = |reason: &str| ConfigError::Override {
            var: var.clone(),
            reason: reason.into(),
        };
        let (section, keys) = SECTIONS
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(section))
            .ok_or_else(|| err("unknown section; use Daemon or Operator"))?;
        let key = keys
            .iter()
            .find(|k| k.eq_ignore_ascii_case(key))
            .ok_or_else(|| err("unknown key"))?;
        let parsed = match serde_json::from_str::<Value>(&raw) {
            Ok(v) if !v.is_string() => v,
            _ => Value::String(raw.clone()),
        };
        let root = value
            .as_object_mut()
            .ok_or_else(|| err("the configuration file is not a JSON object"))?;
        let sec = root
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        let sec = sec
            .as_object_mut()
            .ok_or_else(|| err("the section in the file is not a JSON object"))?;
        sec.insert(key.to_string(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
