//! Certificate renewal over the agent's current mTLS channel: the request to the daemon
//! ([`Daemon`]) and the file steps ([`install`], [`roll_forward`]). The credential manager
//! (`manager`) schedules renewals and runs them one at a time.
//!
//! Each renewal generates a new key in the agent (it never leaves), sends a CSR to the daemon's
//! `POST /api/local-control/v1/pki/certificate`, writes the new key and certificate as
//! `client.key.next` / `client.crt.next` and renames them into place (a crash between the two
//! renames is rolled forward at the next load, see [`roll_forward`]), then the manager publishes
//! the new credentials, which closes the pooled connections made with the old ones, and confirms
//! them at once ([`Renewer::confirm`]): one handshake with the new certificate, so that the daemon
//! records its first use.
//!
//! # Security
//!
//! Until the daemon has seen the new certificate in a handshake, it lets the superseded serial
//! renew once more (the answer to its renewal may have been lost). The confirmation closes that
//! window within moments of the swap, rather than at the next request a local caller happens
//! to make, so that a copy of the old key cannot use it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use netclaw_core::wire::{ErrorBody, RenewRequest, RenewResponse};
use netclaw_pki::store::{self, AgentPaths};
use netclaw_pki::PrivateKey;

use crate::upstream::Upstream;

/// How long one renewal request may take.
const RENEW_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the confirming request with new credentials may take.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The credential manager has stopped (the agent is shutting down).
    #[error("the operator agent is shutting down")]
    Stopped,
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
/// The credential manager runs it before every load, one at a time; an offline rotation in
/// another process may complete the same replacement at once, which the store's roll-forward
/// tolerates.
pub fn roll_forward(paths: &AgentPaths) -> Result<(), netclaw_pki::PkiError> {
    if store::roll_forward_agent(paths)? {
        tracing::warn!("completed an interrupted certificate replacement");
    }
    Ok(())
}

/// Writes a new key, certificate and bundle: both `.next` files first (each atomic), then the
/// key and the certificate are renamed into place. Called by the credential manager, the only
/// writer in this process, so nothing here moves the staged files in between: a certificate
/// that is not moved here is an error.
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

/// Who answers a renewal: sends a CSR over the current credential generation and returns the
/// new certificate. [`Daemon`] asks the daemon's operator listener.
pub trait Renewer: Send + Sync + 'static {
    /// Sends `csr_pem` over `upstream`.
    fn request(
        &self,
        upstream: &Upstream,
        csr_pem: String,
    ) -> impl Future<Output = Result<RenewResponse, RenewError>> + Send;

    /// Completes one handshake with `upstream`'s (new) credentials and one request over it,
    /// so that the daemon records the certificate's first use. Any answer counts: the daemon
    /// records the handshake before it serves the request.
    fn confirm(&self, upstream: &Upstream) -> impl Future<Output = Result<(), RenewError>> + Send;
}

/// The production [`Renewer`]: the daemon's `POST /api/local-control/v1/pki/certificate` over
/// the current credential generation's own client (never the socket callers' pool).
#[derive(Clone, Debug)]
pub struct Daemon {
    addr: SocketAddr,
}

impl Daemon {
    /// Renews at the operator listener at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }
}

impl Renewer for Daemon {
    async fn request(&self, upstream: &Upstream, csr: String) -> Result<RenewResponse, RenewError> {
        let body = serde_json::to_vec(&RenewRequest { csr })
            .map_err(|e| RenewError::Transport(e.to_string().into()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "http://{}/api/local-control/v1/pki/certificate",
                self.addr
            ))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RenewError::Transport(e.to_string().into()))?;
        let resp = send(upstream, req, RENEW_TIMEOUT).await?;
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
        serde_json::from_slice(&bytes).map_err(|e| RenewError::Transport(e.to_string().into()))
    }

    /// `GET /api/health/ready` over `upstream`'s probe pool: a new generation's pool has no
    /// connection yet, so this is a new handshake with the new certificate.
    async fn confirm(&self, upstream: &Upstream) -> Result<(), RenewError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}/api/health/ready", self.addr))
            .body(Full::new(Bytes::new()))
            .map_err(|e| RenewError::Transport(e.to_string().into()))?;
        let resp = send(upstream, req, CONFIRM_TIMEOUT).await?;
        // The body is read so that the connection goes back to the pool.
        let _ = tokio::time::timeout(CONFIRM_TIMEOUT, resp.into_body().collect()).await;
        Ok(())
    }
}

/// Sends the agent's own `req` over `upstream`'s probe pool and waits at most `within` for the
/// answer's head.
async fn send(
    upstream: &Upstream,
    req: Request<Full<Bytes>>,
    within: Duration,
) -> Result<hyper::Response<crate::upstream::Pooled>, RenewError> {
    tokio::time::timeout(within, upstream.probe.request(req))
        .await
        .map_err(|_| RenewError::Transport("timed out".into()))?
        .map_err(|e| {
            RenewError::Transport(TransportFailure {
                text: crate::respond::source_chain(&e),
                refused: crate::respond::refused_certificate(&e),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netclaw_pki::store::next_path;

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
