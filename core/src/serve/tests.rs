//! The serve loop against a real socket and hyper's client. Only generous upper bounds on
//! shutdown completing; no other timing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use super::*;

/// Upper bound for anything that should happen promptly.
const BOUND: Duration = Duration::from_secs(30);

const LIMITS: Http1 = Http1 {
    header_read_timeout: Duration::from_secs(30),
    max_header_bytes: 16 * 1024,
};

/// What the test server's handlers share with the test.
#[derive(Debug)]
struct Gates {
    /// Notified when a `/slow` request has arrived.
    slow_started: Notify,
    /// A `/slow` request answers once it gets a permit.
    release: Semaphore,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            slow_started: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// `/slow` waits for the test's permit; `/follow` sends one event, then stays open until the
/// shutdown fires (a long-lived stream); anything else answers at once.
async fn handle(
    req: Request<Incoming>,
    gates: Arc<Gates>,
    shutdown: Shutdown,
) -> Result<Response<Body>, Infallible> {
    let body = match req.uri().path() {
        "/slow" => {
            gates.slow_started.notify_one();
            let permit = gates.release.acquire().await;
            drop(permit);
            Full::new(Bytes::from_static(b"done")).boxed()
        }
        "/follow" => {
            let first = futures_util::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"event\n")))
            });
            let rest = futures_util::stream::unfold(Some(shutdown.fired()), |fired| async move {
                // Ends the stream when the shutdown fires; yields nothing before.
                fired?.await;
                None::<(Result<Frame<Bytes>, Infallible>, _)>
            });
            StreamBody::new(futures_util::StreamExt::chain(first, rest)).boxed()
        }
        _ => Full::new(Bytes::from_static(b"ok")).boxed(),
    };
    Ok(Response::new(body))
}

struct Server {
    addr: SocketAddr,
    drain: Drain,
    gates: Arc<Gates>,
    accepting: tokio::task::JoinHandle<()>,
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let drain = Drain::new();
    let gates = Arc::new(Gates::default());
    let shutdown = drain.handle();
    let g = gates.clone();
    let accepting = tokio::spawn(accept_loop(listener, shutdown.clone(), move |accepted| {
        let (tcp, _peer) = accepted.expect("accept");
        let (g, shutdown) = (g.clone(), shutdown.clone());
        Some(async move {
            let s = shutdown.clone();
            let service = hyper::service::service_fn(move |req| handle(req, g.clone(), s.clone()));
            serve_http1(
                tcp,
                service,
                LIMITS,
                &shutdown,
                None,
                std::future::pending(),
            )
            .await;
        })
    }));
    Server {
        addr,
        drain,
        gates,
        accepting,
    }
}

/// A client connection to `addr`.
async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn drain_closes_a_follow_stream_and_completes_an_in_flight_request() {
    let s = server().await;
    // A follower, past its first event.
    let mut follower = connect(s.addr).await;
    let follow = follower.send_request(get("/follow")).await.unwrap();
    let mut follow = follow.into_body();
    let first = follow.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"event\n");
    // A request in flight.
    let mut client = connect(s.addr).await;
    let started = s.gates.slow_started.notified();
    let slow = tokio::spawn(async move { client.send_request(get("/slow")).await });
    started.await;

    let gates = s.gates.clone();
    let draining = tokio::spawn(s.drain.drain(BOUND));
    // The stream ends while the request is still in flight.
    let rest = tokio::time::timeout(BOUND, follow.collect())
        .await
        .expect("the follow stream ends on shutdown")
        .unwrap()
        .to_bytes();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(!slow.is_finished());
    assert!(!draining.is_finished());
    // The request completes with its answer, then the drain does.
    gates.release.add_permits(1);
    let resp = tokio::time::timeout(BOUND, slow)
        .await
        .expect("the in-flight request completes")
        .unwrap()
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"done");
    let drained = tokio::time::timeout(BOUND, draining)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drained, Drained::Complete);
}

