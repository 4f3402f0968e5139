use hyper::header::HeaderValue;
use hyper::HeaderMap;
use netclaw_core::wire::AgentStatus;

use super::*;
use crate::address::Endpoint;
use crate::exit::ExitCode;

fn resolved(source: Source, days_left: Option<i64>) -> Resolved {
    Resolved {
        endpoint: match source {
            Source::Agent => Endpoint::Unix("/run/netclaw/operator.sock".into()),
            _ => Endpoint::loopback("127.0.0.1".parse().unwrap(), 5199),
        },
        source,
        agent_status: days_left.map(|d| {
            // From JSON, as the agent sends it (fields added later as Option stay compatible).
            serde_json::from_value::<AgentStatus>(serde_json::json!({
                "healthy": d >= 0,
                "problems": [],
                "identity": "spiffe://netclaw.internal/host/x/operator-agent",
                "serial": "01",
                "notBefore": "2026-01-01T00:00:00Z",
                "notAfter": "2026-01-31T00:00:00Z",
                "daysLeft": d,
                "daemonEndpoint": "192.0.2.10:5200",
                "daemonReachable": d >= 0,
                "lastReload": "2026-01-01T00:00:00Z",
                "pool": { "open": 0, "maxIdle": 4, "handshakes": 0, "requests": 0 }
            }))
            .unwrap()
        }),
    }
}

fn resp(status: u16, body: &str) -> Response {
    Response {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_owned()),
    }
}

