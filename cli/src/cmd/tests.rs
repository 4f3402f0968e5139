//! What each command prints, in both formats, pinned: a changed line shows up as a snapshot
//! diff in review.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::*;
use crate::output::Report;

fn from<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn agent_status(days_left: i64) -> netclaw_core::wire::AgentStatus {
    from(serde_json::json!({
        "healthy": days_left > 1,
        "problems": ["the agent certificate expires within 24 hours; run `netclaw pki rotate`"],
        "identity": "spiffe://netclaw.internal/host/0123/operator-agent",
        "serial": "0a1b",
        "notBefore": "2026-01-01T00:00:00Z",
        "notAfter": "2026-01-31T00:00:00Z",
        "daysLeft": days_left,
        "daemonEndpoint": "192.0.2.10:5200",
        "daemonReachable": true,
        "lastReload": "2026-01-01T00:00:00Z",
        "pool": { "open": 1, "maxIdle": 4, "handshakes": 1, "requests": 3 }
    }))
}

fn status(days_left: i64) -> status::StatusReport {
    status::StatusReport {
        endpoint: "unix:/run/netclaw/operator.sock".into(),
        via: "the operator agent at unix:/run/netclaw/operator.sock".into(),
        daemon: from(serde_json::json!({
            "overall": "healthy",
            "build": { "version": "0.1.0", "commitHash": "unknown", "buildTimestamp": "unknown" },
            "process": { "pid": 42, "startedAtUtc": "2026-01-01T00:00:00+00:00", "uptimeSeconds": 90061 },
            "connectors": [],
            "persistence": { "provider": "files" },
            "telemetry": { "enabled": false, "otlpEndpoint": null },
            "mode": "reverse-proxy",
            "listeners": { "public": "192.0.2.10:5199", "operator": "192.0.2.10:5200" },
            "operatorCertificates": {
                "serverNotAfter": "2027-01-01T00:00:00Z",
                "agents": [{ "serial": "0a1b", "notAfter": "2026-01-31T00:00:00Z" }]
            },
            "pairing": {
                "codeExpiresAt": "2026-01-01T00:05:00Z",
                "wrongGuesses": 3,
                "guessBudget": 20,
                "budgetSpent": false,
                "lockedOutSources": 2,
                "lockedOut": [{ "source": "198.51.100.7", "until": "2026-01-01T00:15:00Z" }]
            }
        })),
        agent: Some(agent_status(days_left)),
    }
}

fn render(name: &str, r: &dyn Report, out: &mut String) {
    let mut text = Vec::new();
    r.text(&mut text).unwrap();
    let mut json = Vec::new();
    r.json(&mut json).unwrap();
    out.push_str(&format!(
        "== {name} (text)\n{}== {name} (json)\n{}",
        String::from_utf8(text).unwrap(),
        String::from_utf8(json).unwrap()
    ));
    for w in r.warnings() {
        out.push_str(&format!("warning: {w}\n"));
    }
    if let Err(e) = r.outcome() {
        out.push_str(&format!("exit {}: {e}\n", e.exit_code()));
    }
}

