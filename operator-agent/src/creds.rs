//! The agent's credentials: loading, checking and the rustls client configuration built from
//! them.
//!
//! A credential set is swapped in only after its key was shown to match its certificate and the
//! certificate verified against the CA bundle (chain, EKU clientAuth, SPIFFE URI in the configured
//! trust domain). An expired certificate loads — so that status and the CLI can say what is wrong —
//! but is marked expired and never offered to the daemon.

use std::sync::Arc;
use std::time::SystemTime;

use netclaw_pki::identity::OperatorIdentity;
use netclaw_pki::spiffe::{SpiffeId, TrustDomain};
use netclaw_pki::store::{self, AgentPaths};
use netclaw_pki::verify::{self, ExpectedAgent};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// Why a credential set could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Files missing, unreadable, with loose permissions, or key and certificate mismatched.
    #[error(transparent)]
    Pki(#[from] netclaw_pki::PkiError),
    /// The certificate does not verify against the bundle or carries the wrong identity.
    #[error("{path}: {reason}; re-issue it with `netclaw pki rotate --offline` (as root)")]
    Invalid {
        /// The certificate file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A loaded, checked credential set.
#[derive(Debug)]
pub struct Credentials {
    /// The certificate's identity.
    pub identity: OperatorIdentity,
    /// The client TLS configuration (TLS 1.3 only, server verified against the bundle only).
    pub tls: Arc<ClientConfig>,
    /// Certificate DER, to detect an unchanged file on reload.
    pub cert_der: CertificateDer<'static>,
    /// The trust bundle, likewise (it changes alone during a CA rotation).
    pub bundle: Vec<CertificateDer<'static>>,
}

impl Credentials {
    /// Loads the credentials at `paths` and checks them at `now`.
    pub fn load(
        paths: &AgentPaths,
        trust_domain: &TrustDomain,
        now: SystemTime,
    ) -> Result<Self, CredentialError> {
        let creds = store::load_agent(paths)?;
        let cert_path = paths.client_cert().display().to_string();
        let invalid = |reason: String| CredentialError::Invalid {
            path: cert_path.clone(),
            reason,
        };
        let info = verify::inspect(&creds.cert.der).map_err(|e| invalid(e.to_string()))?;
        let uri = info
            .sans
            .iter()
            .find_map(|s| s.strip_prefix("URI:"))
            .ok_or_else(|| invalid("no SPIFFE URI in the certificate".into()))?;
        let spiffe: SpiffeId = uri.parse().map_err(|e| invalid(format!("{e}")))?;
        if spiffe.trust_domain() != trust_domain {
            return Err(invalid(format!(
                "trust domain {} is not the configured Operator.TrustDomain {trust_domain}",
                spiffe.trust_domain()
            )));
        }
        let expected = ExpectedAgent {
            trust_domain: trust_domain.clone(),
            host_id: spiffe.host_id().clone(),
        };
        // Verify at a time inside the validity window when the certificate has expired, so that
        // everything except expiry is still checked; expiry itself is reported by `expired`.
        let check_at = if now > info.not_after {
            info.not_after
        } else {
            now
        };
        let identity =
            verify::verify_agent_certificate(&creds.cert.der, &creds.bundle, &expected, check_at)
                .map_err(|e| invalid(e.to_string()))?;

        let mut roots = RootCertStore::empty();
        for ca in &creds.bundle {
            roots
                .add(ca.clone())
                .map_err(|e| invalid(format!("CA bundle: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![creds.cert.der.clone()], creds.key.to_rustls())?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            identity,
            tls: Arc::new(tls),
            cert_der: creds.cert.der,
            bundle: creds.bundle,
        })
    }

    /// Whether the certificate has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        now > self.identity.not_after
    }
}

/// The name the daemon's server certificate must carry: the operator listener's IP, or loopback
/// when it binds a wildcard address.
pub fn server_name(host: std::net::IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(dial_ip(host).into())
}

/// The address the agent dials for an operator listener bound to `host`.
pub fn dial_ip(host: std::net::IpAddr) -> std::net::IpAddr {
    match host {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    }
}
