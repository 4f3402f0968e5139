//! Pairing exchange bodies: `POST /api/pair/exchange` from a remote device, through the router,
//! with a fresh daemon state per input (so the limiter never answers first).
//!
//! Input: a first line, `pending` to mint a code before the exchange (anything else: none
//! pending), then the request body.
//!
//! Checked: no panic, no 5xx; the status is the one the exchange rules give for the body: 413
//! beyond the body limit, 400 for a body that is not `{code, deviceName}`, a refused device name
//! (blank, control characters, over 64 characters) or a malformed code, 404 with no pending code, 401 for a wrong code; every refusal is a JSON
//! `{error}`.

#![no_main]

use std::time::SystemTime;

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use netclaw_core::wire::{ErrorBody, ExchangeRequest};
use netclaw_daemon::api::MAX_BODY;
use netclaw_daemon::devices::device_name;
use netclaw_daemon::pairing::normalize_code;
use netclaw_daemon::principal::{ConnInfo, Listener, Principal};
use netclaw_fuzz::{first_line, send, state, REVERSE_PROXY};

fuzz_target!(|data: &[u8]| {
    let (first, body) = first_line(data);
    let pending = first == "pending";
    let state = state(REVERSE_PROXY);
    if pending {
        state
            .pairing
            .mint(&Principal::LocalProcess, SystemTime::now())
            .expect("mint");
    }
    let router = netclaw_daemon::api::router(state);
    let req = Request::post("/api/pair/exchange")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("request");
    let conn = ConnInfo {
        listener: Listener::Public,
        peer: [198, 51, 100, 20].into(),
    };
    let (status, resp) = send(&router, conn, req);
    let text = String::from_utf8_lossy(&resp);
    let want = if body.len() > MAX_BODY {
        413
    } else {
        match serde_json::from_slice::<ExchangeRequest>(body) {
            Err(_) => 400,
            Ok(r) if device_name(&r.device_name).is_err() => 400,
            Ok(r) if normalize_code(&r.code).is_none() => 400,
            Ok(_) if !pending => 404,
            // A guessed code (one in 32^8) reaches the device store, which cannot be
            // written here: 503.
            Ok(_) if status == 503 => return,
            Ok(_) => 401,
        }
    };
    assert!(status < 500, "{status}: {text}");
    assert_eq!(status, want, "{first:?} {text}");
    if status != 413 {
        let err: ErrorBody = serde_json::from_slice(&resp).expect("an {error} body");
        assert!(!err.error.is_empty());
    }
});