fn code(status: u16, r: &Resolved) -> (ExitCode, String) {
    let e = check(resp(status, r#"{"error":"nope"}"#), r).unwrap_err();
    (e.exit_code(), e.to_string())
}

#[test]
fn success_passes_through() {
    assert!(check(resp(204, ""), &resolved(Source::Loopback, None)).is_ok());
}

#[test]
fn redirects_fail_with_exit_1_and_name_the_target() {
    let mut r = resp(302, "");
    r.headers
        .insert(LOCATION, HeaderValue::from_static("http://198.51.100.9/"));
    let e = check(r, &resolved(Source::Explicit, None)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Failure);
    assert!(e.to_string().contains("302"), "{}", e.to_string());
    assert!(e.to_string().contains("198.51.100.9"), "{}", e.to_string());
    assert!(
        e.to_string().contains("never follows redirects"),
        "{}",
        e.to_string()
    );
}

#[test]
fn refusals_map_to_4_and_credential_problems_to_5() {
    let direct = resolved(Source::Loopback, None);
    assert_eq!(code(401, &direct).0, ExitCode::Refused);
    assert_eq!(code(403, &direct).0, ExitCode::Refused);
    let agent = resolved(Source::Agent, Some(10));
    let (c, m) = code(403, &agent);
    assert_eq!(c, ExitCode::Refused);
    assert!(
        m.contains("nope") && m.contains("Operator.AllowedUsers"),
        "{m}"
    );
    let (c, m) = code(401, &agent);
    assert_eq!(c, ExitCode::Credentials);
    assert!(m.contains("netclaw pki rotate"), "{m}");
}

#[test]
fn agent_502_is_unreachable_and_names_the_agents_reason() {
    let (c, m) = code(502, &resolved(Source::Agent, Some(10)));
    assert_eq!(c, ExitCode::Unreachable);
    assert!(m.contains("nope"), "{m}");
}

#[test]
fn an_expired_agent_certificate_is_exit_5_with_the_offline_fix() {
    let r = resolved(Source::Agent, Some(-1));
    for status in [401, 403, 502, 500] {
        let (c, m) = code(status, &r);
        assert_eq!(c, ExitCode::Credentials, "{status}");
        assert!(m.contains("netclaw pki rotate --offline"), "{m}");
    }
    let e = transport_failure(
        TransportError::Timeout {
            endpoint: "unix:/x".into(),
            after: std::time::Duration::from_secs(10),
        },
        &r,
    );
    assert_eq!(e.exit_code(), ExitCode::Credentials);
}

#[test]
fn other_statuses_are_generic_failures() {
    assert_eq!(
        code(404, &resolved(Source::Loopback, None)).0,
        ExitCode::Failure
    );
    assert_eq!(
        code(500, &resolved(Source::Loopback, None)).0,
        ExitCode::Failure
    );
}

#[test]
fn transport_failures_are_exit_3_with_a_hint() {
    let e = transport_failure(
        TransportError::Connect {
            endpoint: "http://127.0.0.1:5199".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        },
        &resolved(Source::Loopback, None),
    );
    assert_eq!(e.exit_code(), ExitCode::Unreachable);
    assert!(
        e.to_string().contains("netclaw-daemon"),
        "{}",
        e.to_string()
    );
}

#[test]
fn error_text_prefers_the_error_body_and_strips_control_characters() {
    assert_eq!(
        error_text(br#"{"error":"wrong pairing code"}"#),
        "wrong pairing code"
    );
    assert_eq!(error_text(b"plain\x1b[31m text"), "plain [31m text");
    assert_eq!(error_text(b""), "no details");
    assert!(error_text(&[b'a'; 1000]).ends_with('…'));
}

#[test]
fn bearer_tokens_only_go_to_explicit_http_endpoints() {
    let bearer = || Some(Bearer::new("t".into()));
    let e = Session::new(resolved(Source::Agent, None), None, bearer()).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage);
    let e = Session::new(resolved(Source::Loopback, None), None, bearer()).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Usage);
    let explicit_unix = Resolved {
        endpoint: Endpoint::Unix("/x.sock".into()),
        source: Source::Explicit,
        agent_status: None,
    };
    assert!(Session::new(explicit_unix, None, bearer()).is_err());
    assert!(Session::new(resolved(Source::Explicit, None), None, bearer()).is_ok());
}

#[test]
fn the_agents_credential_expired_503_is_exit_5() {
    let r = resolved(Source::Agent, None);
    let e = check(
        resp(
            503,
            r#"{"error":"credential-expired: the operator agent certificate expired at 2026-01-31T00:00:00Z; run `netclaw pki rotate --offline` as root to re-issue it","code":"credential-expired"}"#,
        ),
        &r,
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Credentials);
    assert!(
        e.to_string().contains("netclaw pki rotate --offline"),
        "{}",
        e.to_string()
    );
    // From the daemon directly, a 503 is a generic failure.
    assert_eq!(
        code(503, &resolved(Source::Loopback, None)).0,
        ExitCode::Failure
    );
}

#[test]
fn a_certificate_the_daemon_refused_in_the_handshake_is_exit_5_with_the_offline_fix() {
    let r = resolved(Source::Agent, Some(10));
    let body = r#"{"error":"daemon unreachable at 192.0.2.10:5200: client error (SendRequest): connection error: received fatal alert: CertificateRevoked; check that netclaw-daemon is running (systemctl status netclaw-daemon) and `netclaw doctor`","code":"certificate-revoked"}"#;
    let e = check(resp(502, body), &r).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Credentials);
    assert!(e.to_string().contains("revoked"), "{}", e.to_string());
    assert!(
        e.to_string().contains("netclaw pki rotate --offline"),
        "{}",
        e.to_string()
    );
    // A daemon that is down stays exit 3, and its hint is not repeated.
    let down = r#"{"error":"daemon unreachable at 192.0.2.10:5200: connection refused; check that netclaw-daemon is running (systemctl status netclaw-daemon) and `netclaw doctor`","code":"daemon-unreachable"}"#;
    let e = check(resp(502, down), &r).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Unreachable);
    assert_eq!(
        e.to_string().matches("systemctl status").count(),
        1,
        "{}",
        e
    );
    // Only the agent's code counts, never the text: the same message without the code (e.g.
    // a body the daemon itself sent) is not a certificate refusal.
    let uncoded = body.replace(r#","code":"certificate-revoked""#, "");
    assert_eq!(
        check(resp(502, &uncoded), &r).unwrap_err().exit_code(),
        ExitCode::Unreachable
    );
    assert_eq!(
        refused_certificate(Some(ErrorCode::DaemonUnreachable)),
        None
    );
    assert_eq!(refused_certificate(None), None);
    assert_eq!(
        refused_certificate(Some(ErrorCode::CertificateUnknownCa)),
        Some("not issued by the daemon's operator CA")
    );
}

