//! The daemon's live view of its operator PKI: trust bundle, expected agent identity, issuance
//! registry (reloaded when the file changes) and the operator listener's TLS configuration.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::refusal::RefusalReason;
use netclaw_core::config::Config;
use netclaw_pki::registry::{Admission, CertificateKind, Registry, RenewalGrant, RenewalRefusal};
use netclaw_pki::store::{self, DaemonPkiPaths};
use netclaw_pki::verify::{verify_agent_certificate, ExpectedAgent};
use netclaw_pki::{
    hostid, CertificateLifetime, HostId, IssuedCertificate, OperatorIdentity, PkiError, Serial,
    ServerCertificate, SpiffeId,
};
use rustls_pki_types::CertificateDer;

/// The operator PKI as the daemon uses it.
#[derive(Debug)]
pub struct OperatorPki {
    paths: DaemonPkiPaths,
    expected: ExpectedAgent,
    bundle: RwLock<Arc<Vec<CertificateDer<'static>>>>,
    server: RwLock<Arc<ServerCertificate>>,
    /// Modification times of `ca.crt` and `server.crt` when last loaded.
    files_mtime: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    registry: RwLock<Registry>,
    registry_mtime: Mutex<Option<SystemTime>>,
    issue_lock: Mutex<()>,
    /// `Operator.LockOnSuspectedClone`.
    lock_on_clone: bool,
    /// When each agent serial first completed a handshake.
    first_seen: Mutex<std::collections::HashMap<Serial, SystemTime>>,
    /// First handshakes not yet written to the registry (see [`OperatorPki::persist_first_use`]).
    unpersisted_first_use: Mutex<Vec<(Serial, SystemTime)>>,
    /// Suspected key clones found by [`OperatorPki::verify_client`], for the listener to audit.
    suspicions: Mutex<Vec<CloneSuspicion>>,
}

/// A superseded serial presented after its successor was already in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneSuspicion {
    /// The superseded serial that was presented.
    pub serial: Serial,
    /// Its successor, seen earlier.
    pub successor: Serial,
}

/// A successor counts as "in use" this long after its first handshake; before that, an agent
/// may still legitimately open a connection with the credentials it is replacing.
pub const CLONE_SETTLE: Duration = Duration::from_secs(5);

/// Why an agent certificate was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refusal {
    /// Why, by type (its label: `wrong-ca`, `expired`, `revoked-serial`, …).
    pub reason: RefusalReason,
    /// Human detail.
    pub detail: String,
}

impl OperatorPki {
    /// Loads CA bundle, server key and certificate, registry and host-id. Fails closed with a
    /// message naming the file and the fix.
    pub fn load(config: &Config, machine_id: &std::path::Path) -> Result<Self, PkiError> {
        let paths = DaemonPkiPaths::new(config.operator().pki_dir());
        let bundle = store::load_trust_bundle(&paths.ca_cert())?;
        let server = store::load_server(&paths)?;
        let registry = store::load_registry(&paths)?;
        let host_id = host_id(&paths, machine_id)?;
        let mtime = mtime_of(&paths.registry());
        let files = (mtime_of(&paths.ca_cert()), mtime_of(&paths.server_cert()));
        Ok(Self {
            expected: ExpectedAgent {
                trust_domain: config.operator().trust_domain().clone(),
                host_id,
            },
            paths,
            bundle: RwLock::new(Arc::new(bundle)),
            server: RwLock::new(Arc::new(server)),
            files_mtime: Mutex::new(files),
            registry: RwLock::new(registry),
            registry_mtime: Mutex::new(mtime),
            issue_lock: Mutex::new(()),
            lock_on_clone: config.operator().lock_on_suspected_clone(),
            first_seen: Mutex::new(std::collections::HashMap::new()),
            unpersisted_first_use: Mutex::new(Vec::new()),
            suspicions: Mutex::new(Vec::new()),
        })
    }

