//! Agent renewal as a domain service: who may renew (the agent itself, by its own request, for a
//! new key), the issuer's write ([`crate::operator_pki::Issuer::renew_agent`], which asks the
//! registry), and the audit records and metrics of every outcome. The HTTP handler only parses
//! the request and translates the typed answer ([`RenewError`]) into a status.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use netclaw_core::wire::{format_unix, RenewResponse};
use netclaw_pki::identity::unix_seconds;
use netclaw_pki::registry::{RenewalGrant, RenewalRefusal};
use netclaw_pki::{CertificateLifetime, PkiError};

use crate::audit::Audit;
use crate::operator_pki::{self, OperatorPki};
use crate::principal::Principal;

/// A renewal request, as the operator listener received it.
#[derive(Debug)]
pub struct Request<'a> {
    /// Who asks.
    pub by: &'a Principal,
    /// The public key of the certificate the connection authenticated with (operator
    /// connections only).
    pub presented_key: Option<&'a [u8]>,
    /// Whether the request carries caller headers (`Netclaw-Operator-*`), which the agent adds
    /// only to the requests it forwards for local callers, never to its own.
    pub forwarded: bool,
    /// The certificate signing request (PEM).
    pub csr_pem: String,
}

/// Why a renewal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// `Anonymous`: authentication required.
    #[error("authentication required")]
    Unauthenticated,
    /// Another principal than the operator agent.
    #[error("only the operator agent renews its certificate")]
    NotTheAgent,
    /// A request the agent forwarded for a local caller (audited).
    #[error("a renewal forwarded for a local caller")]
    Forwarded,
    /// The CSR is not one (or its key is not acceptable).
    #[error("certificate signing request rejected")]
    BadCsr,
    /// The CSR is for the key the caller already holds.
    #[error("the certificate signing request reuses the current key")]
    KeyReused,
    /// This daemon has no operator PKI.
    #[error("no operator PKI")]
    NoPki,
    /// The registry does not let the presented serial renew (audited).
    #[error("renewal refused: {0}")]
    Refused(RenewalRefusal),
    /// The PKI files or the publication failed; the detail is for the log only.
    #[error("renewal failed: {0}")]
    Failed(String),
}

/// The renewal service. Cheap to share.
#[derive(Debug)]
pub struct Service {
    pki: Option<Arc<OperatorPki>>,
    audit: Arc<Audit>,
    lifetime: CertificateLifetime,
    grace: Duration,
}

impl Service {
    /// Renewals through `pki`'s issuer, issuing for `lifetime` and keeping superseded serials
    /// usable for `grace` (`Operator.RotationGrace`), audited to `audit`.
    pub fn new(
        pki: Option<Arc<OperatorPki>>,
        audit: Arc<Audit>,
        lifetime: CertificateLifetime,
        grace: Duration,
    ) -> Self {
        Self {
            pki,
            audit,
            lifetime,
            grace,
        }
    }

    /// Renews the calling agent's certificate from its CSR. Only `LocalOperator` renews (the
    /// serial superseded is the one the caller authenticated with), only by its own request
    /// (a forwarded one is refused and audited), and only for a new key; the registry then
    /// decides whether the presented serial may renew
    /// ([`netclaw_pki::registry::Registry::renewal_decision`]).
    pub async fn renew(
        &self,
        req: Request<'_>,
        now: SystemTime,
    ) -> Result<RenewResponse, RenewError> {
        let by = req.by;
        let serial = match by {
            Principal::LocalOperator { serial, .. } => serial.clone(),
            Principal::Anonymous => return Err(RenewError::Unauthenticated),
            _ => return Err(RenewError::NotTheAgent),
        };
        if req.forwarded {
            self.audit.metrics.renewal("agent", "refused");
            self.audit.record(
                "renewal-refused",
                by.audit_label(),
                "forwarded-caller: a renewal forwarded for a local caller (it carries caller \
                 headers); only the agent's own request renews its certificate"
                    .into(),
            );
            return Err(RenewError::Forwarded);
        }
        // Each renewal brings a new key: a CSR for the key the caller already holds is refused.
        if let Some(presented) = req.presented_key {
            let requested = netclaw_pki::issue::csr_from_pem(req.csr_pem.as_bytes())
                .and_then(|der| netclaw_pki::issue::csr_public_key_bits(&der))
                .map_err(|_| RenewError::BadCsr)?;
            if requested.as_slice() == presented {
                return Err(RenewError::KeyReused);
            }
        }
        let pki = self.pki.as_ref().ok_or(RenewError::NoPki)?;
        let renewed = pki
            .issuer()
            .renew_agent(
                serial.clone(),
                req.csr_pem.into_bytes(),
                self.lifetime,
                self.grace,
                now,
            )
            .await;
        let renewed = match renewed {
            Ok(r) => r,
            Err(operator_pki::RenewError::Refused(refusal)) => {
                self.audit.metrics.renewal("agent", "refused");
                self.audit.record(
                    "renewal-refused",
                    by.audit_label(),
                    format!("{}: serial {serial}: {refusal}", refusal.as_str()),
                );
                if refusal.suggests_clone() {
                    self.audit.record(
                        "possible-key-clone",
                        by.audit_label(),
                        format!(
                            "superseded serial {serial} tried to renew after the agent moved on \
                             ({}); the old key may have been copied",
                            refusal.as_str()
                        ),
                    );
                }
                return Err(RenewError::Refused(refusal));
            }
            Err(operator_pki::RenewError::Pki(PkiError::BadCsr(_) | PkiError::CsrKey(_))) => {
                self.audit.metrics.renewal("agent", "failure");
                return Err(RenewError::BadCsr);
            }
            Err(e) => {
                self.audit.metrics.renewal("agent", "failure");
                return Err(RenewError::Failed(e.to_string()));
            }
        };
        self.audit.metrics.renewal("agent", "success");
        if let RenewalGrant::LostAnswer { successor } = &renewed.grant {
            self.audit.record(
                "lost-answer-renewal",
                by.audit_label(),
                format!(
                    "superseded serial {serial} renewed once because its successor {successor} \
                     never completed a handshake (the answer to its renewal was lost)"
                ),
            );
        }
        self.audit.record(
            "cert-renewed",
            by.audit_label(),
            format!(
                "new serial {} (expires {}), superseded {}",
                renewed.cert.serial,
                format_unix(unix_seconds(renewed.cert.not_after)),
                renewed
                    .superseded
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        Ok(RenewResponse {
            certificate: renewed.cert.pem.clone(),
            bundle: renewed.bundle,
            serial: renewed.cert.serial.to_string(),
            previous_serial: serial.to_string(),
            not_after: format_unix(unix_seconds(renewed.cert.not_after)),
        })
    }
}

#[cfg(test)]
mod tests;
