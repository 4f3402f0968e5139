use std::path::PathBuf;

/// Errors produced by the PKI crate.
///
/// Every variant that concerns a file names it, and every variant an operator can fix says how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A SPIFFE id, trust domain or host-id did not parse.
    #[error("invalid SPIFFE identity {input:?}: {reason}")]
    InvalidSpiffeId { input: String, reason: &'static str },

    /// Certificate or key generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),

    /// A certificate signing request was malformed, badly signed or used an unsupported key.
    #[error("certificate signing request rejected: {0}")]
    BadCsr(String),

    /// A certificate signing request's key is not an ECDSA P-256 key (checked in its
    /// SubjectPublicKeyInfo), or it is not signed with ECDSA with SHA-256.
    #[error("certificate signing request rejected: {0}")]
    CsrKey(#[from] crate::issue::CsrKeyError),

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
    Verify(String),

    /// The certificate verified but names another identity than the expected one.
    #[error("certificate identity mismatch: {0}")]
    WrongIdentity(String),

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

    /// The issuance registry is unreadable or inconsistent.
    #[error("issuance registry {path}: {reason}")]
    Registry { path: PathBuf, reason: String },

    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl PkiError {
    /// An I/O failure while `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
