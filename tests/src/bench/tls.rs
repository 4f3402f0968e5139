//! The benchmark's one rustls client configuration: what the agent itself builds (ring, TLS 1.3
//! only, ALPN `http/1.1`), from the agent's files in the install tree — `client.crt`,
//! `client.key` and `ca-bundle.crt`. The daemon's certificate is fully verified against the
//! bundle; nothing here is `.dangerous()`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// A client configuration presenting the agent certificate in `agent_dir`.
pub fn agent_client_config(agent_dir: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let bundle = agent_dir.join("ca-bundle.crt");
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&bundle)
        .with_context(|| format!("reading {}", bundle.display()))?
    {
        roots
            .add(ca.with_context(|| format!("parsing {}", bundle.display()))?)
            .context("adding a CA certificate")?;
    }
    let cert_path = agent_dir.join("client.crt");
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let key_path = agent_dir.join("client.key");
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
