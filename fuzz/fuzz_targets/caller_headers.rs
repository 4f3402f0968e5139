//! The caller headers the agent adds to every request it forwards (`Netclaw-Operator-Caller-Uid`,
//! `-User`, `-Pid`), as the daemon reads them on the operator listener, through the router.
//!
//! Input: `Name: value` header lines.
//!
//! Checked: no panic; the principal stays `LocalOperator` with the certificate's identity
//! whatever the headers say; a caller is reported only with a uid that is the header's number, a
//! user name only when it is the header's value and 1–64 printable ASCII characters, a pid only
//! when it is the header's number.

#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use libfuzzer_sys::fuzz_target;
use netclaw_core::wire::WhoAmI;
use netclaw_core::{CALLER_PID_HEADER, CALLER_UID_HEADER, CALLER_USER_HEADER};
use netclaw_daemon::principal::{ConnInfo, Listener};
use netclaw_fuzz::{agent_id, header_lines, send, state, REVERSE_PROXY};
use netclaw_pki::Serial;

static ROUTER: LazyLock<Router> =
    LazyLock::new(|| netclaw_daemon::api::router(state(REVERSE_PROXY)));

fuzz_target!(|data: &[u8]| {
    let mut headers = header_lines(data);
    // A bearer token means nothing on the operator listener; keep the request on the identity path.
    headers.remove("authorization");
    let mut req = Request::get("/api/whoami")
        .body(Body::empty())
        .expect("request");
    *req.headers_mut() = headers.clone();
    let conn = ConnInfo {
        listener: Listener::Operator {
            spiffe_id: agent_id().to_string(),
            serial: Serial::from_bytes(&[0x40, 1, 2, 3]),
            public_key: Arc::from(&[4u8; 65][..]),
        },
        peer: [192, 0, 2, 10].into(),
    };
    let (status, body) = send(&ROUTER, conn, req);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let who: WhoAmI = serde_json::from_slice(&body).expect("whoami body");
    assert_eq!(who.principal, "LocalOperator");
    assert_eq!(who.name, Some(agent_id().to_string()));
    let first = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    match who.caller {
        Some(c) => {
            assert_eq!(
                first(CALLER_UID_HEADER).and_then(|u| u.parse().ok()),
                Some(c.uid)
            );
            if let Some(user) = &c.user {
                assert!(!user.is_empty() && user.len() <= 64, "{user:?}");
                assert!(user.bytes().all(|b| b.is_ascii_graphic()), "{user:?}");
                assert_eq!(first(CALLER_USER_HEADER), Some(user.as_str()));
            }
            if let Some(pid) = c.pid {
                assert_eq!(
                    first(CALLER_PID_HEADER).and_then(|p| p.parse().ok()),
                    Some(pid)
                );
            }
        }
        None => assert!(first(CALLER_UID_HEADER)
            .and_then(|u| u.parse::<u32>().ok())
            .is_none()),
    }
});
