//! The one task that keeps the published snapshot current: it polls the identity source's
//! fingerprint every [`POLL`] and rebuilds the snapshot off the async workers when it changed,
//! writes first-use records through the issuer, renews the listener certificate when due, and
//! hands refused presentations of superseded serials to the issuer's clone check.
//!
//! Polling one fingerprint (inode, mtime, length of four files) costs four `stat`s a second and
//! needs no inotify watch that a rename into the directory could outlive.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{OperatorPki, PkiSnapshot, Presented, SnapshotError};
use crate::audit::Audit;

/// How often the source is checked for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// How often the operator listener certificate is checked for renewal.
pub const SERVER_RENEWAL_CHECK: Duration = Duration::from_secs(3600);

/// One poll: rebuilds and publishes the snapshot when the source changed (on a blocking thread).
pub async fn reload(pki: &OperatorPki) -> Result<Option<Arc<PkiSnapshot>>, SnapshotError> {
    let publisher = pki.publisher().clone();
    tokio::task::spawn_blocking(move || publisher.reload_if_changed(SystemTime::now()))
        .await
        .unwrap_or_else(|_| {
            Err(SnapshotError::Pki(netclaw_pki::PkiError::LockPoisoned {
                what: "operator PKI publication (the reloading thread panicked)",
            }))
        })
}

/// Runs until `shutdown` resolves (the daemon's drain begins).
pub async fn run(
    pki: Arc<OperatorPki>,
    mut presented: mpsc::Receiver<Presented>,
    audit: Arc<Audit>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // The first poll one interval after start: the snapshot was just loaded, and a write this
    // early would race the start-up's own clean-up checks for nothing.
    let mut tick = tokio::time::interval_at(Instant::now() + POLL, POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Checked at the first poll, then hourly (and retried hourly after a failure).
    let mut last_server_check: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match reload(&pki).await {
                    Ok(Some(s)) => tracing::info!(generation = s.generation(), "operator CA bundle, listener certificate or issuance registry changed; now in use"),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "operator CA bundle, listener certificate or issuance registry changed but cannot be used; keeping the current ones"),
                }
                // Which serials completed a handshake decides who may renew.
                if let Err(e) = pki.issuer().persist_first_use().await {
                    tracing::error!(error = %e, "could not record first handshakes in the issuance registry; retrying");
                }
                // The listener certificate renews itself at two thirds of its life.
                if last_server_check.is_none_or(|t| t.elapsed() >= SERVER_RENEWAL_CHECK) {
                    last_server_check = Some(Instant::now());
                    match pki.issuer().renew_server_if_due(SystemTime::now()).await {
                        Ok(Some(serial)) => {
                            audit.metrics.renewal("server", "success");
                            audit.record("cert-renewed", "daemon".into(), format!("operator listener certificate, new serial {serial}"));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            audit.metrics.renewal("server", "failure");
                            tracing::error!(error = %e, "operator listener certificate renewal failed; retrying in an hour");
                        }
                    }
                }
            }
            Some(p) = presented.recv() => {
                let observed = pki.issuer().presented(&p.serial, p.at).await;
                super::audit_observed(&audit, observed);
            }
            () = &mut shutdown => return,
        }
    }
}
