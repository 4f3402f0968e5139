//! The router in process, as a local caller of the agent sees it: what it may reach, what is
//! refused, and that nothing refused reaches the daemon or renews.

use std::sync::atomic::AtomicUsize;

use http_body_util::BodyExt;
use hyper::Method;
use netclaw_core::wire::{ErrorBody, ErrorCode};
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::authz::Caller;
use crate::testing::{FakeDaemon, Fixture, TestClock};

/// The agent's router over a running credential manager, with a stand-in for the daemon's
/// operator listener that counts the connections it gets (and closes them: no TLS).
struct Agent {
    socket: Socket,
    state: Arc<AgentState>,
    daemon: FakeDaemon,
    dialled: Arc<AtomicUsize>,
    _fixture: Fixture,
    _stop: watch::Sender<bool>,
}

async fn agent() -> Agent {
    let fixture = Fixture::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dialled = Arc::new(AtomicUsize::new(0));
    let count = dialled.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    let clock = TestClock::new();
    let daemon = fixture.daemon(&clock);
    let (manager, handle, stats) = fixture.manager(addr, daemon.clone(), clock);
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(manager.run(stop));
    let state = Arc::new(AgentState::new(
        addr,
        stats,
        handle,
        netclaw_core::config::DEFAULT_BUSY_POLL,
    ));
    Agent {
        socket: Socket::new(state.clone()),
        state,
        daemon,
        dialled,
        _fixture: fixture,
        _stop: stop_tx,
    }
}

/// A caller the policy admits (this process's own uid).
fn admitted() -> Arc<Peer> {
    let uid = nix::unistd::geteuid().as_raw();
    Arc::new(Peer::new(Caller {
        uid,
        gid: nix::unistd::getegid().as_raw(),
        pid: Some(4242),
        user: None,
    }))
}

/// A caller the policy refuses: not root, not the agent's uid, in no allowed user or group.
fn stranger() -> Arc<Peer> {
    Arc::new(Peer::new(Caller {
        uid: 3_999_999_001,
        gid: 3_999_999_001,
        pid: Some(4343),
        user: None,
    }))
}

async fn call(
    agent: &Agent,
    peer: Option<Arc<Peer>>,
    method: Method,
    target: &str,
) -> (StatusCode, Option<ErrorBody>) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(target)
        .body(Body::empty())
        .unwrap();
    let resp = match peer {
        Some(peer) => agent.socket.handle(&peer, None, req).await,
        // Only the router can be called without a connection's caller; it refuses.
        None => agent.socket.router.clone().oneshot(req).await.unwrap(),
    };
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).ok())
}

/// What a refusal of the allow-list looks like.
fn not_forwarded(answer: &(StatusCode, Option<ErrorBody>)) -> bool {
    answer.0 == StatusCode::NOT_FOUND
        && answer.1.as_ref().and_then(|b| b.code) == Some(ErrorCode::RouteNotForwarded)
}

/// What the control API's own "no such endpoint" looks like (never forwarded either).
fn no_such_endpoint(answer: &(StatusCode, Option<ErrorBody>)) -> bool {
    answer.0 == StatusCode::NOT_FOUND && answer.1.as_ref().is_some_and(|b| b.code.is_none())
}

