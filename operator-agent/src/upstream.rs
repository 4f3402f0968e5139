//! The upstream side: a pooled HTTP/1.1 client over mutual TLS to the daemon's operator listener.
//!
//! One [`Upstream`] exists per credential generation. A credential swap builds a new one; the old
//! one's idle pooled connections close as soon as the requests still using it finish, so no
//! connection outlives the credentials it was made with for longer than one request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::creds::Credentials;

/// Forwarded requests in flight at once per credential generation; more wait for a slot.
pub const MAX_IN_FLIGHT: usize = 64;
/// Of those, at most this many for one caller (uid): one caller, however many requests it
/// opens, leaves at least `MAX_IN_FLIGHT - PER_CALLER_IN_FLIGHT` slots to the others.
pub const PER_CALLER_IN_FLIGHT: usize = MAX_IN_FLIGHT / 4;
/// Idle pooled connections kept per credential generation: twice [`MAX_IN_FLIGHT`], because a
/// connection whose response just ended is back in the pool a moment after its slot is free, and
/// a request that finds no idle connection in that moment dials one. With this many kept, no
/// connection is closed for lack of room, so the agent makes at most `MAX_IDLE` TLS handshakes
/// per credential generation however many callers it has (connections idle for
/// [`IDLE_TIMEOUT`] are closed and redialled later).
pub const MAX_IDLE: usize = 2 * MAX_IN_FLIGHT;
/// Idle pooled connections are closed after this long (the daemon closes at 300 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP connect plus TLS handshake must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters shared by every generation.
#[derive(Debug, Default)]
pub struct Stats {
    /// Completed TLS handshakes.
    pub handshakes: AtomicU64,
    /// Open upstream connections.
    pub open: AtomicUsize,
    /// Requests forwarded.
    pub requests: AtomicU64,
    /// Requests refused by the peer-credential check.
    pub refused_callers: AtomicU64,
    /// Successful renewals.
    pub renewals_ok: AtomicU64,
    /// Failed renewals.
    pub renewals_failed: AtomicU64,
    /// Responses by status class (index 1..=5 for 1xx..5xx).
    pub responses: [AtomicU64; 6],
}

/// Opens mTLS connections to the fixed operator listener address (the request URI's authority
/// is ignored).
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    name: ServerName<'static>,
    tls: TlsConnector,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl tower::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UpstreamIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let connect = async {
                let tcp = TcpStream::connect(this.addr).await?;
                tcp.set_nodelay(true)?;
                this.tls.connect(this.name.clone(), tcp).await
            };
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "connect and handshake timed out")
                })??;
            this.stats.handshakes.fetch_add(1, Ordering::Relaxed);
            this.stats.open.fetch_add(1, Ordering::Relaxed);
            Ok(UpstreamIo {
                io: TokioIo::new(tls),
                stats: this.stats.clone(),
            })
        })
    }
}

/// A TLS connection to the daemon, counted while open.
#[derive(Debug)]
pub struct UpstreamIo {
    io: TokioIo<TlsStream<TcpStream>>,
    stats: Arc<Stats>,
}

impl Drop for UpstreamIo {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One credential generation: the credentials and the pooled client built from them.
#[derive(Debug)]
pub struct Upstream {
    /// The credentials.
    pub creds: Credentials,
    /// The pooled client (request bodies are read in full before they are forwarded).
    pub client: Client<Connector, http_body_util::Full<bytes::Bytes>>,
    /// A second client for agent-originated requests with empty bodies (status probes,
    /// renewal), sharing the connector but not the pool.
    pub probe: Client<Connector, http_body_util::Full<bytes::Bytes>>,
    /// Slots for forwarded requests in flight, [`MAX_IN_FLIGHT`]: without a bound, more
    /// concurrent requests than the pool keeps would each dial a connection the pool closes
    /// again as soon as it is idle.
    pub slots: Slots,
}

impl Upstream {
    /// Builds the clients for `creds`, dialling `addr` and expecting `name` in the server
    /// certificate.
    pub fn new(
        creds: Credentials,
        addr: SocketAddr,
        name: ServerName<'static>,
        stats: Arc<Stats>,
    ) -> Self {
        let connector = Connector {
            addr,
            name,
            tls: TlsConnector::from(creds.tls.clone()),
            stats,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector.clone());
        let probe = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Self {
            creds,
            client,
            probe,
            slots: Slots::new(MAX_IN_FLIGHT, PER_CALLER_IN_FLIGHT),
        }
    }
}

/// Why a forwarded request got no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saturated {
    /// The caller's own share ([`PER_CALLER_IN_FLIGHT`]) stayed in use until the deadline.
    Caller,
    /// Every slot ([`MAX_IN_FLIGHT`]) stayed in use, by several callers, until the deadline.
    Agent,
}

/// The in-flight slots of one credential generation, with a fair share per caller: a request
/// first takes one of its uid's `per_caller` slots, then one of the `total`. Both queues are
/// first come, first served, so a caller with many requests waits behind its own share and
/// holds at most `per_caller` places in the shared queue.
#[derive(Debug)]
pub struct Slots {
    total: Arc<Semaphore>,
    per_caller: usize,
    callers: Mutex<HashMap<u32, Arc<Semaphore>>>,
}

/// One request's slot: released when dropped.
#[derive(Debug)]
pub struct Slot {
    _total: OwnedSemaphorePermit,
    _caller: OwnedSemaphorePermit,
}

impl Slots {
    /// `total` slots, at most `per_caller` for one uid.
    pub fn new(total: usize, per_caller: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_caller,
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `deadline` for a slot for `uid`.
    pub async fn acquire(
        &self,
        uid: u32,
        deadline: tokio::time::Instant,
    ) -> Result<Slot, Saturated> {
        let share = {
            let mut callers = match self.callers.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            // Forget callers with nothing in flight or queued (the map holds the only handle).
            callers.retain(|_, s| Arc::strong_count(s) > 1);
            callers
                .entry(uid)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_caller)))
                .clone()
        };
        let caller = match tokio::time::timeout_at(deadline, share.acquire_owned()).await {
            Ok(Ok(p)) => p,
            // Never closed.
            Ok(Err(_)) | Err(_) => return Err(Saturated::Caller),
        };
        match tokio::time::timeout_at(deadline, self.total.clone().acquire_owned()).await {
            Ok(Ok(total)) => Ok(Slot {
                _total: total,
                _caller: caller,
            }),
            Ok(Err(_)) | Err(_) => Err(Saturated::Agent),
        }
    }
}

#[cfg(test)]
mod tests;
