//! On-disk layout of the operator PKI.
//!
//! Daemon side (`Operator.PkiDirectory`, 0700, owned by the daemon's user):
//! `ca.key` `ca.crt` `server.key` `server.crt` `registry.json` `host-id`.
//!
//! Agent side (`Operator.AgentDirectory`, 0700, owned by the agent's user):
//! `client.key` `client.crt` `ca-bundle.crt`.
//!
//! Keys are 0600 and refused at load when group or others can read them; every file is written
//! atomically.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use crate::issue::IssuedCertificate;
use crate::registry::Registry;
use crate::secure_fs::{self, KEY_MODE, PUBLIC_MODE};
use crate::verify::{check_key_matches, parse_bundle_pem};
use crate::{HostId, OperatorCa, PkiError, PrivateKey, ServerCertificate};

const REINSTALL: &str = "run `netclaw daemon install` (or restore the file from backup)";
const AGENT_FIX: &str =
    "run `netclaw pki rotate --offline` as root to re-issue the agent's credentials";

/// Paths of the daemon's PKI directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonPkiPaths {
    dir: PathBuf,
}

impl DaemonPkiPaths {
    /// The layout under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// CA certificate (the trust bundle: one or, during CA rotation, two certificates).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// Operator listener key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// Operator listener certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    /// Issuance registry.
    pub fn registry(&self) -> PathBuf {
        self.dir.join("registry.json")
    }
    /// Persisted host-id (only where the host has no machine-id).
    pub fn host_id(&self) -> PathBuf {
        self.dir.join("host-id")
    }
}

/// Paths of the agent's credential directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPaths {
    dir: PathBuf,
}

impl AgentPaths {
    /// The layout under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Client key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
    /// Client certificate.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }
    /// Operator CA bundle the agent trusts for the daemon's server certificate.
    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.join("ca-bundle.crt")
    }
}

fn load_key(path: &Path, what: &'static str, fix: &'static str) -> Result<PrivateKey, PkiError> {
    let pem = secure_fs::read_secret(path, what, fix)?;
    PrivateKey::from_pem(&pem).map_err(|e| PkiError::BadKey(format!("{}: {e}", path.display())))
}

fn load_cert(
    path: &Path,
    what: &'static str,
    fix: &'static str,
) -> Result<IssuedCertificate, PkiError> {
    let pem = secure_fs::read_public(path, what, fix)?;
    IssuedCertificate::from_pem(&pem)
        .map_err(|e| PkiError::BadCertificate(format!("{}: {e}", path.display())))
}

/// Writes the CA key and certificate.
pub fn save_ca(paths: &DaemonPkiPaths, ca: &OperatorCa) -> Result<(), PkiError> {
    secure_fs::ensure_private_dir(paths.dir())?;
    secure_fs::write_atomic(&paths.ca_key(), ca.key().to_pem().as_bytes(), KEY_MODE)?;
    secure_fs::write_atomic(
        &paths.ca_cert(),
        ca.certificate().pem.as_bytes(),
        PUBLIC_MODE,
    )
}

/// Loads the CA key and certificate and checks that they belong together.
///
/// During CA rotation `ca.crt` holds the trust bundle; the CA that signs is its first certificate.
pub fn load_ca(paths: &DaemonPkiPaths) -> Result<OperatorCa, PkiError> {
    let key = load_key(&paths.ca_key(), "operator CA key", REINSTALL)?;
    let cert = load_cert(&paths.ca_cert(), "operator CA certificate", REINSTALL)?;
    OperatorCa::from_parts(cert, key).map_err(|e| match e {
        PkiError::KeyMismatch => PkiError::BadKey(format!(
            "{} does not belong to {}; restore both from the same backup",
            paths.ca_key().display(),
            paths.ca_cert().display()
        )),
        other => other,
    })
}

/// The operator CA trust bundle (`ca.crt`).
pub fn load_trust_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = secure_fs::read_public(path, "operator CA bundle", REINSTALL)?;
    parse_bundle_pem(&pem).map_err(|e| PkiError::BadCertificate(format!("{}: {e}", path.display())))
}