#[test]
fn every_report_renders_as_pinned() {
    let mut out = String::new();
    render("status", &status(20), &mut out);
    render("status, agent certificate expired", &status(-1), &mut out);
    let raw = Bytes::from_static(br#""healthy""#);
    render(
        "health",
        &health::HealthReport {
            via: "http://127.0.0.1:5199 (loopback, local mode)".into(),
            raw,
        },
        &mut out,
    );
    let raw = Bytes::from_static(
        br#"{"principal":"LocalOperator","name":"spiffe://netclaw.internal/host/0123/operator-agent","transport":"operator-mtls","caller":{"uid":1000,"user":"ada","pid":42}}"#,
    );
    render(
        "whoami",
        &whoami::WhoAmIReport {
            whoami: serde_json::from_slice(&raw).unwrap(),
            raw,
            via: "the operator agent at unix:/run/netclaw/operator.sock".into(),
        },
        &mut out,
    );
    let raw = Bytes::from_static(
        br#"[{"name":"phone","createdAt":"2026-01-01T00:00:00+00:00","lastUsedAt":"2026-01-03T10:00:00+00:00"},{"name":"a very long laptop name","createdAt":"2026-01-02T00:00:00+00:00","lastUsedAt":"2026-01-02T00:00:00+00:00"}]"#,
    );
    render(
        "devices list",
        &devices::DeviceList {
            devices: serde_json::from_slice(&raw).unwrap(),
            raw,
        },
        &mut out,
    );
    let raw = Bytes::from_static(
        br#"[{"name":"phone","createdAt":"2026-01-01T00:00:00+00:00","lastUsedAt":"2026-01-03T10:00:00+00:00"},{"name":"tablet","createdAt":"2026-01-02T00:00:00+00:00","lastUsedAt":null}]"#,
    );
    render(
        "devices list, netclaw's daemon",
        &devices::DeviceList {
            devices: serde_json::from_slice(&raw).unwrap(),
            raw,
        },
        &mut out,
    );
    render(
        "devices list, none",
        &devices::DeviceList {
            devices: Vec::new(),
            raw: Bytes::from_static(b"[]"),
        },
        &mut out,
    );
    render(
        "devices revoke",
        &devices::Revoked {
            name: "phone".into(),
        },
        &mut out,
    );
    render(
        "devices import",
        &devices::Imported {
            imported: vec!["aaron-laptop".into(), "phone".into()],
            bootstrap: vec!["host-bootstrap".into()],
        },
        &mut out,
    );
    render(
        "pair",
        &pair::Minted {
            code: from(
                serde_json::json!({ "formattedCode": "ABCD-EFGH", "expiresAt": "2026-01-01T00:05:00Z" }),
            ),
            join: "netclaw pair join https://daemon.example --code ABCD-EFGH --name <device>"
                .into(),
            locked_out_sources: 1,
            lockouts: vec!["1 source address(es) locked out of pairing".into()],
        },
        &mut out,
    );
    render(
        "pair join",
        &pair::Joined {
            device: "phone".into(),
            endpoint: "https://daemon.example".into(),
            stored: pair::Stored::Context {
                name: "daemon.example".into(),
                file: "/home/ada/.config/netclaw/contexts.json".into(),
            },
        },
        &mut out,
    );
    render(
        "pair join --token-file",
        &pair::Joined {
            device: "phone".into(),
            endpoint: "https://daemon.example".into(),
            stored: pair::Stored::TokenFile {
                path: "/home/ada/phone.token".into(),
                ca_file: Some("/home/ada/ca.pem".into()),
            },
        },
        &mut out,
    );
    render(
        "context list",
        &contexts::ContextList(vec![
            contexts::Listed {
                name: "daemon.example".into(),
                endpoint: "https://daemon.example".into(),
                device: "phone".into(),
                ca: true,
                current: true,
            },
            contexts::Listed {
                name: "127.0.0.1:5199".into(),
                endpoint: "http://127.0.0.1:5199".into(),
                device: "laptop".into(),
                ca: false,
                current: false,
            },
        ]),
        &mut out,
    );
    render(
        "pki rotate",
        &pki::Rotated(from(serde_json::json!({
            "certificate": "PEM",
            "bundle": "PEM",
            "serial": "0c0d",
            "previousSerial": "0a1b",
            "notAfter": "2026-02-28T00:00:00Z"
        }))),
        &mut out,
    );
    let mut json = serde_json::Map::new();
    json.insert("newCa".into(), "0e0f".into());
    json.insert("phase".into(), "prepared".into());
    render(
        "pki rotate --ca prepare",
        &crate::ca_rotation::CaRotationReport {
            phase: "prepared",
            notes: vec!["the operator agent did not answer".into()],
            next: "next: `netclaw pki rotate --ca activate`",
            json,
        },
        &mut out,
    );
    insta::assert_snapshot!(out);
}
