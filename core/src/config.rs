//! `netclaw.json`: the sections this layer owns (`Daemon`, `Operator`) inside netclaw's file.
//!
//! netclaw's file holds `configVersion` and many sections this layer does not implement
//! (`Providers`, `Slack`, `Models`, …), each overridable by `NETCLAW_<Section>__<Key>` variables.
//! This module reads that file as it is:
//!
//! - [`raw`]: the serde types of the owned sections (unknown keys refused) and the step that
//!   picks them out of the file: keys match case-insensitively (as in netclaw's .NET
//!   configuration), foreign sections are set aside, a section name one or two edits away from
//!   an owned one is refused as a typo (fail closed), `configVersion` must be 1.
//! - [`overrides`]: `NETCLAW_<Section>__<Key>` (and netclaw's `__<index>` form for list keys). The
//!   table of keys is derived from the raw types, so no key can be missing from it; variables of
//!   foreign sections are set aside.
//! - [`validated`]: the validated [`Config`] with private fields, built by `TryFrom<RawConfig>`.
//! - [`exposure`]: the exposure modes and their cross-field rules.
//! - [`document`]: the file as a document, for `netclaw daemon install`: owned sections are
//!   replaced, every other section is kept byte for byte and in its place.
//!
//! Sections and variables set aside are named in one `info` log line per load
//! ([`Config::ignored`]). Cross-field rules have their own error variants, each naming the key
//! and the fix.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::Value;

use crate::env::Env;

pub mod document;
pub mod exposure;
pub mod overrides;
pub mod raw;
pub mod validated;

pub use document::ConfigDocument;
pub use exposure::{ExposureMode, ForwardingPeers};
pub use raw::{RawConfig, RawDaemon, RawOperator, NETCLAW_SECTIONS, OWNED_SECTIONS};
pub use validated::{
    parse_nets, Config, DaemonConfig, Ignored, OperatorConfig, DEFAULT_BUSY_POLL,
    DEFAULT_ROTATION_GRACE, MAX_BUSY_POLL, MAX_ROTATION_GRACE,
};

/// Default public listener port (netclaw's).
pub const DEFAULT_DAEMON_PORT: u16 = 5199;
/// Default operator listener port.
pub const DEFAULT_OPERATOR_PORT: u16 = 5200;
/// Prefix of override variables, e.g. `NETCLAW_Daemon__Host`.
pub const OVERRIDE_PREFIX: &str = "NETCLAW_";
/// The `configVersion` this layer reads and writes (netclaw's schema: `const: 1`).
pub const CONFIG_VERSION: u64 = 1;
/// The root key holding the version.
pub const CONFIG_VERSION_KEY: &str = "configVersion";

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
    /// The JSON is malformed, a section is not an object, or a value has the wrong type.
    #[error("configuration {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// A key inside an owned section names no setting.
    #[error(
        "{section}.{key} is not a setting{hint}; the keys of {section} are {expected}. \
         Unknown keys in the {section} section are refused so that a typo cannot silently fall back to a default",
        hint = suggestion.map(|s| format!(" (did you mean {section}.{s}?)")).unwrap_or_default(),
        expected = expected.join(", ")
    )]
    UnknownKey {
        section: &'static str,
        key: String,
        suggestion: Option<&'static str>,
        expected: &'static [&'static str],
    },
    /// The same key twice, spelled in different case (netclaw's keys are case-insensitive).
    #[error(
        "{first} and {second} are the same key (keys are case-insensitive, as in netclaw); keep one of them"
    )]
    DuplicateKey { first: String, second: String },
    /// A top-level section that looks like a misspelled owned section.
    #[error(
        "section {found:?} is not read by this layer and looks like a misspelling of {section}; \
         rename it to {section} (a misspelled section would otherwise be ignored and its settings fall back to defaults)"
    )]
    MisspelledSection {
        found: String,
        section: &'static str,
    },
    /// `configVersion` is not 1.
    #[error(
        "configVersion is {found}, but this layer reads version {CONFIG_VERSION} of netclaw.json; \
         set \"configVersion\": {CONFIG_VERSION} or upgrade netclaw-rs"
    )]
    Version { found: String },
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
    pub(crate) fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            reason: reason.into(),
        }
    }
}

impl Config {
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

    /// Parses, overrides and validates `text` (the contents of `path`). Sections and variables
    /// this layer does not own are set aside ([`Config::ignored`]) and named in one `info` line.
    pub fn from_json(path: &Path, text: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let owned = raw::owned_sections(path, value)?;
        let mut value = owned.value;
        let foreign_variables = overrides::apply(&mut value, env)?;
        let raw = raw::RawConfig::from_owned(path, value)?;
        let mut config = Self::try_from(raw)?;
        config.set_ignored(Ignored::new(owned.foreign, foreign_variables));
        if let Some(line) = config.ignored().summary() {
            tracing::info!(config = %path.display(), "{line}");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
