use std::path::PathBuf;

use rustls_pki_types::UnixTime;

use crate::spiffe::{HostId, SpiffeError, TrustDomain};

/// Errors produced by the PKI crate.
///
/// Every variant that concerns a file names it, and every variant an operator can fix says how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A SPIFFE id, trust domain or host-id did not parse.
    #[error(transparent)]
    InvalidSpiffeId(#[from] SpiffeError),

    /// Certificate or key generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),

    /// A certificate signing request was malformed, badly signed or used an unsupported key.
    #[error("certificate signing request rejected: {0}")]
    BadCsr(String),

    /// A certificate signing request's key is not an ECDSA P-256 key (checked in its
    /// SubjectPublicKeyInfo), or it is not signed with ECDSA with SHA-256.
    #[error("certificate signing request rejected: {0}")]
    CsrKey(#[from] CsrKeyError),

    /// A certificate could not be parsed.
    #[error("certificate could not be parsed: {0}")]
    BadCertificate(String),

    /// A private key could not be parsed or is not an ECDSA P-256 PKCS#8 key.
    #[error("private key could not be parsed: {0}")]
    BadKey(String),

    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,

    /// Chain, validity or EKU verification failed.
    #[error("certificate verification failed: {0}")]
    Verify(#[from] VerifyError),

    /// The certificate verified but names another identity than the expected one.
    #[error("certificate identity mismatch: {0}")]
    WrongIdentity(#[from] IdentityMismatch),

    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file that must exist does not.
    #[error("{what} not found at {path}; {fix}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        fix: &'static str,
    },

    /// A key file (or its directory) is readable by group or others.
    #[error(
        "refusing to use {path}: mode {mode:04o} lets group or others read it; \
         fix with `chmod {wanted:o} {path}` and check that no one else copied it"
    )]
    InsecurePermissions {
        path: PathBuf,
        mode: u32,
        wanted: u32,
    },

    /// A secret's path is a symbolic link, which is never followed.
    #[error(
        "refusing to use {path}: it is a symbolic link, which is not followed for secrets; \
         fix with `cp --remove-destination \"$(readlink -f {path})\" {path}`"
    )]
    SymlinkRefused { path: PathBuf },

    /// Root was to write into, or change the owner of, a directory whose path is a symbolic
    /// link. The directory's owner could have planted it to point root at a system directory.
    #[error(
        "refusing to write into {path} as root: it is a symbolic link, which root never follows \
         into a service's directory (its owner could point it at a system directory); check where \
         it points (`ls -l {path}`), then replace it with a real directory and re-run"
    )]
    DirectorySymlinkRefused { path: PathBuf },

    /// Root was to change the owner of a file with more than one name (hard link), which could
    /// be a system file linked into a service's directory.
    #[error(
        "refusing to change the owner of {path}: it has {links} hard links, so it may be another \
         file's name as well; find them with `find / -xdev -samefile {path}`, remove the extra \
         links and re-run"
    )]
    HardLinkRefused { path: PathBuf, links: u64 },

    /// The issuance registry is unreadable or inconsistent.
    #[error("issuance registry {path}: {reason}")]
    Registry { path: PathBuf, reason: String },

    /// A CA rotation step was asked for in the wrong phase.
    #[error("issuance registry ca-rotation.json: cannot {what}: the CA rotation is in phase `{phase}`; {fix}")]
    RotationOutOfOrder {
        /// The step asked for.
        what: &'static str,
        /// The phase the rotation is in.
        phase: &'static str,
        /// What to run first.
        fix: &'static str,
    },

    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// A thread panicked while holding a lock on `what`; its state may be half-updated, so
    /// nothing more is done with it until a restart.
    #[error("internal lock on {what} poisoned by an earlier panic; restart the daemon")]
    LockPoisoned {
        /// What the lock guards.
        what: &'static str,
    },
}

impl PkiError {
    /// Whether a certificate is not valid yet: its NotBefore is after this host's clock (a clock
    /// behind, as before NTP at boot), which heals by itself, unlike every other failure here.
    pub fn is_not_yet_valid(&self) -> bool {
        matches!(
            self,
            Self::Verify(VerifyError::Chain(webpki::Error::CertNotValidYet { .. }))
        )
    }

    /// An I/O failure while `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Why a certificate's chain, validity or key usage did not verify. Chain failures keep
/// webpki's own error, so that callers classify them by type (never by their text).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// webpki refused the certificate (chain, validity window, EKU, name constraints, encoding).
    #[error("{}", chain_message(.0))]
    Chain(webpki::Error),

