//! Forwarded and identity headers on the public listener, through the daemon's router: the
//! `identify` middleware (X-Forwarded-For from trusted proxies, one hop; identity and
//! client-certificate headers stripped; bearer tokens) and `GET /api/whoami`.
//!
//! Input: a first line `<mode> <peer-ip>` (`local`, anything else is `reverse-proxy`; an
//! unparsable peer is 203.0.113.9), then `Name: value` header lines.
//!
//! Checked: no panic, no 5xx; no header ever yields `LocalOperator` or `Device`; in
//! `reverse-proxy` mode every unauthenticated request is `Anonymous`; in `local` mode a request
//! is `LocalProcess` exactly when its peer is loopback and it is not a trusted proxy forwarding a
//! request; a bearer that matches no device is refused (no fall-through to loopback trust).

#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use libfuzzer_sys::fuzz_target;
use netclaw_core::wire::WhoAmI;
use netclaw_daemon::principal::{ConnInfo, Listener};
use netclaw_daemon::state::SharedState;
use netclaw_fuzz::{first_line, header_lines, send, state, LOCAL, REVERSE_PROXY};

struct Daemon {
    state: SharedState,
    router: Router,
}

fn daemon(config: &str) -> Daemon {
    let state = state(config);
    let router = netclaw_daemon::api::router(state.clone());
    Daemon { state, router }
}

static REVERSE: LazyLock<Daemon> = LazyLock::new(|| daemon(REVERSE_PROXY));
static LOCAL_MODE: LazyLock<Daemon> = LazyLock::new(|| daemon(LOCAL));

fuzz_target!(|data: &[u8]| {
    let (first, rest) = first_line(data);
    let mut words = first.split_whitespace();
    let local = words.next() == Some("local");
    let peer: IpAddr = words
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(IpAddr::from([203, 0, 113, 9]));
    let headers = header_lines(rest);
    let forwarded = headers.contains_key("x-forwarded-for");
    let authorization = headers.contains_key("authorization");
    let mut req = Request::get("/api/whoami")
        .body(Body::empty())
        .expect("request");
    *req.headers_mut() = headers;

    let d = if local { &*LOCAL_MODE } else { &*REVERSE };
    let conn = ConnInfo {
        listener: Listener::Public,
        peer,
    };
    let (status, body) = send(&d.router, conn, req);
    let text = String::from_utf8_lossy(&body);
    assert!(status < 500, "{status}: {text}");
    if authorization {
        // No device is paired: every bearer is refused.
        assert_eq!(status, 401, "{text}");
        return;
    }
    assert_eq!(status, 200, "{text}");
    let who: WhoAmI = serde_json::from_slice(&body).expect("whoami body");
    let trusted = d.state.config.daemon().is_trusted_proxy(peer);
    let local_process = local && peer.is_loopback() && !(trusted && forwarded);
    let want = if local_process {
        "LocalProcess"
    } else {
        "Anonymous"
    };
    assert_eq!(who.principal, want, "{first:?}");
    assert!(who.caller.is_none());
});
