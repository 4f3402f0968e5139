//! The daemon's operator PKI: where its trust bundle, listener credentials and issuance registry
//! come from, and how the rest of the daemon sees them.
//!
//! # Publication
//!
//! Everything a handshake or an open operator connection consults is one immutable
//! [`PkiSnapshot`] (bundle, the listener's certified key, registry view, expected agent identity,
//! and the rustls `ServerConfig` built from exactly those), published as `Arc<PkiSnapshot>`
//! through a `tokio::sync::watch` channel (linkerd2-proxy `meshtls` creds store/receiver,
//! ztunnel `identity/manager.rs`). A handshake takes one snapshot's `ServerConfig`, so the
//! certificate it presents and the bundle and registry it verifies against always belong
//! together.
//!
//! Two things publish, both through [`Publisher`], both off the async workers:
//! * the [`reloader`] (one task) notices changed files (written by `netclaw pki …`), builds and
//!   verifies a snapshot in `spawn_blocking` and only then `send_replace`s it; a file that does
//!   not load or verify keeps the current snapshot and is reported once;
//! * the [`issuer`] owns every write this daemon makes (agent renewal, listener renewal,
//!   first-use records, identity lock) and publishes the snapshot it wrote, under the same lock.
//!
//! Open operator connections subscribe ([`OperatorPki::serial_refused`]): a published snapshot
//! that revokes or supersedes their serial, or the end of its grace period, cuts them at once.
//!
//! # The identity-source seam
//!
//! [`IdentitySource`] is where the material comes from. Today that is [`LocalCa`], the per-host
//! operator CA on disk (issued at install, rotated by `netclaw pki`), with [`issuer::Issuer`]
//! writing into it. A SPIFFE Workload API source would deliver the same [`Material`] (the
//! trust-domain bundle and an X.509-SVID for the listener) and would have no issuer; see the
//! OpenSpec design, "Identity source".
//!
//! # Security
//!
//! A snapshot is only published after the listener certificate verified against the bundle it
//! ships with and its key proved usable. Registry admission (revoked, superseded past grace) is
//! decided by the snapshot current at the handshake, and again whenever a new one is published.

pub mod issuer;
pub mod reloader;

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use netclaw_core::config::Config;
use netclaw_pki::registry::{CertificateKind, Registry};
use netclaw_pki::store::{self, DaemonPkiPaths};
use netclaw_pki::verify::ExpectedAgent;
use netclaw_pki::{hostid, HostId, PkiError, Serial, ServerCertificate, SpiffeId};
use rustls_pki_types::CertificateDer;
use tokio::sync::{mpsc, watch};

pub use crate::trust::{Admitted, Presented, Refusal, Trust};
pub use issuer::{Issuer, Observed, RenewError, Renewed};

/// A successor counts as "in use" this long after its first handshake; before that, an agent
/// may still legitimately open a connection with the credentials it is replacing.
pub const CLONE_SETTLE: Duration = Duration::from_secs(5);

/// How many refused presentations of superseded serials wait for the issuer; more are dropped
/// (each needs a certificate that chains to the operator CA, so only old keys can fill it).
const PRESENTED_QUEUE: usize = 64;

/// A superseded serial presented after its successor was already in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneSuspicion {
    /// The superseded serial that was presented.
    pub serial: Serial,
    /// Its successor, seen earlier.
    pub successor: Serial,
}

/// Why a snapshot could not be built from the source's material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A file failed to load, or the listener certificate does not verify against the bundle.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The listener key cannot sign for rustls.
    #[error("the operator listener's key cannot be used: {0}")]
    ListenerKey(#[source] rustls::Error),
    /// The rustls configuration could not be built.
    #[error("operator listener TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
}

/// What an identity source provides: the trust bundle, the operator listener's credentials and
/// the issuance registry.
#[derive(Debug)]
pub struct Material {
    /// The trust bundle (operator CA certificates, two during a CA rotation).
    pub bundle: Vec<CertificateDer<'static>>,
    /// The operator listener's key and certificate.
    pub server: Arc<ServerCertificate>,
    /// Which agent serials are active, superseded (with grace) or revoked.
    pub registry: Registry,
}

