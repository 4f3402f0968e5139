//! The CLI's one rustls client configuration (ring provider, TLS 1.2/1.3, full verification).
//!
//! Used only for `https://` endpoints (a remote daemon in `pair join`, or an explicit
//! `--endpoint https://…`). Trust anchors come from `--ca-file PEM` when given — a private CA
//! replaces the system roots, it is not added to them — and otherwise from the system bundle
//! (`SSL_CERT_FILE`, then the usual distribution paths). Verification is never disabled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use netclaw_core::env::Env;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::exit::{CliError, ExitCode};

/// Where distributions keep the system CA bundle, in lookup order.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The trust anchors: `ca_file` when given, else the system bundle.
pub fn roots(ca_file: Option<&Path>, env: &dyn Env) -> Result<RootCertStore, CliError> {
    let (path, explicit) = match ca_file {
        Some(p) => (p.to_owned(), true),
        None => {
            let from_env = env
                .var("SSL_CERT_FILE")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from);
            let found = from_env.or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            });
            match found {
                Some(p) => (p, false),
                None => {
                    return Err(CliError::new(
                        ExitCode::Failure,
                        "no system CA bundle found; pass --ca-file PEM with the CA that signed the daemon's certificate",
                    ))
                }
            }
        }
    };
    let pem = std::fs::read(&path).map_err(|e| {
        CliError::new(
            ExitCode::Failure,
            format!("cannot read CA file {}: {e}", path.display()),
        )
    })?;
    let mut store = RootCertStore::empty();
    let mut bad = 0usize;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        match cert {
            Ok(der) => {
                if store.add(der).is_err() {
                    bad += 1;
                }
            }
            Err(_) => bad += 1,
        }
    }
    if store.is_empty() || (explicit && bad > 0) {
        return Err(CliError::new(
            ExitCode::Failure,
            format!(
                "{} holds no usable CA certificate ({bad} unreadable); pass a PEM file with the CA that signed the daemon's certificate",
                path.display()
            ),
        ));
    }
    Ok(store)
}

/// A client configuration trusting `roots`, offering HTTP/1.1 by ALPN.
pub fn client_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, CliError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::new(ExitCode::Failure, format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
