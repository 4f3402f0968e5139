//! Accept loops: the public listener (plain HTTP behind the proxy) and the operator listener
//! (TLS 1.3, client certificate required, source-address scoped). Each connection gets a
//! [`ConnInfo`] that the API's identify middleware turns into a principal.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::header::CONNECTION;
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use ipnet::IpNet;
use netclaw_core::serve::{self, Http1, Shutdown};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::audit::{Audit, HANDSHAKE_REFUSED};
use crate::error::ApiError;
use crate::limits::{ConnectionSlot, DeadlineBody, PublicGate, PublicSlot, BODY_READ_TIMEOUT};
use crate::line_budget::LineBudget;
use crate::operator_pki::{audit_observed, OperatorPki};
use crate::principal::{ConnInfo, Listener};
use crate::refusal::RefusalReason;
use crate::state::SharedState;

/// Largest request head (request line + headers); larger gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Time a client has to send a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to complete a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Operator connections are closed (gracefully) after this age, so a revoked or superseded
/// certificate cannot keep a connection alive indefinitely.
pub const MAX_OPERATOR_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// How long shutdown waits for open connections to finish (after long-lived streams closed).
pub const DRAIN_TIMEOUT: Duration = netclaw_core::service::DRAIN_TIMEOUT;

/// Resolves when an open connection must be cut at once (an operator connection whose serial
/// a published PKI snapshot no longer admits), having audited why.
type Cut = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What an over-cap public connection is told before it is closed: a fixed answer written with
/// one non-blocking write, so that refusing costs no allocation and never waits on the client.
const OVER_CAP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 5\r\n\
connection: close\r\n\
content-length: 62\r\n\
\r\n\
{\"error\":\"the daemon is at its connection limit; retry later\"}";

/// At most one warning per this interval about refused public connections.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);

/// The HTTP/1.1 limits of both listeners.
const HTTP1: Http1 = Http1 {
    header_read_timeout: HEADER_READ_TIMEOUT,
    max_header_bytes: MAX_HEADER_BYTES,
};

/// Serves one connection through the shared loop ([`serve::serve_http1`]): until it ends, the
/// shutdown fires or `max_age` passes (then gracefully), or `cut` resolves (its serial refused)
/// (then at once, streams and upgraded connections included). Every request body must arrive
/// within [`BODY_READ_TIMEOUT`]; one that does not gets 408 and the connection closes. Every
/// request carries the [`ConnInfo`], the [`Shutdown`] (long-lived streams end on it) and, on
/// public connections, `slot`, so that an upgraded connection keeps it.
#[allow(clippy::too_many_arguments)]
async fn serve_connection<I>(
    io: I,
    conn: ConnInfo,
    router: Router,
    audit: Arc<Audit>,
    shutdown: Shutdown,
    max_age: Option<Duration>,
    cut: Option<Cut>,
    slot: Option<Arc<PublicSlot>>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = match conn.listener {
        Listener::Public => "public",
        Listener::Operator { .. } => "operator",
    };
    let slot = slot.map(ConnectionSlot);
    let streams = shutdown.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let expired = Arc::new(AtomicBool::new(false));
        let flag = expired.clone();
        let mut req = req.map(|body| DeadlineBody::new(body, BODY_READ_TIMEOUT, flag));
        req.extensions_mut().insert(conn.clone());
        req.extensions_mut().insert(streams.clone());
        if let Some(slot) = &slot {
            req.extensions_mut().insert(slot.clone());
        }
        let (router, audit) = (router.clone(), audit.clone());
        async move {
            let resp = router.oneshot(req).await;
            if expired.load(Ordering::Relaxed) {
                // The handler saw a body error and answered (400 or so) without acting on it;
                // say what happened and close: the rest of the body is never read.
                audit.metrics.body_timeout(listener);
                tracing::debug!(%listener, "request body not received in time; closing");
                let mut timeout =
                    ApiError::RequestTimeout("request body not received in time").into_response();
                timeout
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Ok(timeout);
            }
            resp
        }
    });
    let cut = async move {
        match cut {
            Some(cut) => cut.await,
            None => std::future::pending().await,
        }
    };
    serve::serve_http1(io, service, HTTP1, &shutdown, max_age, cut).await;
}

/// Counts refused public connections and warns about them at most every
/// [`REFUSAL_WARN_EVERY`], so that a flood cannot flood the log too.
#[derive(Debug)]
struct RefusalLog(LineBudget);

impl RefusalLog {
    fn new() -> Self {
        Self(LineBudget::new(1, REFUSAL_WARN_EVERY))
    }

    fn refused(&mut self, audit: &Audit, reason: &'static str, gate: &PublicGate) {
        audit.metrics.public_refused(reason);
        if let Some(before) = self.0.count(std::time::SystemTime::now()) {
            let limits = gate.limits();
            tracing::warn!(
                refused = before + 1,
                last_reason = reason,
                open = gate.open(),
                total_cap = limits.total(),
                per_source_cap = limits.per_source(),
                "public listener refusing connections at its caps (see netclaw_daemon_public_connections_refused_total)"
            );
        }
    }
}

/// Whether an accept error means this process (or the system) is out of descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)
    )
}