#[tokio::test]
async fn routes_off_the_allow_list_are_refused_and_never_reach_the_daemon() {
    let agent = agent().await;
    let me = Some(admitted());
    // The daemon's renewal route, in every spelling, and other daemon routes callers may not use.
    for target in [
        "/api/local-control/v1/pki/certificate",
        "/api/local-control/v1/pki/certificate/",
        "//api/local-control/v1/pki/certificate",
        "/api/local-control/v1/pki/%63ertificate",
        "/api/local-control/v1/pki/./certificate",
        "/api/local-control/v1/pki/x/../certificate",
        "/API/local-control/v1/pki/certificate",
        "/api/local-control/v1/pki/ca/prepare",
        "/api/local-control/v1/pki/revoke",
        "/api/local-control/v1/pki/status",
        "/api/pair/exchange",
        "/agent/v1",
        "/agent//v1/rotate",
        "/Agent/v1/rotate",
        "/agent/v2/rotate",
    ] {
        let answer = call(&agent, me.clone(), Method::POST, target).await;
        assert!(not_forwarded(&answer), "{target}: {answer:?}");
    }
    // The agent's own routes under other spellings are no endpoint, never a renewal.
    for target in [
        "/agent/v1/",
        "/agent/v1/rotate/",
        "/agent/v1/%72otate",
        "/agent/v1/Rotate",
        "/agent/v1/rotate/x",
        "/agent/v1/x/../rotate",
        "/agent/v1/api/local-control/v1/pki/certificate",
    ] {
        let answer = call(&agent, me.clone(), Method::POST, target).await;
        assert!(no_such_endpoint(&answer), "{target}: {answer:?}");
    }
    // Other request-target forms are refused before routing to the daemon.
    let answer = call(
        &agent,
        me.clone(),
        Method::POST,
        "http://127.0.0.1/api/local-control/v1/pki/certificate",
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.1.and_then(|b| b.code),
        Some(ErrorCode::RequestTargetForm)
    );
    // A forwarded route with another method.
    let answer = call(&agent, me.clone(), Method::POST, "/api/health/ready").await;
    assert_eq!(answer.0, StatusCode::METHOD_NOT_ALLOWED);
    // The control routes with the wrong method do nothing.
    for (method, target) in [
        (Method::GET, "/agent/v1/rotate"),
        (Method::PUT, "/agent/v1/rotate"),
        (Method::GET, "/agent/v1/reload"),
        (Method::POST, "/agent/v1/status"),
        (Method::HEAD, "/agent/v1/status"),
    ] {
        let answer = call(&agent, me.clone(), method.clone(), target).await;
        assert_eq!(
            answer.0,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {target}"
        );
    }
    assert_eq!(agent.dialled.load(Ordering::SeqCst), 0);
    assert!(agent.daemon.calls().is_empty());

    // The stand-in does count: a route on the list reaches it (and fails there, without TLS).
    let answer = call(&agent, me, Method::GET, "/api/health/ready").await;
    assert_eq!(answer.0, StatusCode::BAD_GATEWAY);
    assert!(agent.dialled.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn a_caller_the_policy_refuses_reaches_nothing() {
    let agent = agent().await;
    for (method, target) in [
        (Method::POST, "/agent/v1/rotate"),
        (Method::POST, "/agent/v1/reload"),
        (Method::GET, "/agent/v1/status"),
        (Method::GET, "/agent/v1/metrics"),
        (Method::GET, "/api/health/ready"),
        (Method::POST, "/api/local-control/v1/pki/certificate"),
    ] {
        let answer = call(&agent, Some(stranger()), method.clone(), target).await;
        assert_eq!(answer.0, StatusCode::FORBIDDEN, "{method} {target}");
    }
    assert_eq!(agent.state.stats.refused_callers.load(Ordering::SeqCst), 6);
    // A request that lost its connection's caller is refused too.
    let answer = call(&agent, None, Method::POST, "/agent/v1/rotate").await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);
    let answer = call(&agent, None, Method::GET, "/api/health/ready").await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);
    assert_eq!(agent.dialled.load(Ordering::SeqCst), 0);
    assert!(agent.daemon.calls().is_empty());
}

#[tokio::test]
async fn an_admitted_caller_rotates_and_reloads_through_the_manager() {
    let agent = agent().await;
    let before = agent.state.upstream().creds.identity.serial.clone();
    let (status, _) = call(&agent, Some(admitted()), Method::POST, "/agent/v1/rotate").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent.daemon.calls().len(), 1);
    assert_ne!(agent.state.upstream().creds.identity.serial, before);

    let (status, _) = call(&agent, Some(admitted()), Method::POST, "/agent/v1/reload").await;
    assert_eq!(status, StatusCode::OK);

    // A renewal whose answer is lost is reported as such, and retried by the manager.
    agent.daemon.lose_answers(1);
    let (status, body) = call(&agent, Some(admitted()), Method::POST, "/agent/v1/rotate").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body.and_then(|b| b.code), None);
    // The renewal route itself was never dialled through the socket.
    assert_eq!(agent.dialled.load(Ordering::SeqCst), 0);
}

