//! Verification and inspection of operator certificates.
//!
//! Chain, validity and EKU checks are rustls-webpki's (ECDSA P-256 only); x509-parser reads the
//! identity out of a certificate webpki has accepted. Nothing here trusts a certificate's claims
//! before the chain has verified.

use std::net::IpAddr;
use std::time::SystemTime;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{IdentityMismatch, VerifyError};
use crate::identity::{from_unix_seconds, unix_seconds};
use crate::{HostId, OperatorIdentity, PkiError, PrivateKey, Serial, SpiffeId, TrustDomain};

/// DER of the clientAuth EKU OID (1.3.6.1.5.5.7.3.2).
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// DER of the serverAuth EKU OID (1.3.6.1.5.5.7.3.1).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// The only signature algorithms operator certificates use.
pub static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] =
    &[webpki::ring::ECDSA_P256_SHA256];

/// How far a certificate's NotBefore may lie ahead of the operator agent's clock and still be
/// accepted by the agent (its own certificate, the daemon's listener certificate).
///
/// Certificates are backdated only `NOT_BEFORE_BACKDATE` (60 s, see the `issue` module); the daemon, their
/// issuer, checks them with its own clock and never needs more. The agent may run on a clock that
/// is behind the daemon's: with this tolerance it keeps working up to 5 minutes (plus the
/// backdate) behind; beyond that it refuses the certificate as "not valid yet" and names both
/// clock readings. Expiry is never stretched.
pub const CLOCK_SKEW_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The time at which to check a certificate valid from `not_before` on a host whose clock reads
/// `now`: `now`, or NotBefore itself when it lies ahead of `now` by at most
/// [`CLOCK_SKEW_TOLERANCE`]. A NotBefore further ahead leaves `now`, so that the check fails with
/// the two readings in its message.
pub fn skew_tolerant_time(now: SystemTime, not_before: SystemTime) -> SystemTime {
    match not_before.duration_since(now) {
        Ok(ahead) if ahead <= CLOCK_SKEW_TOLERANCE => not_before,
        _ => now,
    }
}

/// What x509-parser reads from a certificate, for status displays and registries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Serial.
    pub serial: Serial,
    /// Subject DN as text.
    pub subject: String,
    /// Subject alternative names, as `URI:…`, `IP:…`, `DNS:…`.
    pub sans: Vec<String>,
    /// NotBefore.
    pub not_before: SystemTime,
    /// NotAfter.
    pub not_after: SystemTime,
    /// Whether basic constraints say CA.
    pub is_ca: bool,
}

/// The first certificate in a PEM file.
pub fn parse_certificate_pem(pem: &[u8]) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem)
        .map_err(|e| PkiError::BadCertificate(format!("no PEM certificate ({e})")))
}

/// Every certificate in a PEM bundle; at least one.
pub fn parse_bundle_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadCertificate(format!("bad PEM bundle ({e})")))?;
    if certs.is_empty() {
        return Err(PkiError::BadCertificate(
            "the bundle holds no certificate".into(),
        ));
    }
    Ok(certs)
}

/// Reads serial, names and validity from a certificate (no verification).
pub fn inspect(der: &[u8]) -> Result<CertificateInfo, PkiError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::BadCertificate(
            "trailing data after the certificate".into(),
        ));
    }
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                    Some(ip) => format!("IP:{ip}"),
                    None => "IP:<malformed>".into(),
                },
                other => format!("{other:?}"),
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(PkiError::BadCertificate(e.to_string())),
    };
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    Ok(CertificateInfo {
        serial: Serial::from_bytes(cert.raw_serial()),
        subject: cert.subject().to_string(),
        sans,
        not_before: from_unix_seconds(cert.validity().not_before.timestamp().max(0) as u64),
        not_after: from_unix_seconds(cert.validity().not_after.timestamp().max(0) as u64),
        is_ca,
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Checks that `key` is the private half of the certificate's public key.
pub fn check_key_matches(cert_der: &[u8], key: &PrivateKey) -> Result<(), PkiError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    if cert.public_key().raw != key.public_key_der()?.as_slice() {
        return Err(PkiError::KeyMismatch);
    }
    Ok(())
}

fn unix_time(now: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(unix_seconds(now)))
}

/// A webpki failure as a [`PkiError::Verify`].
fn verify_error(e: webpki::Error) -> PkiError {
    PkiError::Verify(VerifyError::Chain(e))
}

fn anchors<'a>(
    bundle: &'a [CertificateDer<'a>],
) -> Result<Vec<rustls_pki_types::TrustAnchor<'a>>, PkiError> {
    bundle
        .iter()
        .map(|ca| {
            webpki::anchor_from_trusted_cert(ca)
                .map_err(|e| PkiError::Verify(VerifyError::TrustBundle(e)))
        })
        .collect()
}

