//! The credential manager: the one owner of the agent's credentials and operator policy.
//!
//! One task, [`Manager::run`], does every roll-forward, reload, renewal and rotation, one after
//! the other, so that no two of them ever write the credential directory or swap the credentials
//! at once. Only a renewal's request to the daemon runs beside the task (so that a reload is
//! answered while a renewal waits for the daemon); its answer is installed by the task, and the
//! next renewal starts after that. Everything else holds a [`Handle`]: it sends commands ([`Handle::reload`] for
//! `SIGHUP` and `POST /agent/v1/reload`, [`Handle::rotate`] for `POST /agent/v1/rotate`) and
//! reads what the manager publishes, each through a `tokio::sync::watch`:
//!
//! * the current [`Upstream`] — credentials, TLS configuration, pooled clients and request slots
//!   of one credential generation — as an `Arc` snapshot, replaced whole after a new credential
//!   set was checked;
//! * the operator [`Policy`] (`Operator.AllowedUsers`, `Operator.AllowedGroups`), likewise;
//! * the [`CredentialStatus`]: the last reload and renewal and why they failed, for
//!   `GET /agent/v1/status`.
//!
//! The manager also renews on schedule (at [`refresh_at`] of the current certificate, comparing
//! the wall clock every [`TICK`] so that a host suspended past the renewal time renews right
//! after it wakes up) and watches the credential files for changes written by other processes
//! (`netclaw pki rotate --offline`, a re-install, a `chmod` fixing a mode) by their modification
//! and status-change times every
//! [`FILE_POLL`]. It polls rather than use inotify: the files are replaced by rename, so a
//! watch would have to be on the directory and re-armed on every event, for three `stat` calls
//! every two seconds; and a poll inside the owner runs on the paused clock of its tests.
//!
//! # Security
//!
//! A credential set is published only after it was checked ([`Credentials::load`]); a failed
//! reload keeps the current one and records why. The new key of a renewal never leaves this
//! process. After a swap the old generation's pooled connections close as soon as the requests
//! still using them end, so no connection keeps presenting the superseded certificate. After a
//! swap of its own renewal's answer, the manager completes one handshake with the new
//! certificate at once ([`Renewer::confirm`]): until the daemon has seen it, the daemon lets the
//! superseded serial renew once more (its answer might have been lost), which a copy of the old
//! key could use.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use netclaw_core::config::{Config, ConfigError};
use netclaw_core::env::Env;
use netclaw_core::wire::RenewResponse;
use netclaw_pki::schedule::{backoff, refresh_at};
use netclaw_pki::store::AgentPaths;
use netclaw_pki::{PrivateKey, Serial};
use ring::rand::SecureRandom;
use rustls::pki_types::ServerName;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::authz::Policy;
use crate::creds::{self, CredentialError, Credentials};
use crate::renew::{self, RenewError, Renewer};
use crate::upstream::{Stats, Upstream};

/// How often the manager compares the wall clock with the renewal schedule.
pub const TICK: Duration = Duration::from_secs(1);
/// How often the credential files are checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);
/// After a renewal whose answer never came (the daemon may have issued, recorded and superseded
/// the current certificate, which then works only for `Operator.RotationGrace`, 60 s by
/// default), the first retries come this soon (with jitter, half to all of it) ...
pub const UNANSWERED_RETRY: Duration = Duration::from_secs(4);
/// ... this many times, before the usual exponential backoff.
pub const UNANSWERED_RETRIES: u32 = 10;
/// Commands queued for the manager at most; a sender waits beyond that.
const QUEUE: usize = 16;

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
    /// The credential manager has stopped (the agent is shutting down).
    #[error("the operator agent is shutting down")]
    Stopped,
}

/// What a reload changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// New credentials were swapped in.
    pub credentials: bool,
    /// A new operator policy applies from the next request (and to what callers it refuses
    /// hold open: their upgraded connections and streamed answers are closed).
    pub policy: bool,
}

/// The record of reloads and renewals, published after each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialStatus {
    /// When credentials were last swapped in (start-up counts).
    pub last_reload: SystemTime,
    /// Why the last reload (of the policy or the credentials) failed, until one succeeds.
    pub last_reload_error: Option<String>,
    /// When the last renewal succeeded.
    pub last_renewal: Option<SystemTime>,
    /// Why the last renewal failed, until one succeeds.
    pub renewal_error: Option<String>,
}

