//! Configuration, install layouts and wire types shared by `netclaw-daemon`,
//! `netclaw-operator-agent` and `netclaw`.
//!
//! [`config`] turns `netclaw.json` (plus `NETCLAW_Section__Key` environment overrides) into a
//! validated [`config::Config`]; every cross-field rule of the exposure model lives there so the
//! daemon, the agent and `netclaw doctor` apply the same ones. [`layout`] knows where a system,
//! user or `--root` install keeps its files. [`net`] holds the address rules every process shares. [`wire`] holds the JSON bodies the processes exchange.
//! Behind features: `service` (start-up, watchdog and signals of the two long-running binaries)
//! and `serve` (their one accept/serve/drain loop).
//!
//! # Security
//!
//! Validation fails closed: an unknown key, an unparsable proxy entry or a loopback bind in
//! `reverse-proxy` mode is an error naming the key and the fix, never a default. Secrets are never
//! part of the configuration; it only names the directories that hold them.

pub mod config;
pub mod env;
pub mod layout;
pub mod net;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "service")]
pub mod service;
pub mod wire;

/// Header the agent sets to the calling user's uid. Stripped from every caller-supplied request.
pub const CALLER_UID_HEADER: &str = "netclaw-operator-caller-uid";
/// Header the agent sets to the calling user's name.
pub const CALLER_USER_HEADER: &str = "netclaw-operator-caller-user";
/// Header the agent sets to the calling process id.
pub const CALLER_PID_HEADER: &str = "netclaw-operator-caller-pid";
/// Prefix of every operator header; the public listener strips and logs all of them.
pub const OPERATOR_HEADER_PREFIX: &str = "netclaw-operator-";
