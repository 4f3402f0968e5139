//! The `netclaw` command-line interface.
//!
//! Implemented here: `netclaw daemon install` (configuration, operator PKI and agent
//! credentials) and `netclaw pki status`. Commands that talk to the daemon resolve their endpoint
//! as the OpenSpec change `local-operator-mtls-agent` describes.
//!
//! # Security
//!
//! Install writes keys 0600 in 0700 directories, atomically, and never replaces an existing CA.
//! Status output never contains key material.

pub mod exit;
pub mod install;
pub mod pki_status;