/// The wall clock and the random draws of the renewal schedule.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
    /// A uniform draw in `[0, 1)` (the schedule's jitter).
    fn draw(&self) -> f64;
}

/// The system clock and the system's random numbers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn draw(&self) -> f64 {
        let mut b = [0u8; 8];
        if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
            return 0.5;
        }
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the manager works with, fixed for the life of the process.
pub struct Settings {
    /// The configuration loaded at start-up (the operator policy is re-read from `config_path`).
    pub config: Config,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The environment overrides of the configuration are read from.
    pub env: Box<dyn Env + Send + Sync>,
    /// The operator listener's address.
    pub addr: SocketAddr,
    /// The name expected in the operator listener's certificate.
    pub name: ServerName<'static>,
    /// Counters shared by every credential generation.
    pub stats: Arc<Stats>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("config_path", &self.config_path)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Where a rotation's answer goes.
type Reply = oneshot::Sender<Result<RenewResponse, RenewError>>;

enum Command {
    Reload(oneshot::Sender<Result<Reloaded, ReloadError>>),
    Rotate(Reply),
}

/// The manager's side for everyone else: commands in, published state out.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    upstream: watch::Receiver<Arc<Upstream>>,
    policy: watch::Receiver<Arc<Policy>>,
    status: watch::Receiver<CredentialStatus>,
}

impl Handle {
    /// The current credential generation.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.upstream.borrow().clone()
    }

    /// A receiver of every credential generation published from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Upstream>> {
        self.upstream.clone()
    }

    /// The operator policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.borrow().clone()
    }

    /// A receiver of every operator policy published from now on: what a forwarded stream or
    /// upgraded connection watches, so that a reload that refuses its caller ends it.
    pub fn subscribe_policy(&self) -> watch::Receiver<Arc<Policy>> {
        self.policy.clone()
    }

    /// The record of the last reload and renewal.
    pub fn status(&self) -> CredentialStatus {
        self.status.borrow().clone()
    }

    /// What `SIGHUP` and `POST /agent/v1/reload` do: re-reads the operator policy from the
    /// configuration file and the credential files. Each part that loads applies from the next
    /// request (on open connections too); a part that does not keeps its current value and is
    /// reported (the first failure is returned, both are logged).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reload(reply))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        answer.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Renews now (`netclaw pki rotate`), after any renewal already under way. An unanswered
    /// request is retried by the manager on its own within seconds.
    pub async fn rotate(&self) -> Result<RenewResponse, RenewError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Rotate(reply))
            .await
            .map_err(|_| RenewError::Stopped)?;
        answer.await.map_err(|_| RenewError::Stopped)?
    }
}

/// When the next renewal is due, for which certificate.
#[derive(Debug)]
struct Schedule {
    /// The certificate `due` was computed for.
    serial: Option<Serial>,
    due: SystemTime,
    /// Failed attempts since the last success or the last certificate change.
    failures: u32,
}

/// The renewal under way: its key (which stays here) and its request to the renewer.
struct Renewal {
    key: PrivateKey,
    request: tokio::task::JoinHandle<Result<RenewResponse, RenewError>>,
    /// The rotation that asked for it (`None`: the schedule).
    rotation: Option<Reply>,
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.request.abort();
    }
}

/// The credential files' modification times, to notice a change.
/// Per file: modification time and status-change time (seconds, nanoseconds). The change time
/// moves on `chmod`/`chown` too, so fixing a key's mode is picked up like a new file.
type Stamps = [Option<(SystemTime, i64, i64)>; 3];

/// The owner task's state (see the module docs).
pub struct Manager<R, C = SystemClock> {
    settings: Settings,
    paths: AgentPaths,
    renewer: Arc<R>,
    clock: C,
    commands: mpsc::Receiver<Command>,
    /// The renewal under way, if any: its request runs beside the loop, its writes in it.
    renewal: Option<Renewal>,
    /// Rotations waiting for the renewal under way to end.
    rotations: VecDeque<Reply>,
    upstream: watch::Sender<Arc<Upstream>>,
    policy: watch::Sender<Arc<Policy>>,
    status: watch::Sender<CredentialStatus>,
    schedule: Schedule,
    stamps: Stamps,
}