/// Runs the public listener until `shutdown` fires; its connections stay on `shutdown`'s drain.
/// A connection beyond the gate's caps is told 503 (one non-blocking write) and closed at once;
/// admitted ones hold their slot until they close.
pub async fn run_public(
    listener: TcpListener,
    router: Router,
    state: SharedState,
    gate: Arc<PublicGate>,
    shutdown: Shutdown,
) {
    let mut refusals = RefusalLog::new();
    let audit = state.audit.clone();
    let conns = shutdown.clone();
    serve::accept_loop(listener, shutdown, |accepted| {
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if out_of_descriptors(&e) {
                    refusals.refused(&audit, "descriptors", &gate);
                } else {
                    tracing::warn!(error = %e, "public accept failed");
                }
                return None;
            }
        };
        let peer = netclaw_core::net::canonical_ip(peer.ip());
        let shared = crate::limits::shared_source(state.config.daemon(), peer);
        let slot = match gate.admit(peer, shared) {
            Ok(slot) => slot,
            Err(refusal) => {
                let _ = tcp.try_write(OVER_CAP_RESPONSE);
                drop(tcp);
                refusals.refused(&audit, refusal.label(), &gate);
                return None;
            }
        };
        let _ = tcp.set_nodelay(true);
        let conn = ConnInfo {
            listener: Listener::Public,
            peer,
        };
        Some(serve_connection(
            tcp,
            conn,
            router.clone(),
            audit.clone(),
            conns.clone(),
            None,
            None,
            Some(Arc::new(slot)),
        ))
    })
    .await;
}

/// Where operator connections may come from.
#[derive(Clone, Debug)]
pub enum SourcePolicy {
    /// `Operator.AllowedSources`.
    Listed(Vec<IpNet>),
    /// This host's interface addresses, looked up at each accept.
    LocalInterfaces,
}

impl SourcePolicy {
    /// Whether `peer` may connect.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = netclaw_core::net::canonical_ip(peer);
        match self {
            Self::Listed(nets) => nets.iter().any(|n| n.contains(&peer)),
            Self::LocalInterfaces => local_addresses().contains(&peer),
        }
    }
}

/// This host's interface addresses (in this network namespace).
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6()
                    .map(|v6| netclaw_core::net::canonical_ip(IpAddr::V6(v6.ip())))
            }
        })
        .collect()
}

/// Runs the operator listener until `shutdown` fires; its connections stay on `shutdown`'s
/// drain.
pub async fn run_operator(
    listener: TcpListener,
    router: Router,
    pki: Arc<OperatorPki>,
    sources: SourcePolicy,
    audit: Arc<Audit>,
    shutdown: Shutdown,
) {
    let conns = shutdown.clone();
    serve::accept_loop(listener, shutdown, |accepted| {
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "operator accept failed");
                return None;
            }
        };
        if !sources.allows(peer.ip()) {
            audit.refusal(
                HANDSHAKE_REFUSED,
                "Anonymous".into(),
                RefusalReason::SourceNotAllowed,
                format!("source-not-allowed: {}", peer.ip()),
            );
            drop(tcp);
            return None;
        }
        let _ = tcp.set_nodelay(true);
        Some(handle_operator_connection(
            tcp,
            peer,
            router.clone(),
            pki.clone(),
            audit.clone(),
            conns.clone(),
        ))
    })
    .await;
}

async fn handle_operator_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    pki: Arc<OperatorPki>,
    audit: Arc<Audit>,
    shutdown: Shutdown,
) {
    // One snapshot's configuration: the certificate served and the bundle and registry the
    // client certificate is verified against belong together. A handshake still under way when
    // the shutdown fires is abandoned: no request is in flight on it yet.
    let acceptor = TlsAcceptor::from(pki.current().tls().clone());
    let handshake = tokio::select! {
        h = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => h,
        () = shutdown.fired() => return,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = crate::tls::handshake_refusal_reason(&e);
            audit.refusal(
                HANDSHAKE_REFUSED,
                "Anonymous".into(),
                reason,
                format!("{}: {reason}: {e}", peer.ip()),
            );
            return;
        }
        Err(_) => {
            audit.refusal(
                HANDSHAKE_REFUSED,
                "Anonymous".into(),
                RefusalReason::HandshakeTimeout,
                format!("{}: handshake-timeout", peer.ip()),
            );
            return;
        }
    };
    // The verifier accepted the certificate (every connection goes through it: no resumption);
    // read the identity it carries.
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        audit.refusal(
            HANDSHAKE_REFUSED,
            "Anonymous".into(),
            RefusalReason::NoClientCertificate,
            format!("{}: no-client-certificate", peer.ip()),
        );
        return;
    };
    let (spiffe_id, serial) = match pki.peer_identity(cert) {
        Ok(identity) => identity,
        Err(e) => {
            let reason = RefusalReason::of_pki_error(&e);
            audit.refusal(
                HANDSHAKE_REFUSED,
                "Anonymous".into(),
                reason,
                format!("{}: {reason}: {e}", peer.ip()),
            );
            return;
        }
    };
    let public_key: std::sync::Arc<[u8]> = netclaw_pki::verify::public_key_bits(cert)
        .unwrap_or_default()
        .into();
    // First use and clone check; a suspected clone may lock the identity, which the cut below
    // then sees before the first request is served.
    audit_observed(
        &audit,
        pki.issuer()
            .handshake_completed(&serial, SystemTime::now())
            .await,
    );
    audit.metrics.handshake_accepted();
    let cut: Cut = {
        let (pki, serial, audit) = (pki.clone(), serial.clone(), audit.clone());
        Box::pin(async move {
            // Revoked, or superseded past its grace: cut the connection now, including
            // streams and upgraded connections still served here.
            pki.until_refused(&serial, &audit).await;
        })
    };
    let conn = ConnInfo {
        listener: Listener::Operator {
            spiffe_id: spiffe_id.to_string(),
            serial,
            public_key,
        },
        peer: netclaw_core::net::canonical_ip(peer.ip()),
    };
    serve_connection(
        tls,
        conn,
        router,
        audit,
        shutdown,
        Some(MAX_OPERATOR_CONNECTION_AGE),
        Some(cut),
        None,
    )
    .await;
}

#[cfg(test)]
mod tests;
