//! The netclaw daemon: the public listener, the operator mTLS listener, principals and pairing.
//!
//! [`bind`] validates everything (configuration rules are already enforced by
//! `netclaw_core::config`; here: tunnel process, operator PKI, state directory) and only then
//! binds both listeners; [`Daemon::run`] serves until shutdown and drains open connections
//! (`netclaw_core::serve`).
//!
//! # Security
//!
//! * The principal comes from which listener accepted the connection. The public listener yields
//!   `Device` (valid bearer), `LocalProcess` (loopback peer, `local` mode only, not forwarded by a
//!   proxy) or `Anonymous`; it never reads client certificates and strips operator and
//!   client-certificate headers. The operator listener yields only `LocalOperator`, after the
//!   verifier in [`tls`] accepted an operator-CA certificate for this host with an active serial,
//!   from an allowed source address.
//! * Forwarded headers are honoured only from `Daemon.TrustedProxies` (in a tunnel mode without
//!   them: from the loopback peer, the tunnel), one hop, and only for the client address used by
//!   the rate limiter — never for a principal.
//! * Revoked or superseded serials are refused at the handshake and on open connections; operator
//!   connections have a bounded age.

pub mod api;
pub mod audit;
mod caller;
pub mod devices;
pub mod error;
mod forwarded;
mod hub;
pub mod limits;
mod line_budget;
pub mod listener;
pub mod metrics;
pub mod operator_pki;
pub mod pairing;
pub mod principal;
pub mod refusal;
pub mod renewal;
pub mod startup;
pub mod state;
pub mod tls;
pub mod trust;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use netclaw_core::config::Config;
use tokio::net::TcpListener;

use crate::audit::Audit;
use crate::devices::DeviceStore;
use crate::limits::{ConnectionLimits, Descriptors, PublicGate};
use crate::listener::SourcePolicy;
use crate::operator_pki::OperatorPki;
use crate::startup::StartupError;
use crate::state::AppState;

/// The netclaw daemon's command line (also read by the man page and completion generator).
#[derive(Debug, clap::Parser)]
#[command(name = "netclaw-daemon", version, about = "The netclaw daemon.")]
pub struct Args {
    /// Configuration file (default: $NETCLAW_CONFIG, then the install location).
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
}

/// How often the operator listener certificate is checked for renewal.
pub use crate::operator_pki::reloader::SERVER_RENEWAL_CHECK;

/// Host facts the daemon reads, injectable for tests.
#[derive(Clone, Debug)]
pub struct HostPaths {
    /// `/etc/machine-id`.
    pub machine_id: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            machine_id: PathBuf::from("/etc/machine-id"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// A validated daemon with bound listeners.
#[derive(Debug)]
pub struct Daemon {
    state: Arc<AppState>,
    public: TcpListener,
    descriptors: Descriptors,
    gate: Arc<PublicGate>,
    operator: Option<(
        TcpListener,
        Arc<OperatorPki>,
        tokio::sync::mpsc::Receiver<operator_pki::Presented>,
        SourcePolicy,
    )>,
}

/// Validates, then binds. Nothing is bound when validation fails.
pub async fn bind(config: Config, host: &HostPaths) -> Result<Daemon, StartupError> {
    let pki = startup::validate(&config, &host.machine_id, &host.proc_root)?;
    let state_dir = config.daemon().state_dir().to_owned();
    let state_err = |reason: String| StartupError::State {
        dir: state_dir.clone(),
        reason,
    };
    netclaw_pki::secure_fs::ensure_private_dir(&state_dir).map_err(|e| state_err(e.to_string()))?;
    netclaw_pki::secure_fs::remove_stale_temp_files(&state_dir)
        .map_err(|e| state_err(e.to_string()))?;
    // The PKI directory is written too (registry, listener certificate); under the registry
    // lock, so that a `netclaw pki` command writing there at this moment is not cut short.
    if pki.is_some() {
        let paths = netclaw_pki::store::DaemonPkiPaths::new(config.operator().pki_dir());
        let _lock =
            netclaw_pki::store::lock_registry(&paths).map_err(|e| state_err(e.to_string()))?;
        netclaw_pki::secure_fs::remove_stale_temp_files(paths.dir())
            .map_err(|e| state_err(e.to_string()))?;
    }
    let devices = DeviceStore::load(&state_dir.join("devices.json")).map_err(state_err)?;
    let audit = Arc::new(
        Audit::new(Some(state_dir.join("audit.log"))).map_err(|e| state_err(e.to_string()))?,
    );
    // The public listener's caps come from the descriptor budget (the soft limit raised to the
    // hard one first), counted with the two listeners about to be bound.
    let descriptors = limits::descriptors();
    let limits = ConnectionLimits::from_descriptors(descriptors.soft, descriptors.in_use + 2)?;
    let gate = PublicGate::new(limits, audit.clone());

    let d = config.daemon();
    let public_addr = SocketAddr::new(d.host(), d.port());
    let public = TcpListener::bind(public_addr)
        .await
        .map_err(|source| StartupError::Bind {
            key: "Daemon.Host/Daemon.Port",
            addr: public_addr,
            source,
        })?;
    let operator = match pki {
        Some((pki, presented)) => {
            let o = config.operator();
            let addr = SocketAddr::new(o.host(), o.port());
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| StartupError::Bind {
                    key: "Operator.Host/Operator.Port",
                    addr,
                    source,
                })?;
            let sources = match o.allowed_sources() {
                Some(nets) => SourcePolicy::Listed(nets.to_vec()),
                None => SourcePolicy::LocalInterfaces,
            };
            Some((l, pki, presented, sources))
        }
        None => None,
    };
    let state = Arc::new(AppState::new(
        config,
        audit,
        devices,
        operator.as_ref().map(|o| o.1.clone()),
        public.local_addr().unwrap_or(public_addr),
        operator.as_ref().and_then(|o| o.0.local_addr().ok()),
    ));
    Ok(Daemon {
        state,
        public,
        descriptors,
        gate,
        operator,
    })
}

impl Daemon {
    /// The public listener's address.
    pub fn public_addr(&self) -> SocketAddr {
        self.state.public_addr
    }

