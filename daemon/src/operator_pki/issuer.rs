//! The one writer of the operator PKI in the daemon: agent renewal, listener renewal, first-use
//! records and the identity lock. Each write runs on a blocking thread under the issuance lock
//! and the registry's file lock (which `netclaw pki …` takes too), and publishes the snapshot it
//! wrote before the lock is released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use netclaw_pki::registry::{CertificateKind, Registry, RenewalGrant, RenewalRefusal};
use netclaw_pki::store::{self, DaemonPkiPaths};
use netclaw_pki::{CertificateLifetime, IssuedCertificate, PkiError, Serial, SpiffeId};

use super::{CloneSuspicion, PkiSnapshot, Publisher, SnapshotError, CLONE_SETTLE};

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
    /// The renewal was written but its snapshot could not be built.
    #[error(transparent)]
    Publish(#[from] SnapshotError),
}

/// What the issuer made of a presented serial.
#[derive(Debug, Default)]
pub struct Observed {
    /// A superseded serial used after its successor was in use.
    pub suspicion: Option<CloneSuspicion>,
    /// The identity lock that followed (`Operator.LockOnSuspectedClone`): the revoked serials.
    pub locked: Option<Result<Vec<Serial>, SnapshotError>>,
}

/// First handshakes, in memory; written to the registry by [`Issuer::persist_first_use`].
#[derive(Debug, Default)]
struct Seen {
    first: HashMap<Serial, SystemTime>,
    unpersisted: Vec<(Serial, SystemTime)>,
}

/// The issuer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Issuer {
    paths: DaemonPkiPaths,
    publisher: Arc<Publisher>,
    lock_on_clone: bool,
    /// Serializes this daemon's writes (held on blocking threads only).
    writing: Arc<Mutex<()>>,
    /// Short, non-blocking sections only.
    seen: Arc<Mutex<Seen>>,
}

impl Issuer {
    pub(super) fn new(
        paths: DaemonPkiPaths,
        publisher: Arc<Publisher>,
        lock_on_clone: bool,
    ) -> Self {
        Self {
            paths,
            publisher,
            lock_on_clone,
            writing: Arc::new(Mutex::new(())),
            seen: Arc::new(Mutex::new(Seen::default())),
        }
    }

