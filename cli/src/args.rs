//! The command line: clap types only, no behaviour. [`command`] is the whole `netclaw` command
//! as a [`clap::Command`] (for manual pages and shell completions).
//!
//! The field and variant doc comments are the `--help` text clap prints, written for a terminal
//! (`http://HOST[:PORT]`, `<host>`), not for rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand};
use netclaw_pki::Serial;

use crate::ca_rotation::CaStep;
use crate::exit::ExitCode;

/// The top-level `netclaw` command, as clap builds it from [`Cli`].
pub fn command() -> clap::Command {
    Cli::command()
}

/// `netclaw [OPTIONS] <COMMAND>`.
#[derive(Debug, Parser)]
#[command(name = "netclaw", version, about = "Operate a netclaw daemon", after_help = ExitCode::HELP)]
pub struct Cli {
    /// Configuration file (default: $NETCLAW_CONFIG, then the install location).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Talk to this endpoint instead of resolving one: http://HOST[:PORT], https://HOST[:PORT]
    /// or unix:/PATH (default: $NETCLAW_ENDPOINT, then netclaw's $NETCLAW_DAEMON_ENDPOINT, then
    /// the saved context, then the operator agent's socket, then loopback in local mode).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Use this saved context (see `netclaw context list`) instead of the current one (default:
    /// $NETCLAW_CONTEXT). With `pair join`: the name to save the new context under.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Device token file (from `pair join --token-file`) to send as a bearer token instead of a
    /// saved context's; only to an explicit http(s) --endpoint or a saved context's endpoint,
    /// never to the agent socket.
    #[arg(long, global = true, value_name = "PATH")]
    pub device_token: Option<PathBuf>,
    /// CA certificate(s) (PEM) to trust for https:// endpoints instead of the system roots.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Print JSON instead of text (`events`: one JSON object per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon status (and the operator agent's, when it is used).
    #[command(after_help = ExitCode::HELP)]
    Status,
    /// Whether the daemon is ready (anonymous).
    #[command(after_help = ExitCode::HELP)]
    Health,
    /// Who the daemon thinks this CLI is.
    #[command(after_help = ExitCode::HELP)]
    Whoami,
    /// Mint a pairing code for a remote device, or join a daemon from a remote device.
    #[command(after_help = ExitCode::HELP)]
    Pair(PairArgs),
    /// Paired devices.
    #[command(subcommand, after_help = ExitCode::HELP)]
    Devices(DevicesCommand),
    /// Saved contexts of this device (endpoint, device token, CA), from `pair join`.
    #[command(subcommand, after_help = ExitCode::HELP)]
    Context(ContextCommand),
    /// Audit events (pairing, revocations, refusals).
    #[command(after_help = ExitCode::HELP)]
    Events(EventsArgs),
    /// Check configuration, exposure rules, PKI, the agent and the daemon; print each fix.
    #[command(after_help = ExitCode::HELP)]
    Doctor(DoctorArgs),
    /// Install and manage the daemon.
    #[command(subcommand, after_help = ExitCode::HELP)]
    Daemon(DaemonCommand),
    /// The operator PKI.
    #[command(subcommand, after_help = ExitCode::HELP)]
    Pki(PkiCommand),
}

/// `netclaw pair [ENDPOINT | join …]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PairArgs {
    /// `join`, or none to mint a code (or, with ENDPOINT, to join as netclaw's CLI does).
    #[command(subcommand)]
    pub command: Option<PairCommand>,
    /// netclaw's form, on a remote device: join the daemon at ENDPOINT as `pair join` does,
    /// asking for the pairing code and the device name (default: this host's name) on standard
    /// input when --code and --name are not given.
    // NOTE: its own id: under the global `--endpoint`'s id clap would fill it from that flag.
    #[arg(id = "join_endpoint", value_name = "ENDPOINT")]
    pub endpoint: Option<String>,
    /// With ENDPOINT: how to join.
    #[command(flatten)]
    pub join: JoinOptions,
    /// The daemon's public URL, for the join command printed with the code (default:
    /// Operator.PublicUrl, which `netclaw daemon install --public-url` sets).
    #[arg(long, value_name = "URL", conflicts_with = "join_endpoint")]
    pub public_url: Option<String>,
}