impl<R, C> std::fmt::Debug for Manager<R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("settings", &self.settings)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl<R: Renewer, C: Clock> Manager<R, C> {
    /// What start-up does: checks the files, removes stale temporary files, completes an
    /// interrupted replacement, loads and checks the credentials and the operator policy.
    pub fn start(
        settings: Settings,
        renewer: R,
        clock: C,
    ) -> Result<(Self, Handle), CredentialError> {
        let paths = AgentPaths::new(settings.config.operator().agent_dir());
        creds::check_files(&paths)?;
        netclaw_pki::secure_fs::remove_stale_temp_files(paths.dir())
            .map_err(CredentialError::from)?;
        renew::roll_forward(&paths).map_err(CredentialError::from)?;
        let stamps = stamp(&paths);
        let now = clock.now();
        let creds = Credentials::load(&paths, settings.config.operator().trust_domain(), now)?;
        if creds.expired(now) {
            tracing::error!(
                not_after = %netclaw_core::wire::format_unix(netclaw_pki::identity::unix_seconds(creds.identity.not_after)),
                "the operator agent certificate has expired; run `netclaw pki rotate --offline` as root"
            );
        }
        let upstream = Upstream::new(
            creds,
            settings.addr,
            settings.name.clone(),
            settings.stats.clone(),
        );
        let policy = Policy::of(nix::unistd::geteuid().as_raw(), &settings.config);
        let (upstream, upstream_rx) = watch::channel(Arc::new(upstream));
        let (policy, policy_rx) = watch::channel(Arc::new(policy));
        let (status, status_rx) = watch::channel(CredentialStatus {
            last_reload: now,
            last_reload_error: None,
            last_renewal: None,
            renewal_error: None,
        });
        let (commands_tx, commands) = mpsc::channel(QUEUE);
        let manager = Self {
            settings,
            paths,
            renewer: Arc::new(renewer),
            clock,
            commands,
            renewal: None,
            rotations: VecDeque::new(),
            upstream,
            policy,
            status,
            schedule: Schedule {
                serial: None,
                due: now,
                failures: 0,
            },
            stamps,
        };
        let handle = Handle {
            commands: commands_tx,
            upstream: upstream_rx,
            policy: policy_rx,
            status: status_rx,
        };
        Ok((manager, handle))
    }