#[tokio::test]
async fn stop_accepting_is_immediate_while_requests_drain() {
    let s = server().await;
    let mut client = connect(s.addr).await;
    let started = s.gates.slow_started.notified();
    let slow = tokio::spawn(async move { client.send_request(get("/slow")).await });
    started.await;

    let gates = s.gates.clone();
    let draining = tokio::spawn(s.drain.drain(BOUND));
    // The accept loop returns (and drops the listener) without waiting for the drain.
    tokio::time::timeout(BOUND, s.accepting)
        .await
        .expect("the accept loop returns on shutdown")
        .unwrap();
    let refused = TcpStream::connect(s.addr).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    assert!(!slow.is_finished());
    gates.release.add_permits(1);
    let resp = tokio::time::timeout(BOUND, slow).await.unwrap().unwrap();
    assert_eq!(resp.unwrap().status(), 200);
    assert_eq!(
        tokio::time::timeout(BOUND, draining)
            .await
            .unwrap()
            .unwrap(),
        Drained::Complete
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_does_not_hold_the_drain() {
    let s = server().await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let resp = client.send_request(get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    // The connection stays open, idle; the drain closes it rather than waiting for the
    // deadline (an hour here).
    let drained = tokio::time::timeout(BOUND, s.drain.drain(Duration::from_secs(3600)))
        .await
        .expect("the drain does not wait for idle connections");
    assert_eq!(drained, Drained::Complete);
    tokio::time::timeout(BOUND, conn)
        .await
        .expect("the server closed the idle connection")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_deadline_drops_what_is_still_open() {
    let s = server().await;
    let mut client = connect(s.addr).await;
    let started = s.gates.slow_started.notified();
    let slow = tokio::spawn(async move { client.send_request(get("/slow")).await });
    started.await;
    // The request is never released: the deadline passes and the connection is dropped.
    let drained = tokio::time::timeout(BOUND, s.drain.drain(Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(drained, Drained::DeadlinePassed { open: 1 });
    let answer = tokio::time::timeout(BOUND, slow).await.unwrap().unwrap();
    assert!(answer.is_err(), "{answer:?}");
}

#[tokio::test]
async fn a_cut_connection_is_dropped_at_once_and_a_tracked_stream_holds_the_drain() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let drain = Drain::new();
    let shutdown = drain.handle();
    let cut = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let (c, st, sd) = (cut.clone(), started.clone(), shutdown.clone());
    tokio::spawn(accept_loop(listener, shutdown.clone(), move |accepted| {
        let (tcp, _) = accepted.expect("accept");
        let (c, st, sd) = (c.clone(), st.clone(), sd.clone());
        Some(async move {
            let service = hyper::service::service_fn(move |_req| {
                let st = st.clone();
                async move {
                    st.notify_one();
                    // Never answers: only the cut ends this connection.
                    std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
                }
            });
            serve_http1(tcp, service, LIMITS, &sd, None, c.notified()).await;
        })
    }));
    let mut client = connect(addr).await;
    let in_flight = started.notified();
    let pending = tokio::spawn(async move { client.send_request(get("/")).await });
    in_flight.await;
    cut.notify_one();
    let answer = tokio::time::timeout(BOUND, pending).await.unwrap().unwrap();
    assert!(answer.is_err(), "{answer:?}");

    // A stream tracked outside the accept loop (as an upgraded session is) ends on the signal
    // and the drain waits for it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let fired = shutdown.fired();
    tokio::spawn(shutdown.track(async move {
        fired.await;
        let _ = tx.send(());
    }));
    assert_eq!(
        tokio::time::timeout(BOUND, drain.drain(BOUND))
            .await
            .unwrap(),
        Drained::Complete
    );
    assert!(rx.await.is_ok(), "the tracked stream ran to its end");
}

#[tokio::test]
async fn the_agent_socket_kind_is_served_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let drain = Drain::new();
    let shutdown = drain.handle();
    let sd = shutdown.clone();
    let accepting = tokio::spawn(accept_loop(listener, shutdown, move |accepted| {
        let (io, _) = accepted.expect("accept");
        let sd = sd.clone();
        Some(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            serve_http1(io, service, LIMITS, &sd, None, std::future::pending()).await;
        })
    }));
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(get("/")).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(
        tokio::time::timeout(BOUND, drain.drain(BOUND))
            .await
            .unwrap(),
        Drained::Complete
    );
    tokio::time::timeout(BOUND, accepting)
        .await
        .unwrap()
        .unwrap();
}
