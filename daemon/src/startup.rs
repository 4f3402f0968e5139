//! Startup validation: everything is checked before any socket is bound.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use netclaw_core::config::{Config, ExposureMode};
use netclaw_core::env::process_running;
use netclaw_core::service::StartupClass;
use netclaw_pki::file_policy::{self, Findings};
use netclaw_pki::store::DaemonPkiPaths;

use tokio::sync::mpsc::Receiver;

use crate::operator_pki::{OperatorPki, Presented};

/// A refusal to start. Each names the key or file and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The tunnel process the mode relies on is not running.
    #[error(
        "Daemon.ExposureMode is {mode} but no {process} process is running; start {process}, \
         or set Daemon.SkipTunnelProcessCheck to true if it runs outside this host's process namespace"
    )]
    TunnelNotRunning {
        mode: ExposureMode,
        process: &'static str,
    },
    /// A non-local mode without a usable operator PKI.
    #[error(
        "Daemon.ExposureMode is {mode}, which needs the operator PKI so that local operators can reach the daemon: {source}"
    )]
    PkiRequired {
        mode: ExposureMode,
        #[source]
        source: crate::operator_pki::SnapshotError,
    },
    /// The operator PKI exists but is unusable.
    #[error("the operator PKI in {dir} is unusable: {source}")]
    PkiBroken {
        dir: PathBuf,
        #[source]
        source: crate::operator_pki::SnapshotError,
    },
    /// The state directory or its files are unusable.
    #[error("Daemon.StateDirectory {dir}: {reason}")]
    State { dir: PathBuf, reason: String },
    /// A secret others can read, a trust anchor or state file others can write, a file owned by
    /// another user, or a symbolic link where a secret or state file belongs.
    #[error("refusing to start: {0}")]
    Files(Findings),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("operator listener TLS configuration: {0}")]
    Tls(String),
    /// The descriptor limit cannot serve the public listener and keep the operator reserve.
    #[error(transparent)]
    Descriptors(#[from] crate::limits::TooFewDescriptors),
}

impl StartupError {
    /// Whether restarting may help (exit 75) or the setup must change (exit 64), by type: the
    /// tunnel process not running yet, an address not yet assigned or a port still in use, and
    /// a listener certificate not valid yet (the clock behind) are transient.
    pub fn class(&self) -> StartupClass {
        match self {
            Self::TunnelNotRunning { .. } => StartupClass::Transient,
            Self::Bind { source, .. } => StartupClass::of_bind(source),
            Self::PkiRequired { source, .. } | Self::PkiBroken { source, .. } => match source {
                crate::operator_pki::SnapshotError::Pki(e) => StartupClass::of_pki(e),
                _ => StartupClass::Config,
            },
            Self::State { .. } | Self::Files(_) | Self::Tls(_) | Self::Descriptors(_) => {
                StartupClass::Config
            }
        }
    }
}

/// Checks the modes, owners and links of the PKI and state files (see
/// [`netclaw_pki::file_policy`]) for the service user `euid`.
pub fn check_files(config: &Config, euid: u32) -> Result<(), StartupError> {
    let files = file_policy::daemon_files(
        &DaemonPkiPaths::new(config.operator().pki_dir()),
        config.daemon().state_dir(),
    );
    let findings = file_policy::check_all(&files, euid);
    if findings.is_empty() {
        Ok(())
    } else {
        Err(StartupError::Files(Findings(findings)))
    }
}

/// The loaded operator PKI and the receiver of refused presentations of superseded serials.
pub type LoadedPki = (Arc<OperatorPki>, Receiver<Presented>);

/// Checks the files, the tunnel process and loads the operator PKI (with the receiver of refused
/// presentations of superseded serials, for its reloader).
pub fn validate(
    config: &Config,
    machine_id: &Path,
    proc_root: &Path,
) -> Result<Option<LoadedPki>, StartupError> {
    check_files(config, nix::unistd::geteuid().as_raw())?;
    let mode = config.daemon().exposure();
    if let Some(process) = mode.tunnel_process() {
        if !config.daemon().skip_tunnel_process_check() && !process_running(proc_root, process) {
            return Err(StartupError::TunnelNotRunning { mode, process });
        }
    }
    let pki_dir = config.operator().pki_dir();
    if mode == ExposureMode::Local && !pki_dir.join("ca.crt").exists() {
        // Local mode without an install: loopback is the operator path; no operator listener.
        return Ok(None);
    }
    match OperatorPki::load(config, machine_id) {
        Ok((pki, presented)) => Ok(Some((Arc::new(pki), presented))),
        Err(source) if mode != ExposureMode::Local => {
            Err(StartupError::PkiRequired { mode, source })
        }
        Err(source) => Err(StartupError::PkiBroken {
            dir: pki_dir.to_owned(),
            source,
        }),
    }
}