/// The log lines written while it is alive on this thread (a `#[tokio::test]` runs the handlers
/// on it).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn rotations_and_reloads_are_attributed_to_the_caller_who_asked() {
    let out = Captured::default();
    let writer = out.clone();
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let agent = agent().await;
    let uid = nix::unistd::geteuid().as_raw();
    let me = Arc::new(Peer::new(Caller {
        uid,
        gid: nix::unistd::getegid().as_raw(),
        pid: Some(4242),
        user: Some("netclaw-test-ana".into()),
    }));
    let (status, _) = call(&agent, Some(me.clone()), Method::POST, "/agent/v1/rotate").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&agent, Some(me), Method::POST, "/agent/v1/reload").await;
    assert_eq!(status, StatusCode::OK);
    let text = out.text();
    for action in ["rotation", "reload"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("action=\"{action}\"")))
            .unwrap_or_else(|| panic!("no {action} attributed in:\n{text}"));
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!("uid={uid}")), "{line}");
        assert!(line.contains("user=\"netclaw-test-ana\""), "{line}");
        assert!(line.contains("pid=4242"), "{line}");
    }
    // A refused caller asks for nothing: it is refused before the handler.
    let (status, _) = call(&agent, Some(stranger()), Method::POST, "/agent/v1/rotate").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let text = out.text();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("asked for") && l.contains("uid=3999999001")),
        "{text}"
    );
}

/// A client connection to the socket at `path`: the request sender, and the connection's task
/// (it ends when the agent closes the connection).
async fn connect(
    path: &std::path::Path,
) -> (
    hyper::client::conn::http1::SendRequest<Body>,
    tokio::task::JoinHandle<()>,
) {
    let stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

fn request(method: Method, target: &str) -> hyper::Request<Body> {
    hyper::Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, "agent")
        .body(Body::empty())
        .unwrap()
}

/// The socket served by [`serve`] and drained by `netclaw_core::serve::Drain`: once the drain
/// starts, a new connection is refused at once, an idle keep-alive connection is closed, and a
/// request in flight (a rotation the daemon takes its time to answer) completes with
/// `Connection: close`; the drain then ends complete, before its deadline.
#[tokio::test]
async fn the_drain_refuses_new_connections_closes_idle_ones_and_completes_a_request_in_flight() {
    use netclaw_core::serve::{Drain, Drained};
    use std::time::Duration;

    let agent = agent().await;
    agent.daemon.set_delay(Duration::from_millis(700));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let drain = Drain::new();
    let serving = tokio::spawn(serve(listener, agent.state.clone(), drain.handle()));

    // An idle keep-alive connection, answered once.
    let (mut idle, idle_task) = connect(&path).await;
    let resp = idle
        .send_request(request(Method::GET, "/agent/v1/none"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    resp.into_body().collect().await.unwrap();

    // A rotation in flight when the drain starts.
    let (mut busy, busy_task) = connect(&path).await;
    let in_flight = tokio::spawn(busy.send_request(request(Method::POST, "/agent/v1/rotate")));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while agent.daemon.calls().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rotation reached the daemon"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = tokio::time::Instant::now();
    let draining = tokio::spawn(drain.drain(Duration::from_secs(10)));

    // New connections are refused by the kernel: nothing listens any more. (One that raced
    // the close may be reset instead.)
    loop {
        match tokio::net::UnixStream::connect(&path).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "still accepting: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    // The idle connection is closed without waiting for the request in flight.
    tokio::time::timeout(Duration::from_millis(500), idle_task)
        .await
        .expect("the idle connection is closed at once")
        .unwrap();
    assert!(!in_flight.is_finished());

    // The request in flight completes, and its connection closes after it.
    let resp = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONNECTION], "close");
    resp.into_body().collect().await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), busy_task)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(draining.await.unwrap(), Drained::Complete);
    assert!(started.elapsed() < Duration::from_secs(5));
    serving.await.unwrap();
}
