//! Host-id derivation.
//!
//! The host-id scopes the agent's certificate to one host. It is the first 16 bytes of
//! HMAC-SHA256 keyed with an application key over the machine-id, so the raw machine-id (which
//! systemd documents as confidential) never appears in a certificate. Where a host has no
//! machine-id, a random id is generated once at install and persisted.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::{self, DaemonPkiPaths};
use crate::{HostId, PkiError};

/// The HMAC key that makes the id specific to this application.
const APPLICATION_KEY: &[u8] = b"netclaw/operator/host-id/v1";

/// Derives the host-id from the contents of `/etc/machine-id`.
///
/// Returns `None` when the contents are empty or not a machine-id (32 hex characters), in which
/// case the caller falls back to [`random`].
pub fn from_machine_id(contents: &[u8]) -> Option<HostId> {
    let trimmed = std::str::from_utf8(contents).ok()?.trim();
    if trimmed.len() != 32 || !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, APPLICATION_KEY);
    let tag = hmac::sign(&key, trimmed.to_ascii_lowercase().as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&tag.as_ref()[..16]);
    Some(HostId::from_bytes(&id))
}

/// A fresh random host-id, for hosts without a machine-id.
pub fn random() -> Result<HostId, PkiError> {
    let mut id = [0u8; 16];
    SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| PkiError::Random)?;
    Ok(HostId::from_bytes(&id))
}

/// Where a resolved host-id came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostIdSource {
    /// Derived from the machine-id at this path.
    MachineId(PathBuf),
    /// Read from the host-id persisted at install at this path.
    Persisted(PathBuf),
    /// Generated now and persisted at this path (install only).
    Generated(PathBuf),
}

impl fmt::Display for HostIdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MachineId(p) => write!(f, "derived from {}", p.display()),
            Self::Persisted(p) => write!(f, "persisted in {}", p.display()),
            Self::Generated(p) => write!(f, "random, persisted in {}", p.display()),
        }
    }
}

/// This host's host-id as every component derives it: from the machine-id at `machine_id`,
/// else the one persisted in the daemon's PKI directory.
///
/// Returns `Ok(None)` when there is neither; each caller says how to fix that in its own terms
/// (the installer creates one with [`resolve_or_create`]). A persisted file that cannot be read
/// or parsed is an error, never a silent fallback.
pub fn resolve(
    machine_id: &Path,
    pki: &DaemonPkiPaths,
) -> Result<Option<(HostId, HostIdSource)>, PkiError> {
    if let Ok(contents) = std::fs::read(machine_id) {
        if let Some(id) = from_machine_id(&contents) {
            return Ok(Some((
                id,
                HostIdSource::MachineId(machine_id.to_path_buf()),
            )));
        }
    }
    Ok(store::load_persisted_host_id(pki)?.map(|id| (id, HostIdSource::Persisted(pki.host_id()))))
}

/// [`resolve`], and where there is no host-id yet, a random one persisted in the PKI directory
/// (install time).
pub fn resolve_or_create(
    machine_id: &Path,
    pki: &DaemonPkiPaths,
) -> Result<(HostId, HostIdSource), PkiError> {
    if let Some(found) = resolve(machine_id, pki)? {
        return Ok(found);
    }
    let id = random()?;
    store::save_host_id(pki, &id)?;
    Ok((id, HostIdSource::Generated(pki.host_id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_is_stable_and_not_the_raw_id() {
        let mid = b"4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e\n";
        let a = from_machine_id(mid).unwrap();
        let b = from_machine_id(b"4B2F1C0E9D8A7B6C5D4E3F2A1B0C9D8E").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.as_str(), "4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e");
        assert_eq!(a.as_str().len(), 32);
        // Pin the derivation: a change would re-scope every installed certificate.
        assert_eq!(a.as_str(), derived_pin());
    }

    fn derived_pin() -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"netclaw/operator/host-id/v1");
        let tag = hmac::sign(&key, b"4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e");
        hex::encode(&tag.as_ref()[..16])
    }

    #[test]
    fn rejects_non_machine_ids() {
        assert!(from_machine_id(b"").is_none());
        assert!(from_machine_id(b"uninitialized\n").is_none());
        assert!(from_machine_id(&[0xff; 32]).is_none());
    }

    #[test]
    fn resolve_prefers_machine_id_then_persisted_then_creates() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DaemonPkiPaths::new(dir.path().join("pki"));
        let mid = dir.path().join("machine-id");
        assert_eq!(resolve(&mid, &pki).unwrap(), None);

        let (created, source) = resolve_or_create(&mid, &pki).unwrap();
        assert_eq!(source, HostIdSource::Generated(pki.host_id()));
        let (again, source) = resolve_or_create(&mid, &pki).unwrap();
        assert_eq!(again, created);
        assert_eq!(source, HostIdSource::Persisted(pki.host_id()));

        std::fs::write(&mid, b"4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e\n").unwrap();
        let (derived, source) = resolve(&mid, &pki).unwrap().unwrap();
        assert_eq!(derived.as_str(), derived_pin());
        assert_eq!(source, HostIdSource::MachineId(mid.clone()));
        assert_eq!(
            source.to_string(),
            format!("derived from {}", mid.display())
        );
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random().unwrap(), random().unwrap());
    }
}