/// Where the daemon's trust bundle, listener credentials and registry come from.
pub trait IdentitySource: Send + Sync + std::fmt::Debug + 'static {
    /// A cheap fingerprint that changes whenever [`Self::load`] may return something new
    /// (polled by the reloader).
    fn stamp(&self) -> Stamp;
    /// Reads the material (blocking I/O; called off the async workers).
    fn load(&self) -> Result<Material, PkiError>;
    /// Reads the issuance registry alone (blocking I/O), for when the rest of [`Self::load`]
    /// cannot be used: a revocation on disk must take effect regardless.
    fn load_registry(&self) -> Result<Registry, PkiError>;
}

/// A source's fingerprint: for files, inode, modification time and length of each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamp(Vec<Option<(u64, i64, i64, u64)>>);

/// The built-in source: the per-host operator CA's files in `Operator.PkiDirectory`.
#[derive(Debug)]
pub struct LocalCa {
    paths: DaemonPkiPaths,
}

impl LocalCa {
    /// The CA files under `paths`.
    pub fn new(paths: DaemonPkiPaths) -> Self {
        Self { paths }
    }

    /// The files.
    pub fn paths(&self) -> &DaemonPkiPaths {
        &self.paths
    }
}

impl IdentitySource for LocalCa {
    fn stamp(&self) -> Stamp {
        let files = [
            self.paths.ca_cert(),
            self.paths.server_cert(),
            self.paths.server_key(),
            self.paths.registry(),
        ];
        Stamp(
            files
                .iter()
                .map(|f| {
                    std::fs::metadata(f)
                        .ok()
                        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
                })
                .collect(),
        )
    }

    fn load(&self) -> Result<Material, PkiError> {
        Ok(Material {
            bundle: store::load_trust_bundle(&self.paths.ca_cert())?,
            server: Arc::new(store::load_server(&self.paths)?),
            registry: store::load_registry(&self.paths)?,
        })
    }

    fn load_registry(&self) -> Result<Registry, PkiError> {
        store::load_registry(&self.paths)
    }
}

/// One consistent view of the operator PKI. Immutable; replaced as a whole.
#[derive(Debug)]
pub struct PkiSnapshot {
    generation: u64,
    trust: Arc<Trust>,
    server: Arc<ServerCertificate>,
    certified_key: Arc<rustls::sign::CertifiedKey>,
    tls: Arc<rustls::ServerConfig>,
}

impl PkiSnapshot {
    /// Verifies `material` (the listener certificate against the bundle at `now`, its key
    /// usable) and builds the TLS configuration from it. `presented` receives refused
    /// presentations of superseded serials (for clone detection).
    fn build(
        material: Material,
        expected: ExpectedAgent,
        generation: u64,
        now: SystemTime,
        presented: mpsc::Sender<Presented>,
    ) -> Result<Self, SnapshotError> {
        let Material {
            bundle,
            server,
            registry,
        } = material;
        let name = server_name_of(&server)?;
        netclaw_pki::verify::verify_server_certificate(&server.cert.der, &bundle, &name, now)?;
        let certified_key = Arc::new(
            rustls::sign::CertifiedKey::from_der(
                vec![server.cert.der.clone()],
                server.key.to_rustls(),
                &crate::tls::provider(),
            )
            .map_err(SnapshotError::ListenerKey)?,
        );
        let trust = Arc::new(Trust::new(bundle, registry, expected));
        let tls =
            crate::tls::operator_server_config(trust.clone(), certified_key.clone(), presented)
                .map_err(SnapshotError::Tls)?;
        Ok(Self {
            generation,
            trust,
            server,
            certified_key,
            tls,
        })
    }