    /// The operator listener's address, when it runs.
    pub fn operator_addr(&self) -> Option<SocketAddr> {
        self.state.operator_addr
    }

    /// Serves until `shutdown` completes, then drains open connections.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        // The drain's start also stops the PKI reloader and the last-used flusher.
        let drain = netclaw_core::serve::Drain::new();
        let router = api::router(self.state.clone());
        let mut tasks = tokio::task::JoinSet::new();
        let limits = self.gate.limits();
        tracing::info!(
            soft = self.descriptors.soft,
            hard = self.descriptors.hard,
            raised_from = ?self.descriptors.raised_from,
            in_use = self.descriptors.in_use,
            public_total = limits.total(),
            public_per_source = limits.per_source(),
            reserve = limits.reserve(),
            "descriptor limit (RLIMIT_NOFILE) and public connection caps"
        );
        tracing::info!(addr = %self.state.public_addr, mode = %self.state.config.daemon().exposure(), "public listener ready");
        tasks.spawn(listener::run_public(
            self.public,
            router.clone(),
            self.state.clone(),
            self.gate.clone(),
            drain.handle(),
        ));
        if let Some((l, pki, presented, sources)) = self.operator {
            tracing::info!(addr = %self.state.operator_addr.map(|a| a.to_string()).unwrap_or_default(), "operator listener ready (mTLS)");
            // The one task that reloads the PKI snapshot, renews the listener certificate and
            // records first handshakes; handshakes and connections read what it publishes.
            tasks.spawn(operator_pki::reloader::run(
                pki.clone(),
                presented,
                self.state.audit.clone(),
                drain.handle().fired(),
            ));
            tasks.spawn(listener::run_operator(
                l,
                router,
                pki,
                sources,
                self.state.audit.clone(),
                drain.handle(),
            ));
        }
        tasks.spawn(devices::flush_last_used(
            self.state.devices.clone(),
            drain.handle().fired(),
        ));
        shutdown.await;
        tracing::info!("shutting down; draining connections");
        // Stop accepting, close event streams and hub sessions, drain requests.
        if let netclaw_core::serve::Drained::DeadlinePassed { open } =
            drain.drain(listener::DRAIN_TIMEOUT).await
        {
            tracing::warn!(
                open,
                "connections still open after the drain timeout; closed them"
            );
        }
        while tasks.join_next().await.is_some() {}
        // The last-used times of the requests just drained.
        if let Err(e) = self.state.devices.flush().await {
            tracing::warn!(error = %e, "last-used times of paired devices not saved at shutdown");
        }
    }
}
