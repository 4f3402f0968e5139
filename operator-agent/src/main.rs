//! `netclaw-operator-agent`: load credentials, bind the socket, notify systemd, serve, reload on
//! SIGHUP, drain on SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use netclaw_core::config::Config;
use netclaw_core::env::SystemEnv;
use netclaw_core::layout::resolve_config_path;
use sd_notify::NotifyState;

/// The netclaw operator agent.
#[derive(Debug, Parser)]
#[command(name = "netclaw-operator-agent", version)]
struct Args {
    /// Configuration file (default: $NETCLAW_CONFIG, then the install location).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Exit code for configuration and credential errors.
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
            eprintln!("netclaw-operator-agent: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netclaw-operator-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let agent = match netclaw_operator_agent::bind(config).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("netclaw-operator-agent: {e}");
                return ExitCode::from(EX_CONFIG);
            }
        };
        let state = agent.state();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
                match state.reload() {
                    Ok(true) => tracing::info!("SIGHUP: new credentials in use"),
                    Ok(false) => tracing::info!("SIGHUP: credentials unchanged"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed; keeping the current credentials"),
                }
                let _ = sd_notify::notify(false, &[NotifyState::Ready]);
            }
        });
        spawn_watchdog();
        let _ = sd_notify::notify(false, &[NotifyState::Ready]);
        tracing::info!("operator agent ready");
        agent
            .run(async {
                shutdown_signal().await;
                let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
                tracing::info!("shutting down; draining connections");
            })
            .await;
        ExitCode::SUCCESS
    })
}

/// Pings systemd's watchdog at half its interval when `WATCHDOG_USEC` is set.
fn spawn_watchdog() {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            loop {
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
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
