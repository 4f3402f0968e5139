//! Issuance: the operator CA, the operator listener's server certificate and the agent's client
//! certificate. Every function takes `now`; none reads the clock.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CidrSubnet,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
    KeyUsagePurpose, NameConstraints, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::OffsetDateTime;

use crate::error::CsrKeyError;
use crate::verify::{self, parse_certificate_pem};
use crate::{PkiError, PrivateKey, Serial, SpiffeId};

/// How far NotBefore is set before `now`, to absorb small clock differences between hosts.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(60);
/// Default lifetime of an agent certificate.
pub const DEFAULT_AGENT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Lifetime of the operator CA.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of the operator listener's server certificate.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// A certificate lifetime, written in configuration as `<n><unit>` with unit `s`, `m`, `h` or `d`
/// (for example `30d` or `2m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertificateLifetime(Duration);

impl CertificateLifetime {
    /// Shortest accepted lifetime.
    pub const MIN: Duration = Duration::from_secs(60);
    /// Longest accepted lifetime (one year).
    pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

    /// The lifetime.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// Checks bounds.
    pub fn new(d: Duration) -> Result<Self, String> {
        if d < Self::MIN || d > Self::MAX {
            return Err(format!(
                "certificate lifetime must be between 1m and 366d, got {}s",
                d.as_secs()
            ));
        }
        Ok(Self(d))
    }
}

impl Default for CertificateLifetime {
    fn default() -> Self {
        Self(DEFAULT_AGENT_LIFETIME)
    }
}

impl FromStr for CertificateLifetime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a lifetime; write a number and a unit, e.g. \"30d\", \"12h\", \"2m\""
            )
        };
        let unit = s.chars().last().ok_or_else(bad)?;
        let mult = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        Self::new(Duration::from_secs(n * mult))
    }
}

impl fmt::Display for CertificateLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        for (unit, mult) in [('d', 86_400), ('h', 3600), ('m', 60)] {
            if s % mult == 0 {
                return write!(f, "{}{unit}", s / mult);
            }
        }
        write!(f, "{s}s")
    }
}

/// The names the operator listener answers on. They become the server certificate's SANs and the
/// CA's name constraints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerNames {
    /// IP addresses.
    pub ips: Vec<IpAddr>,
    /// DNS names.
    pub dns: Vec<String>,
}

/// A certificate with its PEM and DER forms.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// DER.
    pub der: CertificateDer<'static>,
    /// PEM.
    pub pem: String,
    /// Serial number.
    pub serial: Serial,
    /// NotBefore.
    pub not_before: SystemTime,
    /// NotAfter.
    pub not_after: SystemTime,
}

impl IssuedCertificate {
    fn from_rcgen(cert: &rcgen::Certificate) -> Result<Self, PkiError> {
        Self::from_der(cert.der().clone())
    }

    /// Wraps a DER certificate, reading its serial and validity.
    pub fn from_der(der: CertificateDer<'static>) -> Result<Self, PkiError> {
        let info = verify::inspect(&der)?;
        let pem = pem_encode("CERTIFICATE", &der);
        Ok(Self {
            serial: info.serial,
            not_before: info.not_before,
            not_after: info.not_after,
            der,
            pem,
        })
    }

    /// Parses the first certificate of a PEM file.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PkiError> {
        Self::from_der(parse_certificate_pem(pem)?)
    }
}

/// The operator CA: its key and certificate.
#[derive(Debug)]
pub struct OperatorCa {
    key: PrivateKey,
    cert: IssuedCertificate,
}

/// The operator listener's server certificate and key.
#[derive(Debug)]
pub struct ServerCertificate {
    /// Key.
    pub key: PrivateKey,
    /// Certificate.
    pub cert: IssuedCertificate,
}

/// The agent's client certificate and key (when the CA generated the key).
#[derive(Debug)]
pub struct AgentCertificate {
    /// Key.
    pub key: PrivateKey,
    /// Certificate.
    pub cert: IssuedCertificate,
}

