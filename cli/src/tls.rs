//! The CLI's one rustls client configuration (ring provider, TLS 1.2/1.3, full verification).
//!
//! Used only for `https://` endpoints (a remote daemon in `pair join`, or an explicit
//! `--endpoint https://…`). Trust anchors come from `--ca-file PEM` when given — a private CA
//! replaces the system roots, it is not added to them — and otherwise from the system trust store
//! as `rustls-native-certs` finds it (`SSL_CERT_FILE` alone when set, else the distribution's
//! bundle file and certificate directory). Verification is never disabled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use netclaw_core::env::Env;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::exit::CliError;

/// The trust anchors: `ca_file` when given (every certificate in it must parse), else the system
/// trust store.
pub fn roots(ca_file: Option<&Path>, env: &dyn Env) -> Result<RootCertStore, CliError> {
    match ca_file {
        Some(path) => ca_file_roots(path),
        None => system_roots(env),
    }
}

fn ca_file_roots(path: &Path) -> Result<RootCertStore, CliError> {
    let pem = std::fs::read(path)
        .map_err(|e| CliError::Failed(format!("cannot read CA file {}: {e}", path.display())))?;
    pem_roots(&pem, &path.display().to_string())
}

/// The CA certificates in `pem` (every one must parse), e.g. a saved context's CA; `source`
/// names them in errors.
pub fn pem_roots(pem: &[u8], source: &str) -> Result<RootCertStore, CliError> {
    let mut store = RootCertStore::empty();
    let mut bad = 0usize;
    for cert in CertificateDer::pem_slice_iter(pem) {
        match cert {
            Ok(der) => {
                if store.add(der).is_err() {
                    bad += 1;
                }
            }
            Err(_) => bad += 1,
        }
    }
    if store.is_empty() || bad > 0 {
        return Err(no_usable_ca(source, bad));
    }
    Ok(store)
}

/// `SSL_CERT_FILE` (read through `env`) when set, else the platform store. Unreadable entries of
/// a system store are skipped, as TLS clients do; an empty result is an error.
fn system_roots(env: &dyn Env) -> Result<RootCertStore, CliError> {
    let from_env = env
        .var("SSL_CERT_FILE")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let (source, loaded) = match &from_env {
        Some(file) => (
            file.display().to_string(),
            rustls_native_certs::load_certs_from_paths(Some(file), None),
        ),
        None => (
            String::from("the system trust store"),
            rustls_native_certs::load_native_certs(),
        ),
    };
    if loaded.certs.is_empty() {
        return Err(match loaded.errors.first() {
            Some(e) => CliError::Failed(format!("cannot read {source}: {e}; pass --ca-file PEM with the CA that signed the daemon's certificate"),
            ),
            None if from_env.is_none() => CliError::Failed("no system CA bundle found; pass --ca-file PEM with the CA that signed the daemon's certificate".into(),
            ),
            None => no_usable_ca(&source, 0),
        });
    }
    let mut store = RootCertStore::empty();
    let (_, bad) = store.add_parsable_certificates(loaded.certs);
    if store.is_empty() {
        return Err(no_usable_ca(&source, bad));
    }
    Ok(store)
}

fn no_usable_ca(source: &str, bad: usize) -> CliError {
    CliError::Failed(format!(
            "{source} holds no usable CA certificate ({bad} unreadable); pass a PEM file with the CA that signed the daemon's certificate"
        ),
    )
}

/// A client configuration trusting `roots`, offering HTTP/1.1 by ALPN.
pub fn client_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, CliError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Failed(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
