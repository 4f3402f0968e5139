//! What the two long-running binaries (`netclaw-daemon`, `netclaw-operator-agent`) do the same
//! way around their own work: logging, loading the configuration, the runtime, the systemd
//! watchdog and the shutdown signal. Behind the `service` feature, so that the CLI does not link
//! it.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::config::Config;
use crate::env::SystemEnv;
use crate::layout::resolve_config_path;

/// Exit code for configuration and startup validation errors (`EX_USAGE`-like, as linkerd).
pub const EX_CONFIG: u8 = 64;

/// Everything before the program's own work: logging, then the configuration, then the runtime.
/// On failure the reason is printed as `program: reason` and the exit code returned.
pub fn start(
    program: &str,
    explicit_config: Option<&Path>,
) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    init_logging();
    let config = load_config(program, explicit_config)?;
    Ok((config, runtime(program)?))
}

/// Logs to stderr (journald adds the time), filtered by `NETCLAW_LOG` (default `info`).
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETCLAW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Loads and validates the configuration at `--config`, `$NETCLAW_CONFIG` or the install
/// location; on failure prints `program: reason` and returns the exit code. A configuration
/// file (or directory) that others can write, or that another user owns, is refused (see
/// [`netclaw_pki::file_policy`]).
fn load_config(program: &str, explicit: Option<&Path>) -> Result<Config, ExitCode> {
    use netclaw_pki::file_policy::{check_all, config_files, Findings};
    let env = SystemEnv;
    let euid = nix::unistd::geteuid();
    let path = resolve_config_path(explicit, &env, euid.is_root());
    let findings = check_all(&config_files(&path), euid.as_raw());
    if !findings.is_empty() {
        eprintln!("{program}: refusing to start: {}", Findings(findings));
        return Err(ExitCode::from(EX_CONFIG));
    }
    Config::load(&path, &env).map_err(|e| {
        eprintln!("{program}: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

/// The multi-threaded tokio runtime; on failure prints why and returns the exit code.
fn runtime(program: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("{program}: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Tells systemd something (`READY=1`, `STOPPING=1`, …); a no-op outside systemd.
pub fn notify(state: NotifyState<'_>) {
    let _ = sd_notify::notify(false, &[state]);
}

/// Pings systemd's watchdog at half its interval when `WATCHDOG_USEC` is set.
pub fn spawn_watchdog() {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            loop {
                notify(NotifyState::Watchdog);
                tokio::time::sleep(every).await;
            }
        });
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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
