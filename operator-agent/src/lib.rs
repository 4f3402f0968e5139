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
//! * A credential set is swapped in only after it was checked (see [`creds`]); a failed reload
//!   keeps the old one. After a swap, pooled connections made with the old one are closed.
//! * Only the routes callers may use are forwarded (an allow-list, see [`routes`]); the agent's
//!   own certificate routes are never reachable from the socket.
//! * Every request is judged against the current operator policy (`Operator.AllowedUsers`,
//!   `Operator.AllowedGroups`), which a reload (`SIGHUP`, `POST /agent/v1/reload`) re-reads
//!   from the configuration file and publishes as one immutable snapshot; a configuration
//!   that does not load keeps the current policy.
//! * One caller (uid) holds at most a fair share of the upstream request slots, and a request
//!   body is read in full, within a deadline, before it takes one.

pub mod authz;
pub mod creds;
mod metrics;
mod proxy;
pub mod renew;
mod respond;
pub mod routes;
pub mod socket;
mod status;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioIo, TokioTimer};
use netclaw_core::config::{Config, ConfigError};
use netclaw_pki::store::AgentPaths;
use rustls::pki_types::ServerName;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::authz::{Caller, Policy};
use crate::creds::{CredentialError, Credentials};
use crate::upstream::{Stats, Upstream};

/// Largest request head accepted from a caller.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A caller must send a complete request head within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for open connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often credential files are checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);

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

/// A reload failure. The part that failed keeps its current value; the other part is reloaded
/// all the same.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The configuration file does not load: the current operator policy is kept.
    #[error(
        "{0}; keeping the current operator policy (Operator.AllowedUsers, Operator.AllowedGroups)"
    )]
    Config(#[from] ConfigError),
    /// The credential files were refused: the current credentials are kept.
    #[error("{0}; keeping the current credentials")]
    Credentials(#[from] CredentialError),
}

/// What a reload changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// New credentials were swapped in.
    pub credentials: bool,
    /// A new operator policy applies from the next request.
    pub policy: bool,
}

/// State shared by every connection.
#[derive(Debug)]
pub struct AgentState {
    config: Config,
    /// The configuration file, re-read for the operator policy at each reload.
    config_path: PathBuf,
    paths: AgentPaths,
    addr: SocketAddr,
    /// `addr` as the authority of forwarded requests (parsed once).
    authority: hyper::http::uri::Authority,
    name: ServerName<'static>,
    /// The operator policy in force. Published whole by `reload_policy` (the only sender, under
    /// the `reloads` lock); every request reads the current snapshot.
    policy: watch::Sender<Arc<Policy>>,
    upstream: RwLock<Arc<Upstream>>,
    stats: Arc<Stats>,
    reloads: Mutex<ReloadState>,
    renewing: tokio::sync::Mutex<()>,
    /// Set when a renewal asked for through the socket failed without an answer; the renewal
    /// loop then retries soon (see `renew::run`).
    renewal_unanswered: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct ReloadState {
    last_success: SystemTime,
    last_error: Option<String>,
    last_renewal: Option<SystemTime>,
    renewal_error: Option<String>,
}

/// A bound agent.
#[derive(Debug)]
pub struct Agent {
    state: Arc<AgentState>,
    listener: UnixListener,
}

/// Loads and checks the credentials, then binds the socket (or takes it from systemd).
/// `config_path` is the file `config` was loaded from; reloads re-read the operator policy
/// from it.
pub async fn bind(config: Config, config_path: PathBuf) -> Result<Agent, AgentError> {
    let paths = AgentPaths::new(config.operator().agent_dir());
    creds::check_files(&paths)?;
    netclaw_pki::secure_fs::remove_stale_temp_files(paths.dir()).map_err(CredentialError::from)?;
    renew::roll_forward(&paths).map_err(CredentialError::from)?;
    let creds = Credentials::load(&paths, config.operator().trust_domain(), SystemTime::now())?;
    if creds.expired(SystemTime::now()) {
        tracing::error!(
            not_after = %netclaw_core::wire::format_unix(netclaw_pki::identity::unix_seconds(creds.identity.not_after)),
            "the operator agent certificate has expired; run `netclaw pki rotate --offline` as root"
        );
    }
    let addr = SocketAddr::new(
        netclaw_core::net::dial_ip(config.operator().host()),
        config.operator().port(),
    );
    let name = creds::server_name(config.operator().host());
    let stats = Arc::new(Stats::default());
    let upstream = Upstream::new(creds, addr, name.clone(), stats.clone());
    let policy = Policy::of(nix::unistd::geteuid().as_raw(), &config);
    let listener = match socket::from_systemd().map_err(AgentError::Activation)? {
        Some(l) => l,
        None => socket::bind(config.operator().socket())?,
    };
    let state = Arc::new(AgentState {
        config,
        config_path,
        paths,
        addr,
        authority: addr
            .to_string()
            .parse()
            .expect("a socket address is a valid authority"),
        name,
        policy: watch::Sender::new(Arc::new(policy)),
        upstream: RwLock::new(Arc::new(upstream)),
        stats,
        reloads: Mutex::new(ReloadState {
            last_success: SystemTime::now(),
            last_error: None,
            last_renewal: None,
            renewal_error: None,
        }),
        renewing: tokio::sync::Mutex::new(()),
        renewal_unanswered: std::sync::atomic::AtomicBool::new(false),
    });
    Ok(Agent { state, listener })
}

impl AgentState {
    /// The current credential generation.
    pub fn upstream(&self) -> Arc<Upstream> {
        match self.upstream.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The operator policy in force now (an immutable snapshot).
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.borrow().clone()
    }