    /// Counts publications, starting at 0 for the one loaded at start-up.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bundle, registry and expected identity.
    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }

    /// The operator listener's certificate and key.
    pub fn server(&self) -> &Arc<ServerCertificate> {
        &self.server
    }

    /// The listener's certificate and key as rustls serves them.
    pub fn certified_key(&self) -> &Arc<rustls::sign::CertifiedKey> {
        &self.certified_key
    }

    /// The operator listener's TLS configuration, built from this snapshot alone.
    pub fn tls(&self) -> &Arc<rustls::ServerConfig> {
        &self.tls
    }
}

/// Builds, verifies and publishes snapshots. Whoever publishes holds `stamp`'s lock from reading
/// (or writing) the material to `send_replace`, so publications follow the files' order.
#[derive(Debug)]
pub struct Publisher {
    source: Box<dyn IdentitySource>,
    expected: ExpectedAgent,
    tx: watch::Sender<Arc<PkiSnapshot>>,
    /// The source's fingerprint when last read (or written by the issuer).
    stamp: Mutex<Stamp>,
    presented: mpsc::Sender<Presented>,
}

impl Publisher {
    /// Loads the first snapshot from `source`.
    fn start(
        source: Box<dyn IdentitySource>,
        expected: ExpectedAgent,
        now: SystemTime,
    ) -> Result<(Self, mpsc::Receiver<Presented>), SnapshotError> {
        let (presented, presented_rx) = mpsc::channel(PRESENTED_QUEUE);
        let stamp = source.stamp();
        let material = source.load()?;
        let first = PkiSnapshot::build(material, expected.clone(), 0, now, presented.clone())?;
        let (tx, _) = watch::channel(Arc::new(first));
        Ok((
            Self {
                source,
                expected,
                tx,
                stamp: Mutex::new(stamp),
                presented,
            },
            presented_rx,
        ))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<PkiSnapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver of every snapshot published from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PkiSnapshot>> {
        self.tx.subscribe()
    }

    /// Blocking. Re-reads the source when its fingerprint changed, and publishes what it read
    /// once it verified. A change that fails is recorded too, so it is reported once, not at
    /// every poll; the current bundle and listener credentials stay, but a registry that
    /// changed on disk is still published with them (a revocation written by `netclaw pki
    /// revoke` takes effect while, say, the listener certificate on disk cannot be used).
    /// Returns the new snapshot, if any.
    pub fn reload_if_changed(
        &self,
        now: SystemTime,
    ) -> Result<Option<Arc<PkiSnapshot>>, SnapshotError> {
        let mut last = self.stamp.lock().map_err(|_| PkiError::LockPoisoned {
            what: "operator PKI publication",
        })?;
        let stamp = self.source.stamp();
        if *last == stamp {
            return Ok(None);
        }
        *last = stamp;
        let loaded = self
            .source
            .load()
            .map_err(SnapshotError::from)
            .and_then(|material| self.publish_locked(material, now));
        let Err(e) = loaded else {
            return loaded.map(Some);
        };
        if let Ok(registry) = self.source.load_registry() {
            if registry != *self.current().trust.registry() {
                tracing::warn!(error = %e, "operator PKI files cannot be used; publishing the changed registry with the current bundle and listener certificate");
                self.publish_registry_locked(registry, now)?;
            }
        }
        Err(e)
    }

    /// `registry` with the current snapshot's bundle and listener credentials. The caller holds
    /// the publication lock.
    fn publish_registry_locked(
        &self,
        registry: Registry,
        now: SystemTime,
    ) -> Result<Arc<PkiSnapshot>, SnapshotError> {
        let current = self.current();
        self.publish_locked(
            Material {
                bundle: current.trust.bundle().to_vec(),
                server: current.server.clone(),
                registry,
            },
            now,
        )
    }

    /// Blocking. Runs `write` (which writes files and returns the registry it wrote) with the
    /// publication lock held, then publishes what the source now holds. Should the other files
    /// not load or verify at this moment, the written registry is published with the current
    /// bundle and listener credentials (a revocation takes effect regardless), and the reloader
    /// reports the files at its next poll.
    fn publish_written(
        &self,
        now: SystemTime,
        write: impl FnOnce() -> Result<Registry, SnapshotError>,
    ) -> Result<Arc<PkiSnapshot>, SnapshotError> {
        let mut last = self.stamp.lock().map_err(|_| PkiError::LockPoisoned {
            what: "operator PKI publication",
        })?;
        let registry = write()?;
        let stamp = self.source.stamp();
        let loaded = self
            .source
            .load()
            .map_err(SnapshotError::from)
            .and_then(|material| self.publish_locked(material, now));
        match loaded {
            Ok(snapshot) => {
                // What was just written is what the source holds: the reloader need not read it.
                *last = stamp;
                Ok(snapshot)
            }
            Err(e) => {
                tracing::warn!(error = %e, "operator PKI files cannot be used; publishing the written registry with the current bundle and listener certificate");
                *last = Stamp::default();
                self.publish_registry_locked(registry, now)
            }
        }
    }

    fn publish_locked(
        &self,
        material: Material,
        now: SystemTime,
    ) -> Result<Arc<PkiSnapshot>, SnapshotError> {
        let generation = self.tx.borrow().generation + 1;
        let next = Arc::new(PkiSnapshot::build(
            material,
            self.expected.clone(),
            generation,
            now,
            self.presented.clone(),
        )?);
        self.tx.send_replace(next.clone());
        Ok(next)
    }
}

/// The operator PKI as the daemon uses it: the published snapshot and the issuer.
#[derive(Debug)]
pub struct OperatorPki {
    publisher: Arc<Publisher>,
    issuer: Issuer,
}

impl OperatorPki {
    /// Loads CA bundle, server key and certificate, registry and host-id from the built-in
    /// per-host CA. Fails closed with a message naming the file and the fix. The receiver gets
    /// refused presentations of superseded serials; hand it to [`reloader::run`].
    pub fn load(
        config: &Config,
        machine_id: &std::path::Path,
    ) -> Result<(Self, mpsc::Receiver<Presented>), SnapshotError> {
        let paths = DaemonPkiPaths::new(config.operator().pki_dir());
        let host_id = host_id(&paths, machine_id)?;
        let expected = ExpectedAgent {
            trust_domain: config.operator().trust_domain().clone(),
            host_id,
        };
        Self::from_local_ca(
            paths,
            expected,
            config.operator().lock_on_suspected_clone(),
            SystemTime::now(),
        )
    }

