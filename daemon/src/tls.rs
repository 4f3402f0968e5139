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

use netclaw_pki::registry::RefusalReason as RegistryRefusal;
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc;

use crate::refusal::RefusalReason;
use crate::trust::{Presented, Refusal, Trust};

/// ring, the project's one crypto backend.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 only, client certificate required, verified by [`AgentVerifier`] against `trust`,
/// serving `key`: one snapshot's bundle, registry and listener certificate (see
/// `operator_pki`), so that no handshake mixes two snapshots. Refused presentations of
/// superseded serials go to `presented` (the issuer's clone check).
pub fn operator_server_config(
    trust: Arc<Trust>,
    key: Arc<CertifiedKey>,
    presented: mpsc::Sender<Presented>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = provider();
    let verifier = Arc::new(AgentVerifier {
        subjects: trust
            .bundle()
            .iter()
            .filter_map(|ca| {
                webpki::anchor_from_trusted_cert(ca)
                    .ok()
                    .map(|a| DistinguishedName::in_sequence(a.subject.as_ref()))
            })
            .collect(),
        provider: provider.clone(),
        trust,
        presented,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(ListenerCert(key)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed TLS 1.3 session would skip the verifier, so every
    // connection presents its certificate to the verifier (which is why the listener reads the
    // accepted identity afterwards without verifying it again).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Serves the snapshot's listener certificate.
#[derive(Debug)]
struct ListenerCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for ListenerCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Accepts only this host's operator-agent certificates with a serial the snapshot's registry
/// admits.
#[derive(Debug)]
pub struct AgentVerifier {
    subjects: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
    trust: Arc<Trust>,
    presented: mpsc::Sender<Presented>,
}

impl AgentVerifier {
    fn verify(&self, end_entity: &CertificateDer<'_>, now: SystemTime) -> Result<(), Refusal> {
        let identity = self.trust.verify_chain(end_entity, now)?;
        match self.trust.admit(&identity.serial, now) {
            Ok(_) => Ok(()),
            Err(refusal) => {
                if refusal.reason == RefusalReason::Serial(RegistryRefusal::Superseded) {
                    // For the clone check; dropped when the queue is full.
                    let _ = self.presented.try_send(Presented {
                        serial: identity.serial,
                        at: now,
                    });
                }
                Err(refusal)
            }
        }
    }
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
        match self.verify(end_entity, now) {
            Ok(()) => Ok(ClientCertVerified::assertion()),
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
