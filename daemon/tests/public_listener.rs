//! The public listener over real sockets: forwarded headers from untrusted and trusted peers,
//! operator and client-certificate headers, and request size limits. Clients bind distinct
//! loopback source addresses (127.0.0.2 is the trusted proxy, 127.0.0.3 and 127.0.0.4 are not).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::*;
use netclaw_daemon::api::MAX_BODY;
use netclaw_daemon::listener::MAX_HEADER_BYTES;
use serde_json::{json, Value};

const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const OTHER_STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

fn with_proxy(exposure: &'static str) -> Setup {
    Setup {
        exposure,
        trusted_proxies: vec!["127.0.0.2"],
        ..Setup::default()
    }
}

async fn whoami_from(source: Ipv4Addr, addr: SocketAddr, headers: &[(&str, &str)]) -> Value {
    let resp = http_from(source, addr)
        .await
        .send(&get("/api/whoami", headers))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    resp.json()
}

/// One pairing exchange with a well-formed body; no code is pending, so an admitted attempt is
/// a 404 and a throttled one a 429.
async fn exchange_from(source: Ipv4Addr, addr: SocketAddr, xff: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = xff.map(|v| ("X-Forwarded-For", v)).into_iter().collect();
    let body = json!({ "code": "ABCD-EFGH", "deviceName": "phone" }).to_string();
    let resp = http_from(source, addr)
        .await
        .send(&request(
            "POST",
            "/api/pair/exchange",
            &headers,
            body.as_bytes(),
        ))
        .await
        .unwrap();
    if resp.status == 429 {
        assert!(resp.header("retry-after").is_some());
    }
    resp.status
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let install = Install::new(with_proxy("local"));
    let daemon = start_daemon(&install).await;

    // In local mode a loopback peer is LocalProcess; a forged X-Forwarded-For neither adds
    // nor removes anything.
    let plain = whoami_from(STRANGER, daemon.public, &[]).await;
    assert_eq!(plain["principal"], "LocalProcess");
    for xff in ["127.0.0.1", "203.0.113.9", "127.0.0.2"] {
        let spoofed = whoami_from(STRANGER, daemon.public, &[("X-Forwarded-For", xff)]).await;
        assert_eq!(spoofed, plain, "X-Forwarded-For: {xff}");
    }

    // The limiter keys on the direct peer: five attempts with five different forged addresses
    // use up the stranger's budget.
    for i in 1..=5 {
        let xff = format!("198.51.100.{i}");
        assert_eq!(
            exchange_from(STRANGER, daemon.public, Some(&xff)).await,
            404
        );
    }
    assert_eq!(
        exchange_from(STRANGER, daemon.public, Some("198.51.100.99")).await,
        429
    );
    assert_eq!(exchange_from(STRANGER, daemon.public, None).await, 429);
    // Another peer has its own budget.
    assert_eq!(
        exchange_from(OTHER_STRANGER, daemon.public, None).await,
        404
    );
    wait_for_audit(&install, "pairing-throttled", &["client 127.0.0.3"]).await;
}

