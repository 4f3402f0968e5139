//! `netclaw-operator-agent`: load credentials, bind the socket, notify systemd, serve, reload the
//! operator policy and the credentials on SIGHUP, drain on SIGTERM.

use std::process::ExitCode;

use netclaw_core::service;
use netclaw_operator_agent::cli::{self, Command};
use sd_notify::NotifyState;

const PROGRAM: &str = "netclaw-operator-agent";

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{PROGRAM} {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "error: {e}\n\nUsage: {PROGRAM} [OPTIONS]\n\nFor more information, try '--help'."
            );
            return ExitCode::from(2);
        }
    };
    let (config, runtime) = match service::start(
        PROGRAM,
        args.config.as_deref(),
        // One event loop: a relay whose requests each wait on a socket gains nothing from a
        // second worker, and each handoff between workers is a wake-up (issue 16).
        service::Flavor::CurrentThread,
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    // The file `service::start` loaded, re-read for the operator policy at each reload.
    let config_path = netclaw_core::layout::resolve_config_path(
        args.config.as_deref(),
        &netclaw_core::env::SystemEnv,
        nix::unistd::geteuid().is_root(),
    );
    runtime.block_on(async {
        let agent = match netclaw_operator_agent::bind(config, config_path).await {
            Ok(a) => a,
            Err(e) => return service::startup_failed(PROGRAM, &e, e.class()),
        };
        let state = agent.state();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                service::notify(NotifyState::Reloading);
                match state.reload_all().await {
                    Ok(r) => tracing::info!(
                        credentials_changed = r.credentials,
                        policy_changed = r.policy,
                        "SIGHUP: operator policy and credentials reloaded"
                    ),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed"),
                }
                service::notify(NotifyState::Ready);
            }
        });
        service::spawn_watchdog();
        service::notify(NotifyState::Ready);
        tracing::info!("operator agent ready");
        agent
            .run(async {
                service::shutdown_signal().await;
                service::notify(NotifyState::Stopping);
                tracing::info!("shutting down; draining connections");
            })
            .await;
        // STOPPING=1 reaches systemd before the process is gone.
        service::flush_notifications(service::NOTIFY_FLUSH_TIMEOUT);
        ExitCode::SUCCESS
    })
}
