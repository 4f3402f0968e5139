//! One accept/serve/drain implementation for every HTTP/1.1 server netclaw runs: the daemon's
//! public and operator listeners and the operator agent's socket. Behind the `serve` feature.
//!
//! A server owns a [`Drain`] and hands its [`Shutdown`] to its accept loops ([`accept_loop`]),
//! which spawn each connection as a task the drain tracks, and to whatever holds a long-lived
//! stream (a WebSocket session, an event stream). [`Drain::drain`] then shuts everything down
//! in this order:
//!
//! 1. **Stop accepting.** The signal fires; every accept loop returns at once and drops its
//!    listener, so new connections are refused by the kernel from then on.
//! 2. **Close long-lived streams.** Streams select on [`Shutdown::fired`] and end themselves (a
//!    WebSocket close frame, the end of an event stream), because a graceful HTTP shutdown
//!    would otherwise wait for them until the deadline.
//! 3. **Drain requests.** Every connection served by [`serve_http1`] is shut down gracefully:
//!    an idle keep-alive connection closes now, a request in flight completes and its answer is
//!    sent with `Connection: close`.
//! 4. **Deadline.** What is still open when the deadline passes is dropped (its socket closed).
//!
//! What this does not do: decide who may connect (the caller's accept closure does: caps,
//! source policy, peer credentials), or read the request (the caller's service does).

use std::future::Future;
use std::io;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an accept loop pauses after a failed accept (for example, out of descriptors), so
/// that a persistent failure does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The owner's side of a server's shutdown: fires the signal and waits for the tasks.
#[derive(Debug, Default)]
pub struct Drain {
    shutdown: Shutdown,
}

/// The handle accept loops, connections and long-lived streams hold: the shutdown signal, and
/// the tracker their tasks run under. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Fired when the drain starts.
    graceful: CancellationToken,
    /// Fired when the drain deadline passes: tracked tasks are dropped.
    hard: CancellationToken,
    tasks: TaskTracker,
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every connection and stream finished before the deadline.
    Complete,
    /// These many tasks were still running at the deadline and were dropped.
    DeadlinePassed {
        /// Tasks dropped.
        open: usize,
    },
}

impl Drain {
    /// A server that is not shutting down.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle for accept loops, connections and long-lived streams.
    pub fn handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Fires the signal, then waits up to `deadline` for every tracked task; what is still
    /// running then is dropped (see the module documentation for the order).
    pub async fn drain(self, deadline: Duration) -> Drained {
        let s = self.shutdown;
        s.graceful.cancel();
        s.tasks.close();
        if tokio::time::timeout(deadline, s.tasks.wait()).await.is_ok() {
            return Drained::Complete;
        }
        let open = s.tasks.len();
        s.hard.cancel();
        // Dropping a task's future is prompt; this wait only lets them unwind.
        let _ = tokio::time::timeout(Duration::from_secs(1), s.tasks.wait()).await;
        Drained::DeadlinePassed { open }
    }
}

impl Shutdown {
    /// Resolves once the drain has started. `'static`, so a stream can hold it.
    pub fn fired(&self) -> impl Future<Output = ()> + Send + 'static {
        self.graceful.clone().cancelled_owned()
    }

    /// Whether the drain has started.
    pub fn is_fired(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Runs `task` on its own tokio task, tracked: the drain waits for it, and drops it at the
    /// deadline.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(self.track(task));
    }

    /// `task`, tracked like [`Shutdown::spawn`], for a future that something else spawns (an
    /// upgraded connection's session, which the HTTP library spawns itself).
    pub fn track<F>(&self, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let hard = self.hard.clone();
        self.tasks.track_future(async move {
            tokio::select! {
                () = task => {}
                () = hard.cancelled_owned() => {}
            }
        })
    }
}

/// A listening socket an accept loop can take connections from.
pub trait Listen: Send {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The peer's address.
    type Addr: Send;
    /// The next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send {
        tokio::net::TcpListener::accept(self)
    }
}

impl Listen for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send {
        tokio::net::UnixListener::accept(self)
    }
}

/// Accepts connections until the shutdown fires, then drops `listener` and returns.
///
/// `admit` sees every accept: for a connection, `None` refuses it (the closure has already
/// answered or dropped it) and `Some(task)` serves it on a tracked task; for a failed accept
/// (for example, out of descriptors) the closure reports it and returns `None`, and the loop
/// pauses for [`ACCEPT_ERROR_PAUSE`] so that a persistent failure does not spin.
pub async fn accept_loop<L, A, T>(listener: L, shutdown: Shutdown, mut admit: A)
where
    L: Listen,
    A: FnMut(io::Result<(L::Io, L::Addr)>) -> Option<T>,
    T: Future<Output = ()> + Send + 'static,
{
    let fired = shutdown.fired();
    tokio::pin!(fired);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut fired => break,
            accepted = listener.accept() => accepted,
        };
        let failed = accepted.is_err();
        if let Some(task) = admit(accepted) {
            shutdown.spawn(task);
        }
        if failed {
            tokio::select! {
                () = &mut fired => break,
                () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
            }
        }
    }
    drop(listener);
}

/// The HTTP/1.1 limits of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Http1 {
    /// Time a client has to send a complete request head (also bounds idle keep-alive).
    pub header_read_timeout: Duration,
    /// Largest request head; larger gets 431.
    pub max_header_bytes: usize,
}

/// Serves one HTTP/1.1 connection (with upgrades) until it ends. When the shutdown fires or
/// `max_age` passes, it is shut down gracefully (the request in flight completes, then it
/// closes); when `cut` resolves, it is dropped at once (for example, its credentials were
/// revoked), upgraded or not.
pub async fn serve_http1<I, S, B>(
    io: I,
    service: S,
    limits: Http1,
    shutdown: &Shutdown,
    max_age: Option<Duration>,
    cut: impl Future<Output = ()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::pin!(cut);
    let fired = shutdown.fired();
    tokio::pin!(fired);
    let age = async {
        match max_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(age);
    let mut closing = false;
    loop {
        tokio::select! {
            // The cut first: once it resolves the connection makes no more progress, streams
            // and pipelined requests included.
            biased;
            () = &mut cut => return,
            res = connection.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut fired, if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = &mut age, if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests;
