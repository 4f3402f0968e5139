//! `netclaw`: thin binary over `netclaw_cli`.

use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use netclaw_cli::exit::{CliError, ExitCode};
use netclaw_cli::install::{self, InstallOptions, Target};
use netclaw_cli::pki_status;
use netclaw_core::config::Config;
use netclaw_core::env::SystemEnv;
use netclaw_core::layout::resolve_config_path;

#[derive(Debug, Parser)]
#[command(name = "netclaw", version, about = "Operate a netclaw daemon", after_help = ExitCode::HELP)]
struct Cli {
    /// Configuration file (default: $NETCLAW_CONFIG, then the install location).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install and manage the daemon.
    #[command(subcommand, after_help = ExitCode::HELP)]
    Daemon(DaemonCommand),
    /// Inspect the operator PKI.
    #[command(subcommand, after_help = ExitCode::HELP)]
    Pki(PkiCommand),
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
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
    match cli.command {
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
                println!(
                    "next: start netclaw-daemon and netclaw-operator-agent with --config {}",
                    report.config_path.display()
                );
            }
            Ok(())
        }
        Command::Pki(PkiCommand::Status { json }) => {
            let path = resolve_config_path(
                cli.config.as_deref(),
                &env,
                nix::unistd::geteuid().is_root(),
            );
            let config = Config::load(&path, &env)?;
            let status = pki_status::status(&config, now);
            if json {
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

fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::new(ExitCode::Failure, e.to_string()))?;
    println!("{s}");
    Ok(())
}