/// Every message and exit code `check` gives, pinned (STYLE.md: error messages are pinned with
/// snapshot tests). A changed message shows up as a snapshot diff in review.
#[test]
fn user_facing_messages_are_pinned() {
    let agent = resolved(Source::Agent, Some(10));
    let loopback = resolved(Source::Loopback, None);
    let explicit = resolved(Source::Explicit, None);
    let context = resolved(Source::Context, None);
    let agent_body = |error: &str, code: &str| format!(r#"{{"error":"{error}","code":"{code}"}}"#);
    let unreachable = "daemon unreachable at 192.0.2.10:5200: connection refused; check that netclaw-daemon is running (systemctl status netclaw-daemon) and `netclaw doctor`";
    let alert = "daemon unreachable at 192.0.2.10:5200: client error (SendRequest): connection error: received fatal alert: CertificateRevoked; check that netclaw-daemon is running (systemctl status netclaw-daemon) and `netclaw doctor`";
    let cases: Vec<(&str, &Resolved, u16, String)> = vec![
        ("agent 503 credential-expired", &agent, 503, agent_body("credential-expired: the operator agent certificate expired at 2026-01-31T00:00:00Z; run `netclaw pki rotate --offline` as root to re-issue it", "credential-expired")),
        ("agent 401", &agent, 401, r#"{"error":"operator certificate no longer valid; run `netclaw pki rotate`"}"#.into()),
        ("agent 403", &agent, 403, r#"{"error":"user bo (uid 1002) is not allowed"}"#.into()),
        ("agent 502 certificate-revoked", &agent, 502, agent_body(alert, "certificate-revoked")),
        ("agent 502 certificate-expired", &agent, 502, agent_body(alert, "certificate-expired")),
        ("agent 502 certificate-unknown-ca", &agent, 502, agent_body(alert, "certificate-unknown-ca")),
        ("agent 502 certificate-refused", &agent, 502, agent_body(alert, "certificate-refused")),
        ("agent 502 daemon-unreachable", &agent, 502, agent_body(unreachable, "daemon-unreachable")),
        ("agent 504 daemon-timeout", &agent, 504, agent_body("the daemon at 192.0.2.10:5200 did not answer in time", "daemon-timeout")),
        ("agent 404 route-not-forwarded", &agent, 404, agent_body("the operator agent does not forward this route", "route-not-forwarded")),
        ("loopback 401", &loopback, 401, r#"{"error":"host authority required"}"#.into()),
        ("loopback 502 plain text", &loopback, 502, "bad gateway".into()),
        ("explicit 500 empty", &explicit, 500, String::new()),
        ("context 401 (a revoked device)", &context, 401, r#"{"error":"unauthorized"}"#.into()),
        ("context 403", &context, 403, r#"{"error":"host authority required"}"#.into()),
        ("explicit 503 control characters", &explicit, 503, "busy\u{1b}[31m now".into()),
    ];
    let mut out = String::new();
    for (name, r, status, body) in cases {
        let e = check(resp(status, &body), r).unwrap_err();
        out.push_str(&format!("{name}\n  exit {}: {}\n", e.exit_code(), e));
    }
    let mut redirect = resp(307, "");
    redirect
        .headers
        .insert(LOCATION, HeaderValue::from_static("http://198.51.100.9/"));
    let e = check(redirect, &explicit).unwrap_err();
    out.push_str(&format!("explicit 307\n  exit {}: {}\n", e.exit_code(), e));
    let e = check(resp(502, "x"), &resolved(Source::Agent, Some(-1))).unwrap_err();
    out.push_str(&format!(
        "agent expired (status probe)\n  exit {}: {}\n",
        e.exit_code(),
        e
    ));
    let e = Session::new(
        resolved(Source::Loopback, None),
        None,
        Some(Bearer::new("t".into())),
    )
    .unwrap_err();
    out.push_str(&format!(
        "bearer to a resolved endpoint\n  exit {}: {}\n",
        e.exit_code(),
        e
    ));
    insta::assert_snapshot!(out);
}

/// Every transport failure message, by how the endpoint was chosen, pinned.
#[test]
fn transport_failure_messages_are_pinned() {
    let mut out = String::new();
    for (name, r) in [
        ("agent", resolved(Source::Agent, None)),
        ("loopback", resolved(Source::Loopback, None)),
        ("explicit", resolved(Source::Explicit, None)),
        ("context", resolved(Source::Context, None)),
    ] {
        let endpoint = r.endpoint.to_string();
        for (kind, e) in [
            (
                "connect",
                TransportError::Connect {
                    endpoint: endpoint.clone(),
                    source: std::io::ErrorKind::ConnectionRefused.into(),
                },
            ),
            (
                "timeout",
                TransportError::Timeout {
                    endpoint: endpoint.clone(),
                    after: std::time::Duration::from_secs(10),
                },
            ),
            (
                "tls",
                TransportError::Tls {
                    endpoint: endpoint.clone(),
                    reason: "invalid peer certificate: UnknownIssuer".into(),
                },
            ),
        ] {
            let e = transport_failure(e, &r);
            out.push_str(&format!("{name} {kind}\n  exit {}: {e}\n", e.exit_code()));
        }
    }
    insta::assert_snapshot!(out);
}
