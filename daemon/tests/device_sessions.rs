//! Paired devices over real sockets: pairing while strangers guess from many addresses (directly
//! and through the trusted proxy), what `/api/health/status` shows a device, and a revoked
//! device's open hub session. Clients bind distinct loopback source addresses (127.0.0.2 is the
//! trusted proxy); in `local` mode 127.0.0.1 is `LocalProcess`, which mints codes and revokes
//! devices as `netclaw pair` and `netclaw devices revoke` do there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const DEVICE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 60);
const OTHER_DEVICE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 61);

fn setup() -> Setup {
    Setup {
        exposure: "local",
        trusted_proxies: vec!["127.0.0.2"],
        ..Setup::default()
    }
}

async fn mint(daemon: &DaemonProcess) -> String {
    let resp = send_once(
        daemon.public,
        &request("POST", "/api/local-control/v1/pairing-code", &[], b""),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    resp.json()["formattedCode"].as_str().unwrap().to_owned()
}

fn wrong(code: &str) -> &'static str {
    if code.starts_with('2') {
        "3333-3333"
    } else {
        "2222-2222"
    }
}

async fn exchange(
    daemon: &DaemonProcess,
    from: Ipv4Addr,
    xff: Option<&str>,
    code: &str,
    name: &str,
) -> Response {
    let headers: Vec<(&str, &str)> = xff.map(|v| ("X-Forwarded-For", v)).into_iter().collect();
    let body = json!({ "code": code, "deviceName": name }).to_string();
    http_from(from, daemon.public)
        .await
        .send(&request(
            "POST",
            "/api/pair/exchange",
            &headers,
            body.as_bytes(),
        ))
        .await
        .unwrap()
}

/// Pairs `name` from `from` and returns its token.
async fn pair(daemon: &DaemonProcess, from: Ipv4Addr, name: &str) -> String {
    let code = mint(daemon).await;
    let resp = exchange(daemon, from, None, &code, name).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    resp.json()["token"].as_str().unwrap().to_owned()
}

async fn status_as_local_process(daemon: &DaemonProcess) -> Value {
    let resp = send_once(daemon.public, &get("/api/health/status", &[])).await;
    assert_eq!(resp.status, 200);
    resp.json()
}