    /// The built-in per-host CA in `paths`, expecting agents with `expected`'s identity.
    pub fn from_local_ca(
        paths: DaemonPkiPaths,
        expected: ExpectedAgent,
        lock_on_clone: bool,
        now: SystemTime,
    ) -> Result<(Self, mpsc::Receiver<Presented>), SnapshotError> {
        let (publisher, presented) =
            Publisher::start(Box::new(LocalCa::new(paths.clone())), expected, now)?;
        let publisher = Arc::new(publisher);
        let issuer = Issuer::new(paths, publisher.clone(), lock_on_clone);
        Ok((Self { publisher, issuer }, presented))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<PkiSnapshot> {
        self.publisher.current()
    }

    /// A receiver of published snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PkiSnapshot>> {
        self.publisher.subscribe()
    }

    /// Where snapshots are published.
    pub fn publisher(&self) -> &Arc<Publisher> {
        &self.publisher
    }

    /// The one writer.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The operator listener's current certificate and key.
    pub fn server(&self) -> Arc<ServerCertificate> {
        self.current().server.clone()
    }

    /// This host's host-id.
    pub fn host_id(&self) -> HostId {
        self.current().trust.expected().host_id.clone()
    }

    /// The identity of a connection whose handshake the verifier accepted: the SPIFFE id the
    /// verifier requires and the certificate's serial. Not verified again (no resumption: every
    /// connection went through the verifier).
    pub fn peer_identity(&self, cert: &CertificateDer<'_>) -> Result<(SpiffeId, Serial), PkiError> {
        let serial = netclaw_pki::verify::inspect(cert)?.serial;
        let expected = self.current().trust.expected().clone();
        Ok((
            SpiffeId::operator_agent(expected.trust_domain, expected.host_id),
            serial,
        ))
    }

