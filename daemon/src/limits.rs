//! Admission limits that keep the operator listener reachable whatever the public listener
//! receives: the descriptor budget read from `RLIMIT_NOFILE`, caps on concurrent public
//! connections (in total and per source address), and a deadline for receiving a request body.
//!
//! What this does not do: limit request *rates* (the pairing limiter in [`crate::pairing`] does
//! that for exchanges) or protect the public listener itself from a distributed flood — past the
//! total cap new public connections are refused; the point is that the operator listener, the
//! PKI files and the registry always have descriptors left.
//!
//! # Security
//!
//! * Per source means the TCP peer address, never a forwarded header: a client cannot pick its
//!   bucket. Peers that carry many clients' connections — a `Daemon.TrustedProxies` proxy, and in
//!   tunnel modes the loopback tunnel agent — are exempt from the per-source cap and bounded by
//!   the total cap only (a per-source cap on them would let one client deny everyone behind it).
//! * The total cap is derived from the soft descriptor limit at start-up, after the descriptors
//!   already open, leaving a reserve of a quarter of the budget (at least
//!   [`DESCRIPTOR_RESERVE_MIN`]) that only the operator listener and file access can use.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use netclaw_core::config::DaemonConfig;

use crate::audit::Audit;

/// Public connections open at once, at most, however many descriptors there are.
pub const PUBLIC_MAX_CONNECTIONS: usize = 4096;
/// Public connections one source address may hold open at once, at most.
pub const PUBLIC_MAX_PER_SOURCE: usize = 64;
/// Descriptors always kept out of the public listener's reach (more when the limit is high:
/// a quarter of the budget).
pub const DESCRIPTOR_RESERVE_MIN: u64 = 256;
/// Fewer public connections than this and the daemon refuses to start: the limit is too low to
/// serve anyone.
pub const MIN_PUBLIC_CONNECTIONS: usize = 32;
/// Time a client has to send a whole request body, from the end of its request head.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The process's descriptor situation at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptors {
    /// Soft `RLIMIT_NOFILE` in effect.
    pub soft: u64,
    /// Hard `RLIMIT_NOFILE`.
    pub hard: u64,
    /// The soft limit before it was raised to the hard one, when it was.
    pub raised_from: Option<u64>,
    /// Descriptors open when the limits were computed.
    pub in_use: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (where allowed), then reads the limits and
/// counts the descriptors open now.
pub fn descriptors() -> Descriptors {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (mut soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let mut raised_from = None;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                raised_from = Some(soft);
                soft = hard;
            }
            Err(e) => {
                tracing::info!(error = %e, soft, hard, "cannot raise the soft descriptor limit to the hard one; keeping it")
            }
        }
    }
    Descriptors {
        soft,
        hard,
        raised_from,
        in_use: open_descriptors(),
    }
}

/// Descriptors this process has open (`/proc/self/fd`); a generous guess when that is
/// unreadable.
fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(64)
}

/// The descriptor limit is too low to serve the public listener and keep the operator reserve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the descriptor limit (RLIMIT_NOFILE soft {soft}, {in_use} already open) leaves room for only \
     {public} public connections after the operator listener's reserve of {reserve}; raise it to \
     at least {needed} (LimitNOFILE= in the systemd unit, `ulimit -n` in a shell)"
)]
pub struct TooFewDescriptors {
    /// Soft limit.
    pub soft: u64,
    /// Open at start.
    pub in_use: u64,
    /// What the public listener would get.
    pub public: u64,
    /// The reserve.
    pub reserve: u64,
    /// The smallest soft limit that works.
    pub needed: u64,
}

/// Caps on the public listener, derived from the descriptor budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    total: usize,
    per_source: usize,
    reserve: u64,
}

impl ConnectionLimits {
    /// The caps for a soft limit `soft` with `in_use` descriptors already open: the budget is
    /// `soft - in_use`; a quarter of it (at least [`DESCRIPTOR_RESERVE_MIN`]) is reserved; the
    /// rest, up to [`PUBLIC_MAX_CONNECTIONS`], is the total cap; the per-source cap is an eighth
    /// of that, between 4 and [`PUBLIC_MAX_PER_SOURCE`].
    pub fn from_descriptors(soft: u64, in_use: u64) -> Result<Self, TooFewDescriptors> {
        let budget = soft.saturating_sub(in_use);
        let reserve = (budget / 4).max(DESCRIPTOR_RESERVE_MIN);
        let public = budget.saturating_sub(reserve);
        if public < MIN_PUBLIC_CONNECTIONS as u64 {
            return Err(TooFewDescriptors {
                soft,
                in_use,
                public,
                reserve,
                needed: in_use + DESCRIPTOR_RESERVE_MIN + MIN_PUBLIC_CONNECTIONS as u64,
            });
        }
        let total = usize::try_from(public)
            .unwrap_or(usize::MAX)
            .min(PUBLIC_MAX_CONNECTIONS);
        let per_source = (total / 8).clamp(4, PUBLIC_MAX_PER_SOURCE);
        Ok(Self {
            total,
            per_source,
            reserve,
        })
    }