    /// A trust bundle certificate is not a usable trust anchor.
    #[error("trust bundle: {0}")]
    TrustBundle(webpki::Error),

    /// CA retirement: the agent certificate does not chain to the new CA alone.
    #[error(
        "the agent certificate {} still chains to the old CA ({source}); run `netclaw pki rotate` (or `--offline`) first",
        path.display()
    )]
    AgentOnOldCa {
        /// The agent certificate file.
        path: PathBuf,
        /// Why it does not chain to the new CA.
        source: Box<PkiError>,
    },

    /// CA retirement: the listener certificate does not chain to the new CA alone.
    #[error(
        "the listener certificate still chains to the old CA ({source}); run `netclaw pki rotate --ca activate` again"
    )]
    ListenerOnOldCa {
        /// Why it does not chain to the new CA.
        source: Box<PkiError>,
    },
}

impl VerifyError {
    /// The webpki error of a chain failure.
    pub fn webpki(&self) -> Option<&webpki::Error> {
        match self {
            Self::Chain(e) => Some(e),
            _ => None,
        }
    }
}

/// A webpki failure in words. Validity failures say which clock reading disagreed with which
/// bound: a certificate "not valid yet" right after it was issued means the issuer's clock runs
/// ahead of this host's.
fn chain_message(e: &webpki::Error) -> String {
    fn utc(t: UnixTime) -> String {
        let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
        match time::OffsetDateTime::from_unix_timestamp(secs) {
            Ok(t) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            Err(_) => format!("{secs} (Unix time)"),
        }
    }
    match e {
        webpki::Error::CertNotValidYet { time, not_before } => format!(
            "certificate not valid yet (CertNotValidYet): valid from {}, but this host's clock reads {}, {} s earlier; check that this host's clock and the issuer's agree (NTP: `timedatectl`)",
            utc(*not_before),
            utc(*time),
            not_before.as_secs().saturating_sub(time.as_secs())
        ),
        webpki::Error::CertExpired { time, not_after } => format!(
            "certificate expired (CertExpired) at {}; this host's clock reads {}",
            utc(*not_after),
            utc(*time)
        ),
        other => other.to_string(),
    }
}

/// How a certificate that verified names another identity than the expected one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityMismatch {
    /// A CA certificate was presented as an operator agent.
    #[error("a CA certificate cannot be an operator agent")]
    CaCertificate,
    /// The EKU is not clientAuth alone.
    #[error("an operator agent certificate must have EKU clientAuth only")]
    Eku,
    /// No subject alternative name.
    #[error("no subject alternative name")]
    NoSubjectAltName,
    /// Not exactly one SAN, a URI.
    #[error("an operator agent certificate must carry exactly one SAN, its SPIFFE URI")]
    NotOneUri,
    /// Another trust domain.
    #[error("trust domain {found} is not this daemon's {expected}")]
    TrustDomain {
        /// The certificate's.
        found: TrustDomain,
        /// This daemon's.
        expected: TrustDomain,
    },
    /// Another host's certificate.
    #[error("certificate is scoped to host-id {found}, this host is {expected}")]
    HostId {
        /// The certificate's.
        found: HostId,
        /// This host's.
        expected: HostId,
    },
    /// A server certificate not valid for the name it was reached by.
    #[error("{0}")]
    ServerName(webpki::Error),
}

/// Why a CSR's key is refused: the SubjectPublicKeyInfo itself is checked (algorithm, curve,
/// point encoding, point on the curve), never inferred from the signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrKeyError {
    /// The request does not parse as PKCS#10.
    #[error("the request is not a PKCS#10 certificate signing request")]
    Unparsable,
    /// Not an elliptic-curve key (RSA, Ed25519, ...).
    #[error("the key is not an elliptic-curve key; only ECDSA P-256 keys are accepted")]
    NotEcKey,
    /// An elliptic-curve key on another curve than P-256 (prime256v1), or without a named curve.
    #[error("the key is not on curve P-256 (prime256v1); only ECDSA P-256 keys are accepted")]
    NotP256,
    /// A compressed point (the agent always sends uncompressed points).
    #[error("the key is a compressed point; send the uncompressed P-256 point")]
    CompressedPoint,
    /// The point is not 65 bytes starting with 0x04.
    #[error("the key is not a 65-byte uncompressed P-256 point")]
    BadPointEncoding,
    /// The point is not on the P-256 curve.
    #[error("the key's point is not on the P-256 curve")]
    PointNotOnCurve,
    /// Signed with anything but ECDSA with SHA-256.
    #[error("the request is not signed with ECDSA with SHA-256")]
    SignatureAlgorithm,
}
