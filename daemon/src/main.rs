//! `netclaw-daemon`: parse, validate, bind, serve, drain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use netclaw_core::config::Config;
use netclaw_core::env::SystemEnv;
use netclaw_core::layout::resolve_config_path;
use netclaw_daemon::HostPaths;

/// The netclaw daemon.
#[derive(Debug, Parser)]
#[command(name = "netclaw-daemon", version)]
struct Args {
    /// Configuration file (default: $NETCLAW_CONFIG, then the install location).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Exit code for configuration and startup validation errors (EX_USAGE-like, as linkerd).
const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETCLAW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let env = SystemEnv;
    let path = resolve_config_path(
        args.config.as_deref(),
        &env,
        nix::unistd::geteuid().is_root(),
    );
    let config = match Config::load(&path, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netclaw-daemon: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netclaw-daemon: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let daemon = match netclaw_daemon::bind(config, &HostPaths::default()).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("netclaw-daemon: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        };
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        spawn_watchdog();
        daemon
            .run(async {
                shutdown_signal().await;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
            })
            .await;
        ExitCode::SUCCESS
    })
}

/// Pings systemd's watchdog at half its interval when `WATCHDOG_USEC` is set.
fn spawn_watchdog() {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = std::time::Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            loop {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                tokio::time::sleep(every).await;
            }
        });
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
