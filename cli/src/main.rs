//! `netclaw`: thin binary over `netclaw_cli`.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Args, Parser, Subcommand};
use netclaw_cli::commands::{self, Context, EventsOptions, JoinOptions};
use netclaw_cli::exit::{CliError, ExitCode};
use netclaw_cli::install::{self, InstallOptions, Target};
use netclaw_cli::pki_offline::{self, RevokeTarget};
use netclaw_cli::pki_status;
use netclaw_core::config::Config;
use netclaw_core::env::SystemEnv;
use netclaw_pki::Serial;

#[derive(Debug, Parser)]
#[command(name = "netclaw", version, about = "Operate a netclaw daemon", after_help = ExitCode::HELP)]
struct Cli {
    /// Configuration file (default: $NETCLAW_CONFIG, then the install location).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Talk to this endpoint instead of resolving one: http://HOST[:PORT], https://HOST[:PORT]
    /// or unix:/PATH (default: $NETCLAW_ENDPOINT, then the operator agent's socket, then
    /// loopback in local mode).
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Device token file (from `pair join`) to send as a bearer token; only to an explicit
    /// http(s) --endpoint, never to the agent socket.
    #[arg(long, global = true, value_name = "PATH")]
    device_token: Option<PathBuf>,
    /// CA certificate(s) (PEM) to trust for https:// endpoints instead of the system roots.
    #[arg(long, global = true, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Daemon status (and the operator agent's, when it is used).
    #[command(after_help = ExitCode::HELP)]
    Status(JsonFlag),
    /// Whether the daemon is ready (anonymous).
    #[command(after_help = ExitCode::HELP)]
    Health(JsonFlag),
    /// Who the daemon thinks this CLI is.
    #[command(after_help = ExitCode::HELP)]
    Whoami(JsonFlag),
    /// Mint a pairing code for a remote device, or join a daemon from a remote device.
    #[command(after_help = ExitCode::HELP)]
    Pair(PairArgs),
    /// Paired devices.
    #[command(subcommand, after_help = ExitCode::HELP)]
    Devices(DevicesCommand),
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

#[derive(Debug, Args)]
struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct PairArgs {
    #[command(subcommand)]
    command: Option<PairCommand>,
    /// The daemon's public URL, for the join command printed with the code.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PairCommand {
    /// On a remote device: exchange a pairing code for a device token and store it (0600).
    #[command(after_help = ExitCode::HELP)]
    Join {
        /// The daemon's public URL (https://…; plain http:// only to loopback).
        url: String,
        /// The pairing code shown by `netclaw pair` on the daemon host (XXXX-XXXX).
        #[arg(long)]
        code: String,
        /// This device's name: any Unicode without control characters, at most 64 characters.
        #[arg(long)]
        name: String,
        /// Where to store the token (default: tokens/<host>_<port>.token in the user's netclaw
        /// configuration directory).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Replace an existing token file.
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// List paired devices.
    #[command(after_help = ExitCode::HELP)]
    List(JsonFlag),
    /// Revoke a paired device's token.
    #[command(after_help = ExitCode::HELP)]
    Revoke {
        /// Device name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct EventsArgs {
    /// Stream until interrupted instead of stopping when the stream goes idle.
    #[arg(long)]
    follow: bool,
    /// Without --follow: stop after this many seconds without an event.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    idle: f64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Where to read the machine-id from.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/machine-id",
        hide = true
    )]
    machine_id_file: PathBuf,
}

#[derive(Debug, Subcommand)]
enum DaemonCommand {
    /// Create netclaw.json, the daemon's operator PKI and the agent's credentials.
    #[command(after_help = ExitCode::HELP)]
    Install(Box<InstallArgs>),
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Show each certificate's identity, serial, expiry and the key files' permissions.
    #[command(after_help = ExitCode::HELP)]
    Status(JsonFlag),
    /// Rotate the operator agent's certificate now: through the agent, or with --offline from
    /// the CA on disk when the agent's certificate expired or the agent cannot reach the daemon.
    #[command(after_help = ExitCode::HELP)]
    Rotate(RotateArgs),
    /// Revoke an agent certificate (or with --agent every one in use) in the issuance registry;
    /// the daemon refuses it within about a second. Needs the daemon's PKI directory (root).
    #[command(after_help = ExitCode::HELP)]
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct RotateArgs {
    /// Re-issue the agent's key and certificate from the CA on disk instead of asking the agent
    /// (needs Operator.PkiDirectory and Operator.AgentDirectory: root in a system install).
    #[arg(long, conflicts_with = "ca")]
    offline: bool,
    /// Rotate the operator CA instead, one phase at a time: `prepare` (a new CA joins the trust
    /// bundles), `activate` (it signs; new listener and agent certificates), `retire` (the old CA
    /// leaves the bundles). Needs Operator.PkiDirectory and Operator.AgentDirectory (root).
    #[arg(long, value_name = "PHASE", value_enum)]
    ca: Option<netclaw_cli::ca_rotation::CaStep>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Where to read the machine-id from (with --offline).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/machine-id",
        hide = true
    )]
    machine_id_file: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["serial", "agent"])))]
