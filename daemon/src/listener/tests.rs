//! The public listener on the shared serve loop, in-process over real sockets: what shutdown
//! does to an event stream, a hub session and a request in flight. Only generous upper bounds
//! on shutdown completing.

use std::path::Path;

use netclaw_core::config::Config;
use netclaw_core::serve::{Drain, Drained};
use netclaw_tests::http::{parse_chunked, parse_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::devices::DeviceStore;
use crate::limits::ConnectionLimits;
use crate::state::AppState;

/// Upper bound for anything that should happen promptly.
const BOUND: Duration = Duration::from_secs(30);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("within the bound")
}

/// Reads until `done` says the bytes so far are complete.
async fn read_until(tcp: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let mut chunk = [0u8; 4096];
    while !done(buf) {
        let n = within(tcp.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn head_len(b: &[u8]) -> Option<usize> {
    parse_head(b).unwrap().map(|h| h.len)
}

/// Reads server WebSocket frames until a close frame; returns its status code.
async fn read_close(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    loop {
        // Server frames are unmasked; these are short (length under 126).
        read_until(tcp, buf, |b| {
            b.len() >= 2 && b.len() >= 2 + usize::from(b[1] & 0x7f)
        })
        .await;
        let len = usize::from(buf[1] & 0x7f);
        let opcode = buf[0] & 0x0f;
        let payload: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
        if opcode == 8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[tokio::test]
async fn shutdown_closes_streams_and_sessions_then_drains_requests_and_frees_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config::from_json(
        Path::new("t.json"),
        "{}",
        &std::collections::BTreeMap::new(),
    )
    .unwrap();
    let audit = Arc::new(Audit::new(None).unwrap());
    let devices = DeviceStore::load(&tmp.path().join("devices.json")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(AppState::new(
        config,
        audit.clone(),
        devices,
        None,
        addr,
        None,
    ));
    let gate = PublicGate::new(ConnectionLimits::from_descriptors(4096, 16).unwrap(), audit);
    let drain = Drain::new();
    let accepting = tokio::spawn(run_public(
        listener,
        crate::api::router(state.clone()),
        state,
        gate.clone(),
        drain.handle(),
    ));

    // `netclaw events --follow` (a loopback caller in `local` mode has host authority).
    let mut events = TcpStream::connect(addr).await.unwrap();
    events
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut events_buf = Vec::new();
    read_until(&mut events, &mut events_buf, |b| head_len(b).is_some()).await;
    let head = parse_head(&events_buf).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert!(head.chunked());

    // A hub session.
    let mut hub = TcpStream::connect(addr).await.unwrap();
    hub.write_all(
        b"GET /hub/session HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut hub_buf = Vec::new();
    read_until(&mut hub, &mut hub_buf, |b| head_len(b).is_some()).await;
    let head = parse_head(&hub_buf).unwrap().unwrap();
    assert_eq!(head.status, 101);
    hub_buf.drain(..head.len);

    // A request in flight: its handler waits for the rest of the body.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let body = br#"{"code":"2222-2222","deviceName":"x"}"#;
    slow.write_all(
        format!(
            "POST /api/pair/exchange HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    slow.write_all(&body[..5]).await.unwrap();
    // All three hold a slot (the upgraded session keeps its connection's).
    within(async {
        while gate.open() != 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let draining = tokio::spawn(drain.drain(BOUND));
    // Stop accepting: the accept loop returns at once; new connections are refused.
    within(accepting).await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
    // The event stream ends (a complete chunked body), then its connection closes.
    let at = head_len(&events_buf).unwrap();
    within(async {
        read_until(&mut events, &mut events_buf, |b| {
            parse_chunked(&b[at..]).unwrap().is_some()
        })
        .await;
        events.read_to_end(&mut Vec::new()).await.unwrap();
    })
    .await;
    // The hub session is closed with 1001 (going away).
    assert_eq!(within(read_close(&mut hub, &mut hub_buf)).await, 1001);
    // The request in flight is still waited for, and completes.
    assert!(!draining.is_finished());
    slow.write_all(&body[5..]).await.unwrap();
    let mut answer = Vec::new();
    within(slow.read_to_end(&mut answer)).await.unwrap();
    let head = parse_head(&answer).unwrap().expect("a whole answer");
    assert_eq!(head.status, 404, "no code is pending");
    assert_eq!(head.header("connection"), Some("close"));

    assert_eq!(within(draining).await.unwrap(), Drained::Complete);
    assert_eq!(gate.open(), 0, "every slot was released");
}