    /// Runs `f` on a blocking thread under the issuance lock and the registry's file lock.
    async fn write<T, E>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<PkiError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = this.writing.lock().map_err(|_| PkiError::LockPoisoned {
                what: "certificate issuance",
            })?;
            let _file_lock = store::lock_registry(&this.paths)?;
            f(&this)
        })
        .await
        .unwrap_or_else(|_| {
            Err(E::from(PkiError::LockPoisoned {
                what: "certificate issuance (the issuing thread panicked)",
            }))
        })
    }

    /// Saves `registry` and publishes it with the bundle and listener credentials on disk.
    /// Called with the locks held.
    fn save_and_publish(
        &self,
        registry: Registry,
        now: SystemTime,
    ) -> Result<Arc<PkiSnapshot>, SnapshotError> {
        self.publisher.publish_written(now, || {
            store::save_registry(&self.paths, &registry)?;
            Ok(registry)
        })
    }

    /// Records that `serial` completed a handshake at `at` (accepted by the verifier), and looks
    /// for a clone: a superseded serial whose successor has been in use for [`CLONE_SETTLE`].
    /// With `Operator.LockOnSuspectedClone`, a suspicion locks the identity before this returns,
    /// so the connection is refused before it is served.
    pub async fn handshake_completed(&self, serial: &Serial, at: SystemTime) -> Observed {
        let observed = self.presented(serial, at).await;
        let recorded = self
            .publisher
            .current()
            .trust
            .registry()
            .get(serial)
            .is_some_and(|e| e.first_used.is_some());
        if let Ok(mut seen) = self.seen.lock() {
            if !seen.first.contains_key(serial) {
                seen.first.insert(serial.clone(), at);
                if !recorded {
                    seen.unpersisted.push((serial.clone(), at));
                }
            }
        }
        observed
    }

    /// Clone check of a presented `serial` (also for handshakes the registry refused).
    pub async fn presented(&self, serial: &Serial, at: SystemTime) -> Observed {
        let Some(successor) = self.publisher.current().trust.successor_of(serial) else {
            return Observed::default();
        };
        let in_use = self
            .seen
            .lock()
            .ok()
            .and_then(|seen| seen.first.get(&successor).copied())
            .is_some_and(|t| at.duration_since(t).unwrap_or_default() >= CLONE_SETTLE);
        if !in_use {
            return Observed::default();
        }
        let suspicion = Some(CloneSuspicion {
            serial: serial.clone(),
            successor,
        });
        let locked = if self.lock_on_clone {
            Some(self.lock_identity(at).await)
        } else {
            None
        };
        Observed { suspicion, locked }
    }

    /// Revokes every agent serial the daemon would still accept (active or in grace) and
    /// publishes: open connections of those serials are cut. The identity stays locked until
    /// an operator re-issues with `netclaw pki rotate --offline`. Returns the revoked serials.
    pub async fn lock_identity(&self, now: SystemTime) -> Result<Vec<Serial>, SnapshotError> {
        self.write(move |this| {
            let mut registry = store::load_registry(&this.paths)?;
            let targets: Vec<Serial> = registry
                .accepted_agents(now)
                .map(|e| e.serial.clone())
                .collect();
            for s in &targets {
                registry.revoke(s, now);
            }
            this.save_and_publish(registry, now)?;
            Ok(targets)
        })
        .await
    }

    /// Revokes `serial` and publishes.
    pub async fn revoke(&self, serial: Serial, now: SystemTime) -> Result<bool, SnapshotError> {
        self.write(move |this| {
            let mut registry = store::load_registry(&this.paths)?;
            let changed = registry.revoke(&serial, now);
            if changed {
                this.save_and_publish(registry, now)?;
            }
            Ok(changed)
        })
        .await
    }

    /// Writes the first handshakes of agent serials into the registry, so that a restarted
    /// daemon still knows which successors were used. Returns how many entries changed; on
    /// failure the records are kept for the next call.
    pub async fn persist_first_use(&self) -> Result<usize, SnapshotError> {
        let pending = match self.seen.lock() {
            Ok(mut s) if !s.unpersisted.is_empty() => std::mem::take(&mut s.unpersisted),
            _ => return Ok(0),
        };
        let batch = pending.clone();
        let result = self
            .write(move |this| {
                let mut registry = store::load_registry(&this.paths)?;
                let changed = batch
                    .iter()
                    .filter(|(serial, at)| registry.mark_first_use(serial, *at))
                    .count();
                if changed > 0 {
                    this.save_and_publish(registry, SystemTime::now())?;
                }
                Ok(changed)
            })
            .await;
        if result.is_err() {
            if let Ok(mut s) = self.seen.lock() {
                s.unpersisted.extend(pending);
            }
        }
        result
    }

    /// Re-issues the operator listener's certificate from the CA on disk when less than a third
    /// of its lifetime remains at `now` (same names, registry updated), and publishes it with
    /// the registry in one snapshot. Returns the new serial, if any.
    pub async fn renew_server_if_due(
        &self,
        now: SystemTime,
    ) -> Result<Option<Serial>, SnapshotError> {
        let current = self.publisher.current().server.clone();
        let (nb, na) = (current.cert.not_before, current.cert.not_after);
        let lifetime = na.duration_since(nb).unwrap_or_default();
        let left = na.duration_since(now).unwrap_or_default();
        if left >= lifetime / 3 {
            return Ok(None);
        }
        self.write(move |this| {
            let ca = store::load_ca(&this.paths)?;
            let names = netclaw_pki::rotation::current_listener_names(&this.paths)?;
            let server = ca.issue_server(&names, now)?;
            let mut registry = store::load_registry(&this.paths)?;
            registry.replace(
                &server.cert,
                CertificateKind::Server,
                "operator listener (renewed)".into(),
                now,
                netclaw_pki::rotation::SERVER_GRACE,
            );
            let serial = server.cert.serial.clone();
            this.publisher.publish_written(now, || {
                store::save_server(&this.paths, &server)?;
                store::save_registry(&this.paths, &registry)?;
                Ok(registry)
            })?;
            Ok(Some(serial))
        })
        .await
    }

    /// Renews the agent certificate `current` for the key in `csr_pem`, if the registry lets
    /// it ([`Registry::renewal_decision`]: the newest active serial, or once a superseded one
    /// whose own renewal issued its successor, which never completed a handshake): issues a
    /// certificate for this host's identity (never one the request names), records it active,
    /// supersedes every other agent serial with `grace` (`Operator.RotationGrace`) and
    /// publishes. The first handshakes this
    /// daemon saw are written with it.
    pub async fn renew_agent(
        &self,
        current: Serial,
        csr_pem: Vec<u8>,
        lifetime: CertificateLifetime,
        grace: Duration,
        now: SystemTime,
    ) -> Result<Renewed, RenewError> {
        let csr = netclaw_pki::issue::csr_from_pem(&csr_pem)?;
        self.write(move |this| {
            // Under the locks: a handshake recorded up to this point (the agent's confirming
            // handshake with its new certificate) is seen by the decision below.
            let seen: Vec<(Serial, SystemTime)> = this
                .seen
                .lock()
                .map(|s| s.first.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default();
            let mut registry = store::load_registry(&this.paths)?;
            let marked = seen
                .iter()
                .filter(|(serial, at)| registry.mark_first_use(serial, *at))
                .count();
            if let Err(refusal) = registry.renewal_decision(&current, now) {
                if marked > 0 {
                    this.save_and_publish(registry, now)?;
                }
                return Err(RenewError::Refused(refusal));
            }
            let ca = store::load_ca(&this.paths)?;
            let expected = this.publisher.current().trust.expected().clone();
            let id = SpiffeId::operator_agent(expected.trust_domain, expected.host_id);
            let cert = ca.issue_agent_from_csr(&csr, &id, now, lifetime)?;
            let (grant, superseded) = registry
                .renew(&current, &cert, id.to_string(), now, grace)
                .map_err(RenewError::Refused)?;
            this.save_and_publish(registry, now)?;
            let bundle = std::fs::read_to_string(this.paths.ca_cert())
                .map_err(|e| PkiError::io("reading", this.paths.ca_cert(), e))?;
            Ok(Renewed {
                cert,
                bundle,
                superseded,
                grant,
            })
        })
        .await
    }
}