struct RevokeArgs {
    /// The serial to revoke (hex, as `netclaw pki status` shows it).
    #[arg(value_name = "SERIAL", value_parser = parse_serial)]
    serial: Option<Serial>,
    /// Revoke every agent certificate the daemon still accepts: the agent can no longer reach
    /// the daemon until `netclaw pki rotate --offline`.
    #[arg(long)]
    agent: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_serial(s: &str) -> Result<Serial, String> {
    s.parse().map_err(|_| {
        "not a certificate serial: write its hex digits (an even number, ':' allowed) as `netclaw pki status` shows them".to_owned()
    })
}

#[derive(Debug, Args)]
struct InstallArgs {
    /// Install everything under DIR (tests, containers, packaging).
    #[arg(long, value_name = "DIR", conflicts_with = "user")]
    root: Option<PathBuf>,
    /// Per-user install in the XDG directories (no root needed).
    #[arg(long)]
    user: bool,
    /// Daemon.ExposureMode: local, reverse-proxy, tailscale-serve, tailscale-funnel, cloudflare-tunnel.
    #[arg(long, value_name = "MODE")]
    exposure: Option<String>,
    /// Daemon.Host: the public listener's address.
    #[arg(long, value_name = "IP")]
    bind: Option<String>,
    /// Daemon.Port.
    #[arg(long)]
    port: Option<u16>,
    /// Daemon.TrustedProxies entry (IP or CIDR); repeatable.
    #[arg(long = "trusted-proxy", value_name = "IP|CIDR")]
    trusted_proxies: Vec<String>,
    /// Operator.Host (default: Daemon.Host).
    #[arg(long, value_name = "IP")]
    operator_host: Option<String>,
    /// Operator.Port.
    #[arg(long)]
    operator_port: Option<u16>,
    /// Extra DNS name for the operator listener certificate; repeatable.
    #[arg(long = "operator-dns", value_name = "NAME")]
    operator_dns: Vec<String>,
    /// Operator.AllowedUsers entry; repeatable.
    #[arg(long = "operator-user", value_name = "USER")]
    operator_users: Vec<String>,
    /// Operator.AllowedGroups entry; repeatable.
    #[arg(long = "operator-group", value_name = "GROUP")]
    operator_groups: Vec<String>,
    /// Operator.AllowedSources entry (IP or CIDR); repeatable.
    #[arg(long = "allowed-source", value_name = "IP|CIDR")]
    allowed_sources: Vec<String>,
    /// Operator.TrustDomain.
    #[arg(long)]
    trust_domain: Option<String>,
    /// Operator.CertificateLifetime, e.g. 30d or 2m.
    #[arg(long, value_name = "DURATION")]
    certificate_lifetime: Option<String>,
    /// Daemon.SkipTunnelProcessCheck.
    #[arg(long)]
    skip_tunnel_process_check: bool,
    /// Rewrite an existing install; keeps the operator CA, re-issues the other certificates.
    #[arg(long)]
    force: bool,
    /// Where to read the machine-id from.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/machine-id",
        hide = true
    )]
    machine_id_file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ProcessExit {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ProcessExit::SUCCESS,
        Err(e) => {
            eprintln!("netclaw: {}", e.message);
            ProcessExit::from(e.code.code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let env = SystemEnv;
    let now = SystemTime::now();
    let ctx = Context {
        config_flag: cli.config,
        endpoint_flag: cli.endpoint,
        device_token: cli.device_token,
        ca_file: cli.ca_file,
        env: &env,
        now,
    };
    match cli.command {
        Command::Status(f) => block_on(commands::status(&ctx, f.json)),
        Command::Health(f) => block_on(commands::health(&ctx, f.json)),
        Command::Whoami(f) => block_on(commands::whoami(&ctx, f.json)),
        Command::Pair(PairArgs {
            command: None,
            public_url,
            json,
        }) => block_on(commands::pair(&ctx, public_url.as_deref(), json)),
        Command::Pair(PairArgs {
            command:
                Some(PairCommand::Join {
                    url,
                    code,
                    name,
                    token_file,
                    force,
                    json,
                }),
            ..
        }) => block_on(commands::join(
            &ctx,
            &JoinOptions {
                url,
                code,
                name,
                token_file,
                force,
                json,
            },
        )),
        Command::Devices(DevicesCommand::List(f)) => block_on(commands::devices_list(&ctx, f.json)),
        Command::Devices(DevicesCommand::Revoke { name, json }) => {
            block_on(commands::devices_revoke(&ctx, &name, json))
        }
        Command::Events(a) => {
            let idle = Duration::try_from_secs_f64(a.idle)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    CliError::new(ExitCode::Usage, "--idle takes a positive number of seconds")
                })?;
            block_on(commands::events(
                &ctx,
                EventsOptions {
                    follow: a.follow,
                    idle,
                    json: a.json,
                },
            ))
        }
        Command::Doctor(a) => block_on(commands::doctor(&ctx, &a.machine_id_file, a.json)),
        Command::Pki(PkiCommand::Rotate(a)) if a.offline => {
            let config = ctx.load_config()?;
            let report = pki_offline::rotate_offline(&config, &a.machine_id_file, now)?;
            if a.json {
                print_json(&report)?;
            } else {
                print!("{}", pki_offline::render_rotate(&report));
            }
            Ok(())
        }
        Command::Pki(PkiCommand::Rotate(RotateArgs {
            ca: Some(step),
            json,
            ..
        })) => {
            let config = ctx.load_config()?;
            block_on(netclaw_cli::ca_rotation::run(&config, step, json))
        }
        Command::Pki(PkiCommand::Rotate(a)) => block_on(commands::pki_rotate(&ctx, a.json)),
        Command::Pki(PkiCommand::Revoke(a)) => {
            let target = match a.serial {
                Some(s) => RevokeTarget::Serial(s),
                None => RevokeTarget::Agent,
            };
            let config = ctx.load_config()?;
            let report = pki_offline::revoke(&config, &target, now)?;
            if a.json {
                print_json(&report)?;
            } else {
                print!("{}", pki_offline::render_revoke(&report));
            }
            Ok(())
        }
        Command::Daemon(DaemonCommand::Install(a)) => {
            let target = match (&a.root, a.user) {
                (Some(dir), _) => Target::Root(dir.clone()),
                (None, true) => Target::User,
                (None, false) => Target::System,
            };
            let opts = InstallOptions {
                target,
                exposure: a.exposure,
                bind: a.bind,
                port: a.port,
                trusted_proxies: a.trusted_proxies,
                operator_host: a.operator_host,
                operator_port: a.operator_port,
                operator_users: a.operator_users,
                operator_groups: a.operator_groups,
                allowed_sources: a.allowed_sources,
                trust_domain: a.trust_domain,
                certificate_lifetime: a.certificate_lifetime,
                operator_dns: a.operator_dns,
                skip_tunnel_process_check: a.skip_tunnel_process_check,
                force: a.force,
                machine_id_path: a.machine_id_file,
            };
            let report = install::install(&opts, &env, now)?;
            if a.json {
                print_json(&report)?;
            } else {
                println!("installed netclaw ({} mode)", report.exposure_mode);
                println!("  configuration:     {}", report.config_path.display());
                println!("  daemon PKI:        {}", report.pki_directory.display());
                println!("  agent credentials: {}", report.agent_directory.display());
                println!("  agent socket:      {}", report.socket.display());
                println!("  agent identity:    {}", report.agent_identity);
                println!("  agent serial:      {}", report.agent_serial);
                println!("  host-id:           {}", report.host_id_source);
                if report.ca_kept {
                    println!("  operator CA:       kept the existing CA");
                }
                let booted = std::path::Path::new("/run/systemd/system").is_dir();
                for line in install::next_steps(&opts.target, &report.config_path, booted) {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Command::Pki(PkiCommand::Status(f)) => {
            let config = Config::load(&ctx.config_path(), &env)?;
            let status = pki_status::status(&config, now);
            if f.json {
                print_json(&status)?;
            } else {
                print!("{}", pki_status::render(&status));
            }
            if status.healthy {
                Ok(())
            } else {
                Err(CliError::new(
                    ExitCode::Credentials,
                    "the operator PKI has problems (see above); each names its fix",
                ))
            }
        }
    }
}

/// Runs a network command on a single-threaded runtime.
fn block_on(f: impl Future<Output = Result<(), CliError>>) -> Result<(), CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(ExitCode::Failure, format!("cannot start the runtime: {e}")))?
        .block_on(f)
}

fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::new(ExitCode::Failure, e.to_string()))?;
    println!("{s}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("netclaw").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn revoke_takes_a_serial_or_agent_but_not_both_nor_neither() {
        let Command::Pki(PkiCommand::Revoke(a)) =
            parse(&["pki", "revoke", "0A:bc"]).unwrap().command
        else {
            panic!("not pki revoke");
        };
        assert_eq!(a.serial.unwrap().as_str(), "0abc");
        assert!(!a.agent);
        let Command::Pki(PkiCommand::Revoke(a)) = parse(&["pki", "revoke", "--agent", "--json"])
            .unwrap()
            .command
        else {
            panic!("not pki revoke");
        };
        assert!(a.agent && a.json && a.serial.is_none());

        let e = parse(&["pki", "revoke"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = parse(&["pki", "revoke", "01", "--agent"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e = parse(&["pki", "revoke", "xyz"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        assert!(e.to_string().contains("netclaw pki status"), "{e}");
        let e = parse(&["pki", "revoke", "abc"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
        // Every clap error exits 2, the documented code for a bad command line.
        assert_eq!(e.exit_code(), i32::from(ExitCode::Usage.code()));
    }

    #[test]
    fn rotate_offline_is_a_flag_of_rotate() {
        let Command::Pki(PkiCommand::Rotate(a)) = parse(&["pki", "rotate", "--offline", "--json"])
            .unwrap()
            .command
        else {
            panic!("not pki rotate");
        };
        assert!(a.offline && a.json);
        let Command::Pki(PkiCommand::Rotate(a)) = parse(&["pki", "rotate"]).unwrap().command else {
            panic!("not pki rotate");
        };
        assert!(!a.offline);
        let e = parse(&["pki", "rotate", "--offline", "extra"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
    }
}
