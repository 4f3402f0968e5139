//! Install-time issuance: the operator CA (kept when present), the operator listener's server
//! certificate and the agent's first client certificate, recorded in the issuance registry.
//!
//! `netclaw daemon install` validates its configuration, calls [`bootstrap`] and then writes the
//! configuration and assigns owners; CA rotation lives next door in [`crate::rotation`]. Like
//! every `pki` function, [`bootstrap`] takes `now` rather than reading the clock.
//!
//! # Security
//!
//! An existing CA is never silently replaced: a re-install re-issues the leaves from it, and when
//! its name constraints do not permit the (new) listener address the install stops before any
//! file changes, naming `--replace-ca`. Replacing it ([`BootstrapRequest::replace_ca`], an
//! explicit operator choice) is refused while a CA rotation is in progress; the new CA signs the
//! new listener and agent certificates and is the agent's only trust anchor, so the daemon and
//! the agent must both be restarted (which moving the listener needs anyway). The agent's previous serial is superseded
//! with [`REINSTALL_GRACE`]. Keys are written 0600, atomically ([`crate::secure_fs`]).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls_pki_types::ServerName;

use crate::hostid::{self, HostIdSource};
use crate::issue::{CertificateLifetime, ListenerNames, OperatorCa};
use crate::registry::{CertificateKind, Registry};
use crate::store::{self, AgentPaths, DaemonPkiPaths};
use crate::verify::{self, verify_server_certificate};
use crate::{secure_fs, PkiError, Serial, SpiffeId, TrustDomain};

/// Grace period for an agent serial superseded by a forced re-install.
pub const REINSTALL_GRACE: Duration = Duration::from_secs(60);

/// What to issue at install.
#[derive(Debug)]
pub struct BootstrapRequest<'a> {
    /// The daemon's PKI directory.
    pub pki: &'a DaemonPkiPaths,
    /// The agent's credential directory.
    pub agent: &'a AgentPaths,
    /// Where the machine-id is read from (for the host-id).
    pub machine_id: &'a Path,
    /// The operator listener's address (a concrete IP, never a wildcard).
    pub listener_ip: IpAddr,
    /// The listener certificate's names (including `listener_ip`).
    pub names: &'a ListenerNames,
    /// The trust domain of the agent's SPIFFE id.
    pub trust_domain: &'a TrustDomain,
    /// The agent certificate's lifetime.
    pub agent_lifetime: CertificateLifetime,
    /// Replace an existing CA with a new one constrained to `names` (moving the listener to an
    /// address the old CA does not permit).
    pub replace_ca: bool,
}

/// What [`bootstrap`] did.
#[derive(Debug)]
pub struct Bootstrapped {
    /// Where the host-id came from.
    pub host_id_source: HostIdSource,
    /// The agent's SPIFFE id.
    pub agent_id: SpiffeId,
    /// The agent certificate's serial.
    pub agent_serial: Serial,
    /// Whether an existing CA was kept.
    pub ca_kept: bool,
}

/// Why [`bootstrap`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The existing CA's name constraints do not permit the listener address.
    #[error("the existing operator CA does not permit the listener address {ip} ({source}); to move the operator listener re-run with `--replace-ca` (a new operator CA for the new address; nothing else trusts it), then restart netclaw-daemon and netclaw-operator-agent; or restore the previous Operator.Host")]
    ListenerNotPermitted {
        /// The listener address.
        ip: IpAddr,
        /// The verification failure.
        source: PkiError,
    },
    /// `replace_ca` during a CA rotation.
    #[error("an operator CA rotation is in progress ({phase}); finish it (`netclaw pki rotate --ca activate`, then `retire`) before replacing the CA")]
    RotationInProgress {
        /// The rotation's phase.
        phase: &'static str,
    },
    /// Reading, issuing or writing failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Issues the install-time credentials into `req.pki` and `req.agent` (see the module docs).
