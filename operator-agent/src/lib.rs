//! The netclaw operator agent.
//!
//! The agent holds this host's operator-agent certificate, listens on a Unix socket for the CLI,
//! authorizes every connection by the kernel's peer credentials, and forwards requests — plain,
//! server-sent events and WebSocket upgrades — to the daemon's operator listener over mutual TLS,
//! replacing any caller-supplied identity headers with the caller's uid, user name and pid.
//!
//! # Security
//!
//! * Authorization uses only `SO_PEERCRED`; nothing the caller sends can change it.
//! * `Authorization` and `Netclaw-Operator-*` request headers from callers are removed; the
//!   agent adds the caller headers itself. The daemon trusts them only on the operator listener.
//! * The daemon's server certificate is verified against the operator CA bundle only, for the
//!   operator listener's IP address.
//! * One task, the credential manager ([`manager`]), owns the credentials: it alone rolls an
//!   interrupted replacement forward, reloads, renews and rotates, one at a time, and publishes
//!   each checked credential generation whole (see [`creds`]); a failed reload keeps the old
//!   one. After a swap, pooled connections made with the old one are closed.
//! * Only the routes callers may use are forwarded (an allow-list, see [`routes`]), as the
//!   fallback of the socket's router, whose control routes (`/agent/v1/…`) are matched on the
//!   raw path; the daemon's certificate routes are never reachable from the socket.
//! * Every request is judged against the current operator policy (`Operator.AllowedUsers`,
//!   `Operator.AllowedGroups`), which a reload (`SIGHUP`, `POST /agent/v1/reload`) re-reads
//!   from the configuration file and publishes as one immutable snapshot; a configuration
//!   that does not load keeps the current policy. An upgraded connection or a streamed answer
//!   watches the published policy and is closed when one refuses its caller.
//! * One caller (uid) holds at most a fair share of the upstream request slots, and a request
//!   body is read in full, within a deadline, before it takes one.

pub mod authz;
mod busy;
pub mod cli;
mod control;
pub mod creds;
pub mod manager;
mod metrics;
mod proxy;
pub mod renew;
mod respond;
pub mod routes;
pub mod socket;
mod status;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netclaw_core::config::Config;
use netclaw_core::serve::{Drain, Drained, Http1};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::authz::Policy;
use crate::creds::CredentialError;
use crate::manager::{Handle, Manager, Settings, SystemClock};
use crate::upstream::{Stats, Upstream};

/// The netclaw operator agent's command line (also read by the man page and completion generator).
#[derive(Debug, PartialEq, Eq, clap::Parser)]
#[command(
    name = "netclaw-operator-agent",
    version,
    about = "The netclaw operator agent."
)]
pub struct Args {
    /// Configuration file (default: $NETCLAW_CONFIG, then the install location).
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
}

pub use crate::manager::{ReloadError, Reloaded};

/// Largest request head accepted from a caller.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A caller must send a complete request head within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections.
pub const DRAIN_TIMEOUT: Duration = netclaw_core::service::DRAIN_TIMEOUT;
/// The HTTP/1.1 limits of a socket connection.
const HTTP1: Http1 = Http1 {
    header_read_timeout: HEADER_READ_TIMEOUT,
    max_header_bytes: MAX_HEADER_BYTES,
};

/// Agent start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The credentials are missing, unreadable or invalid.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The socket could not be set up.
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    /// systemd socket activation failed.
    #[error("socket activation: {0}")]
    Activation(std::io::Error),
}

impl AgentError {
    /// Whether restarting may help (exit 75) or the setup must change (exit 64), by type: a
    /// certificate not valid yet by this host's clock (behind, before NTP) and a socket another
    /// agent still answers on (a previous instance stopping) are transient.
    pub fn class(&self) -> netclaw_core::service::StartupClass {
        use netclaw_core::service::StartupClass;
        match self {
            Self::Credentials(CredentialError::Clock { .. }) => StartupClass::Transient,
            Self::Credentials(CredentialError::Pki(e)) => StartupClass::of_pki(e),
            Self::Socket(socket::SocketError::InUse(_)) => StartupClass::Transient,
            Self::Credentials(_) | Self::Socket(_) | Self::Activation(_) => StartupClass::Config,
        }
    }
}

