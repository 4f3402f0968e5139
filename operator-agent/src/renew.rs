//! Certificate renewal over the agent's current mTLS channel, and the loop that schedules it.
//!
//! Each renewal generates a new key in the agent (it never leaves), sends a CSR to the daemon's
//! `POST /api/local-control/v1/pki/certificate`, writes the new key and certificate as
//! `client.key.next` / `client.crt.next` and renames them into place (a crash between the two
//! renames is rolled forward at the next load, see [`roll_forward`]), then swaps the credentials
//! in memory, which closes the pooled connections made with the old ones.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use netclaw_core::wire::{ErrorBody, RenewRequest, RenewResponse};
use netclaw_pki::schedule::{backoff, refresh_at};
use netclaw_pki::store::{self, AgentPaths};
use netclaw_pki::PrivateKey;
use ring::rand::SecureRandom;
use tokio::sync::watch;

use crate::AgentState;

/// How often the loop compares the clock with the schedule (short, so that a host that was
/// suspended past the renewal time renews right after it wakes up).
pub const TICK: Duration = Duration::from_secs(1);
/// How long one renewal request may take.
const RENEW_TIMEOUT: Duration = Duration::from_secs(20);
/// After a renewal whose answer never came (the daemon may have issued, recorded and superseded
/// the current certificate, which then works only for `Operator.RotationGrace`, 60 s by
/// default), the first retries come this soon (with jitter, half to all of it) ...
const UNANSWERED_RETRY: Duration = Duration::from_secs(4);
/// ... this many times, before the usual exponential backoff.
const UNANSWERED_RETRIES: u32 = 10;

/// A renewal failure.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The daemon refused or could not be reached.
    #[error("the daemon refused the renewal: {0}")]
    Refused(String),
    /// Transport failure: the request may or may not have reached the daemon.
    #[error("renewal request failed: {0}")]
    Transport(TransportFailure),
    /// Local key, file or credential failure.
    #[error(transparent)]
    Pki(#[from] netclaw_pki::PkiError),
    /// The new credentials did not pass the check.
    #[error(transparent)]
    Credentials(#[from] crate::creds::CredentialError),
}

/// A renewal request that got no answer: the text, and whether the daemon refused the agent's
/// certificate in the handshake (by the TLS alert's type, see [`crate::respond::refused_certificate`]).
#[derive(Debug)]
pub struct TransportFailure {
    text: String,
    refused: Option<netclaw_core::wire::ErrorCode>,
}

impl TransportFailure {
    /// The wire code when the daemon refused the agent's certificate in the handshake.
    pub fn refused_certificate(&self) -> Option<netclaw_core::wire::ErrorCode> {
        self.refused
    }
}

impl std::fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<String> for TransportFailure {
    fn from(text: String) -> Self {
        Self {
            text,
            refused: None,
        }
    }
}

impl From<&str> for TransportFailure {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

impl RenewError {
    /// The wire code when the daemon refused the agent's certificate in the handshake.
    pub fn refused_certificate(&self) -> Option<netclaw_core::wire::ErrorCode> {
        match self {
            Self::Transport(t) => t.refused_certificate(),
            _ => None,
        }
    }
}

/// Completes an interrupted pair replacement ([`store::roll_forward_agent`]) before a load.
///
/// Two reloads (the file watcher, SIGHUP, `POST /agent/v1/reload`) may complete the same
/// replacement at once; the store's roll-forward tolerates that.
pub fn roll_forward(paths: &AgentPaths) -> Result<(), netclaw_pki::PkiError> {
    if store::roll_forward_agent(paths)? {
        tracing::warn!("completed an interrupted certificate replacement");
    }
    Ok(())
}

/// Writes a new key, certificate and bundle: both `.next` files first (each atomic), then the
/// key and the certificate are renamed into place. Called under the reload lock, so nothing
/// else moves the staged files: a certificate that is not moved here is an error.
pub fn install(
    paths: &AgentPaths,
    key: &PrivateKey,
    cert_pem: &str,
    bundle_pem: &str,
) -> Result<(), netclaw_pki::PkiError> {
    store::stage_agent_pair(paths, key, cert_pem, bundle_pem)?;
    if store::roll_forward_agent(paths)? {
        Ok(())
    } else {
        Err(netclaw_pki::PkiError::io(
            "renaming",
            store::next_path(&paths.client_cert()),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ))
    }
}

/// Renews now. Returns the daemon's answer.
pub async fn renew(state: &AgentState) -> Result<RenewResponse, RenewError> {
    let _one_at_a_time = state.renewing.lock().await;
    let upstream = state.upstream();
    let key = PrivateKey::generate()?;
    let csr = key.certificate_signing_request_pem()?;
    let body = serde_json::to_vec(&RenewRequest { csr })
        .map_err(|e| RenewError::Transport(e.to_string().into()))?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "http://{}/api/local-control/v1/pki/certificate",
            state.addr
        ))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| RenewError::Transport(e.to_string().into()))?;
    let resp = tokio::time::timeout(RENEW_TIMEOUT, upstream.probe.request(req))
        .await
        .map_err(|_| RenewError::Transport("timed out".into()))?
        .map_err(|e| {
            RenewError::Transport(TransportFailure {
                text: crate::respond::source_chain(&e),
                refused: crate::respond::refused_certificate(&e),
            })
        })?;
    let status = resp.status();
    let bytes = tokio::time::timeout(RENEW_TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| RenewError::Transport("timed out".into()))?
        .map_err(|e| RenewError::Transport(e.to_string().into()))?
        .to_bytes();
    if status != StatusCode::OK {
        let msg = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        return Err(RenewError::Refused(format!("{status}: {msg}")));
    }
    let renewed: RenewResponse =
        serde_json::from_slice(&bytes).map_err(|e| RenewError::Transport(e.to_string().into()))?;
    {
        // Under the reload lock, so that a reload (the file watcher sees the bundle change)
        // cannot roll the `.next` files forward between their writes and their renames.
        let _no_reload = state.reloads();
        install(&state.paths, &key, &renewed.certificate, &renewed.bundle)?;
    }
    state.reload()?;
    tracing::info!(serial = %renewed.serial, previous = %renewed.previous_serial, not_after = %renewed.not_after, "certificate renewed");
    Ok(renewed)
}