    /// The operator listener's current certificate and key.
    pub fn server(&self) -> Arc<ServerCertificate> {
        match self.server.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The current CA bundle.
    pub fn bundle(&self) -> Arc<Vec<CertificateDer<'static>>> {
        match self.bundle.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads `ca.crt` (the trust bundle) and the operator listener's key and certificate
    /// when their files changed (CA rotation, server certificate renewal). A bundle or server
    /// pair that fails to load or does not verify against the bundle is refused and the current
    /// one kept. Returns whether anything was swapped in.
    pub fn refresh_files(&self, now: SystemTime) -> Result<bool, PkiError> {
        let current = (
            mtime_of(&self.paths.ca_cert()),
            mtime_of(&self.paths.server_cert()),
        );
        {
            let last = self
                .files_mtime
                .lock()
                .map_err(|_| PkiError::LockPoisoned {
                    what: "credential file times",
                })?;
            if *last == current {
                return Ok(false);
            }
        }
        // Record the attempt first, so a bad file is reported once, not every second.
        if let Ok(mut last) = self.files_mtime.lock() {
            *last = current;
        }
        let bundle = store::load_trust_bundle(&self.paths.ca_cert())?;
        let server = store::load_server(&self.paths)?;
        let name = server_name_of(&server)?;
        netclaw_pki::verify::verify_server_certificate(&server.cert.der, &bundle, &name, now)?;
        if let Ok(mut b) = self.bundle.write() {
            *b = Arc::new(bundle);
        }
        if let Ok(mut s) = self.server.write() {
            *s = Arc::new(server);
        }
        Ok(true)
    }

    /// This host's host-id.
    pub fn host_id(&self) -> &HostId {
        &self.expected.host_id
    }

    /// Full verification of a presented agent certificate at `now`: chain, validity, EKU,
    /// identity, and registry admission.
    pub fn verify_client(
        &self,
        cert: &CertificateDer<'_>,
        now: SystemTime,
    ) -> Result<OperatorIdentity, Refusal> {
        let bundle = self.bundle();
        let identity =
            verify_agent_certificate(cert, &bundle, &self.expected, now).map_err(classify)?;
        self.check_clone(&identity.serial, now);
        self.admit(&identity, now)?;
        let first = self.first_seen.lock().is_ok_and(|mut seen| {
            let first = !seen.contains_key(&identity.serial);
            seen.entry(identity.serial.clone()).or_insert(now);
            first
        });
        let recorded = self.registry.read().is_ok_and(|r| {
            r.get(&identity.serial)
                .is_some_and(|e| e.first_used.is_some())
        });
        if first && !recorded {
            // Written by the listener's tick (no file I/O inside the TLS handshake), and by
            // any renewal before it decides.
            if let Ok(mut pending) = self.unpersisted_first_use.lock() {
                pending.push((identity.serial.clone(), now));
            }
        }
        Ok(identity)
    }

    /// Re-issues the operator listener's certificate from the CA on disk when less than a third
    /// of its lifetime remains at `now` (same names, registry updated under the lock). The new
    /// files are then picked up by [`Self::refresh_files`]. Returns the new serial, if any.
    pub fn renew_server_if_due(&self, now: SystemTime) -> Result<Option<Serial>, PkiError> {
        let current = self.server();
        let (nb, na) = (current.cert.not_before, current.cert.not_after);
        let lifetime = na.duration_since(nb).unwrap_or_default();
        let left = na.duration_since(now).unwrap_or_default();
        if left >= lifetime / 3 {
            return Ok(None);
        }
        let _guard = self.issue_lock.lock().map_err(|_| PkiError::LockPoisoned {
            what: "certificate issuance",
        })?;
        let _file_lock = store::lock_registry(&self.paths)?;
        let ca = store::load_ca(&self.paths)?;
        let names = netclaw_pki::rotation::current_listener_names(&self.paths)?;
        let server = ca.issue_server(&names, now)?;
        let mut registry = store::load_registry(&self.paths)?;
        registry.replace(
            &server.cert,
            CertificateKind::Server,
            "operator listener (renewed)".into(),
            now,
            netclaw_pki::rotation::SERVER_GRACE,
        );
        store::save_server(&self.paths, &server)?;
        store::save_registry(&self.paths, &registry)?;
        Ok(Some(server.cert.serial))
    }

    /// [`Self::verify_client`] without its side effects (clone check, first-seen record): for
    /// reading the identity of a connection the verifier already accepted.
    pub fn identity_of(
        &self,
        cert: &CertificateDer<'_>,
        now: SystemTime,
    ) -> Result<OperatorIdentity, Refusal> {
        let bundle = self.bundle();
        let identity =
            verify_agent_certificate(cert, &bundle, &self.expected, now).map_err(classify)?;
        self.admit(&identity, now)?;
        Ok(identity)
    }

    /// Records a suspicion when `serial` is superseded and its successor has been in use for
    /// at least [`CLONE_SETTLE`]: the old key is being used by someone other than the agent,
    /// which switched to the successor.
    fn check_clone(&self, serial: &Serial, now: SystemTime) {
        let successor = match self.registry.read() {
            Ok(r) => match r.get(serial).map(|e| &e.status) {
                Some(netclaw_pki::registry::Status::Superseded { successor, .. }) => {
                    successor.clone()
                }
                _ => return,
            },
            Err(_) => return,
        };
        let in_use = self
            .first_seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(&successor).copied())
            .is_some_and(|t| now.duration_since(t).unwrap_or_default() >= CLONE_SETTLE);
        if in_use {
            if let Ok(mut s) = self.suspicions.lock() {
                s.push(CloneSuspicion {
                    serial: serial.clone(),
                    successor,
                });
            }
        }
    }