/// The directories are created 0700 when missing.
pub fn bootstrap(
    req: &BootstrapRequest<'_>,
    now: SystemTime,
) -> Result<Bootstrapped, BootstrapError> {
    let (pki, agent, names) = (req.pki, req.agent, req.names);
    secure_fs::ensure_private_dir(pki.dir())?;
    // Like every other writer (the daemon's renewals, `netclaw pki …`): the registry is read,
    // changed and written under its lock, so that no concurrent write is lost.
    let _lock = store::lock_registry(pki)?;
    secure_fs::ensure_private_dir(agent.dir())?;

    let (host_id, host_id_source) = hostid::resolve_or_create(req.machine_id, pki)?;

    // The CA: kept when present, never silently replaced.
    let exists = pki.ca_key().exists() || pki.ca_cert().exists();
    if exists && req.replace_ca {
        let phase = crate::rotation::phase(pki)?;
        if phase != crate::rotation::Phase::None {
            return Err(BootstrapError::RotationInProgress {
                phase: phase.name(),
            });
        }
    }
    let (ca, ca_kept) = if exists && !req.replace_ca {
        (store::load_ca(pki)?, true)
    } else {
        let ca = OperatorCa::generate(&host_id.to_string()[..8], names, now)?;
        store::save_ca(pki, &ca)?;
        (ca, false)
    };

    let server = ca.issue_server(names, now)?;
    let bundle = store::load_trust_bundle(&pki.ca_cert())?;
    let name = ServerName::IpAddress(req.listener_ip.into());
    verify_server_certificate(&server.cert.der, &bundle, &name, now).map_err(|source| {
        BootstrapError::ListenerNotPermitted {
            ip: req.listener_ip,
            source,
        }
    })?;

    let id = SpiffeId::operator_agent(req.trust_domain.clone(), host_id);
    let issued = ca.issue_agent(&id, now, req.agent_lifetime)?;

    let mut registry = if pki.registry().exists() {
        store::load_registry(pki)?
    } else {
        Registry::default()
    };
    if !ca_kept && exists {
        // Replaced: the old CA's entry is superseded.
        registry.replace(
            ca.certificate(),
            CertificateKind::Ca,
            verify::inspect(&ca.certificate().der)?.subject,
            now,
            REINSTALL_GRACE,
        );
    } else if !ca_kept {
        registry.record(
            ca.certificate().serial.clone(),
            CertificateKind::Ca,
            verify::inspect(&ca.certificate().der)?.subject,
            now,
            ca.certificate().not_after,
        );
    }
    let server_subject = names
        .alt_names()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    registry.replace(
        &server.cert,
        CertificateKind::Server,
        server_subject,
        now,
        REINSTALL_GRACE,
    );
    registry.replace(
        &issued.cert,
        CertificateKind::Agent,
        id.to_string(),
        now,
        REINSTALL_GRACE,
    );

    store::save_server(pki, &server)?;
    store::save_registry(pki, &registry)?;
    let bundle_pem = String::from_utf8_lossy(&secure_fs::read_public(
        &pki.ca_cert(),
        "operator CA certificate",
        "reinstall",
    )?)
    .into_owned();
    store::save_agent(agent, &issued.key, &issued.cert.pem, &bundle_pem)?;

    Ok(Bootstrapped {
        host_id_source,
        agent_id: id,
        agent_serial: issued.cert.serial,
        ca_kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Admission;
    use crate::san::SubjectAltName;

    #[test]
    fn reinstall_keeps_the_ca_and_supersedes_the_agent_and_refuses_a_foreign_address() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DaemonPkiPaths::new(dir.path().join("pki"));
        let agent = AgentPaths::new(dir.path().join("agent"));
        let mid = dir.path().join("machine-id");
        std::fs::write(&mid, b"4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e\n").unwrap();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let names = ListenerNames {
            ips: vec![ip],
            dns: vec!["daemon-host".into()],
        };
        let td: TrustDomain = TrustDomain::DEFAULT.parse().unwrap();
        let req = |listener_ip, names| BootstrapRequest {
            pki: &pki,
            agent: &agent,
            machine_id: &mid,
            listener_ip,
            names,
            trust_domain: &td,
            agent_lifetime: CertificateLifetime::new(Duration::from_secs(86_400)).unwrap(),
            replace_ca: false,
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);

        let first = bootstrap(&req(ip, &names), t0).unwrap();
        assert!(!first.ca_kept);
        assert_eq!(first.host_id_source, HostIdSource::MachineId(mid.clone()));
        let creds = store::load_agent(&agent).unwrap();
        assert_eq!(creds.cert.serial, first.agent_serial);
        let info = verify::inspect(&creds.cert.der).unwrap();
        assert_eq!(
            info.alt_names().collect::<Vec<_>>(),
            [SubjectAltName::Uri(first.agent_id.to_string())]
        );

        let t1 = t0 + Duration::from_secs(10);
        let second = bootstrap(&req(ip, &names), t1).unwrap();
        assert!(second.ca_kept);
        assert_ne!(second.agent_serial, first.agent_serial);
        let registry = store::load_registry(&pki).unwrap();
        assert_eq!(
            registry.admit_agent(&first.agent_serial, t1 + REINSTALL_GRACE),
            Admission::Refused(crate::registry::RefusalReason::Superseded)
        );
        assert_eq!(
            registry.admit_agent(&second.agent_serial, t1),
            Admission::Active
        );
        // The re-install replaced the first serial: in its grace period, with its successor
        // not yet used, it still may not renew (it never asked to; a copy of its key might).
        assert_eq!(
            registry.renewal_decision(&first.agent_serial, t1 + Duration::from_secs(1)),
            Err(crate::registry::RenewalRefusal::SupersededByReplacement {
                successor: second.agent_serial.clone()
            })
        );

        // The kept CA is constrained to the first names: another address is refused, and
        // nothing is re-issued.
        let other: IpAddr = "198.51.100.20".parse().unwrap();
        let other_names = ListenerNames {
            ips: vec![other],
            dns: vec![],
        };
        let e = bootstrap(&req(other, &other_names), t1).unwrap_err();
        assert!(
            matches!(e, BootstrapError::ListenerNotPermitted { ip, .. } if ip == other),
            "{e}"
        );
        assert_eq!(
            store::load_agent(&agent).unwrap().cert.serial,
            second.agent_serial
        );
    }

    #[test]
    fn a_reinstall_waits_for_the_registry_lock() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DaemonPkiPaths::new(dir.path().join("pki"));
        let agent = AgentPaths::new(dir.path().join("agent"));
        let mid = dir.path().join("machine-id");
        std::fs::write(&mid, b"4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e\n").unwrap();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let names = ListenerNames {
            ips: vec![ip],
            dns: vec![],
        };
        let td: TrustDomain = TrustDomain::DEFAULT.parse().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let install = || {
            bootstrap(
                &BootstrapRequest {
                    pki: &pki,
                    agent: &agent,
                    machine_id: &mid,
                    listener_ip: ip,
                    names: &names,
                    trust_domain: &td,
                    agent_lifetime: CertificateLifetime::new(Duration::from_secs(86_400)).unwrap(),
                    replace_ca: false,
                },
                t0,
            )
            .unwrap()
        };
        let first = install();
        // Another writer (a renewal in the daemon, `netclaw pki rotate --offline`) holds the
        // lock: the re-install waits for it before it reads the registry.
        let lock = store::lock_registry(&pki).unwrap();
        std::thread::scope(|s| {
            let reinstall = s.spawn(install);
            std::thread::sleep(Duration::from_millis(300));
            assert!(!reinstall.is_finished(), "the re-install did not wait");
            assert_eq!(
                store::load_registry(&pki)
                    .unwrap()
                    .active(CertificateKind::Agent)
                    .map(|e| e.serial.clone())
                    .collect::<Vec<_>>(),
                std::slice::from_ref(&first.agent_serial)
            );
            drop(lock);
            let second = reinstall.join().unwrap();
            assert_ne!(second.agent_serial, first.agent_serial);
        });
    }
}