    /// What `SIGHUP` and `POST /agent/v1/reload` do: re-reads the operator policy from the
    /// configuration file and the credential files. Each part that loads applies from the next
    /// request (on open connections too); a part that does not keeps its current value and is
    /// reported (the first failure is returned, both are logged).
    pub fn reload_all(&self) -> Result<Reloaded, ReloadError> {
        let policy = self.reload_policy();
        let credentials = self.reload();
        match (policy, credentials) {
            (Ok(policy), Ok(credentials)) => Ok(Reloaded {
                credentials,
                policy,
            }),
            (Err(e), credentials) => {
                if let Err(c) = &credentials {
                    tracing::error!(error = %c, "reload: credentials refused; keeping the current ones");
                }
                let e = ReloadError::from(e);
                self.reloads().last_error = Some(e.to_string());
                Err(e)
            }
            (Ok(_), Err(e)) => Err(e.into()),
        }
    }

    /// Re-reads `Operator.AllowedUsers` and `Operator.AllowedGroups` from the configuration
    /// file and publishes them. Returns whether the policy changed. Settings that only a
    /// restart applies (the socket, the daemon's address, the trust domain, the directories)
    /// are compared and a difference is logged.
    pub fn reload_policy(&self) -> Result<bool, ConfigError> {
        let _reloads = self.reloads();
        let config = Config::load(&self.config_path, &netclaw_core::env::SystemEnv)?;
        let (now, then) = (config.operator(), self.config.operator());
        if now.socket() != then.socket()
            || now.host() != then.host()
            || now.port() != then.port()
            || now.trust_domain() != then.trust_domain()
            || now.agent_dir() != then.agent_dir()
        {
            tracing::warn!(
                "Operator.Socket, Operator.Host, Operator.Port, Operator.TrustDomain or the agent \
                 directory changed in the configuration file; only a restart applies them \
                 (systemctl restart netclaw-operator-agent)"
            );
        }
        let next = Policy::of(nix::unistd::geteuid().as_raw(), &config);
        let changed = self.policy.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            *current = Arc::new(next);
            true
        });
        if changed {
            tracing::info!(
                users = ?config.operator().allowed_users(),
                groups = ?config.operator().allowed_groups(),
                "new operator policy in force from the next request"
            );
        }
        Ok(changed)
    }

    /// Re-reads the credential files. Unchanged files are a no-op (`Ok(false)`); new, valid
    /// ones are swapped in (`Ok(true)`) and the old pool is dropped; invalid ones are refused
    /// and the current ones kept.
    pub fn reload(&self) -> Result<bool, CredentialError> {
        // One reload at a time (file watcher, SIGHUP, `POST /agent/v1/reload`, renewal): the
        // roll-forward and the swap must not interleave.
        let mut reloads = self.reloads();
        if let Err(e) = creds::check_files(&self.paths) {
            reloads.last_error = Some(e.to_string());
            return Err(e);
        }
        if let Err(e) = renew::roll_forward(&self.paths) {
            reloads.last_error = Some(e.to_string());
            return Err(e.into());
        }
        let loaded = Credentials::load(
            &self.paths,
            self.config.operator().trust_domain(),
            SystemTime::now(),
        );
        let creds = match loaded {
            Ok(c) => c,
            Err(e) => {
                reloads.last_error = Some(e.to_string());
                return Err(e);
            }
        };
        reloads.last_error = None;
        {
            let current = self.upstream();
            if creds.cert_der == current.creds.cert_der && creds.bundle == current.creds.bundle {
                return Ok(false);
            }
        }
        let serial = creds.identity.serial.clone();
        let next = Arc::new(Upstream::new(
            creds,
            self.addr,
            self.name.clone(),
            self.stats.clone(),
        ));
        match self.upstream.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        reloads.last_success = SystemTime::now();
        tracing::info!(%serial, "operator agent credentials swapped in; pooled connections closed");
        Ok(true)
    }

    fn reloads(&self) -> std::sync::MutexGuard<'_, ReloadState> {
        match self.reloads.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records the outcome of a renewal attempt (`None` for success).
    pub fn record_renewal(&self, error: Option<String>) {
        let counter = if error.is_none() {
            &self.stats.renewals_ok
        } else {
            &self.stats.renewals_failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut r = self.reloads();
        if error.is_none() {
            r.last_renewal = Some(SystemTime::now());
        }
        r.renewal_error = error;
    }
}