impl OperatorCa {
    /// Creates a new CA for the host `host_label` (used in the subject), name-constrained to
    /// `names`.
    pub fn generate(
        host_label: &str,
        names: &ListenerNames,
        now: SystemTime,
    ) -> Result<Self, PkiError> {
        let key = PrivateKey::generate()?;
        let pair = key.key_pair()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("netclaw operator CA {host_label}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = to_offset(now.checked_sub(NOT_BEFORE_BACKDATE).unwrap_or(now));
        params.not_after = to_offset(now + CA_LIFETIME);
        params.serial_number = Some(random_serial()?);
        params.name_constraints = Some(name_constraints(names));
        let cert = params.self_signed(&pair)?;
        Ok(Self {
            key,
            cert: IssuedCertificate::from_rcgen(&cert)?,
        })
    }

    /// Loads a CA from its certificate and key, checking that they belong together.
    pub fn from_parts(cert: IssuedCertificate, key: PrivateKey) -> Result<Self, PkiError> {
        verify::check_key_matches(&cert.der, &key)?;
        Ok(Self { key, cert })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &IssuedCertificate {
        &self.cert
    }

    /// The CA key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    fn issuer(&self) -> Result<Issuer<'static, rcgen::KeyPair>, PkiError> {
        Ok(Issuer::from_ca_cert_der(
            &self.cert.der,
            self.key.key_pair()?,
        )?)
    }

    /// Issues the operator listener's server certificate with a fresh key.
    pub fn issue_server(
        &self,
        names: &ListenerNames,
        now: SystemTime,
    ) -> Result<ServerCertificate, PkiError> {
        if names.ips.is_empty() && names.dns.is_empty() {
            return Err(PkiError::BadCertificate(
                "the operator listener needs at least one IP address or DNS name".into(),
            ));
        }
        let key = PrivateKey::generate()?;
        let pair = key.key_pair()?;
        let mut params = leaf_params("netclaw operator listener", now, SERVER_LIFETIME)?;
        params.subject_alt_names = names
            .ips
            .iter()
            .map(|ip| Ok(SanType::IpAddress(*ip)))
            .chain(
                names
                    .dns
                    .iter()
                    .map(|d| Ok(SanType::DnsName(d.clone().try_into()?))),
            )
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&pair, &self.issuer()?)?;
        Ok(ServerCertificate {
            key,
            cert: IssuedCertificate::from_rcgen(&cert)?,
        })
    }

    /// Issues an agent client certificate with a fresh key.
    pub fn issue_agent(
        &self,
        id: &SpiffeId,
        now: SystemTime,
        lifetime: CertificateLifetime,
    ) -> Result<AgentCertificate, PkiError> {
        let key = PrivateKey::generate()?;
        let pair = key.key_pair()?;
        let cert = agent_params(id, now, lifetime)?.signed_by(&pair, &self.issuer()?)?;
        Ok(AgentCertificate {
            key,
            cert: IssuedCertificate::from_rcgen(&cert)?,
        })
    }

    /// Issues an agent client certificate for the key in a CSR, so the key never leaves the
    /// agent. The identity comes from `id`, never from the request: any names or extensions the
    /// request asks for are ignored. Only ECDSA P-256 keys are accepted.
    pub fn issue_agent_from_csr(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        now: SystemTime,
        lifetime: CertificateLifetime,
    ) -> Result<IssuedCertificate, PkiError> {
        let csr = parse_csr(csr_der)?;
        let cert = agent_params(id, now, lifetime)?.signed_by(&csr.public_key, &self.issuer()?)?;
        IssuedCertificate::from_rcgen(&cert)
    }
}

