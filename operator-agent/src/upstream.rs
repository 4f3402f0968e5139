//! The upstream side: a pool of HTTP/1.1 connections over mutual TLS to the daemon's operator
//! listener, owned by the agent.
//!
//! One [`Upstream`] exists per credential generation. A credential swap builds a new one; the old
//! one's idle pooled connections close as soon as the requests still using it finish, so no
//! connection outlives the credentials it was made with for longer than one request.
//!
//! The pool ([`Pool`]) keeps each connection's hyper `SendRequest` handle and sends a request
//! directly on it: the connection's own future runs on a task, but no pool task, channel or
//! executor hop sits between a request and its connection (hyper-util's legacy `Client` spawned
//! one task per request to give the connection back). A connection goes back to the pool when
//! its response body ends.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::creds::Credentials;

/// Forwarded requests in flight at once per credential generation; more wait for a slot.
pub const MAX_IN_FLIGHT: usize = 64;
/// Of those, at most this many for one caller (uid): one caller, however many requests it
/// opens, leaves at least `MAX_IN_FLIGHT - PER_CALLER_IN_FLIGHT` slots to the others.
pub const PER_CALLER_IN_FLIGHT: usize = MAX_IN_FLIGHT / 4;
/// Streams (server-sent event streams, upgraded WebSocket sessions) open through the agent at
/// once. A stream gives its in-flight slot back when its answer's head arrives but keeps its own
/// upstream connection for as long as it lasts, so without this bound one caller could hold an
/// unbounded number of TLS connections and descriptors on both sides.
pub const MAX_STREAMS: usize = 32;
/// Of those, at most this many for one caller (uid).
pub const PER_CALLER_STREAMS: usize = MAX_STREAMS / 4;
/// Idle pooled connections kept per credential generation. A connection goes back to the pool
/// before its request's slot is freed, so a request that gets a slot finds it there and the pool
/// never holds more than [`MAX_IN_FLIGHT`] forwarding connections; the bound is twice that, so
/// that no connection is ever closed for lack of room: the agent makes at most `MAX_IN_FLIGHT`
/// TLS handshakes per credential generation however many callers it has (connections idle for
/// [`IDLE_TIMEOUT`] are closed and redialled later).
pub const MAX_IDLE: usize = 2 * MAX_IN_FLIGHT;
/// Idle pooled connections are closed after this long (the daemon closes at 300 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP connect plus TLS handshake must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest buffer an upstream connection reads a response head into (hyper's default is about
/// 400 KiB; the daemon's heads are small, and its bodies stream through in pieces).
const MAX_BUF: usize = 64 * 1024;

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

/// Opens mTLS connections to the fixed operator listener address (a request's authority is
/// only its `Host` header).
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