    /// Public connections open at once, at most.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Public connections one (non-proxy) source may hold open at once, at most.
    pub fn per_source(&self) -> usize {
        self.per_source
    }

    /// Descriptors kept out of the public listener's reach (at least).
    pub fn reserve(&self) -> u64 {
        self.reserve
    }
}

/// Whether `peer` carries other clients' connections — a trusted proxy, or the loopback tunnel
/// agent in a tunnel mode — and so is bounded by the total cap only.
pub fn shared_source(daemon: &DaemonConfig, peer: IpAddr) -> bool {
    let peer = netclaw_core::net::canonical_ip(peer);
    daemon.is_trusted_proxy(peer)
        || (daemon.exposure().tunnel_process().is_some() && peer.is_loopback())
}

/// Why a public connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// [`ConnectionLimits::total`] connections are open.
    TotalCap,
    /// The source holds [`ConnectionLimits::per_source`] connections.
    SourceCap,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::TotalCap => "total-cap",
            Self::SourceCap => "source-cap",
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Counts open public connections against [`ConnectionLimits`]. The per-source map holds only
/// sources with an open connection, so it never outgrows the total cap.
#[derive(Debug)]
pub struct PublicGate {
    limits: ConnectionLimits,
    open: Mutex<Open>,
    audit: Arc<Audit>,
}

impl PublicGate {
    /// A gate with nothing open; its caps and open count are published in `audit`'s metrics.
    pub fn new(limits: ConnectionLimits, audit: Arc<Audit>) -> Arc<Self> {
        audit
            .metrics
            .set_public_caps(limits.total(), limits.per_source());
        Arc::new(Self {
            limits,
            open: Mutex::new(Open::default()),
            audit,
        })
    }

    /// The caps.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Public connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().map(|o| o.total).unwrap_or(0)
    }

    /// Admits a connection from `peer` (`shared`: see [`shared_source`]) or says why not. The
    /// slot is given back when the returned guard drops.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, shared: bool) -> Result<PublicSlot, Refusal> {
        let mut open = self.open.lock().map_err(|_| Refusal::TotalCap)?;
        if open.total >= self.limits.total {
            return Err(Refusal::TotalCap);
        }
        let source = if shared {
            None
        } else {
            let n = open.by_source.entry(peer).or_insert(0);
            if *n >= self.limits.per_source {
                return Err(Refusal::SourceCap);
            }
            *n += 1;
            Some(peer)
        };
        open.total += 1;
        self.audit.metrics.set_public_open(open.total);
        Ok(PublicSlot {
            gate: self.clone(),
            source,
        })
    }

    fn release(&self, source: Option<IpAddr>) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        open.total = open.total.saturating_sub(1);
        self.audit.metrics.set_public_open(open.total);
        if let Some(peer) = source {
            if let Some(n) = open.by_source.get_mut(&peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.by_source.remove(&peer);
                }
            }
        }
    }
}

/// One admitted public connection; dropping it frees the slot. Shared (through
/// [`ConnectionSlot`]) by the connection task and, after a WebSocket upgrade, the session task
/// that owns the socket.
#[derive(Debug)]
pub struct PublicSlot {
    gate: Arc<PublicGate>,
    source: Option<IpAddr>,
}

impl Drop for PublicSlot {
    fn drop(&mut self) {
        self.gate.release(self.source);
    }
}

/// The slot of the connection a request came on, as a request extension: a handler that keeps
/// the connection's socket beyond the request (a WebSocket upgrade) keeps this too.
#[derive(Clone, Debug)]
pub struct ConnectionSlot(pub Arc<PublicSlot>);

/// The request body was not received within [`BODY_READ_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] once its deadline passes, and records that it
/// did in a flag the connection checks to answer 408 and close.
#[derive(Debug)]
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must end within `timeout` from now; `expired` is set when it does not.
    pub fn new(inner: B, timeout: Duration, expired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            expired,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Whatever has arrived is delivered even at the deadline.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