/// Checks the SubjectPublicKeyInfo and signature algorithm of a DER CSR: an uncompressed P-256
/// point that is on the curve, signed with ECDSA with SHA-256. Returns the point.
pub fn check_csr_key(csr_der: &[u8]) -> Result<Vec<u8>, CsrKeyError> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
    };
    use x509_parser::prelude::FromDer;

    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|_| CsrKeyError::Unparsable)?;
    let spki = &csr.certification_request_info.subject_pki;
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(CsrKeyError::NotEcKey);
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if curve.as_ref() != Some(&OID_EC_P256) {
        return Err(CsrKeyError::NotP256);
    }
    let point: &[u8] = &spki.subject_public_key.data;
    match point.first() {
        Some(0x02 | 0x03) => return Err(CsrKeyError::CompressedPoint),
        Some(0x04) if point.len() == 65 => {}
        _ => return Err(CsrKeyError::BadPointEncoding),
    }
    if !is_p256_point(point) {
        return Err(CsrKeyError::PointNotOnCurve);
    }
    if csr.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(CsrKeyError::SignatureAlgorithm);
    }
    Ok(point.to_vec())
}

/// Whether `point` (uncompressed) is a valid P-256 public key: ring's ECDH checks the peer's
/// point (on the curve, not the point at infinity) before it agrees on anything.
fn is_p256_point(point: &[u8]) -> bool {
    use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
    let Ok(mine) = EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()) else {
        return false;
    };
    agree_ephemeral(mine, &UnparsedPublicKey::new(&ECDH_P256, point), |_| ()).is_ok()
}

/// Parses and checks a CSR: key an uncompressed P-256 point on the curve (checked in the
/// SubjectPublicKeyInfo itself, see [`check_csr_key`]), signed with ECDSA with SHA-256, and the
/// signature valid.
pub fn parse_csr(csr_der: &[u8]) -> Result<CertificateSigningRequestParams, PkiError> {
    if csr_der.len() > 16 * 1024 {
        return Err(PkiError::BadCsr("request larger than 16 KiB".into()));
    }
    check_csr_key(csr_der)?;
    let der = CertificateSigningRequestDer::from(csr_der);
    let csr = CertificateSigningRequestParams::from_der(&der)
        .map_err(|e| PkiError::BadCsr(e.to_string()))?;
    if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::CsrKey(CsrKeyError::SignatureAlgorithm));
    }
    Ok(csr)
}

/// The raw public key (the EC point) a CSR asks to certify, after checking the CSR.
pub fn csr_public_key_bits(csr_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    use rcgen::PublicKeyData;
    Ok(parse_csr(csr_der)?.public_key.der_bytes().to_vec())
}

/// Parses a PEM CSR into DER.
pub fn csr_from_pem(pem: &[u8]) -> Result<Vec<u8>, PkiError> {
    CertificateSigningRequestDer::from_pem_slice(pem)
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| PkiError::BadCsr(e.to_string()))
}

fn agent_params(
    id: &SpiffeId,
    now: SystemTime,
    lifetime: CertificateLifetime,
) -> Result<CertificateParams, PkiError> {
    let mut params = leaf_params("netclaw operator agent", now, lifetime.duration())?;
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn leaf_params(
    cn: &str,
    now: SystemTime,
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = to_offset(now.checked_sub(NOT_BEFORE_BACKDATE).unwrap_or(now));
    params.not_after = to_offset(now + lifetime);
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn name_constraints(names: &ListenerNames) -> NameConstraints {
    let mut permitted: Vec<GeneralSubtree> = names
        .ips
        .iter()
        .map(|ip| {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, prefix))
        })
        .collect();
    permitted.extend(names.dns.iter().map(|d| GeneralSubtree::DnsName(d.clone())));
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "netclaw");
    dn.push(DnType::CommonName, cn);
    dn
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    // Positive and of fixed length: clear the sign bit, set the next one.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn to_offset(t: SystemTime) -> OffsetDateTime {
    // Certificates carry whole seconds.
    let secs = crate::identity::unix_seconds(t);
    OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = crate::key::base64_lines(der);
    format!(
        "-----BEGIN {label}-----\n{}-----END {label}-----\n",
        b64.as_str()
    )
}

#[cfg(test)]
mod tests;