/// `netclaw daemon pair`.
#[derive(Debug, Args)]
pub struct MintArgs {
    /// The daemon's public URL, for the join command printed with the code (default:
    /// Operator.PublicUrl).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

/// `netclaw pair join`.
#[derive(Debug, Subcommand)]
pub enum PairCommand {
    /// On a remote device: exchange a pairing code for a device token and store it (0600).
    #[command(after_help = ExitCode::HELP)]
    Join(JoinArgs),
}

/// `netclaw pair join URL [--code CODE] [--name NAME]`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The daemon's public URL (https://…; plain http:// only to loopback).
    pub url: String,
    /// How to join.
    #[command(flatten)]
    pub options: JoinOptions,
}

/// The options of joining a daemon (`pair join URL`, `pair ENDPOINT`).
#[derive(Debug, Args, Default)]
pub struct JoinOptions {
    /// The pairing code shown by `netclaw pair` on the daemon host (XXXX-XXXX); read from
    /// standard input when not given.
    #[arg(long)]
    pub code: Option<String>,
    /// This device's name: any Unicode without control characters, at most 64 characters; read
    /// from standard input when not given (an empty line: this host's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Store the token in this file (0600) instead of a saved context, for scripts that pass
    /// --endpoint and --device-token.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Replace an existing saved context of the same name (or token file).
    #[arg(long)]
    pub force: bool,
}

/// `netclaw context …`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List saved contexts; `*` marks the current one. Tokens are never shown.
    #[command(after_help = ExitCode::HELP)]
    List,
    /// Make a saved context current, or with --local make none current (commands then resolve
    /// through this host's configuration).
    #[command(after_help = ExitCode::HELP)]
    #[command(group(ArgGroup::new("which").required(true).args(["name", "local"])))]
    Use {
        /// Context name.
        name: Option<String>,
        /// No current context.
        #[arg(long)]
        local: bool,
    },
    /// Forget a saved context and its device token (the daemon still lists the device until it
    /// is revoked there).
    #[command(after_help = ExitCode::HELP)]
    Remove {
        /// Context name.
        name: String,
    },
}

/// `netclaw devices …`.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List paired devices.
    #[command(after_help = ExitCode::HELP)]
    List,
    /// Revoke a paired device's token.
    #[command(after_help = ExitCode::HELP)]
    Revoke {
        /// Device name.
        name: String,
    },
    /// Import the devices paired with netclaw from its device store (`config/devices.json`
    /// under netclaw's home), so that their existing tokens keep working. Needs host
    /// authority (run it on the daemon host); all devices are imported or none.
    #[command(after_help = ExitCode::HELP)]
    Import {
        /// netclaw's `devices.json`.
        path: PathBuf,
    },
}

/// `netclaw events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Stream until interrupted instead of stopping when the stream goes idle.
    #[arg(long)]
    pub follow: bool,
    /// Without --follow: stop after this many seconds without an event.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub idle: f64,
}

/// `--machine-id-file PATH` (hidden; tests point it elsewhere): where to read the machine-id from.
#[derive(Debug, Args)]
pub struct MachineIdArg {
    /// Where to read the machine-id from.
    #[arg(
        long = "machine-id-file",
        value_name = "PATH",
        default_value = "/etc/machine-id",
        hide = true
    )]
    pub file: PathBuf,
}

/// `netclaw doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Where to read the machine-id from.
    #[command(flatten)]
    pub machine_id: MachineIdArg,
}

/// `netclaw daemon …`.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Create netclaw.json, the daemon's operator PKI and the agent's credentials.
    #[command(after_help = ExitCode::HELP)]
    Install(Box<InstallArgs>),
    /// netclaw's name for `netclaw pair`: mint a pairing code (on the daemon host, through the
    /// operator agent). Prints `Pairing code:  XXXX-XXXX` as netclaw does.
    #[command(after_help = ExitCode::HELP)]
    Pair(MintArgs),
    /// netclaw's name for `netclaw devices`: list paired devices, or `revoke NAME`.
    #[command(after_help = ExitCode::HELP)]
    Devices(DaemonDevicesArgs),
}

/// `netclaw daemon devices [list | revoke NAME]`.
#[derive(Debug, Args)]
pub struct DaemonDevicesArgs {
    /// `list` (the default) or `revoke NAME`.
    #[command(subcommand)]
    pub command: Option<DevicesCommand>,
}

/// `netclaw pki …`.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Show each certificate's identity, serial, expiry and the key files' permissions.
    #[command(after_help = ExitCode::HELP)]
    Status,
    /// Rotate the operator agent's certificate now: through the agent, or with --offline from
    /// the CA on disk when the agent's certificate expired or the agent cannot reach the daemon.
    #[command(after_help = ExitCode::HELP)]
    Rotate(RotateArgs),
    /// Revoke an agent certificate (or with --agent every one in use) in the issuance registry;
    /// the daemon refuses it within about a second. Needs the daemon's PKI directory (root).
    #[command(after_help = ExitCode::HELP)]
    Revoke(RevokeArgs),
}