/// The wait before retry number `failures` (0 for the first) after `error`: soon after an
/// unanswered request, whose outcome is unknown (see [`UNANSWERED_RETRY`]), otherwise
/// [`backoff`].
fn retry_delay(error: &RenewError, failures: u32, draw: f64) -> Duration {
    match error {
        RenewError::Transport(_) if failures < UNANSWERED_RETRIES => {
            UNANSWERED_RETRY.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
        }
        _ => backoff(failures, draw),
    }
}

fn draw() -> f64 {
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Renews on schedule until `stop`: at [`refresh_at`] of the current certificate, and after a
/// failure at [`backoff`] intervals. The schedule is recomputed whenever the certificate changes
/// (renewal, rotation, reload).
pub async fn run(state: Arc<AgentState>, mut stop: watch::Receiver<bool>) {
    let mut current = None;
    let mut due = SystemTime::now();
    let mut failures = 0u32;
    loop {
        let (serial, nb, na) = {
            let up = state.upstream();
            let id = &up.creds.identity;
            (id.serial.clone(), id.not_before, id.not_after)
        };
        if current.as_ref() != Some(&serial) {
            due = refresh_at(nb, na, draw());
            failures = 0;
            tracing::debug!(%serial, due = %netclaw_core::wire::format_unix(netclaw_pki::identity::unix_seconds(due)), "renewal scheduled");
            current = Some(serial);
        }
        // A renewal asked for through the socket (`netclaw pki rotate`) lost its answer: the
        // daemon may already hold this certificate superseded, so renew again soon.
        if state
            .renewal_unanswered
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            failures = 0;
            due = SystemTime::now() + UNANSWERED_RETRY.mul_f64(0.5 + 0.5 * draw());
        }
        let now = SystemTime::now();
        // An expired certificate cannot renew over mTLS; `netclaw pki rotate --offline` is
        // the way out, and the file watcher picks its result up.
        if now >= due && now < na {
            match renew(&state).await {
                Ok(_) => state.record_renewal(None),
                Err(e) => {
                    let wait = retry_delay(&e, failures, draw());
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, retry_in = ?wait, "certificate renewal failed");
                    state.record_renewal(Some(e.to_string()));
                    due = SystemTime::now() + wait;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netclaw_pki::store::next_path;

    #[test]
    fn an_unanswered_renewal_is_retried_within_the_default_grace_period() {
        let lost = RenewError::Transport("connection closed before message completed".into());
        let mut total = Duration::ZERO;
        for attempt in 0..UNANSWERED_RETRIES {
            let wait = retry_delay(&lost, attempt, 1.0);
            assert!(wait <= UNANSWERED_RETRY, "{wait:?}");
            total += wait;
        }
        // Ten tries inside the first 60 s (`Operator.RotationGrace` by default) at the latest.
        assert!(total <= Duration::from_secs(40), "{total:?}");
        // Then the usual backoff; a refusal backs off from the start.
        assert_eq!(
            retry_delay(&lost, UNANSWERED_RETRIES, 1.0),
            backoff(UNANSWERED_RETRIES, 1.0)
        );
        let refused = RenewError::Refused("403".into());
        assert_eq!(retry_delay(&refused, 0, 1.0), backoff(0, 1.0));
    }

    #[test]
    fn an_interrupted_replacement_rolls_forward() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = AgentPaths::new(tmp.path());
        std::fs::write(paths.client_key(), b"old key").unwrap();
        std::fs::write(paths.client_cert(), b"old cert").unwrap();

        // Crash after the key was renamed, before the certificate was.
        std::fs::write(paths.client_key(), b"new key").unwrap();
        std::fs::write(next_path(&paths.client_cert()), b"new cert").unwrap();
        roll_forward(&paths).unwrap();
        assert_eq!(std::fs::read(paths.client_key()).unwrap(), b"new key");
        assert_eq!(std::fs::read(paths.client_cert()).unwrap(), b"new cert");
        assert!(!next_path(&paths.client_cert()).exists());

        // Crash before either rename: both move.
        std::fs::write(next_path(&paths.client_key()), b"newer key").unwrap();
        std::fs::write(next_path(&paths.client_cert()), b"newer cert").unwrap();
        roll_forward(&paths).unwrap();
        assert_eq!(std::fs::read(paths.client_key()).unwrap(), b"newer key");
        assert_eq!(std::fs::read(paths.client_cert()).unwrap(), b"newer cert");

        // Crash before the certificate arrived: the lone key is discarded.
        std::fs::write(next_path(&paths.client_key()), b"orphan").unwrap();
        roll_forward(&paths).unwrap();
        assert_eq!(std::fs::read(paths.client_key()).unwrap(), b"newer key");
        assert!(!next_path(&paths.client_key()).exists());
    }
}