    /// Resolves once `serial` is no longer admitted ([`Self::serial_refused`]), having audited
    /// the end of the operator connection or hub session it carried (`connection-closed`, with
    /// the refusal's reason): what cuts both.
    pub async fn until_refused(&self, serial: &Serial, audit: &crate::audit::Audit) {
        let refusal = self.serial_refused(serial).await;
        audit.refusal(
            "connection-closed",
            format!("LocalOperator(serial={serial})"),
            refusal.reason,
            refusal.reason.as_str().to_owned(),
        );
    }

    /// Resolves, with the reason, once `serial` is no longer admitted: when a published snapshot
    /// revokes it or supersedes it past its grace, or when its grace runs out. Checks the
    /// current snapshot first.
    pub async fn serial_refused(&self, serial: &Serial) -> Refusal {
        self.serial_refused_by(serial, SystemTime::now).await
    }

    /// [`Self::serial_refused`] with the wall clock `now` (tests pass one that follows tokio's
    /// paused clock).
    pub async fn serial_refused_by(
        &self,
        serial: &Serial,
        now: impl Fn() -> SystemTime,
    ) -> Refusal {
        let mut rx = self.subscribe();
        loop {
            let snapshot = rx.borrow_and_update().clone();
            let wait = match snapshot.trust.admit(serial, now()) {
                Err(refusal) => return refusal,
                Ok(Admitted::Active) => None,
                Ok(Admitted::Grace(until)) => Some(
                    until
                        .duration_since(now())
                        .unwrap_or_default()
                        .max(Duration::from_millis(1)),
                ),
            };
            let deadline = async {
                match wait {
                    Some(left) => tokio::time::sleep(left).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The publisher is gone: the daemon is stopping, which ends connections.
                        return std::future::pending().await;
                    }
                }
                () = deadline => {}
            }
        }
    }

    /// Active agent certificates: serial and not-after (Unix seconds).
    pub fn active_agents(&self) -> Vec<(String, u64)> {
        self.current()
            .trust
            .registry()
            .active(CertificateKind::Agent)
            .map(|e| (e.serial.to_string(), e.not_after))
            .collect()
    }
}

/// A name the server certificate carries (its first IP or DNS SAN), to check it against the
/// bundle.
fn server_name_of(
    server: &ServerCertificate,
) -> Result<rustls_pki_types::ServerName<'static>, PkiError> {
    let info = netclaw_pki::verify::inspect(&server.cert.der)?;
    let name = info.alt_names().find_map(|n| n.server_name());
    name.ok_or_else(|| PkiError::BadCertificate("server certificate without IP or DNS name".into()))
}

fn host_id(paths: &DaemonPkiPaths, machine_id: &std::path::Path) -> Result<HostId, PkiError> {
    let (id, _) = hostid::resolve(machine_id, paths)?.ok_or_else(|| PkiError::Missing {
        what: "host-id (no usable machine-id and no persisted host-id)",
        path: paths.host_id(),
        fix: "run `netclaw daemon install --force` to persist one and re-issue the agent certificate",
    })?;
    Ok(id)
}

/// Audits what the issuer observed about a presented serial (a suspected clone, the lock).
pub fn audit_observed(audit: &crate::audit::Audit, observed: Observed) {
    let Some(s) = observed.suspicion else { return };
    audit.record(
        "possible-key-clone",
        format!("LocalOperator(serial={})", s.serial),
        format!(
            "superseded serial {} used after its successor {} was in use; the old key may have been copied",
            s.serial, s.successor
        ),
    );
    match observed.locked {
        Some(Ok(revoked)) => audit.record(
            "identity-locked",
            "daemon".into(),
            format!(
                "revoked {}; re-issue with `netclaw pki rotate --offline`",
                revoked
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(Err(e)) => tracing::error!(error = %e, "could not lock the operator identity"),
        None => {}
    }
}

/// Shared handle.
pub type SharedPki = Arc<OperatorPki>;

#[cfg(test)]
mod tests;