/// `netclaw pki rotate [--offline | --ca PHASE]`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Re-issue the agent's key and certificate from the CA on disk instead of asking the agent
    /// (needs Operator.PkiDirectory and Operator.AgentDirectory: root in a system install).
    #[arg(long, conflicts_with = "ca")]
    pub offline: bool,
    /// Rotate the operator CA instead, one phase at a time: `prepare` (a new CA joins the trust
    /// bundles), `activate` (it signs; new listener and agent certificates), `retire` (the old CA
    /// leaves the bundles). Needs Operator.PkiDirectory and Operator.AgentDirectory (root).
    #[arg(long, value_name = "PHASE", value_enum)]
    pub ca: Option<CaStep>,
    /// Where to read the machine-id from (with --offline).
    #[command(flatten)]
    pub machine_id: MachineIdArg,
}

/// `netclaw pki revoke (SERIAL | --agent)`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["serial", "agent"])))]
pub struct RevokeArgs {
    /// The serial to revoke (hex, as `netclaw pki status` shows it).
    #[arg(value_name = "SERIAL", value_parser = parse_serial)]
    pub serial: Option<Serial>,
    /// Revoke every agent certificate the daemon still accepts: the agent can no longer reach
    /// the daemon until `netclaw pki rotate --offline`.
    #[arg(long)]
    pub agent: bool,
}

fn parse_serial(s: &str) -> Result<Serial, String> {
    s.parse().map_err(|_| {
        "not a certificate serial: write its hex digits (an even number, ':' allowed) as `netclaw pki status` shows them".to_owned()
    })
}

/// `netclaw daemon install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install everything under DIR (tests, containers, packaging).
    #[arg(long, value_name = "DIR", conflicts_with = "user")]
    pub root: Option<PathBuf>,
    /// Per-user install in the XDG directories (no root needed).
    #[arg(long)]
    pub user: bool,
    /// Daemon.ExposureMode: local, reverse-proxy, tailscale-serve, tailscale-funnel, cloudflare-tunnel.
    #[arg(long, value_name = "MODE")]
    pub exposure: Option<String>,
    /// Daemon.Host: the public listener's address.
    #[arg(long, value_name = "IP")]
    pub bind: Option<String>,
    /// Daemon.Port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Daemon.TrustedProxies entry (IP or CIDR); repeatable.
    #[arg(long = "trusted-proxy", value_name = "IP|CIDR")]
    pub trusted_proxies: Vec<String>,
    /// Operator.Host (default: Daemon.Host).
    #[arg(long, value_name = "IP")]
    pub operator_host: Option<String>,
    /// Operator.Port.
    #[arg(long)]
    pub operator_port: Option<u16>,
    /// Extra DNS name for the operator listener certificate; repeatable.
    #[arg(long = "operator-dns", value_name = "NAME")]
    pub operator_dns: Vec<String>,
    /// Operator.AllowedUsers entry; repeatable.
    #[arg(long = "operator-user", value_name = "USER")]
    pub operator_users: Vec<String>,
    /// Operator.AllowedGroups entry; repeatable.
    #[arg(long = "operator-group", value_name = "GROUP")]
    pub operator_groups: Vec<String>,
    /// Operator.AllowedSources entry (IP or CIDR); repeatable.
    #[arg(long = "allowed-source", value_name = "IP|CIDR")]
    pub allowed_sources: Vec<String>,
    /// Operator.TrustDomain.
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Operator.PublicUrl: the daemon's URL as remote devices reach it (https://…), printed in
    /// the join command of `netclaw pair`.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Operator.CertificateLifetime, e.g. 30d or 2m.
    #[arg(long, value_name = "DURATION")]
    pub certificate_lifetime: Option<String>,
    /// Daemon.SkipTunnelProcessCheck.
    #[arg(long)]
    pub skip_tunnel_process_check: bool,
    /// Rewrite an existing install: keeps every setting not given here and the operator CA,
    /// prints each setting it changes, re-issues the listener and agent certificates.
    #[arg(long)]
    pub force: bool,
    /// With --force: replace the operator CA, to move the operator listener to an address the
    /// current CA does not permit (restart both services afterwards).
    #[arg(long, requires = "force")]
    pub replace_ca: bool,
    /// Validate and print what would change (each setting, old and new); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where to read the machine-id from.
    #[command(flatten)]
    pub machine_id: MachineIdArg,
}

#[cfg(test)]
mod tests;
