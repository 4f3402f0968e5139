//! The load generator: keep-alive HTTP/1.1 connections over TCP, TLS or a Unix socket, one
//! request in flight per connection, all driven by one thread (a current-thread tokio runtime,
//! like `wrk -t1 -cN`). The same code runs every path, so the paths differ only in the
//! transport: plain TCP and mutual TLS for the direct rows, one Unix-socket client for the three
//! sidecars.
//!
//! The HTTP/1.1 reader is deliberately minimal (status line, `Content-Length` or chunked body):
//! it only has to read the daemon's small JSON answers fast, not arbitrary servers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where a connection goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// Plain HTTP over TCP.
    Tcp(SocketAddr),
    /// HTTP over mutual TLS.
    Tls {
        /// The listener.
        addr: SocketAddr,
        /// The name the server certificate must carry.
        name: ServerName<'static>,
        /// Client configuration with the client certificate.
        config: Arc<rustls::ClientConfig>,
    },
    /// Plain HTTP over a Unix socket.
    Unix(PathBuf),
}

/// How long to run, or how many requests to send.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    /// Warm up for `warmup` (not recorded), then record for `measure`.
    Timed {
        /// Unrecorded run-in after the connections are open.
        warmup: Duration,
        /// Recorded window.
        measure: Duration,
    },
    /// Exactly this many requests in total, all recorded.
    Count(u64),
}

/// The outcome of one run.
#[derive(Debug, Default)]
pub struct Sample {
    /// Latency of every recorded request, nanoseconds, sorted.
    pub latencies: Vec<u64>,
    /// Length of the recorded window.
    pub window: Duration,
    /// Requests answered with a status other than 200 (recorded window).
    pub non_200: u64,
}

impl Sample {
    /// Requests per second over the recorded window.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of latency, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)] as f64 / 1000.0
    }
}

/// A request and the bytes that make it up.
fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: netclaw\r\nUser-Agent: netclaw-bench\r\n\r\n")
        .into_bytes()
}

/// Runs `concurrency` keep-alive connections to `target`, each sending `GET path` in a loop.
/// Connections (and TLS handshakes) are opened before any timing starts.
pub fn run(target: &Target, path: &str, concurrency: usize, amount: Amount) -> Result<Sample> {
    run_observed(target, path, concurrency, amount, &mut || {})
}

/// As [`run`], calling `observe` when the recorded window starts and when it ends, while the
/// connections are open (to read counters of the servers over exactly that window).
pub fn run_observed(
    target: &Target,
    path: &str,
    concurrency: usize,
    amount: Amount,
    observe: &mut dyn FnMut(),
) -> Result<Sample> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(target, path, concurrency, amount, observe))
}

/// One request on a fresh connection: (status, body).
pub fn fetch(target: &Target, path: &str) -> Result<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = Conn::open(target).await?;
        let mut buf = Vec::with_capacity(4096);
        conn.write(&request(path)).await?;
        let (status, body) = read_response(&mut conn, &mut buf).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

async fn run_async(
    target: &Target,
    path: &str,
    concurrency: usize,
    amount: Amount,
    observe: &mut dyn FnMut(),
) -> Result<Sample> {
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Conn::open(target).await?);
    }
    let req: Arc<[u8]> = request(path).into();
    let budget = Arc::new(AtomicU64::new(match amount {
        Amount::Count(n) => n,
        Amount::Timed { .. } => u64::MAX,
    }));
    let started = Instant::now();
    let (record_from, stop_at) = match amount {
        Amount::Timed { warmup, measure } => (started + warmup, Some(started + warmup + measure)),
        Amount::Count(_) => (started, None),
    };
    if stop_at.is_none() {
        observe();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for conn in conns {
        let req = req.clone();
        let budget = budget.clone();
        tasks.spawn(drive(conn, req, budget, record_from, stop_at));
    }
    if let Some(stop) = stop_at {
        tokio::time::sleep_until(record_from.into()).await;
        observe();
        tokio::time::sleep_until(stop.into()).await;
    }
    let mut sample = Sample::default();
    // The connections come back open, so that the servers' per-connection state (stunnel's
    // threads) still exists when the window's last reading is taken.
    let mut open = Vec::with_capacity(concurrency);
    while let Some(done) = tasks.join_next().await {
        let (latencies, non_200, conn) = done.context("client task")??;
        sample.latencies.extend(latencies);
        sample.non_200 += non_200;
        open.push(conn);
    }
    let finished = Instant::now();
    observe();
    drop(open);
    sample.window = match stop_at {
        Some(stop) => stop.saturating_duration_since(record_from),
        None => finished - started,
    };
    sample.latencies.sort_unstable();
    Ok(sample)
}

/// One connection's loop: (recorded latencies, non-200 answers, the connection, still open).
async fn drive(
    mut conn: Conn,
    req: Arc<[u8]>,
    budget: Arc<AtomicU64>,
    record_from: Instant,
    stop_at: Option<Instant>,
) -> Result<(Vec<u64>, u64, Conn)> {
    let mut latencies = Vec::with_capacity(4096);
    let mut non_200 = 0;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            break;
        }
        let t0 = Instant::now();
        if stop_at.is_some_and(|s| t0 >= s) {
            break;
        }
        conn.write(&req).await?;
        let (status, _) = read_response(&mut conn, &mut buf).await?;
        let t1 = Instant::now();
        if t0 >= record_from && stop_at.is_none_or(|s| t1 <= s) {
            latencies.push((t1 - t0).as_nanos() as u64);
            if status != 200 {
                non_200 += 1;
            }
        }
    }
    Ok((latencies, non_200, conn))
}

/// An open connection.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    async fn open(target: &Target) -> Result<Self> {
        Ok(match target {
            Target::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("connecting to {addr}"))?;
                s.set_nodelay(true)?;
                Self::Tcp(s)
            }
            Target::Tls { addr, name, config } => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("connecting to {addr}"))?;
                s.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), s)
                    .await
                    .with_context(|| format!("TLS handshake with {addr}"))?;
                Self::Tls(Box::new(tls))
            }
            Target::Unix(path) => Self::Unix(
                tokio::net::UnixStream::connect(path)
                    .await
                    .with_context(|| format!("connecting to {}", path.display()))?,
            ),
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => write_flush(s, bytes).await,
            Self::Tls(s) => write_flush(s.as_mut(), bytes).await,
            Self::Unix(s) => write_flush(s, bytes).await,
        }
    }

    async fn read(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read_buf(buf).await,
            Self::Tls(s) => s.read_buf(buf).await,
            Self::Unix(s) => s.read_buf(buf).await,
        }
    }
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

/// Reads one response into `buf` (which keeps any bytes that follow it): (status, body).
async fn read_response(conn: &mut Conn, buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>)> {
    let head = loop {
        if let Some(head) = crate::http::parse_head(buf)? {
            break head;
        }
        fill(conn, buf).await?;
    };
    let body = if head.chunked() {
        loop {
            if let Some((len, body)) = crate::http::parse_chunked(&buf[head.len..])? {
                buf.drain(..head.len + len);
                break body;
            }
            fill(conn, buf).await?;
        }
    } else {
        let n = head.content_length()?.unwrap_or(0);
        while buf.len() < head.len + n {
            fill(conn, buf).await?;
        }
        let body = buf[head.len..head.len + n].to_vec();
        buf.drain(..head.len + n);
        body
    };
    Ok((head.status, body))
}

async fn fill(conn: &mut Conn, buf: &mut Vec<u8>) -> Result<()> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    if conn.read(buf).await? == 0 {
        bail!("connection closed by the server");
    }
    Ok(())
}
