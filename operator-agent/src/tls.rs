//! The agent's rustls client configuration: TLS 1.3 only, ring, the agent certificate as client
//! credential, and the daemon's certificate verified against the operator CA bundle only.
//!
//! NOTE: this is the one module of the agent that uses rustls' `dangerous()` configuration, to
//! wrap the WebPKI server verifier in [`SkewTolerantVerifier`] (a bounded NotBefore tolerance for
//! a clock behind the daemon's; see the OpenSpec design, "Clock skew between agent and daemon").
//! `.ci/check-dangerous` fails the build for a `dangerous()` anywhere else, or one here without a
//! `NOTE:` next to it.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use netclaw_core::wire;
use netclaw_pki::identity::unix_seconds;
use netclaw_pki::verify;
use netclaw_pki::PrivateKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Why a client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The CA bundle holds a certificate rustls cannot use as a root.
    #[error("{0}")]
    Bundle(String),
    /// rustls refused the configuration.
    #[error(transparent)]
    Tls(#[from] rustls::Error),
}

/// The client configuration for the operator listener: trusts `bundle` only, presents `cert`
/// with `key`, speaks TLS 1.3 and HTTP/1.1.
pub fn client_config(
    bundle: &[CertificateDer<'static>],
    cert: &CertificateDer<'static>,
    key: &PrivateKey,
) -> Result<ClientConfig, ConfigError> {
    let mut roots = RootCertStore::empty();
    for ca in bundle {
        roots
            .add(ca.clone())
            .map_err(|e| ConfigError::Bundle(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ConfigError::Bundle(e.to_string()))?;
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        // NOTE: the only `dangerous()` in the agent: the custom verifier is WebPKI's, with the
        // bounded NotBefore tolerance of `SkewTolerantVerifier` and nothing else changed.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkewTolerantVerifier { webpki }))
        .with_client_auth_cert(vec![cert.clone()], key.to_rustls())?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// rustls' WebPKI server verifier, except that a daemon certificate whose NotBefore lies at most
/// [`verify::CLOCK_SKEW_TOLERANCE`] ahead of this host's clock is checked at its NotBefore (this
/// host's clock is behind the daemon's, which issued the certificate a moment ago). Everything
/// else — chain, name, expiry, signatures — is the WebPKI verifier's, unchanged. A NotBefore
/// further ahead is refused with both clock readings in the message.
#[derive(Debug)]
struct SkewTolerantVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for SkewTolerantVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let first = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let not_yet_valid = matches!(
            first,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            ))
        );
        if !not_yet_valid {
            return first;
        }
        let Ok(info) = verify::inspect(end_entity) else {
            return first;
        };
        let host_now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let at = verify::skew_tolerant_time(host_now, info.not_before);
        if at == host_now {
            let ahead = info
                .not_before
                .duration_since(host_now)
                .unwrap_or_default()
                .as_secs();
            return Err(rustls::Error::General(format!(
                "the daemon's certificate is not valid yet: valid from {}, but this host's clock \
                 reads {}, {ahead} s earlier (more than the {} s clock-skew tolerance); make this \
                 host's clock and the daemon's agree (NTP: `timedatectl`)",
                wire::format_unix(unix_seconds(info.not_before)),
                wire::format_unix(unix_seconds(host_now)),
                verify::CLOCK_SKEW_TOLERANCE.as_secs(),
            )));
        }
        tracing::warn!(
            not_before = %wire::format_unix(unix_seconds(info.not_before)),
            "the daemon's certificate starts after this host's clock; accepted within the \
             clock-skew tolerance (check NTP on both hosts)"
        );
        self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            UnixTime::since_unix_epoch(Duration::from_secs(unix_seconds(at))),
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