#[tokio::test]
async fn trusted_proxy_clients_are_anonymous_and_limited_by_forwarded_address() {
    let install = Install::new(with_proxy("local"));
    let daemon = start_daemon(&install).await;

    // Forwarded by the trusted proxy: remote traffic, so Anonymous even over loopback in
    // local mode, and without host authority.
    let via_proxy = whoami_from(PROXY, daemon.public, &[("X-Forwarded-For", "203.0.113.7")]).await;
    assert_eq!(
        via_proxy,
        json!({ "principal": "Anonymous", "name": null, "transport": "none", "caller": null })
    );
    let mint = http_from(PROXY, daemon.public)
        .await
        .send(&request(
            "POST",
            "/api/local-control/v1/pairing-code",
            &[("X-Forwarded-For", "127.0.0.1")],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(mint.status, 401);

    // The limiter keys on the forwarded client: A's budget runs out, B's does not.
    let a = "203.0.113.7";
    let b = "203.0.113.8";
    for _ in 0..5 {
        assert_eq!(exchange_from(PROXY, daemon.public, Some(a)).await, 404);
    }
    assert_eq!(exchange_from(PROXY, daemon.public, Some(a)).await, 429);
    assert_eq!(exchange_from(PROXY, daemon.public, Some(b)).await, 404);
    // One hop: only the entry the proxy appended counts, not what the client put before it.
    assert_eq!(
        exchange_from(PROXY, daemon.public, Some(&format!("{a}, {b}"))).await,
        404
    );
    assert_eq!(
        exchange_from(PROXY, daemon.public, Some(&format!("{b}, {a}"))).await,
        429
    );
    wait_for_audit(&install, "pairing-throttled", &["client 203.0.113.7"]).await;
    assert!(
        !audit_events(&install).iter().any(|e| {
            let d = e["detail"].as_str().unwrap_or_default();
            d.starts_with("client 203.0.113.8:") || d.starts_with("client 127.0.0.2:")
        }),
        "{:#?}",
        audit_events(&install)
    );
}

#[tokio::test]
async fn loopback_earns_nothing_in_a_tunnel_mode() {
    let install = Install::new(Setup {
        exposure: "tailscale-serve",
        ..Setup::default()
    });
    let daemon = start_daemon(&install).await;

    let anonymous =
        json!({ "principal": "Anonymous", "name": null, "transport": "none", "caller": null });
    assert_eq!(
        whoami_from(Ipv4Addr::LOCALHOST, daemon.public, &[]).await,
        anonymous
    );
    assert_eq!(
        whoami_from(STRANGER, daemon.public, &[("X-Forwarded-For", "127.0.0.1")]).await,
        anonymous
    );
    let mint = send_once(
        daemon.public,
        &request("POST", "/api/local-control/v1/pairing-code", &[], b""),
    )
    .await;
    assert_eq!(mint.status, 401);
    let ready = send_once(daemon.public, &get("/api/health/ready", &[])).await;
    assert_eq!(ready.status, 200);
}

/// The adversary: a stranger on the internet behind a tunnel (`tailscale funnel`, `cloudflared`),
/// which forwards every client over loopback, with no `TrustedProxies` configured (the default).
/// Keyed on the loopback peer, five wrong codes from the stranger locked pairing for everybody;
/// the tunnel's forwarded address keys the limiter instead, and grants nothing.
#[tokio::test]
async fn a_tunnel_without_trusted_proxies_limits_each_forwarded_client_and_grants_nothing() {
    let install = Install::new(Setup {
        exposure: "tailscale-funnel",
        ..Setup::default()
    });
    let daemon = start_daemon(&install).await;
    let tunnel = Ipv4Addr::LOCALHOST;

    // Through the tunnel, with or without a forwarded address (loopback ones included): Anonymous,
    // no host authority.
    let anonymous =
        json!({ "principal": "Anonymous", "name": null, "transport": "none", "caller": null });
    for xff in [None, Some("203.0.113.7"), Some("127.0.0.1"), Some("::1")] {
        let headers: Vec<_> = xff.map(|v| ("X-Forwarded-For", v)).into_iter().collect();
        assert_eq!(
            whoami_from(tunnel, daemon.public, &headers).await,
            anonymous,
            "{xff:?}"
        );
    }
    let mint = http_from(tunnel, daemon.public)
        .await
        .send(&request(
            "POST",
            "/api/local-control/v1/pairing-code",
            &[("X-Forwarded-For", "127.0.0.1")],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(mint.status, 401);

    // The stranger uses up its budget; another client behind the same tunnel still gets in.
    let stranger = "203.0.113.7";
    let device = "203.0.113.8";
    for _ in 0..5 {
        assert_eq!(
            exchange_from(tunnel, daemon.public, Some(stranger)).await,
            404
        );
    }
    assert_eq!(
        exchange_from(tunnel, daemon.public, Some(stranger)).await,
        429
    );
    assert_eq!(
        exchange_from(tunnel, daemon.public, Some(device)).await,
        404
    );
    // One hop: what the stranger wrote before the tunnel's entry does not pick its bucket.
    assert_eq!(
        exchange_from(
            tunnel,
            daemon.public,
            Some(&format!("{device}, {stranger}"))
        )
        .await,
        429
    );
    // A tunnel that sends no X-Forwarded-For is keyed on itself, as before; that bucket is its own.
    for _ in 0..5 {
        assert_eq!(exchange_from(tunnel, daemon.public, None).await, 404);
    }
    assert_eq!(exchange_from(tunnel, daemon.public, None).await, 429);
    assert_eq!(
        exchange_from(tunnel, daemon.public, Some(device)).await,
        404
    );
    wait_for_audit(&install, "pairing-throttled", &["client 203.0.113.7"]).await;
    assert!(
        !audit_events(&install).iter().any(|e| {
            let d = e["detail"].as_str().unwrap_or_default();
            d.starts_with("client 203.0.113.8:")
        }),
        "{:#?}",
        audit_events(&install)
    );
}

/// Minimal percent-encoding, as Envoy puts a PEM into `X-Forwarded-Client-Cert`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn operator_and_client_certificate_headers_on_the_public_listener_change_nothing() {
    for (exposure, expected) in [("local", "LocalProcess"), ("tailscale-serve", "Anonymous")] {
        let install = Install::new(Setup {
            exposure,
            ..Setup::default()
        });
        let daemon = start_daemon(&install).await;
        // The real agent certificate of this install, presented the ways proxies forward one.
        let pem = install.agent.cert.pem.clone();
        let xfcc = format!(
            "By=spiffe://netclaw.internal/daemon;Cert=\"{}\";URI={}",
            percent_encode(&pem),
            install.agent_id()
        );
        let one_line: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let forged: &[(&str, &str)] = &[
            ("Netclaw-Operator-Caller-Uid", "0"),
            ("Netclaw-Operator-Caller-User", "root"),
            ("Netclaw-Operator-Caller-Pid", "1"),
            ("X-Forwarded-Client-Cert", &xfcc),
            ("X-Client-Cert", &one_line),
            ("X-SSL-Client-Verify", "SUCCESS"),
        ];

        let plain = whoami_from(Ipv4Addr::LOCALHOST, daemon.public, &[]).await;
        let with_headers = whoami_from(Ipv4Addr::LOCALHOST, daemon.public, forged).await;
        assert_eq!(with_headers, plain, "{exposure}");
        assert_eq!(with_headers["principal"], expected, "{exposure}");
        assert_eq!(with_headers["caller"], Value::Null, "{exposure}");

        if expected == "Anonymous" {
            let status = send_once(daemon.public, &get("/api/health/status", forged)).await;
            assert_eq!(status.status, 401, "{exposure}");
            let mint = send_once(
                daemon.public,
                &request("POST", "/api/local-control/v1/pairing-code", forged, b""),
            )
            .await;
            assert_eq!(mint.status, 401, "{exposure}");
        }
    }
}

#[tokio::test]
async fn oversized_headers_get_431_and_the_daemon_keeps_serving() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    let big = "a".repeat(MAX_HEADER_BYTES + 4096);
    let mut conn = http_from(Ipv4Addr::LOCALHOST, daemon.public).await;
    let resp = conn
        .send(&get("/api/health/ready", &[("X-Padding", &big)]))
        .await
        .unwrap();
    assert_eq!(resp.status, 431);
    conn.read_until_closed().await;

    let ready = send_once(daemon.public, &get("/api/health/ready", &[])).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!("healthy"));
}

#[tokio::test]
async fn oversized_body_gets_413_and_the_daemon_keeps_serving() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    let body = format!(
        "{{\"code\":\"ABCD-EFGH\",\"deviceName\":\"{}\"}}",
        "x".repeat(MAX_BODY + 1024)
    );
    let resp = http_from(Ipv4Addr::LOCALHOST, daemon.public)
        .await
        .send(&request("POST", "/api/pair/exchange", &[], body.as_bytes()))
        .await
        .unwrap();
    assert_eq!(resp.status, 413);

    let ready = send_once(daemon.public, &get("/api/health/ready", &[])).await;
    assert_eq!(ready.status, 200);
    // The oversized request was not counted as a pairing attempt.
    assert!(!audit_events(&install)
        .iter()
        .any(|e| e["kind"] == "pairing-throttled" || e["kind"] == "pairing-failed"));
}