/// Writes the operator listener's key and certificate.
pub fn save_server(paths: &DaemonPkiPaths, server: &ServerCertificate) -> Result<(), PkiError> {
    secure_fs::ensure_private_dir(paths.dir())?;
    secure_fs::write_atomic(
        &paths.server_key(),
        server.key.to_pem().as_bytes(),
        KEY_MODE,
    )?;
    secure_fs::write_atomic(
        &paths.server_cert(),
        server.cert.pem.as_bytes(),
        PUBLIC_MODE,
    )
}

/// Loads the operator listener's key and certificate and checks that they belong together.
pub fn load_server(paths: &DaemonPkiPaths) -> Result<ServerCertificate, PkiError> {
    let key = load_key(&paths.server_key(), "operator listener key", REINSTALL)?;
    let cert = load_cert(
        &paths.server_cert(),
        "operator listener certificate",
        REINSTALL,
    )?;
    check_key_matches(&cert.der, &key)?;
    Ok(ServerCertificate { key, cert })
}

/// Loads the issuance registry.
pub fn load_registry(paths: &DaemonPkiPaths) -> Result<Registry, PkiError> {
    let path = paths.registry();
    let data = secure_fs::read_secret(&path, "issuance registry", REINSTALL)?;
    let registry: Registry = serde_json::from_slice(&data).map_err(|e| PkiError::Registry {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if registry.version != crate::registry::REGISTRY_VERSION {
        return Err(PkiError::Registry {
            path,
            reason: format!("unsupported version {}", registry.version),
        });
    }
    Ok(registry)
}

/// Writes the issuance registry atomically (0600, owned by the PKI directory's owner).
pub fn save_registry(paths: &DaemonPkiPaths, registry: &Registry) -> Result<(), PkiError> {
    let mut json = serde_json::to_vec_pretty(registry).map_err(|e| PkiError::Registry {
        path: paths.registry(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    secure_fs::write_atomic(&paths.registry(), &json, KEY_MODE)
}

/// Reads the persisted host-id, if there is one.
pub fn load_persisted_host_id(paths: &DaemonPkiPaths) -> Result<Option<HostId>, PkiError> {
    match std::fs::read_to_string(paths.host_id()) {
        Ok(s) => Ok(Some(s.trim().parse()?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io("reading", paths.host_id(), e)),
    }
}

/// Persists a host-id.
pub fn save_host_id(paths: &DaemonPkiPaths, id: &HostId) -> Result<(), PkiError> {
    secure_fs::ensure_private_dir(paths.dir())?;
    secure_fs::write_atomic(&paths.host_id(), format!("{id}\n").as_bytes(), PUBLIC_MODE)
}

/// The agent's credentials: key, certificate and the CA bundle it trusts.
#[derive(Debug)]
pub struct AgentCredentials {
    /// Client key.
    pub key: PrivateKey,
    /// Client certificate.
    pub cert: IssuedCertificate,
    /// Operator CA bundle.
    pub bundle: Vec<CertificateDer<'static>>,
}

/// Writes the agent's key, certificate and bundle. The key is written first, so an interrupted
/// rotation leaves a key/cert pair the loader rejects as mismatched rather than a silent mix.
pub fn save_agent(
    paths: &AgentPaths,
    key: &PrivateKey,
    cert_pem: &str,
    bundle_pem: &str,
) -> Result<(), PkiError> {
    secure_fs::ensure_private_dir(paths.dir())?;
    secure_fs::write_atomic(&paths.client_key(), key.to_pem().as_bytes(), KEY_MODE)?;
    secure_fs::write_atomic(&paths.client_cert(), cert_pem.as_bytes(), PUBLIC_MODE)?;
    secure_fs::write_atomic(&paths.ca_bundle(), bundle_pem.as_bytes(), PUBLIC_MODE)
}

/// `path` with `.next` appended: where a replacement is staged before it is renamed into place.
pub fn next_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".next");
    s.into()
}

/// Stages a replacement of the agent's key and certificate: writes `client.key.next` and
/// `client.crt.next` (each atomically, owned by the directory's owner), then the bundle
/// (atomically). [`roll_forward_agent`] moves the pair into place.
pub fn stage_agent_pair(
    paths: &AgentPaths,
    key: &PrivateKey,
    cert_pem: &str,
    bundle_pem: &str,
) -> Result<(), PkiError> {
    secure_fs::write_atomic(
        &next_path(&paths.client_key()),
        key.to_pem().as_bytes(),
        KEY_MODE,
    )?;
    secure_fs::write_atomic(
        &next_path(&paths.client_cert()),
        cert_pem.as_bytes(),
        PUBLIC_MODE,
    )?;
    secure_fs::write_atomic(&paths.ca_bundle(), bundle_pem.as_bytes(), PUBLIC_MODE)
}

/// Completes a staged (or interrupted) pair replacement, the one place that does: when
/// `client.crt.next` exists, `client.key.next` (if still present) and `client.crt.next` are
/// renamed into place, key first; a lone `client.key.next` (its certificate never arrived) is
/// discarded. So a crash at any point leaves either the old pair or the new one.
///
/// Two processes (the agent's reloads, an offline rotation) may complete the same replacement
/// at once: a `.next` file that is gone by the time it is renamed was moved into place by the
/// other one, which is not an error. Returns whether this call moved the certificate.
pub fn roll_forward_agent(paths: &AgentPaths) -> Result<bool, PkiError> {
    let key_next = next_path(&paths.client_key());
    let crt_next = next_path(&paths.client_cert());
    let rename = |from: &Path, to: &Path| match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(PkiError::io("renaming", from, e)),
    };
    if crt_next.exists() {
        if key_next.exists() {
            rename(&key_next, &paths.client_key())?;
        }
        rename(&crt_next, &paths.client_cert())
    } else {
        if key_next.exists() {
            let _ = std::fs::remove_file(&key_next);
        }
        Ok(false)
    }
}

/// Replaces the agent's key and certificate as one pair while the agent may be running:
/// [`stage_agent_pair`], then [`roll_forward_agent`].
///
/// If the agent completes the renames itself in between (its file watcher reacting to the new
/// bundle), that is not an error; the pair in place is checked at the end, and an error says so
/// if it is not the one written here.
pub fn save_agent_pair(
    paths: &AgentPaths,
    key: &PrivateKey,
    cert_pem: &str,
    bundle_pem: &str,
) -> Result<(), PkiError> {
    stage_agent_pair(paths, key, cert_pem, bundle_pem)?;
    roll_forward_agent(paths)?;
    let written = IssuedCertificate::from_pem(cert_pem.as_bytes())?;
    match load_agent(paths) {
        Ok(now) if now.cert.der == written.der => Ok(()),
        _ => Err(PkiError::BadKey(format!(
            "{} changed while the new key and certificate were written; run the command again",
            paths.dir().display()
        ))),
    }
}

/// Loads the agent's credentials and checks that key and certificate belong together.
pub fn load_agent(paths: &AgentPaths) -> Result<AgentCredentials, PkiError> {
    let key = load_key(&paths.client_key(), "operator agent key", AGENT_FIX)?;
    let cert = load_cert(
        &paths.client_cert(),
        "operator agent certificate",
        AGENT_FIX,
    )?;
    let bundle = load_trust_bundle(&paths.ca_bundle())?;
    check_key_matches(&cert.der, &key).map_err(|_| {
        PkiError::BadKey(format!(
            "{} does not belong to {}; {AGENT_FIX}",
            paths.client_key().display(),
            paths.client_cert().display()
        ))
    })?;
    Ok(AgentCredentials { key, cert, bundle })
}

/// An exclusive advisory lock on `registry.lock` in the PKI directory. Hold it while reading,
/// changing and writing the registry (the daemon's renewals, `netclaw pki` commands), so that
/// two writers cannot interleave. Released when dropped.
///
/// Created (0600) with the directory's owner when missing, whoever runs the command, so that the
/// daemon's user can still open it; a symbolic link is refused.
pub fn lock_registry(paths: &DaemonPkiPaths) -> Result<nix::fcntl::Flock<std::fs::File>, PkiError> {
    let path = paths.dir().join("registry.lock");
    let file = secure_fs::open_state_file(&path, KEY_MODE, false)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| PkiError::io("locking", &path, errno.into()))
}

#[cfg(test)]
mod tests;