#[tokio::test]
async fn strangers_guessing_from_many_addresses_do_not_keep_a_real_device_from_pairing() {
    let install = Install::new(setup());
    let daemon = start_daemon(&install).await;
    let code = mint(&daemon).await;
    let wrong = wrong(&code);

    // Ten strangers straight to the public listener and ten behind the trusted proxy (each its
    // own forwarded address): every one fails until its own lockout, 100 wrong codes in all.
    let direct: Vec<Ipv4Addr> = (3..13).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let forwarded: Vec<String> = (1..11).map(|i| format!("203.0.113.{i}")).collect();
    let strangers = direct
        .iter()
        .map(|ip| (*ip, None))
        .chain(forwarded.iter().map(|xff| (PROXY, Some(xff.as_str()))));
    for (from, xff) in strangers {
        for attempt in 0..5 {
            let resp = exchange(&daemon, from, xff, wrong, "attacker").await;
            assert_eq!(
                resp.status,
                401,
                "stranger {from} {xff:?}, attempt {attempt}: {}",
                String::from_utf8_lossy(&resp.body)
            );
        }
        let locked = exchange(&daemon, from, xff, &code, "attacker").await;
        assert_eq!(locked.status, 429, "stranger {from} {xff:?} is locked out");
        assert!(locked.header("retry-after").is_some());
    }

    // The operator sees the lockouts; the code is still pending.
    let status = status_as_local_process(&daemon).await;
    let pairing = &status["pairing"];
    assert_eq!(pairing["lockedOutSources"], 20, "{status}");
    assert_eq!(
        pairing["lockedOut"].as_array().unwrap().len(),
        10,
        "{status}"
    );
    assert_eq!(pairing["wrongGuesses"], 100, "{status}");
    assert!(pairing["codeExpiresAt"].is_string(), "{status}");
    wait_for_audit(&install, "pairing-locked-out", &["client 203.0.113.7"]).await;
    wait_for_audit(&install, "pairing-locked-out", &["client 127.0.0.3"]).await;

    // The real device, from an address that never failed, pairs with the pending code, under
    // the name the phone gives itself (a typographic apostrophe), directly and via the proxy.
    let resp = exchange(&daemon, DEVICE, None, &code, "Aaron\u{2019}s iPhone").await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let code = mint(&daemon).await;
    let resp = exchange(
        &daemon,
        PROXY,
        Some("198.51.100.20"),
        &code,
        "\u{5C0F}\u{660E} \u{1F4F1}",
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    wait_for_audit(
        &install,
        "device-paired",
        &["Aaron\u{2019}s iPhone", "127.0.0.60"],
    )
    .await;
    wait_for_audit(&install, "device-paired", &["198.51.100.20"]).await;
}

#[tokio::test]
async fn status_shows_a_device_no_listener_addresses_or_agent_serials() {
    let install = Install::new(setup());
    let daemon = start_daemon(&install).await;
    let token = pair(&daemon, DEVICE, "phone").await;
    let bearer = format!("Bearer {token}");

    let resp = http_from(DEVICE, daemon.public)
        .await
        .send(&get("/api/health/status", &[("Authorization", &bearer)]))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let device = resp.json();
    assert!(device["build"]["version"].is_string(), "{device}");
    for field in ["listeners", "operatorCertificates", "pairing"] {
        assert!(
            device.get(field).is_none(),
            "{field} shown to a device: {device}"
        );
    }
    let serial = install.agent.cert.serial.to_string();
    assert!(!device.to_string().contains(&serial), "{device}");
    assert!(
        !device.to_string().contains(&daemon.operator.to_string()),
        "{device}"
    );

    // The operator still sees both.
    let config = client_config(
        &install.bundle(),
        Some((&install.agent.cert, &install.agent.key)),
        TLS13,
    );
    let tls = tls_connect(daemon.operator, config).await.unwrap();
    let operator = HttpConn::new(tls)
        .send(&get("/api/health/status", &[]))
        .await
        .unwrap()
        .json();
    assert_eq!(
        operator["listeners"]["operator"],
        daemon.operator.to_string()
    );
    assert!(
        operator["operatorCertificates"]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["serial"] == serial.as_str()),
        "{operator}"
    );
    assert_eq!(operator["pairing"]["lockedOutSources"], 0, "{operator}");
}

