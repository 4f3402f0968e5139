//! The validated configuration: private fields, built from [`RawConfig`] by `TryFrom`, with the
//! value rules (addresses, ports, paths, names, durations) and the operator listener's rules.
//! The exposure rules are in [`super::exposure`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use netclaw_pki::issue::CertificateLifetime;
use netclaw_pki::TrustDomain;

use super::exposure::{self, ExposureMode, ForwardingPeers};
use super::raw::RawConfig;
use super::{ConfigError, DEFAULT_DAEMON_PORT, DEFAULT_OPERATOR_PORT};
use crate::layout::InstallLayout;
use crate::net::{canonical_ip, parse_net};

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    daemon: DaemonConfig,
    operator: OperatorConfig,
    ignored: Ignored,
}

/// Validated `Daemon` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    host: IpAddr,
    port: u16,
    exposure: ExposureMode,
    trusted_proxies: Vec<IpNet>,
    /// Derived once from `exposure` and `trusted_proxies`.
    forwarding_peers: ForwardingPeers,
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
    busy_poll: Duration,
    pki_dir: PathBuf,
    agent_dir: PathBuf,
    public_url: Option<String>,
}

/// What a load set aside: sections of the file and environment variables that belong to parts
/// of netclaw this layer does not implement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    sections: Vec<String>,
    variables: Vec<String>,
}

impl Ignored {
    pub(super) fn new(sections: Vec<String>, variables: Vec<String>) -> Self {
        Self {
            sections,
            variables,
        }
    }

    /// Top-level sections set aside, as spelled in the file.
    pub fn sections(&self) -> &[String] {
        &self.sections
    }

    /// `NETCLAW_<Section>__<Key>` variable names set aside (names only; values are never kept).
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// The one log line naming everything set aside, or `None` when nothing was.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.sections.is_empty() {
            parts.push(format!("sections {}", self.sections.join(", ")));
        }
        if !self.variables.is_empty() {
            parts.push(format!(
                "environment variables {}",
                self.variables.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "not read by this layer (netclaw settings it does not implement): {}",
                parts.join("; ")
            )
        })
    }
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
    /// What the load set aside (empty for a config built from [`RawConfig`] alone).
    pub fn ignored(&self) -> &Ignored {
        &self.ignored
    }
    pub(super) fn set_ignored(&mut self, ignored: Ignored) {
        self.ignored = ignored;
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        if let Some(v) = raw.config_version {
            super::raw::check_version(&v.into())?;
        }
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
        // netclaw's own keys, not used here, keep netclaw's value rules.
        if let Some(c) = &d.update_channel {
            if !["stable", "beta"].iter().any(|v| v.eq_ignore_ascii_case(c)) {
                return Err(ConfigError::invalid(
                    "Daemon.UpdateChannel",
                    format!(
                        "{:?} is not an update channel; use stable or beta",
                        c.chars().take(40).collect::<String>()
                    ),
                ));
            }
        }
        let daemon = DaemonConfig {
            host,
            port: nonzero_port("Daemon.Port", d.port.unwrap_or(DEFAULT_DAEMON_PORT))?,
            exposure,
            forwarding_peers: ForwardingPeers::derive(exposure, &trusted_proxies),
            trusted_proxies,
            skip_tunnel_process_check: d.skip_tunnel_process_check.unwrap_or(false),
            state_dir: absolute(
                "Daemon.StateDirectory",
                d.state_directory.unwrap_or(defaults.state_dir),
            )?,
        };
        exposure::check_bind(daemon.exposure, daemon.host, &daemon.trusted_proxies)?;

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
        let busy_poll = match o.busy_poll_micros {
            Some(us) if Duration::from_micros(us.into()) > MAX_BUSY_POLL => {
                return Err(ConfigError::invalid(
                    "Operator.BusyPollMicros",
                    format!(
                        "{us} is more than {}; write a number of microseconds from 0 (off) to {}",
                        MAX_BUSY_POLL.as_micros(),
                        MAX_BUSY_POLL.as_micros()
                    ),
                ))
            }
            Some(us) => Duration::from_micros(us.into()),
            None => DEFAULT_BUSY_POLL,
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
            busy_poll,
            pki_dir: absolute(
                "Operator.PkiDirectory",
                o.pki_directory.unwrap_or(defaults.pki_dir),
            )?,
            agent_dir: absolute(
                "Operator.AgentDirectory",
                o.agent_directory.unwrap_or(defaults.agent_dir),
            )?,
            public_url: match o.public_url {
                Some(u) => Some(public_url(&u).map_err(|reason| {
                    ConfigError::invalid("Operator.PublicUrl", format!("{u:?} {reason}"))
                })?),
                None => None,
            },
        };
        Ok(Self {
            daemon,
            operator,
            ignored: Ignored::default(),
        })
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
    /// `Daemon.TrustedProxies` as listed (see [`Self::forwarding_peers`] for whose forwarded
    /// headers are honoured).
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }
    /// The peers whose `X-Forwarded-For` is honoured, derived from the mode and
    /// `TrustedProxies`.
    pub fn forwarding_peers(&self) -> &ForwardingPeers {
        &self.forwarding_peers
    }
    /// Whether the tunnel process check is skipped.
    pub fn skip_tunnel_process_check(&self) -> bool {
        self.skip_tunnel_process_check
    }
    /// State directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    /// Whether `peer` is a trusted proxy: in [`Self::forwarding_peers`]. In `reverse-proxy` mode
    /// a loopback peer never is, even when a wider `TrustedProxies` range covers loopback; in a
    /// tunnel mode without `TrustedProxies` a loopback peer (the tunnel) is.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.forwarding_peers.contains(peer)
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
    /// The daemon's public URL as remote devices reach it (`Operator.PublicUrl`), without a
    /// trailing slash.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }
    /// How long the agent polls without sleeping after it forwards a request
    /// (`Operator.BusyPollMicros`; zero: never).
    pub fn busy_poll(&self) -> Duration {
        self.busy_poll
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

/// Default `Operator.BusyPollMicros`: long enough to cover a round trip to the daemon on the
/// same host (`docs/benchmarks.md`), so that a caller's next request or the daemon's answer
/// finds the agent awake.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);
/// Longest accepted `Operator.BusyPollMicros`.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(1);

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

/// An `http(s)://host[:port][/path]` URL without user information, query or fragment, with the
/// trailing slash removed. The CLI checks it again (scheme rules) before it sends anything.
fn public_url(u: &str) -> Result<String, &'static str> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or("is not an https:// URL (e.g. https://netclaw.example.com)")?;
    if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains spaces or control characters");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains('@') || rest.contains('?') || rest.contains('#') {
        return Err("may not carry user information, a query or a fragment");
    }
    Ok(u.trim_end_matches('/').to_owned())
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
