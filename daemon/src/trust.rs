//! What the operator listener verifies agent certificates against: one snapshot's trust
//! ([`Trust`]: bundle, registry, expected identity), the typed [`Refusal`] it answers with, and
//! the superseded serials a refused handshake reports ([`Presented`]). Used by the PKI state
//! (`operator_pki`, which builds a `Trust` per snapshot) and by the rustls verifier (`tls`).

use std::time::{Duration, SystemTime};

use netclaw_pki::registry::{Admission, Registry, Status};
use netclaw_pki::verify::{verify_agent_certificate, ExpectedAgent};
use netclaw_pki::{OperatorIdentity, Serial};
use rustls_pki_types::CertificateDer;

use crate::refusal::RefusalReason;

/// Why an agent certificate was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refusal {
    /// Why, by type (its label: `wrong-ca`, `expired`, `revoked-serial`, …).
    pub reason: RefusalReason,
    /// Human detail.
    pub detail: String,
}

/// What verification of agent certificates uses: one snapshot's bundle, registry and expected
/// identity.
#[derive(Debug)]
pub struct Trust {
    bundle: Vec<CertificateDer<'static>>,
    registry: Registry,
    expected: ExpectedAgent,
}

/// How a serial is admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// The active serial.
    Active,
    /// Superseded, accepted until this time.
    Grace(SystemTime),
}

impl Trust {
    /// Verification against `bundle`, `registry` and the `expected` identity.
    pub fn new(
        bundle: Vec<CertificateDer<'static>>,
        registry: Registry,
        expected: ExpectedAgent,
    ) -> Self {
        Self {
            bundle,
            registry,
            expected,
        }
    }

    /// The trust bundle.
    pub fn bundle(&self) -> &[CertificateDer<'static>] {
        &self.bundle
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The identity an agent certificate must carry.
    pub fn expected(&self) -> &ExpectedAgent {
        &self.expected
    }

    /// Chain, validity, EKU and identity of a presented agent certificate at `now` (not the
    /// registry: see [`Self::admit`]).
    pub fn verify_chain(
        &self,
        cert: &CertificateDer<'_>,
        now: SystemTime,
    ) -> Result<OperatorIdentity, Refusal> {
        verify_agent_certificate(cert, &self.bundle, &self.expected, now).map_err(|e| Refusal {
            reason: RefusalReason::of_pki_error(&e),
            detail: e.to_string(),
        })
    }

    /// Registry admission of `serial` at `now`.
    pub fn admit(&self, serial: &Serial, now: SystemTime) -> Result<Admitted, Refusal> {
        match self.registry.admit_agent(serial, now) {
            Admission::Active => Ok(Admitted::Active),
            Admission::Grace => {
                let until = match self.registry.get(serial).map(|e| &e.status) {
                    Some(Status::Superseded { grace_until, .. }) => {
                        SystemTime::UNIX_EPOCH + Duration::from_secs(*grace_until)
                    }
                    _ => now,
                };
                Ok(Admitted::Grace(until))
            }
            Admission::Refused(r) => Err(Refusal {
                reason: RefusalReason::Serial(r),
                detail: format!("serial {serial}"),
            }),
        }
    }

    /// The successor of `serial` when it is superseded.
    pub(crate) fn successor_of(&self, serial: &Serial) -> Option<Serial> {
        match self.registry.get(serial).map(|e| &e.status) {
            Some(Status::Superseded { successor, .. }) => Some(successor.clone()),
            _ => None,
        }
    }
}

/// A superseded serial that a refused handshake presented (sent by the verifier).
#[derive(Debug)]
pub struct Presented {
    /// The serial.
    pub serial: Serial,
    /// When.
    pub at: SystemTime,
}