/// State shared by every connection: the daemon's address and the credential manager's
/// [`Handle`] (commands in, the published credentials, policy and status out).
#[derive(Debug)]
pub struct AgentState {
    addr: SocketAddr,
    /// `addr` as the `Host` of forwarded requests (built once).
    host: hyper::header::HeaderValue,
    stats: Arc<Stats>,
    credentials: Handle,
    /// Polling without sleeping after each forwarded request and answer (`Operator.BusyPollMicros`).
    busy: Arc<busy::BusyPoll>,
    /// Streams open through the agent ([`upstream::MAX_STREAMS`], [`upstream::PER_CALLER_STREAMS`]
    /// per caller), across credential generations.
    streams: upstream::Slots,
}

/// A bound agent.
#[derive(Debug)]
pub struct Agent {
    state: Arc<AgentState>,
    listener: UnixListener,
    manager: Manager<renew::Daemon>,
}

/// Loads and checks the credentials, then binds the socket (or takes it from systemd).
/// `config_path` is the file `config` was loaded from; reloads re-read the operator policy
/// from it.
pub async fn bind(config: Config, config_path: PathBuf) -> Result<Agent, AgentError> {
    let addr = SocketAddr::new(
        netclaw_core::net::dial_ip(config.operator().host()),
        config.operator().port(),
    );
    let socket_path = config.operator().socket().to_owned();
    let busy_poll = config.operator().busy_poll();
    let stats = Arc::new(Stats::default());
    let settings = Settings {
        name: creds::server_name(config.operator().host()),
        config,
        config_path,
        env: Box::new(netclaw_core::env::SystemEnv),
        addr,
        stats: stats.clone(),
    };
    let (manager, credentials) = Manager::start(settings, renew::Daemon::new(addr), SystemClock)?;
    let listener = match socket::from_systemd().map_err(AgentError::Activation)? {
        Some(l) => l,
        None => socket::bind(&socket_path)?,
    };
    Ok(Agent {
        state: Arc::new(AgentState::new(addr, stats, credentials, busy_poll)),
        listener,
        manager,
    })
}

impl AgentState {
    /// State for the daemon at `addr` and the credential manager behind `credentials`, polling
    /// for `busy_poll` after each forwarded request and answer (zero: never).
    pub fn new(
        addr: SocketAddr,
        stats: Arc<Stats>,
        credentials: Handle,
        busy_poll: Duration,
    ) -> Self {
        Self {
            addr,
            host: hyper::header::HeaderValue::from_str(&addr.to_string())
                .expect("a socket address is a valid header value"),
            stats,
            credentials,
            busy: Arc::new(busy::BusyPoll::new(busy_poll)),
            streams: upstream::Slots::new(upstream::MAX_STREAMS, upstream::PER_CALLER_STREAMS),
        }
    }

    /// The current credential generation.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.credentials.upstream()
    }

    /// The operator policy in force now (an immutable snapshot).
    pub fn policy(&self) -> Arc<Policy> {
        self.credentials.policy()
    }

    /// The credential manager.
    pub fn credentials(&self) -> &Handle {
        &self.credentials
    }

    /// What `SIGHUP` and `POST /agent/v1/reload` do (see [`Handle::reload`]).
    pub async fn reload_all(&self) -> Result<Reloaded, ReloadError> {
        self.credentials.reload().await
    }
}

impl Agent {
    /// Shared state (for reloads from signal handlers and tests).
    pub fn state(&self) -> Arc<AgentState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, with the credential manager running beside; then
    /// drains ([`netclaw_core::serve::Drain`]): stops accepting at once, ends forwarded event
    /// streams and upgraded connections, lets the requests in flight complete, and drops what
    /// is still open after [`DRAIN_TIMEOUT`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let manager = tokio::spawn(self.manager.run(stop_rx));
        let busy = tokio::spawn(self.state.busy.clone().run());
        let drain = Drain::new();
        let accepting = tokio::spawn(control::serve(
            self.listener,
            self.state.clone(),
            drain.handle(),
        ));
        shutdown.await;
        let _ = stop_tx.send(true);
        if let Drained::DeadlinePassed { open } = drain.drain(DRAIN_TIMEOUT).await {
            tracing::warn!(
                open,
                "connections still open after the drain timeout; closed them"
            );
        }
        let _ = accepting.await;
        manager.abort();
        busy.abort();
    }
}
