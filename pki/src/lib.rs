//! Operator PKI for netclaw.
//!
//! This crate issues, inspects and verifies the certificates that let a co-located operator agent
//! reach the daemon's operator listener over mutual TLS, and keeps them on disk:
//!
//! * a dedicated operator CA (ECDSA P-256, `CA:true`, `pathlen:0`, name-constrained to this host),
//! * the operator listener's server certificate (SAN = listener IPs and DNS names, EKU serverAuth),
//! * the agent's host-scoped client certificate (URI SAN
//!   `spiffe://<trust-domain>/host/<host-id>/operator-agent`, EKU clientAuth only), issued either with
//!   a fresh key or from a CSR so that the agent's key never leaves the agent.
//!
//! It is a pure library: it never reads the clock (every operation takes `now`) and never opens a
//! socket. File I/O is confined to [`store`] and [`secure_fs`] and the multi-file steps built on
//! them: [`hostid::resolve`], install-time issuance ([`bootstrap`]) and CA rotation ([`rotation`]).
//!
//! # Security
//!
//! * The only trust anchor for operator identities is the operator CA; verification uses
//!   rustls-webpki with ECDSA P-256 only, requires EKU clientAuth, the exact SPIFFE path for this
//!   host's host-id, and (at the daemon) a serial the issuance registry lists as active.
//! * X.509 name constraints can restrict URIs by host only, and rustls-webpki rejects every URI
//!   constraint, so the CA's name constraints cover the listener's IP and DNS names while the
//!   SPIFFE trust domain and host path are enforced by [`verify`].
//! * Private keys live in [`PrivateKey`], which zeroizes on drop, has no `Clone` or `Serialize`,
//!   and prints `[secret elided]`. Key files are written 0600 atomically and refused at load when
//!   group or world can read them.

pub mod bootstrap;
mod error;
pub mod file_policy;
pub mod hostid;
pub mod identity;
pub mod issue;
mod key;
pub mod registry;
pub mod rotation;
pub mod san;
pub mod schedule;
pub mod secure_fs;
pub mod spiffe;
pub mod store;
pub mod verify;

pub use error::{CsrKeyError, IdentityMismatch, PkiError, VerifyError};
pub use identity::{OperatorIdentity, Serial};
pub use issue::{
    AgentCertificate, CertificateLifetime, IssuedCertificate, OperatorCa, ServerCertificate,
    DEFAULT_AGENT_LIFETIME, NOT_BEFORE_BACKDATE,
};
pub use key::PrivateKey;
pub use spiffe::{HostId, SpiffeError, SpiffeId, TrustDomain};
