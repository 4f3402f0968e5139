//! Operator CA rotation in three phases, each a separate, resumable step on the daemon's PKI
//! directory (the daemon and the agent follow the files without a restart):
//!
//! 1. [`prepare`]: a new CA is generated (`ca-next.key`, `ca-next.crt`) and joins the trust
//!    bundle everywhere: `ca.crt` becomes `[old, new]` (the first certificate still signs) and
//!    the agent's `ca-bundle.crt` the same.
//! 2. [`activate`]: the new CA signs: `ca.key` is replaced by the new key, `ca.crt` becomes
//!    `[new, old]`, and the operator listener gets a new certificate from the new CA. New agent
//!    certificates (renewal, `netclaw pki rotate`) now come from the new CA.
//! 3. [`retire`]: once the listener certificate and the agent certificate chain to the new CA,
//!    the old CA leaves both bundles.
//!
//! The phase is recorded in `ca-rotation.json`; each step checks it, so steps cannot run out of
//! order. Callers hold [`crate::store::lock_registry`] around each step.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::identity::unix_seconds;
use crate::issue::{IssuedCertificate, ListenerNames, OperatorCa};
use crate::registry::CertificateKind;
use crate::secure_fs::{self, KEY_MODE, PUBLIC_MODE};
use crate::store::{self, DaemonPkiPaths};
use crate::verify;
use crate::{PkiError, PrivateKey, Serial, VerifyError};

/// Grace for the listener certificate the new one supersedes (agents re-handshake freely).
pub const SERVER_GRACE: Duration = Duration::from_secs(60);

/// Where a CA rotation stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// No rotation in progress.
    None,
    /// The new CA is trusted everywhere but does not sign yet.
    Prepared {
        /// Old CA serial.
        old: Serial,
        /// New CA serial.
        new: Serial,
        /// When (Unix seconds).
        at: u64,
    },
    /// The new CA signs; the old one is still trusted.
    Activated {
        /// Old CA serial.
        old: Serial,
        /// New CA serial.
        new: Serial,
        /// When (Unix seconds).
        at: u64,
    },
}

impl Phase {
    /// `none`, `prepared` or `activated`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Prepared { .. } => "prepared",
            Self::Activated { .. } => "activated",
        }
    }
}

fn state_path(paths: &DaemonPkiPaths) -> std::path::PathBuf {
    paths.dir().join("ca-rotation.json")
}

fn next_key(paths: &DaemonPkiPaths) -> std::path::PathBuf {
    paths.dir().join("ca-next.key")
}

fn next_cert(paths: &DaemonPkiPaths) -> std::path::PathBuf {
    paths.dir().join("ca-next.crt")
}

fn out_of_order(what: &'static str, phase: &Phase, fix: &'static str) -> PkiError {
    PkiError::RotationOutOfOrder {
        what,
        phase: phase.name(),
        fix,
    }
}

/// The current phase.
pub fn phase(paths: &DaemonPkiPaths) -> Result<Phase, PkiError> {
    let path = state_path(paths);
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| PkiError::Registry {
            path,
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Phase::None),
        Err(e) => Err(PkiError::io("reading", &path, e)),
    }
}