/// Opens `/hub/session` with a raw WebSocket upgrade; returns the stream after the 101.
async fn hub_session(from: Ipv4Addr, addr: SocketAddr, token: &str) -> TcpStream {
    let mut tcp = tcp_from(from, addr).await;
    let upgrade = format!(
        "GET /hub/session HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within(tcp.read(&mut byte)).await.unwrap();
        assert_eq!(
            n,
            1,
            "closed during the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// One masked client text frame (payload under 126 bytes).
fn text_frame(payload: &str) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let len = u8::try_from(payload.len()).unwrap();
    assert!(len < 126);
    let mut frame = vec![0x81, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(payload.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one unmasked server frame: (opcode, payload).
async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    within(tcp.read_exact(&mut head)).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            within(tcp.read_exact(&mut ext)).await.unwrap();
            usize::from(u16::from_be_bytes(ext))
        }
        127 => panic!("unexpectedly large frame"),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    within(tcp.read_exact(&mut payload)).await.unwrap();
    (head[0] & 0x0f, payload)
}

/// Reads until the daemon closes the connection (bounded); returns what arrived.
async fn until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the session is still open 20 s after the revocation"
    );
    all
}

#[tokio::test]
async fn a_revoked_devices_hub_session_is_closed_and_others_stay_open() {
    let install = Install::new(setup());
    let daemon = start_daemon(&install).await;
    let phone = pair(&daemon, DEVICE, "phone").await;
    let tablet = pair(&daemon, OTHER_DEVICE, "tablet").await;

    let mut phone_ws = hub_session(DEVICE, daemon.public, &phone).await;
    let mut tablet_ws = hub_session(OTHER_DEVICE, daemon.public, &tablet).await;
    // Both sessions answer.
    for ws in [&mut phone_ws, &mut tablet_ws] {
        ws.write_all(&text_frame(r#"{"type":"Subscribe"}"#))
            .await
            .unwrap();
        let (opcode, payload) = read_frame(ws).await;
        assert_eq!(opcode, 1);
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["type"], "Error", "{v}");
    }
    // The event stream is not a device's to open at all.
    let events = http_from(DEVICE, daemon.public)
        .await
        .send(&get(
            "/api/events",
            &[("Authorization", &format!("Bearer {phone}"))],
        ))
        .await
        .unwrap();
    assert_eq!(events.status, 403);

    // `netclaw devices revoke phone` (LocalProcess over loopback in local mode).
    let revoked = send_once(
        daemon.public,
        &request("DELETE", "/api/pair/devices/phone", &[], b""),
    )
    .await;
    assert_eq!(revoked.status, 204);

    // The phone's session ends with a close frame (policy violation) …
    let rest = until_closed(&mut phone_ws).await;
    assert_eq!(
        rest.first(),
        Some(&0x88),
        "expected a close frame: {rest:?}"
    );
    assert_eq!(rest.get(2..4), Some(&1008u16.to_be_bytes()[..]), "{rest:?}");
    // … while the tablet's carries on.
    tablet_ws
        .write_all(&text_frame(r#"{"type":"Subscribe"}"#))
        .await
        .unwrap();
    let (opcode, _) = read_frame(&mut tablet_ws).await;
    assert_eq!(opcode, 1);
    // And the phone's token is refused from now on.
    let refused = http_from(DEVICE, daemon.public)
        .await
        .send(&get(
            "/api/whoami",
            &[("Authorization", &format!("Bearer {phone}"))],
        ))
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn devices_pair_under_the_names_phones_give_themselves() {
    let install = Install::new(setup());
    let daemon = start_daemon(&install).await;
    let names = [
        "Aaron\u{2019}s iPhone",
        "\u{1F4F1} Pixel \u{1F469}\u{200D}\u{1F4BB}",
        "\u{5C0F}\u{660E}\u{7684} iPad",
    ];
    for (i, name) in names.iter().enumerate() {
        let code = mint(&daemon).await;
        let from = Ipv4Addr::new(127, 0, 1, u8::try_from(i).unwrap() + 1);
        let resp = exchange(&daemon, from, None, &code, name).await;
        assert_eq!(
            resp.status,
            200,
            "{name:?}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let listed = send_once(daemon.public, &get("/api/pair/devices", &[])).await;
    let listed: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    for name in names {
        assert!(listed.iter().any(|n| n == name), "{name:?} in {listed:?}");
    }

    // Refused with a message that says what is wrong, and the code survives for a good name.
    let code = mint(&daemon).await;
    let long = "x".repeat(65);
    for (i, (name, message)) in [
        ("  ", "deviceName must not be blank"),
        (
            "bad\u{7}name",
            "deviceName must not contain control characters",
        ),
        (
            "two\nlines",
            "deviceName must not contain control characters",
        ),
        (long.as_str(), "deviceName must be at most 64 characters"),
    ]
    .into_iter()
    .enumerate()
    {
        let from = Ipv4Addr::new(127, 0, 2, u8::try_from(i).unwrap() + 1);
        let resp = exchange(&daemon, from, None, &code, name).await;
        assert_eq!(resp.status, 400, "{name:?}");
        assert_eq!(resp.json()["error"], message, "{name:?}");
    }
    let resp = exchange(&daemon, DEVICE, None, &code, "Ana\u{2019}s tablet").await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}
