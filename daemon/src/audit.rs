//! Audit events: broadcast to `/api/events` and `/hub/session` subscribers, appended to
//! `audit.log` (JSON lines, 0600) and logged.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::line_budget::LineBudget;
use crate::refusal::RefusalReason;

/// The audit kind of a refused operator-listener handshake.
pub const HANDSHAKE_REFUSED: &str = "handshake-refused";

/// One audit event.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Unix seconds.
    pub at: u64,
    /// `pairing-code-minted`, `device-paired`, `device-revoked`, `handshake-refused`, …
    pub kind: String,
    /// Who did it (with the local caller for LocalOperator).
    pub principal: String,
    /// Event detail (device name, serial, refusal reason). Never a secret.
    pub detail: String,
    /// Why, for refusals: the typed reason whose label the detail also carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RefusalReason>,
}

/// The audit sink.
#[derive(Debug)]
pub struct Audit {
    tx: broadcast::Sender<AuditEvent>,
    log: Option<Mutex<std::fs::File>>,
    /// Refused operator connections are audited within this budget: anyone who can reach the
    /// operator port can cause one per connection.
    handshake_refusals: Mutex<LineBudget>,
    /// Counters for `GET /metrics`; refused handshakes are counted as they are audited.
    pub metrics: crate::metrics::Metrics,
}

impl Audit {
    /// A sink appending to `path` (created 0600) when given. A symbolic link at `path` is
    /// refused, never followed.
    pub fn new(path: Option<PathBuf>) -> Result<Self, netclaw_pki::PkiError> {
        let (tx, _) = broadcast::channel(256);
        let log = match path {
            Some(p) => Some(Mutex::new(netclaw_pki::secure_fs::open_state_file(
                &p, 0o600, true,
            )?)),
            None => None,
        };
        Ok(Self {
            tx,
            log,
            handshake_refusals: Mutex::new(refusal_budget()),
            metrics: Default::default(),
        })
    }

    /// Records an event.
    pub fn record(&self, kind: &str, principal: String, detail: String) {
        self.emit(kind, principal, detail, None);
    }

    /// Records a refusal of `kind` with its typed reason. A refused operator handshake
    /// (`handshake-refused`) is counted in the metrics under the reason's label, and audited
    /// within a [`LineBudget`].
    pub fn refusal(&self, kind: &str, principal: String, reason: RefusalReason, detail: String) {
        let detail = if kind == HANDSHAKE_REFUSED {
            self.metrics.handshake_refused(reason);
            // A poisoned count still audits: the line matters more than the bound.
            match self.handshake_refusals.lock() {
                Ok(mut budget) => budget.detail(detail, SystemTime::now()),
                Err(_) => Some(detail),
            }
        } else {
            Some(detail)
        };
        if let Some(detail) = detail {
            self.emit(kind, principal, detail, Some(reason));
        }
    }

    fn emit(&self, kind: &str, principal: String, detail: String, reason: Option<RefusalReason>) {
        let event = AuditEvent {
            at: netclaw_pki::identity::unix_seconds(SystemTime::now()),
            kind: kind.to_owned(),
            principal,
            detail,
            reason,
        };
        tracing::info!(target: "netclaw::audit", kind = %event.kind, principal = %event.principal, detail = %event.detail);
        if let Some(log) = &self.log {
            if let (Ok(mut f), Ok(line)) = (log.lock(), serde_json::to_string(&event)) {
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::error!(error = %e, "cannot append to the audit log");
                }
            }
        }
        let _ = self.tx.send(event);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<AuditEvent> {
        self.tx.subscribe()
    }
}

/// How many lines of one kind of refusal are audited one by one per [`WINDOW`]; the rest are
/// counted into the next line ([`refusal_budget`]).
pub(crate) const LINES_PER_WINDOW: u32 = 60;
/// See [`LINES_PER_WINDOW`].
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The budget of the audit lines of one kind of refusal that strangers can cause at will (a
/// refused pairing exchange, a refused operator connection): [`LINES_PER_WINDOW`] per
/// [`WINDOW`], so that a flood cannot fill the disk that holds the registry and the PKI.
pub(crate) fn refusal_budget() -> LineBudget {
    LineBudget::new(LINES_PER_WINDOW, WINDOW)
}

#[cfg(test)]
mod tests;