impl Agent {
    /// Shared state (for reloads from signal handlers and tests).
    pub fn state(&self) -> Arc<AgentState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, reloading credentials when their files change; then
    /// stops accepting and drains open connections for up to [`DRAIN_TIMEOUT`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let watcher = tokio::spawn(watch_files(self.state.clone(), stop_rx.clone()));
        let renewer = tokio::spawn(renew::run(self.state.clone(), stop_rx.clone()));
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    conns.spawn(serve(stream, self.state.clone(), stop_rx.clone()));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        let _ = stop_tx.send(true);
        drop(self.listener);
        let all = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
        watcher.abort();
        renewer.abort();
    }
}

/// Polls the credential files' modification times and reloads on change.
async fn watch_files(state: Arc<AgentState>, mut stop: watch::Receiver<bool>) {
    let stamp = |state: &AgentState| {
        [
            state.paths.client_key(),
            state.paths.client_cert(),
            state.paths.ca_bundle(),
        ]
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect::<Vec<_>>()
    };
    let mut last = stamp(&state);
    loop {
        tokio::select! {
            () = tokio::time::sleep(FILE_POLL) => {}
            _ = stop.changed() => return,
        }
        let now = stamp(&state);
        if now != last {
            last = now;
            if let Err(e) = state.reload() {
                tracing::warn!(error = %e, "credential files changed but could not be used; keeping the current credentials");
            }
        }
    }
}

async fn serve(
    stream: tokio::net::UnixStream,
    state: Arc<AgentState>,
    mut stop: watch::Receiver<bool>,
) {
    let caller = match Caller::of(&stream) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; closing the connection");
            return;
        }
    };
    // Authorization is decided per request against the policy in force then (see
    // `proxy::handle`), so that a reload applies to open keep-alive connections too.
    let peer = Arc::new(proxy::Peer::new(caller));
    let service =
        hyper::service::service_fn(move |req| proxy::handle(state.clone(), peer.clone(), req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            res = connection.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "socket connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
