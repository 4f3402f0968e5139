//! The public listener's connection caps and request-body deadline over real sockets: one
//! source holding slow-body requests is capped while other sources and the trusted proxy are
//! served, and the held requests get 408 and are closed once their body deadline passes.
//! Clients bind distinct loopback source addresses (127.0.0.2 is the trusted proxy).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod common;

use std::net::Ipv4Addr;

use common::*;
use netclaw_daemon::limits::PUBLIC_MAX_PER_SOURCE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const OTHER_STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// A pairing exchange that announces a 16 kB body and sends one byte of it.
const SLOW_BODY_HEAD: &[u8] = b"POST /api/pair/exchange HTTP/1.1\r\nHost: 127.0.0.1\r\n\
Content-Type: application/json\r\nContent-Length: 16384\r\n\r\n{";

async fn slow_body_from(
    source: Ipv4Addr,
    daemon: &DaemonProcess,
) -> HttpConn<tokio::net::TcpStream> {
    let mut conn = http_from(source, daemon.public).await;
    conn.write(SLOW_BODY_HEAD).await.unwrap();
    conn
}

#[tokio::test]
async fn one_source_is_capped_while_other_sources_and_the_trusted_proxy_are_served() {
    let install = Install::new(Setup {
        exposure: "local",
        trusted_proxies: vec!["127.0.0.2"],
        ..Setup::default()
    });
    let daemon = start_daemon(&install).await;
    // The test's own descriptor limit is high: the per-source cap is the ceiling.
    let cap = PUBLIC_MAX_PER_SOURCE;

    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(slow_body_from(STRANGER, &daemon).await);
    }
    // Make sure the daemon has accepted all of them (a request on each would race the cap).
    let ready = send_once(daemon.public, &get("/api/health/ready", &[])).await;
    assert_eq!(ready.status, 200);

    // One more from the same source: told 503 at once and closed.
    let mut over = http_from(STRANGER, daemon.public).await;
    let answer = over.read_until_closed().await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), length, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap()["error"],
        "the daemon is at its connection limit; retry later"
    );

    // Another source is served.
    let other = http_from(OTHER_STRANGER, daemon.public)
        .await
        .send(&get("/api/health/ready", &[]))
        .await
        .unwrap();
    assert_eq!(other.status, 200);
    // The trusted proxy carries many clients: it is held to the total cap only.
    let mut via_proxy = Vec::new();
    for _ in 0..cap + 8 {
        via_proxy.push(slow_body_from(PROXY, &daemon).await);
    }
    let mut last = http_from(PROXY, daemon.public).await;
    let resp = last.send(&get("/api/health/ready", &[])).await.unwrap();
    assert_eq!(resp.status, 200);

    // The held requests never finish their body: each gets 408 and is closed.
    for conn in held.iter_mut().chain(via_proxy.iter_mut()).take(8) {
        let resp = conn.read_response().await.unwrap();
        assert_eq!(resp.status, 408);
        assert_eq!(resp.header("connection"), Some("close"));
        conn.read_until_closed().await;
    }
    // Their slots are back: the stranger is served again.
    drop(held);
    drop(via_proxy);
    let again = http_from(STRANGER, daemon.public)
        .await
        .send(&get("/api/health/ready", &[]))
        .await
        .unwrap();
    assert_eq!(again.status, 200);
    assert!(daemon
        .log()
        .contains("public listener refusing connections at its caps"));
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;
    let mut tcp = tcp_from(Ipv4Addr::LOCALHOST, daemon.public).await;
    tcp.write_all(SLOW_BODY_HEAD).await.unwrap();
    // A byte every half second keeps the connection busy but does not move the deadline.
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    let started = tokio::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "still open after {DEADLINE:?}"
        );
        if tcp.write_all(b" ").await.is_err() {
            break;
        }
        match tokio::time::timeout(std::time::Duration::from_millis(500), tcp.read(&mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    // Nothing was counted as a pairing attempt.
    assert!(!audit_events(&install)
        .iter()
        .any(|e| e["kind"] == "pairing-failed" || e["kind"] == "pairing-throttled"));
    let ready = send_once(daemon.public, &get("/api/health/ready", &[])).await;
    assert_eq!(ready.status, 200);
}

#[tokio::test]
async fn a_descriptor_limit_too_low_for_the_operator_reserve_refuses_start_up() {
    let install = Install::new(Setup::default());
    // Start once normally, so that the configuration is written; then again at 256 descriptors
    // (soft and hard, so the daemon cannot raise it).
    drop(start_daemon(&install).await);
    let child = tokio::process::Command::new("prlimit")
        .args(["--nofile=256:256", "--"])
        .arg(env!("CARGO_BIN_EXE_netclaw-daemon"))
        .arg("--config")
        .arg(&install.config_path)
        .env_clear()
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit (util-linux)");
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the daemon started at 256 descriptors instead of refusing")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("LimitNOFILE=") && stderr.contains("raise it to at least"),
        "{stderr}"
    );
}
