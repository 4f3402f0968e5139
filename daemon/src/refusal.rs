//! Why the operator listener refused a connection or a certificate: one enum from the verifier
//! to the audit event's `reason` field, the metrics label and the TLS alert, so that no layer
//! reads the meaning back out of text (ztunnel `src/tls/workload.rs` maps webpki errors to
//! rustls errors by type).

use std::fmt;

use netclaw_pki::registry;
use netclaw_pki::{IdentityMismatch, PkiError, VerifyError};
use rustls::CertificateError;

/// A refusal reason with a stable label (`wrong-ca`, `expired`, `revoked-serial`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The certificate's validity ended.
    Expired,
    /// The certificate's validity has not begun.
    NotYetValid,
    /// Not issued by the daemon's operator CA.
    WrongCa,
    /// The EKU is not clientAuth alone.
    WrongEku,
    /// A name constraint of the CA refused the certificate.
    NameConstraint,
    /// Any other chain failure.
    InvalidChain,
    /// Another host's certificate.
    WrongHostId,
    /// Another trust domain's certificate.
    WrongTrustDomain,
    /// Not an operator agent identity.
    WrongIdentity,
    /// The certificate does not parse.
    UnparsableCertificate,
    /// The issuance registry could not be read.
    RegistryUnavailable,
    /// The registry refused the serial.
    Serial(registry::RefusalReason),
    /// rustls refused the certificate without a verifier refusal to say why.
    InvalidCertificate,
    /// rustls reported a revoked certificate (revoked and superseded serials alike).
    RevokedOrSupersededSerial,
    /// The peer presented no client certificate.
    NoClientCertificate,
    /// No TLS version or cipher suite in common.
    IncompatibleTls,
    /// The peer did not speak TLS.
    NotTls,
    /// Any other TLS failure.
    TlsError,
    /// The peer closed the connection during the handshake.
    ClosedDuringHandshake,
    /// The connection failed during the handshake.
    IoError,
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The peer's address is not in `Operator.AllowedSources`.
    SourceNotAllowed,
}

impl RefusalReason {
    /// The stable label for audit events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::WrongCa => "wrong-ca",
            Self::WrongEku => "wrong-eku",
            Self::NameConstraint => "name-constraint",
            Self::InvalidChain => "invalid-chain",
            Self::WrongHostId => "wrong-host-id",
            Self::WrongTrustDomain => "wrong-trust-domain",
            Self::WrongIdentity => "wrong-identity",
            Self::UnparsableCertificate => "unparsable-certificate",
            Self::RegistryUnavailable => "registry-unavailable",
            Self::Serial(r) => r.as_str(),
            Self::InvalidCertificate => "invalid-certificate",
            Self::RevokedOrSupersededSerial => "revoked-or-superseded-serial",
            Self::NoClientCertificate => "no-client-certificate",
            Self::IncompatibleTls => "incompatible-tls",
            Self::NotTls => "not-tls",
            Self::TlsError => "tls-error",
            Self::ClosedDuringHandshake => "closed-during-handshake",
            Self::IoError => "io-error",
            Self::HandshakeTimeout => "handshake-timeout",
            Self::SourceNotAllowed => "source-not-allowed",
        }
    }

    /// The reason a certificate verification failure gives, by its type.
    pub fn of_pki_error(e: &PkiError) -> Self {
        match e {
            PkiError::Verify(VerifyError::Chain(w) | VerifyError::TrustBundle(w)) => {
                Self::of_webpki(w)
            }
            PkiError::Verify(_) => Self::InvalidChain,
            PkiError::WrongIdentity(IdentityMismatch::HostId { .. }) => Self::WrongHostId,
            PkiError::WrongIdentity(IdentityMismatch::TrustDomain { .. }) => Self::WrongTrustDomain,
            PkiError::WrongIdentity(IdentityMismatch::Eku) => Self::WrongEku,
            PkiError::WrongIdentity(_) | PkiError::InvalidSpiffeId(_) => Self::WrongIdentity,
            _ => Self::UnparsableCertificate,
        }
    }

    /// The reason a webpki chain failure gives.
    fn of_webpki(e: &webpki::Error) -> Self {
        use webpki::Error as W;
        #[allow(deprecated)] // webpki still returns the unit variant in some paths
        match e {
            W::CertExpired { .. } | W::CrlExpired { .. } => Self::Expired,
            W::CertNotValidYet { .. } => Self::NotYetValid,
            W::UnknownIssuer => Self::WrongCa,
            W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
                Self::WrongEku
            }
            W::NameConstraintViolation
            | W::MalformedNameConstraint
            | W::MaximumNameConstraintComparisonsExceeded => Self::NameConstraint,
            _ => Self::InvalidChain,
        }
    }

    /// The rustls certificate error the verifier reports for this reason, when rustls has one
    /// (it picks the TLS alert); `None` when only [`CertificateError::Other`] fits.
    pub fn certificate_error(self) -> Option<CertificateError> {
        match self {
            Self::Expired => Some(CertificateError::Expired),
            Self::NotYetValid => Some(CertificateError::NotValidYet),
            Self::Serial(
                registry::RefusalReason::Revoked | registry::RefusalReason::Superseded,
            ) => Some(CertificateError::Revoked),
            Self::WrongCa => Some(CertificateError::UnknownIssuer),
            _ => None,
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RefusalReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpki_errors_map_by_type() {
        let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(1));
        let chain = |e| RefusalReason::of_pki_error(&PkiError::Verify(VerifyError::Chain(e)));
        assert_eq!(
            chain(webpki::Error::CertExpired {
                time: at,
                not_after: at
            }),
            RefusalReason::Expired
        );
        assert_eq!(chain(webpki::Error::UnknownIssuer), RefusalReason::WrongCa);
        assert_eq!(
            chain(webpki::Error::EmptyEkuExtension),
            RefusalReason::WrongEku
        );
        assert_eq!(
            chain(webpki::Error::NameConstraintViolation),
            RefusalReason::NameConstraint
        );
        assert_eq!(chain(webpki::Error::BadDer), RefusalReason::InvalidChain);
        assert_eq!(
            RefusalReason::of_pki_error(&PkiError::WrongIdentity(IdentityMismatch::Eku)),
            RefusalReason::WrongEku
        );
        assert_eq!(
            RefusalReason::of_pki_error(&PkiError::KeyMismatch),
            RefusalReason::UnparsableCertificate
        );
    }

    #[test]
    fn only_revoked_and_superseded_serials_are_revoked_alerts() {
        use registry::RefusalReason as R;
        assert_eq!(
            RefusalReason::Serial(R::Revoked).certificate_error(),
            Some(CertificateError::Revoked)
        );
        assert_eq!(
            RefusalReason::Serial(R::Superseded).certificate_error(),
            Some(CertificateError::Revoked)
        );
        assert_eq!(RefusalReason::Serial(R::Unknown).certificate_error(), None);
        assert_eq!(RefusalReason::Serial(R::Unknown).as_str(), "unknown-serial");
    }
}
