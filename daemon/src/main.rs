//! `netclaw-daemon`: parse, validate, bind, serve, drain.

use std::process::ExitCode;

use clap::Parser;
use netclaw_core::service;
use netclaw_daemon::Args;
use netclaw_daemon::HostPaths;
use sd_notify::NotifyState;

const PROGRAM: &str = "netclaw-daemon";

fn main() -> ExitCode {
    let args = Args::parse();
    let (config, runtime) = match service::start(
        PROGRAM,
        args.config.as_deref(),
        service::Flavor::MultiThread,
    ) {
        Ok(started) => started,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let daemon = match netclaw_daemon::bind(config, &HostPaths::default()).await {
            Ok(d) => d,
            Err(e) => return service::startup_failed(PROGRAM, &e, e.class()),
        };
        service::notify(NotifyState::Ready);
        service::spawn_watchdog();
        daemon
            .run(async {
                service::shutdown_signal().await;
                service::notify(NotifyState::Stopping);
            })
            .await;
        // STOPPING=1 reaches systemd before the process is gone.
        service::flush_notifications(service::NOTIFY_FLUSH_TIMEOUT);
        ExitCode::SUCCESS
    })
}
