//! The operator listener's rustls configuration. This is the only module that implements a
//! rustls verifier.
//!
//! NOTE: the client-certificate verifier is custom (rustls' `WebPkiClientVerifier` cannot check
//! the SPIFFE host path or the issuance registry). It still delegates chain, validity and EKU
//! checks to rustls-webpki through `netclaw_pki::verify`, and handshake signatures to rustls'
//! own `verify_tls13_signature`. TLS 1.2 is not offered, so the TLS 1.2 signature path refuses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, ServerConfig,
    SignatureScheme,
};

use crate::operator_pki::{OperatorPki, Refusal};
use crate::refusal::RefusalReason;

/// ring, the project's one crypto backend.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 only, client certificate required, verified by [`AgentVerifier`].
pub fn operator_server_config(pki: Arc<OperatorPki>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = provider();
    let verifier = Arc::new(AgentVerifier {
        subjects: pki
            .bundle()
            .iter()
            .filter_map(|ca| {
                webpki::anchor_from_trusted_cert(ca)
                    .ok()
                    .map(|a| DistinguishedName::in_sequence(a.subject.as_ref()))
            })
            .collect(),
        provider: provider.clone(),
        pki: pki.clone(),
    });
    let resolver = Arc::new(ServerCertResolver {
        pki: pki.clone(),
        provider: provider.clone(),
        cached: std::sync::Mutex::new(None),
    });
    // Fail now, not at the first handshake, if the key is unusable.
    resolver.current().ok_or(rustls::Error::General(
        "the operator listener's key cannot be used".into(),
    ))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed TLS 1.3 session would skip the verifier, so every
    // connection presents and re-verifies its certificate (the registry check after the
    // handshake stays as a second line).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Serves the operator listener's current certificate, following server-certificate renewal and
/// CA rotation without a restart.
#[derive(Debug)]
struct ServerCertResolver {
    pki: Arc<OperatorPki>,
    provider: Arc<CryptoProvider>,
    /// The certified key for the server certificate last seen (by serial).
    cached: std::sync::Mutex<Option<(String, Arc<rustls::sign::CertifiedKey>)>>,
}

impl ServerCertResolver {
    fn current(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let server = self.pki.server();
        let serial = server.cert.serial.to_string();
        let mut cached = self.cached.lock().ok()?;
        if let Some((s, key)) = cached.as_ref() {
            if *s == serial {
                return Some(key.clone());
            }
        }
        let key = rustls::sign::CertifiedKey::from_der(
            vec![server.cert.der.clone()],
            server.key.to_rustls(),
            &self.provider,
        )
        .ok()?;
        let key = Arc::new(key);
        *cached = Some((serial, key.clone()));
        Some(key)
    }
}

impl rustls::server::ResolvesServerCert for ServerCertResolver {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
    }
}

/// Accepts only this host's operator-agent certificates with an active serial.
#[derive(Debug)]
pub struct AgentVerifier {
    subjects: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    pki: Arc<OperatorPki>,
}

impl ClientCertVerifier for AgentVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        match self.pki.verify_client(end_entity, now) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(refusal) => Err(refusal_error(refusal)),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is not offered on the operator listener".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ECDSA_NISTP256_SHA256]
    }
}

/// A stable label for a failed operator handshake, for audit events: the verifier's own refusal
/// reason (`wrong-eku`, `wrong-host-id`, `unknown-serial`, …) when it refused the certificate,
/// else what the TLS error says. rustls carries only a [`CertificateError`] out of the verifier,
/// so a revoked and a superseded serial (both `Revoked`) share one label.
pub fn handshake_refusal_reason(e: &std::io::Error) -> RefusalReason {
    let Some(err) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => RefusalReason::ClosedDuringHandshake,
            _ => RefusalReason::IoError,
        };
    };
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Other(OtherError(other)) => other
                .downcast_ref::<Refusal>()
                .map_or(RefusalReason::InvalidCertificate, |r| r.reason),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                RefusalReason::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                RefusalReason::NotYetValid
            }
            CertificateError::Revoked => RefusalReason::RevokedOrSupersededSerial,
            CertificateError::UnknownIssuer => RefusalReason::WrongCa,
            _ => RefusalReason::InvalidCertificate,
        },
        rustls::Error::NoCertificatesPresented => RefusalReason::NoClientCertificate,
        rustls::Error::PeerIncompatible(_) => RefusalReason::IncompatibleTls,
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => RefusalReason::NotTls,
        _ => RefusalReason::TlsError,
    }
}

fn refusal_error(r: Refusal) -> rustls::Error {
    let cert_error = r
        .reason
        .certificate_error()
        .unwrap_or_else(|| CertificateError::Other(OtherError(Arc::new(r))));
    rustls::Error::InvalidCertificate(cert_error)
}