    /// Whether a suspected clone locks the identity (`Operator.LockOnSuspectedClone`).
    pub fn lock_on_clone(&self) -> bool {
        self.lock_on_clone
    }

    /// Suspicions recorded since the last call.
    pub fn take_suspicions(&self) -> Vec<CloneSuspicion> {
        self.suspicions
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// Revokes every agent serial the daemon would still accept (active or in grace), under
    /// the registry lock: the identity stays locked until an operator re-issues with
    /// `netclaw pki rotate --offline`. Returns the revoked serials.
    pub fn lock_identity(&self, now: SystemTime) -> Result<Vec<Serial>, PkiError> {
        let _guard = self.issue_lock.lock().map_err(|_| PkiError::LockPoisoned {
            what: "certificate issuance",
        })?;
        let _file_lock = store::lock_registry(&self.paths)?;
        let mut registry = store::load_registry(&self.paths)?;
        let targets: Vec<Serial> = registry
            .accepted_agents(now)
            .map(|e| e.serial.clone())
            .collect();
        for s in &targets {
            registry.revoke(s, now);
        }
        store::save_registry(&self.paths, &registry)?;
        self.install_registry(registry);
        Ok(targets)
    }

    /// Registry admission of an already verified identity at `now`.
    pub fn admit(&self, identity: &OperatorIdentity, now: SystemTime) -> Result<(), Refusal> {
        self.admit_serial(&identity.serial, now)
    }

    /// Registry admission of `serial` at `now`.
    pub fn admit_serial(
        &self,
        serial: &netclaw_pki::Serial,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let admission = match self.registry.read() {
            Ok(r) => r.admit_agent(serial, now),
            Err(_) => {
                return Err(Refusal {
                    reason: RefusalReason::RegistryUnavailable,
                    detail: "issuance registry lock poisoned".into(),
                })
            }
        };
        match admission {
            Admission::Active | Admission::Grace => Ok(()),
            Admission::Refused(r) => Err(Refusal {
                reason: RefusalReason::Serial(r),
                detail: format!("serial {serial}"),
            }),
        }
    }

    /// Re-reads the registry when its file changed. Returns whether it reloaded. A file that no
    /// longer parses keeps the previous registry and is reported.
    pub fn refresh_registry(&self) -> Result<bool, PkiError> {
        let mtime = mtime_of(&self.paths.registry());
        {
            let last = self
                .registry_mtime
                .lock()
                .map_err(|_| PkiError::LockPoisoned {
                    what: "registry file time",
                })?;
            if *last == mtime {
                return Ok(false);
            }
        }
        let fresh = store::load_registry(&self.paths)?;
        if let Ok(mut r) = self.registry.write() {
            *r = fresh;
        }
        if let Ok(mut last) = self.registry_mtime.lock() {
            *last = mtime;
        }
        Ok(true)
    }

    /// Writes the first handshakes of agent serials into the registry (under the registry
    /// lock), so that a restarted daemon still knows which successors were used. Called by the
    /// listener's one-second tick; returns how many entries changed. On failure the pending
    /// records are kept for the next call.
    pub fn persist_first_use(&self) -> Result<usize, PkiError> {
        let pending = match self.unpersisted_first_use.lock() {
            Ok(mut p) if !p.is_empty() => std::mem::take(&mut *p),
            _ => return Ok(0),
        };
        let result = (|| {
            let _guard = self.issue_lock.lock().map_err(|_| PkiError::LockPoisoned {
                what: "certificate issuance",
            })?;
            let _file_lock = store::lock_registry(&self.paths)?;
            let mut registry = store::load_registry(&self.paths)?;
            let changed = pending
                .iter()
                .filter(|(serial, at)| registry.mark_first_use(serial, *at))
                .count();
            if changed > 0 {
                store::save_registry(&self.paths, &registry)?;
                self.install_registry(registry);
            }
            Ok(changed)
        })();
        if result.is_err() {
            if let Ok(mut p) = self.unpersisted_first_use.lock() {
                p.extend(pending);
            }
        }
        result
    }

    /// Makes `registry`, just written, the daemon's view.
    fn install_registry(&self, registry: Registry) {
        let mtime = mtime_of(&self.paths.registry());
        if let Ok(mut r) = self.registry.write() {
            *r = registry;
        }
        if let Ok(mut last) = self.registry_mtime.lock() {
            *last = mtime;
        }
    }

    /// Renews the agent certificate `current` for the key in `csr_pem`, if the registry lets
    /// it ([`Registry::renewal_decision`]: the newest active serial, or once a superseded one
    /// whose successor never completed a handshake): issues a certificate for this host's
    /// identity (never one the request names), records it active and supersedes every other
    /// agent serial with `grace` (`Operator.RotationGrace`). The registry is re-read and
    /// written under an exclusive lock on `registry.lock`, so an offline rotation cannot
    /// interleave; the first handshakes this daemon saw are written with it.
    pub fn renew_agent(
        &self,
        current: &Serial,
        csr_pem: &[u8],
        lifetime: CertificateLifetime,
        grace: Duration,
        now: SystemTime,
    ) -> Result<Renewed, RenewError> {
        let csr = netclaw_pki::issue::csr_from_pem(csr_pem)?;
        let _guard = self.issue_lock.lock().map_err(|_| PkiError::LockPoisoned {
            what: "certificate issuance",
        })?;
        let _file_lock = store::lock_registry(&self.paths)?;
        let mut registry = store::load_registry(&self.paths)?;
        let seen: Vec<(Serial, SystemTime)> = self
            .first_seen
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let marked = seen
            .iter()
            .filter(|(serial, at)| registry.mark_first_use(serial, *at))
            .count();
        if let Err(refusal) = registry.renewal_decision(current, now) {
            if marked > 0 {
                store::save_registry(&self.paths, &registry)?;
                self.install_registry(registry);
            }
            return Err(RenewError::Refused(refusal));
        }
        let ca = store::load_ca(&self.paths)?;
        let id = SpiffeId::operator_agent(
            self.expected.trust_domain.clone(),
            self.expected.host_id.clone(),
        );
        let cert = ca.issue_agent_from_csr(&csr, &id, now, lifetime)?;
        let (grant, superseded) = registry
            .renew(current, &cert, id.to_string(), now, grace)
            .map_err(RenewError::Refused)?;
        store::save_registry(&self.paths, &registry)?;
        self.install_registry(registry);
        let bundle = std::fs::read_to_string(self.paths.ca_cert())
            .map_err(|e| PkiError::io("reading", self.paths.ca_cert(), e))?;
        Ok(Renewed {
            cert,
            bundle,
            superseded,
            grant,
        })
    }

    /// Active agent certificates: serial and not-after (Unix seconds).
    pub fn active_agents(&self) -> Vec<(String, u64)> {
        self.registry
            .read()
            .map(|r| {
                r.active(CertificateKind::Agent)
                    .map(|e| (e.serial.to_string(), e.not_after))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn mtime_of(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
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

/// A renewed agent certificate.
#[derive(Debug)]
pub struct Renewed {
    /// The new certificate.
    pub cert: IssuedCertificate,
    /// The trust bundle (PEM).
    pub bundle: String,
    /// Serials it superseded.
    pub superseded: Vec<Serial>,
    /// Why the renewal was allowed.
    pub grant: RenewalGrant,
}

/// Why a renewal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The registry does not let the presented serial renew.
    #[error("renewal refused: {0}")]
    Refused(RenewalRefusal),
    /// The request or the PKI files failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn host_id(paths: &DaemonPkiPaths, machine_id: &std::path::Path) -> Result<HostId, PkiError> {
    let (id, _) = hostid::resolve(machine_id, paths)?.ok_or_else(|| PkiError::Missing {
        what: "host-id (no usable machine-id and no persisted host-id)",
        path: paths.host_id(),
        fix: "run `netclaw daemon install --force` to persist one and re-issue the agent certificate",
    })?;
    Ok(id)
}

fn classify(e: PkiError) -> Refusal {
    Refusal {
        reason: RefusalReason::of_pki_error(&e),
        detail: e.to_string(),
    }
}

/// Shared handle.
pub type SharedPki = Arc<OperatorPki>;