fn save_phase(paths: &DaemonPkiPaths, phase: &Phase) -> Result<(), PkiError> {
    let path = state_path(paths);
    if *phase == Phase::None {
        return match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PkiError::io("removing", &path, e)),
        };
    }
    let data = serde_json::to_vec_pretty(phase).map_err(|e| PkiError::Registry {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    secure_fs::write_atomic(&path, &data, PUBLIC_MODE)
}

fn bundle_pem(certs: &[&IssuedCertificate]) -> String {
    certs.iter().map(|c| c.pem.as_str()).collect()
}

fn write_bundles(paths: &DaemonPkiPaths, agent_bundle: &Path, pem: &str) -> Result<(), PkiError> {
    secure_fs::write_atomic(&paths.ca_cert(), pem.as_bytes(), PUBLIC_MODE)?;
    secure_fs::write_atomic(agent_bundle, pem.as_bytes(), PUBLIC_MODE)
}

/// The names the current listener certificate carries (so a new CA constrains to the same).
pub fn current_listener_names(paths: &DaemonPkiPaths) -> Result<ListenerNames, PkiError> {
    let server = store::load_server(paths)?;
    let info = verify::inspect(&server.cert.der)?;
    Ok(ListenerNames::from_alt_names(info.alt_names()))
}

/// Phase 1: a new CA joins the trust bundles (`ca.crt` and the agent's `agent_bundle`).
pub fn prepare(
    paths: &DaemonPkiPaths,
    agent_bundle: &Path,
    host_label: &str,
    now: SystemTime,
) -> Result<Serial, PkiError> {
    let current = phase(paths)?;
    if current != Phase::None {
        return Err(out_of_order(
            "prepare",
            &current,
            "continue with `netclaw pki rotate --ca activate` or `retire`",
        ));
    }
    let old = store::load_ca(paths)?;
    let names = current_listener_names(paths)?;
    let new = OperatorCa::generate(host_label, &names, now)?;
    secure_fs::write_atomic(&next_key(paths), new.key().to_pem().as_bytes(), KEY_MODE)?;
    secure_fs::write_atomic(
        &next_cert(paths),
        new.certificate().pem.as_bytes(),
        PUBLIC_MODE,
    )?;
    let mut registry = store::load_registry(paths)?;
    registry.record(
        new.certificate().serial.clone(),
        CertificateKind::Ca,
        "operator CA (rotation)".into(),
        now,
        new.certificate().not_after,
    );
    store::save_registry(paths, &registry)?;
    write_bundles(
        paths,
        agent_bundle,
        &bundle_pem(&[old.certificate(), new.certificate()]),
    )?;
    let serial = new.certificate().serial.clone();
    save_phase(
        paths,
        &Phase::Prepared {
            old: old.certificate().serial.clone(),
            new: serial.clone(),
            at: unix_seconds(now),
        },
    )?;
    Ok(serial)
}

/// Phase 2: the new CA signs; the listener gets a certificate from it. Returns the new listener
/// certificate's serial. Agent certificates follow with the next renewal (`netclaw pki rotate`).
pub fn activate(
    paths: &DaemonPkiPaths,
    agent_bundle: &Path,
    now: SystemTime,
) -> Result<Serial, PkiError> {
    let current = phase(paths)?;
    let Phase::Prepared { old, new, .. } = current.clone() else {
        return Err(out_of_order(
            "activate",
            &current,
            "run `netclaw pki rotate --ca prepare` first",
        ));
    };
    let old_ca = store::load_ca(paths)?;
    let key = PrivateKey::from_pem(&secure_fs::read_secret(
        &next_key(paths),
        "next operator CA key",
        "run `netclaw pki rotate --ca prepare` again after removing ca-rotation.json",
    )?)?;
    let cert = IssuedCertificate::from_pem(&secure_fs::read_public(
        &next_cert(paths),
        "next operator CA certificate",
        "run `netclaw pki rotate --ca prepare` again after removing ca-rotation.json",
    )?)?;
    let new_ca = OperatorCa::from_parts(cert, key)?;
    let names = current_listener_names(paths)?;
    let server = new_ca.issue_server(&names, now)?;

    // Bundle first (new signs, old still trusted), then key, then the listener certificate.
    write_bundles(
        paths,
        agent_bundle,
        &bundle_pem(&[new_ca.certificate(), old_ca.certificate()]),
    )?;
    secure_fs::write_atomic(&paths.ca_key(), new_ca.key().to_pem().as_bytes(), KEY_MODE)?;
    store::save_server(paths, &server)?;
    let mut registry = store::load_registry(paths)?;
    registry.replace(
        &server.cert,
        CertificateKind::Server,
        "operator listener (CA rotation)".into(),
        now,
        SERVER_GRACE,
    );
    store::save_registry(paths, &registry)?;
    for p in [next_key(paths), next_cert(paths)] {
        let _ = std::fs::remove_file(p);
    }
    save_phase(
        paths,
        &Phase::Activated {
            old,
            new,
            at: unix_seconds(now),
        },
    )?;
    Ok(server.cert.serial)
}

/// Phase 3: the old CA leaves both bundles, once `agent_cert` (the agent's current certificate)
/// and the listener certificate chain to the new CA.
pub fn retire(
    paths: &DaemonPkiPaths,
    agent_bundle: &Path,
    agent_cert: &Path,
    now: SystemTime,
) -> Result<(), PkiError> {
    let current = phase(paths)?;
    let Phase::Activated { .. } = current else {
        return Err(out_of_order(
            "retire",
            &current,
            "run `netclaw pki rotate --ca activate` first",
        ));
    };
    let signing = store::load_ca(paths)?;
    let only_new: Vec<CertificateDer<'static>> = vec![signing.certificate().der.clone()];
    let agent_pem = secure_fs::read_public(
        agent_cert,
        "operator agent certificate",
        "check Operator.AgentDirectory",
    )?;
    let agent = verify::parse_certificate_pem(&agent_pem)?;
    verify::chains_to(&agent, &only_new, now).map_err(|e| VerifyError::AgentOnOldCa {
        path: agent_cert.to_owned(),
        source: Box::new(e),
    })?;
    let server = store::load_server(paths)?;
    verify::chains_to(&server.cert.der, &only_new, now).map_err(|e| {
        VerifyError::ListenerOnOldCa {
            source: Box::new(e),
        }
    })?;
    write_bundles(paths, agent_bundle, &signing.certificate().pem)?;
    let mut registry = store::load_registry(paths)?;
    registry.supersede_others(
        CertificateKind::Ca,
        &signing.certificate().serial,
        now,
        Duration::ZERO,
    );
    store::save_registry(paths, &registry)?;
    save_phase(paths, &Phase::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use crate::spiffe::{SpiffeId, TrustDomain};
    use crate::store::AgentPaths;
    use crate::CertificateLifetime;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn three_phases_in_order_and_retire_waits_for_the_agent() {
        let now = at(1_800_000_000);
        let tmp = tempfile::tempdir().unwrap();
        let paths = DaemonPkiPaths::new(tmp.path().join("pki"));
        let agent = AgentPaths::new(tmp.path().join("agent"));
        let names = ListenerNames {
            ips: vec!["192.0.2.10".parse().unwrap()],
            dns: vec!["box1".into()],
        };
        let ca = OperatorCa::generate("box1", &names, now).unwrap();
        store::save_ca(&paths, &ca).unwrap();
        store::save_server(&paths, &ca.issue_server(&names, now).unwrap()).unwrap();
        store::save_registry(&paths, &Registry::default()).unwrap();
        let id = SpiffeId::operator_agent(
            "netclaw.internal".parse::<TrustDomain>().unwrap(),
            crate::hostid::random().unwrap(),
        );
        let issued = ca
            .issue_agent(&id, now, CertificateLifetime::default())
            .unwrap();
        store::save_agent(&agent, &issued.key, &issued.cert.pem, &ca.certificate().pem).unwrap();
        let bundle_len = |p: &Path| {
            verify::parse_bundle_pem(&std::fs::read(p).unwrap())
                .unwrap()
                .len()
        };

        // Out of order.
        assert!(activate(&paths, &agent.ca_bundle(), now).is_err());
        assert!(retire(&paths, &agent.ca_bundle(), &agent.client_cert(), now).is_err());

        let new_serial = prepare(&paths, &agent.ca_bundle(), "box1", now).unwrap();
        assert_eq!(phase(&paths).unwrap().name(), "prepared");
        assert_eq!(bundle_len(&paths.ca_cert()), 2);
        assert_eq!(bundle_len(&agent.ca_bundle()), 2);
        // Still the old CA signs.
        assert_eq!(
            store::load_ca(&paths).unwrap().certificate().serial,
            ca.certificate().serial
        );
        assert!(prepare(&paths, &agent.ca_bundle(), "box1", now).is_err());

        activate(&paths, &agent.ca_bundle(), now).unwrap();
        assert_eq!(phase(&paths).unwrap().name(), "activated");
        let signing = store::load_ca(&paths).unwrap();
        assert_eq!(signing.certificate().serial, new_serial);
        // The listener certificate comes from the new CA; the old agent still verifies.
        let server = store::load_server(&paths).unwrap();
        verify::chains_to(&server.cert.der, &[signing.certificate().der.clone()], now).unwrap();
        let bundle = store::load_trust_bundle(&paths.ca_cert()).unwrap();
        verify::chains_to(&issued.cert.der, &bundle, now).unwrap();

        // Retire refuses while the agent certificate chains to the old CA.
        let err = retire(&paths, &agent.ca_bundle(), &agent.client_cert(), now).unwrap_err();
        assert!(err.to_string().contains("netclaw pki rotate"), "{err}");

        let renewed = signing
            .issue_agent(&id, now, CertificateLifetime::default())
            .unwrap();
        store::save_agent(
            &agent,
            &renewed.key,
            &renewed.cert.pem,
            &std::fs::read_to_string(paths.ca_cert()).unwrap(),
        )
        .unwrap();
        retire(&paths, &agent.ca_bundle(), &agent.client_cert(), now).unwrap();
        assert_eq!(phase(&paths).unwrap(), Phase::None);
        assert_eq!(bundle_len(&paths.ca_cert()), 1);
        assert_eq!(bundle_len(&agent.ca_bundle()), 1);
        // The old agent certificate no longer verifies against the bundle.
        let bundle = store::load_trust_bundle(&paths.ca_cert()).unwrap();
        assert!(verify::chains_to(&issued.cert.der, &bundle, now).is_err());
    }
}