/// The identity an operator-agent certificate must carry to be accepted on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedAgent {
    /// Trust domain.
    pub trust_domain: TrustDomain,
    /// This host's host-id.
    pub host_id: HostId,
}

/// Verifies an agent client certificate against the operator CA bundle at `now` and extracts its
/// identity.
///
/// Accepts only: a chain to one of `bundle`; validity at `now`; EKU present and listing
/// clientAuth and nothing else; not a CA; exactly one SAN, a URI that parses as this host's
/// operator-agent SPIFFE id. Registry status (revoked, superseded) is the caller's check.
pub fn verify_agent_certificate(
    cert_der: &CertificateDer<'_>,
    bundle: &[CertificateDer<'_>],
    expected: &ExpectedAgent,
    now: SystemTime,
) -> Result<OperatorIdentity, PkiError> {
    let ee = EndEntityCert::try_from(cert_der).map_err(verify_error)?;
    let anchors = anchors(bundle)?;
    ee.verify_for_usage(
        SIGNATURE_ALGORITHMS,
        &anchors,
        &[],
        unix_time(now),
        KeyUsage::required(EKU_CLIENT_AUTH),
        None,
        None,
    )
    .map_err(verify_error)?;

    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    if matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca) {
        return Err(IdentityMismatch::CaCertificate.into());
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if only_client_auth(eku.value) => {}
        _ => return Err(IdentityMismatch::Eku.into()),
    }
    let names = match cert.subject_alternative_name() {
        Ok(Some(ext)) => &ext.value.general_names,
        _ => return Err(IdentityMismatch::NoSubjectAltName.into()),
    };
    let uri = match names.as_slice() {
        [GeneralName::URI(uri)] => *uri,
        _ => return Err(IdentityMismatch::NotOneUri.into()),
    };
    let spiffe_id: SpiffeId = uri.parse()?;
    if spiffe_id.trust_domain() != &expected.trust_domain {
        return Err(IdentityMismatch::TrustDomain {
            found: spiffe_id.trust_domain().clone(),
            expected: expected.trust_domain.clone(),
        }
        .into());
    }
    if spiffe_id.host_id() != &expected.host_id {
        return Err(IdentityMismatch::HostId {
            found: spiffe_id.host_id().clone(),
            expected: expected.host_id.clone(),
        }
        .into());
    }
    Ok(OperatorIdentity {
        spiffe_id,
        serial: Serial::from_bytes(cert.raw_serial()),
        not_before: from_unix_seconds(cert.validity().not_before.timestamp().max(0) as u64),
        not_after: from_unix_seconds(cert.validity().not_after.timestamp().max(0) as u64),
    })
}

/// Whether an EKU extension lists clientAuth and no other purpose.
fn only_client_auth(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> bool {
    eku.client_auth
        && !eku.any
        && !eku.server_auth
        && !eku.code_signing
        && !eku.email_protection
        && !eku.time_stamping
        && !eku.ocsp_signing
        && eku.other.is_empty()
}

/// The raw subject public key (the EC point) of a certificate.
pub fn public_key_bits(cert_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// Whether a leaf certificate (agent or listener) chains to one of `bundle` and is valid at
/// `now`, whatever its EKU (clientAuth or serverAuth).
pub fn chains_to(
    cert_der: &CertificateDer<'_>,
    bundle: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<(), PkiError> {
    let ee = EndEntityCert::try_from(cert_der).map_err(verify_error)?;
    let anchors = anchors(bundle)?;
    let check = |eku| {
        ee.verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &anchors,
            &[],
            unix_time(now),
            KeyUsage::required(eku),
            None,
            None,
        )
        .map(drop)
    };
    match check(EKU_CLIENT_AUTH) {
        Ok(()) => Ok(()),
        // A listener certificate: try serverAuth.
        Err(webpki::Error::RequiredEkuNotFoundContext(_)) => {
            check(EKU_SERVER_AUTH).map_err(verify_error)
        }
        Err(e) => Err(verify_error(e)),
    }
}

/// Verifies the operator listener's server certificate for `name` (an IP or DNS name) against
/// the operator CA bundle at `now`.
pub fn verify_server_certificate(
    cert_der: &CertificateDer<'_>,
    bundle: &[CertificateDer<'_>],
    name: &ServerName<'_>,
    now: SystemTime,
) -> Result<(), PkiError> {
    let ee = EndEntityCert::try_from(cert_der).map_err(verify_error)?;
    let anchors = anchors(bundle)?;
    ee.verify_for_usage(
        SIGNATURE_ALGORITHMS,
        &anchors,
        &[],
        unix_time(now),
        KeyUsage::required(EKU_SERVER_AUTH),
        None,
        None,
    )
    .map_err(verify_error)?;
    ee.verify_is_valid_for_subject_name(name)
        .map_err(|e| IdentityMismatch::ServerName(e).into())
}

#[cfg(test)]
mod tests;
