//! Scripted fake servers on axum: a fake operator agent on a Unix socket, a plain HTTP server on
//! a free loopback port and an HTTPS one with a given certificate. Each records every request it
//! receives and answers it with what the test's closure returns; hyper parses the requests, so no
//! test reads an HTTP request by hand.
//!
//! Each server runs on its own thread with its own runtime, so that synchronous tests can use it;
//! it lives until the test process exits.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::Request as AxumRequest;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::serve::{Listener, ListenerExt};
use axum::Router;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Largest request body a fake server reads.
const MAX_BODY: usize = 1 << 20;

/// A request as a fake server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// Header names (lowercase) and values (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Seen {
    /// A header's value (`name` in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted answer: status, extra headers, JSON body.
pub type Answer = (u16, Vec<(String, String)>, String);

/// Everything a fake server received, in order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// How many connections a fake server accepted.
pub type Connections = Arc<AtomicUsize>;

/// An answer with `status` and a JSON `body` and no extra headers.
pub fn answer(status: u16, body: &str) -> Answer {
    (status, Vec::new(), body.to_owned())
}

/// Serves `script` for every request on a Unix socket bound at `path` before it returns (a
/// fake operator agent).
pub fn unix(path: &Path, script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Log {
    unix_counted(path, script).0
}

/// [`unix`], also counting the connections it accepts.
pub fn unix_counted(
    path: &Path,
    script: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (Log, Connections) {
    let listener = std::os::unix::net::UnixListener::bind(path)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
    serve(script, move || {
        tokio::net::UnixListener::from_std(listener).expect("a non-blocking Unix listener")
    })
}

/// Serves `script` for every request on a free loopback TCP port; returns the port.
pub fn tcp(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> (u16, Log) {
    let (listener, port) = tcp_listener();
    let (log, _) = serve(script, move || {
        tokio::net::TcpListener::from_std(listener).expect("a non-blocking TCP listener")
    });
    (port, log)
}

/// Serves `script` over TLS with `config` on a free loopback TCP port; returns the port.
/// Connections whose handshake fails are dropped.
pub fn tls(
    config: Arc<rustls::ServerConfig>,
    script: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (u16, Log) {
    let (listener, port) = tcp_listener();
    let (log, _) = serve(script, move || TlsListener {
        tcp: tokio::net::TcpListener::from_std(listener).expect("a non-blocking TCP listener"),
        acceptor: TlsAcceptor::from(config),
    });
    (port, log)
}

fn tcp_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port();
    (listener, port)
}

/// Runs an axum server over the listener `make` returns (called inside the server's runtime)
/// with `script` as the fallback for every route.
fn serve<L: Listener>(
    script: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
    make: impl FnOnce() -> L + Send + 'static,
) -> (Log, Connections)
where
    L::Addr: std::fmt::Debug,
{
    let connections: Connections = Arc::default();
    let accepted = connections.clone();
    let log: Log = Arc::default();
    let seen = log.clone();
    let script: Script = Arc::new(script);
    let router = Router::new().fallback(move |req: AxumRequest| {
        let (seen, script) = (seen.clone(), script.clone());
        async move { respond(req, &seen, &script).await }
    });
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fake server");
        runtime.block_on(async move {
            let listener = make().tap_io(move |_| {
                accepted.fetch_add(1, Ordering::SeqCst);
            });
            let _ = axum::serve(listener, router).await;
        });
    });
    (log, connections)
}

/// The test's closure, shared by the server's connections.
type Script = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

async fn respond(req: AxumRequest, log: &Log, script: &Script) -> Response {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).trim().to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let (status, headers, text) = script(&seen);
    if let Ok(mut all) = log.lock() {
        all.push(seen);
    }
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = StatusCode::from_u16(status).expect("a valid scripted status");
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        h.append(
            HeaderName::try_from(name).expect("a valid scripted header name"),
            HeaderValue::try_from(value).expect("a valid scripted header value"),
        );
    }
    resp
}

/// A TCP listener whose connections are served after a TLS handshake.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests;