    /// Serves commands, renews on schedule and reloads changed files until `stop` changes (or
    /// every [`Handle`] is gone).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut renewal = tokio::time::interval(TICK);
        renewal.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut files =
            tokio::time::interval_at(tokio::time::Instant::now() + FILE_POLL, FILE_POLL);
        files.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                command = self.commands.recv() => match command {
                    Some(Command::Reload(reply)) => {
                        let _ = reply.send(self.reload());
                    }
                    Some(Command::Rotate(reply)) => {
                        self.rotations.push_back(reply);
                        self.start_rotation();
                    }
                    None => return,
                },
                answer = answer(&mut self.renewal) => self.finish(answer),
                _ = files.tick() => self.poll_files(),
                _ = renewal.tick() => self.start_if_due(),
            }
        }
    }

    fn current(&self) -> Arc<Upstream> {
        self.upstream.borrow().clone()
    }

    /// Policy, then credentials (see [`Handle::reload`]).
    fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let policy = self.reload_policy();
        let credentials = self.reload_credentials();
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
                let text = e.to_string();
                self.status
                    .send_modify(|s| s.last_reload_error = Some(text));
                Err(e)
            }
            (Ok(_), Err(e)) => Err(e.into()),
        }
    }

    /// Re-reads `Operator.AllowedUsers` and `Operator.AllowedGroups` from the configuration
    /// file and publishes them. Returns whether the policy changed. Settings that only a
    /// restart applies (the socket, the daemon's address, the trust domain, the directories,
    /// the busy-poll window) are compared and a difference is logged.
    fn reload_policy(&mut self) -> Result<bool, ConfigError> {
        let config = Config::load(&self.settings.config_path, &*self.settings.env)?;
        let (now, then) = (config.operator(), self.settings.config.operator());
        if now.socket() != then.socket()
            || now.host() != then.host()
            || now.port() != then.port()
            || now.trust_domain() != then.trust_domain()
            || now.agent_dir() != then.agent_dir()
            || now.busy_poll() != then.busy_poll()
        {
            tracing::warn!(
                "Operator.Socket, Operator.Host, Operator.Port, Operator.TrustDomain, \
                 Operator.BusyPollMicros or the agent directory changed in the configuration \
                 file; only a restart applies them (systemctl restart netclaw-operator-agent)"
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
                "new operator policy in force from the next request; forwarded streams and \
                 upgraded connections of callers it refuses are closed"
            );
        }
        Ok(changed)
    }

    /// Re-reads the credential files. Unchanged files are a no-op (`Ok(false)`); new, valid
    /// ones are published (`Ok(true)`) and the old pool is dropped; invalid ones are refused,
    /// the current ones kept and the failure recorded.
    fn reload_credentials(&mut self) -> Result<bool, CredentialError> {
        let result = self.load_credentials();
        let error = result.as_ref().err().map(ToString::to_string);
        self.status.send_modify(|s| s.last_reload_error = error);
        result
    }

    fn load_credentials(&mut self) -> Result<bool, CredentialError> {
        creds::check_files(&self.paths)?;
        renew::roll_forward(&self.paths)?;
        // Before the load: a change written after it shows at the next poll.
        self.stamps = stamp(&self.paths);
        let now = self.clock.now();
        let creds = Credentials::load(
            &self.paths,
            self.settings.config.operator().trust_domain(),
            now,
        )?;
        {
            let current = self.current();
            if creds.cert_der == current.creds.cert_der && creds.bundle == current.creds.bundle {
                return Ok(false);
            }
        }
        let serial = creds.identity.serial.clone();
        self.upstream.send_replace(Arc::new(Upstream::new(
            creds,
            self.settings.addr,
            self.settings.name.clone(),
            self.settings.stats.clone(),
        )));
        self.status.send_modify(|s| s.last_reload = now);
        tracing::info!(%serial, "operator agent credentials swapped in; pooled connections closed");
        Ok(true)
    }

    /// Reloads when a credential file's modification or status-change time changed (a new
    /// file, or a fixed mode or owner).
    fn poll_files(&mut self) {
        let now = stamp(&self.paths);
        if now == self.stamps {
            return;
        }
        // Once per change, also when the change is refused.
        self.stamps = now;
        if let Err(e) = self.reload_credentials() {
            tracing::warn!(error = %e, "credential files changed but could not be used; keeping the current credentials");
        }
    }

    /// Recomputes the schedule when the certificate changed since it was computed.
    fn follow_certificate(&mut self) {
        let up = self.current();
        let id = &up.creds.identity;
        if self.schedule.serial.as_ref() != Some(&id.serial) {
            self.schedule = Schedule {
                serial: Some(id.serial.clone()),
                due: refresh_at(id.not_before, id.not_after, self.clock.draw()),
                failures: 0,
            };
            tracing::debug!(serial = %id.serial, due = %netclaw_core::wire::format_unix(netclaw_pki::identity::unix_seconds(self.schedule.due)), "renewal scheduled");
        }
    }

    /// Starts a renewal when the schedule says so and none is under way or queued. An expired
    /// certificate cannot renew over mTLS; `netclaw pki rotate --offline` is the way out, and
    /// the file poll picks its result up.
    fn start_if_due(&mut self) {
        if self.renewal.is_some() || !self.rotations.is_empty() {
            return;
        }
        self.follow_certificate();
        let now = self.clock.now();
        let not_after = self.current().creds.identity.not_after;
        if now >= self.schedule.due && now < not_after {
            self.start_renewal(None);
        }
    }

    /// Starts the next queued rotation unless a renewal is under way (its end starts it).
    fn start_rotation(&mut self) {
        if self.renewal.is_some() {
            return;
        }
        if let Some(reply) = self.rotations.pop_front() {
            self.start_renewal(Some(reply));
        }
    }

    /// Starts one renewal: a new key, and its CSR sent to the renewer beside this loop (so that
    /// reloads are answered meanwhile). The answer is installed by [`Self::finish`], here.
    fn start_renewal(&mut self, rotation: Option<Reply>) {
        let prepared = PrivateKey::generate()
            .and_then(|key| Ok((key.certificate_signing_request_pem()?, key)))
            .map_err(RenewError::from);
        let (csr, key) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.renewal = None;
                return self.conclude(Err(e), rotation, None);
            }
        };
        let renewer = self.renewer.clone();
        let upstream = self.current();
        let request = tokio::spawn(async move { renewer.request(&upstream, csr).await });
        self.renewal = Some(Renewal {
            key,
            request,
            rotation,
        });
    }

    /// Installs the answer of the renewal under way, publishes the new credentials, confirms
    /// them with the daemon ([`Self::confirm`]), and starts the next queued rotation.
    fn finish(&mut self, answer: Result<RenewResponse, RenewError>) {
        let Some(mut renewal) = self.renewal.take() else {
            return;
        };
        let result = answer.and_then(|renewed| {
            renew::install(
                &self.paths,
                &renewal.key,
                &renewed.certificate,
                &renewed.bundle,
            )?;
            self.reload_credentials()?;
            Ok(renewed)
        });
        let rotation = renewal.rotation.take();
        let confirming = result.is_ok().then(|| self.confirm());
        self.conclude(result, rotation, confirming);
        self.start_rotation();
    }

    /// Beside the loop: one handshake with the credentials just swapped in, so that the daemon
    /// records the new certificate's first use at once. Until it does, the daemon lets the
    /// superseded serial renew once more (its answer might have been lost), which a copy of the
    /// old key could use; the next request of a local caller may be hours away. A failure is
    /// logged and changes nothing: the new credentials stay, and the next request completes
    /// the handshake.
    fn confirm(&self) -> tokio::task::JoinHandle<()> {
        let renewer = self.renewer.clone();
        let upstream = self.current();
        tokio::spawn(async move {
            let serial = &upstream.creds.identity.serial;
            match renewer.confirm(&upstream).await {
                Ok(()) => {
                    tracing::debug!(%serial, "the daemon has seen the new certificate");
                }
                Err(e) => tracing::warn!(
                    %serial,
                    error = %e,
                    "could not complete a handshake with the new certificate; the daemon \
                     records its first use at the next request"
                ),
            }
        })
    }

    /// Records a renewal's outcome (status, counters, schedule) and answers the rotation that
    /// asked for it, if any: once `confirming` (the confirming handshake) has ended, so that
    /// when `netclaw pki rotate` returns, the superseded serial may no longer renew.
    fn conclude(
        &mut self,
        result: Result<RenewResponse, RenewError>,
        rotation: Option<Reply>,
        confirming: Option<tokio::task::JoinHandle<()>>,
    ) {
        let error = result.as_ref().err().map(ToString::to_string);
        let counter = if error.is_none() {
            &self.settings.stats.renewals_ok
        } else {
            &self.settings.stats.renewals_failed
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = self.clock.now();
        self.status.send_modify(|s| {
            if error.is_none() {
                s.last_renewal = Some(now);
            }
            s.renewal_error = error;
        });
        match &result {
            Ok(renewed) => {
                tracing::info!(serial = %renewed.serial, previous = %renewed.previous_serial, not_after = %renewed.not_after, "certificate renewed");
            }
            // A rotation whose answer was lost: the daemon may hold the current certificate
            // superseded already, so the schedule retries soon.
            Err(RenewError::Transport(_)) if rotation.is_some() => {
                self.follow_certificate();
                self.schedule.failures = 0;
                self.schedule.due = now + UNANSWERED_RETRY.mul_f64(0.5 + 0.5 * self.clock.draw());
            }
            Err(_) if rotation.is_some() => {}
            Err(e) => {
                let wait = retry_delay(e, self.schedule.failures, self.clock.draw());
                self.schedule.failures = self.schedule.failures.saturating_add(1);
                self.schedule.due = now + wait;
                tracing::warn!(error = %e, retry_in = ?wait, "certificate renewal failed");
            }
        }
        if let Some(reply) = rotation {
            match confirming {
                Some(confirming) => {
                    tokio::spawn(async move {
                        let _ = confirming.await;
                        let _ = reply.send(result);
                    });
                }
                None => {
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// The answer of the renewal under way; pending while there is none.
async fn answer(renewal: &mut Option<Renewal>) -> Result<RenewResponse, RenewError> {
    match renewal {
        Some(r) => match (&mut r.request).await {
            Ok(answer) => answer,
            // The request task panicked or was cancelled: its outcome is unknown.
            Err(_) => Err(RenewError::Transport(
                "the renewal request did not complete".into(),
            )),
        },
        None => std::future::pending().await,
    }
}

fn stamp(paths: &AgentPaths) -> Stamps {
    use std::os::unix::fs::MetadataExt as _;
    [paths.client_key(), paths.client_cert(), paths.ca_bundle()].map(|p| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.ctime(), m.ctime_nsec()))
    })
}

/// The wait before retry number `failures` (0 for the first) after `error`: soon after an
/// unanswered request, whose outcome is unknown (see [`UNANSWERED_RETRY`]), otherwise
/// [`backoff`].
fn retry_delay(error: &RenewError, failures: u32, draw: f64) -> Duration {
    match error {
        RenewError::Transport(_) if failures < UNANSWERED_RETRIES => {
            UNANSWERED_RETRY.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
        }
        _ => backoff(failures, draw),
    }
}

#[cfg(test)]
mod tests;