impl Connector {
    /// A new HTTP/1.1 connection (with upgrades), its future running on its own task.
    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, UpstreamError> {
        let connect = async {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            self.tls.connect(self.name.clone(), tcp).await
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                UpstreamError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect and handshake timed out",
                ))
            })?
            .map_err(UpstreamError::Connect)?;
        self.stats.handshakes.fetch_add(1, Ordering::Relaxed);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        let io = UpstreamIo {
            io: TokioIo::new(tls),
            stats: self.stats.clone(),
        };
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_BUF)
            .handshake(io)
            .await
            .map_err(UpstreamError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(send)
    }
}

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection or the TLS handshake failed.
    #[error("connect error")]
    Connect(#[source] io::Error),
    /// The connection failed while the request was sent or its response read (a certificate
    /// the daemon refuses shows here: TLS 1.3 reports it after the handshake).
    #[error("request error")]
    Request(#[source] hyper::Error),
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

/// Pooled HTTP/1.1 connections to the daemon: idle ones are reused most recently used first,
/// closed after [`IDLE_TIMEOUT`], and at most `max_idle` are kept. Dropping the pool closes its
/// idle connections; a connection in use closes when its response ends.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connector: Connector,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
    /// Whether a task closes expired idle connections.
    reaping: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    conn: SendRequest<Full<Bytes>>,
    since: Instant,
}

impl Pool {
    fn new(connector: Connector, max_idle: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                connector,
                max_idle,
                idle: Mutex::new(Vec::new()),
                reaping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `req` on an idle connection, or on a new one when none is idle. An absolute URI
    /// is sent in origin form with its authority as `Host`. A request that a pooled connection
    /// closed before sending it (the daemon closed the idle connection) is sent on the next.
    pub async fn request(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Pooled>, UpstreamError> {
        if let Some(authority) = req.uri().authority() {
            if !req.headers().contains_key(header::HOST) {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    req.headers_mut().insert(header::HOST, host);
                }
            }
            let origin = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse::<Uri>();
            if let Ok(origin) = origin {
                *req.uri_mut() = origin;
            }
        }
        loop {
            let (mut conn, reused) = match self.shared.checkout() {
                Some(conn) => (conn, true),
                None => (self.shared.connector.dial().await?, false),
            };
            if let Err(e) = conn.ready().await {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Request(e));
            }
            match conn.try_send_request(req).await {
                Ok(resp) => {
                    let shared = self.shared.clone();
                    return Ok(resp.map(|body| Pooled {
                        body,
                        lease: Some(Lease { conn, shared }),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
    }
}

/// The guard of `m`, poisoned or not (nothing these mutexes guard is left half-changed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Shared {
    /// The most recently used idle connection still open and not expired.
    fn checkout(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = lock(&self.idle);
        while let Some(i) = idle.pop() {
            if !i.conn.is_closed() && i.since.elapsed() < IDLE_TIMEOUT {
                return Some(i.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request (or closes it when the pool is full).
    fn checkin(self: &Arc<Self>, conn: SendRequest<Full<Bytes>>) {
        if conn.is_closed() {
            return;
        }
        {
            let mut idle = lock(&self.idle);
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
        if !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }
}

/// Closes idle connections older than [`IDLE_TIMEOUT`] while the pool exists and has any.
async fn reap(pool: Weak<Shared>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(shared) = pool.upgrade() else { return };
        let mut idle = lock(&shared.idle);
        idle.retain(|i| !i.conn.is_closed() && i.since.elapsed() < IDLE_TIMEOUT);
        if idle.is_empty() {
            shared.reaping.store(false, Ordering::Release);
            return;
        }
    }
}

/// A connection lent to one request.
#[derive(Debug)]
struct Lease {
    conn: SendRequest<Full<Bytes>>,
    shared: Arc<Shared>,
}

/// A response body from the pool: when it ends, its connection goes back to the pool; dropped
/// before its end, or failed, the connection is closed.
#[derive(Debug)]
pub struct Pooled {
    body: Incoming,
    lease: Option<Lease>,
}

impl Pooled {
    /// The connection is not reused (it was switched to another protocol).
    pub fn detach(&mut self) {
        self.lease = None;
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.shared.checkin(lease.conn);
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // hyper's server drops a body it has seen the end of without polling it again.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

impl hyper::body::Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One credential generation: the credentials and the pools built from them.
#[derive(Debug)]
pub struct Upstream {
    /// The credentials.
    pub creds: Credentials,
    /// The pool forwarded requests use (their bodies are read in full before they are
    /// forwarded).
    pub client: Pool,
    /// A second pool for agent-originated requests with empty bodies (status probes, renewal),
    /// sharing the connector but not the connections.
    pub probe: Pool,
    /// Slots for forwarded requests in flight, [`MAX_IN_FLIGHT`]: without a bound, more
    /// concurrent requests than the pool keeps would each dial a connection the pool closes
    /// again as soon as it is idle.
    pub slots: Slots,
}

impl Upstream {
    /// Builds the pools for `creds`, dialling `addr` and expecting `name` in the server
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
        Self {
            creds,
            client: Pool::new(connector.clone(), MAX_IDLE),
            probe: Pool::new(connector, 1),
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
            let mut callers = lock(&self.callers);
            // Forget callers with nothing in flight or queued (the map holds the only handle).
            callers.retain(|_, s| Arc::strong_count(s) > 1);
            callers
                .entry(uid)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_caller)))
                .clone()
        };
        let caller = permit(&share, deadline).await.ok_or(Saturated::Caller)?;
        let total = permit(&self.total, deadline)
            .await
            .ok_or(Saturated::Agent)?;
        Ok(Slot {
            _total: total,
            _caller: caller,
        })
    }
}

/// A permit of `semaphore`: at once when one is free (no timer), otherwise the first released
/// before `deadline`. tokio's semaphore hands a released permit to the first queued request,
/// so taking a free one at once never overtakes a request that waits.
async fn permit(semaphore: &Arc<Semaphore>, deadline: Instant) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = semaphore.clone().try_acquire_owned() {
        return Some(p);
    }
    // The semaphores are never closed: a failure is the deadline.
    tokio::time::timeout_at(deadline, semaphore.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

#[cfg(test)]
mod tests;
