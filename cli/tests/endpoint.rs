//! Endpoint resolution, redirects, the agent's error contract (with a fake agent on a Unix
//! socket) and `pair join`'s refusals — no daemon needed.

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use std::time::{Duration, Instant};

use netclaw_tests::fake::{self, answer};
use support::{agent_status, code, ok, stderr, stdout, Install};

const START_AGENT: &str = "systemctl start netclaw-operator-agent";

#[test]
fn reverse_proxy_mode_without_agent_is_exit_3_naming_mode_socket_and_fix() {
    let install = Install::reverse_proxy();
    let socket = install.socket();
    assert!(!socket.exists());
    for args in [
        &["status"][..],
        &["pair"],
        &["health"],
        &["devices", "list"],
        &["events"],
        &["pki", "rotate"],
    ] {
        let out = install.run(args);
        code(&out, 3);
        let err = stderr(&out);
        assert!(err.contains("reverse-proxy"), "{args:?}: {err}");
        assert!(
            err.contains(&socket.display().to_string()),
            "{args:?}: {err}"
        );
        assert!(err.contains(START_AGENT), "{args:?}: {err}");
    }
}

#[test]
fn a_stale_socket_file_is_treated_as_absent() {
    let install = Install::reverse_proxy();
    drop(std::os::unix::net::UnixListener::bind(install.socket()).unwrap());
    assert!(install.socket().exists());
    let out = install.run(&["status"]);
    code(&out, 3);
    assert!(stderr(&out).contains("stale"), "{}", stderr(&out));
    assert!(stderr(&out).contains(START_AGENT), "{}", stderr(&out));

    // In local mode a stale socket falls through to loopback (here: a fake daemon).
    let (port, seen) = fake::tcp(|_| answer(200, r#"{"status":"ready"}"#));
    let (_, op) = support::free_ports();
    let local = Install::with(&[
        "--exposure",
        "local",
        "--port",
        &port.to_string(),
        "--operator-port",
        &op.to_string(),
    ]);
    drop(std::os::unix::net::UnixListener::bind(local.socket()).unwrap());
    let out = local.run(&["health"]);
    ok(&out);
    assert!(stdout(&out).contains("loopback"), "{}", stdout(&out));
    assert_eq!(seen.lock().unwrap()[0].path, "/api/health/ready");
}

#[test]
fn a_redirect_is_an_error_and_is_not_followed() {
    let (port, seen) = fake::tcp(|_| {
        (
            302,
            vec![(
                "Location".into(),
                "http://198.51.100.9/api/health/ready".into(),
            )],
            String::new(),
        )
    });
    let out = support::netclaw(&["--endpoint", &format!("http://127.0.0.1:{port}"), "health"]);
    code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("302"), "{err}");
    assert!(err.contains("198.51.100.9"), "{err}");
    assert!(err.contains("never follows redirects"), "{err}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(seen.lock().unwrap().len(), 1, "a second request was made");
}

#[test]
fn invalid_endpoints_are_exit_64_naming_the_accepted_forms() {
    let out = support::cmd()
        .env("NETCLAW_ENDPOINT", "ftp://host")
        .arg("health")
        .output()
        .unwrap();
    code(&out, 64);
    let err = stderr(&out);
    assert!(
        err.contains("http://HOST[:PORT]") && err.contains("unix:/PATH"),
        "{err}"
    );
    let out = support::netclaw(&["--endpoint", "unix:relative.sock", "health"]);
    code(&out, 64);
}

#[test]
fn explicit_endpoint_wins_over_the_agent_socket() {
    let install = Install::reverse_proxy();
    let agent = fake::unix(&install.socket(), |_| answer(200, &agent_status(20)));
    let (port, direct) = fake::tcp(|_| answer(200, r#"{"status":"ready"}"#));
    let out = install.run(&["--endpoint", &format!("http://127.0.0.1:{port}"), "health"]);
    ok(&out);
    assert_eq!(direct.lock().unwrap().len(), 1);
    assert!(
        agent.lock().unwrap().is_empty(),
        "the agent socket was contacted"
    );

    // NETCLAW_ENDPOINT too, and the flag wins over it.
    let out = install
        .cmd(&["health"])
        .env("NETCLAW_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(direct.lock().unwrap().len(), 2);
    let out = install
        .cmd(&["--endpoint", &format!("http://127.0.0.1:{port}"), "health"])
        .env("NETCLAW_ENDPOINT", "ftp://ignored")
        .output()
        .unwrap();
    ok(&out);
    assert!(agent.lock().unwrap().is_empty());
}

#[test]
fn commands_go_through_the_agent_without_credentials() {
    let install = Install::reverse_proxy();
    let seen = fake::unix(&install.socket(), |req| match req.path.as_str() {
        "/agent/v1/status" => answer(200, &agent_status(20)),
        "/api/whoami" => answer(
            200,
            r#"{"principal":"LocalOperator","name":"spiffe://netclaw.internal/host/0123456789abcdef0123456789abcdef/operator-agent","transport":"operator-mtls","caller":{"uid":0,"user":"root","pid":1}}"#,
        ),
        "/api/pair/devices" => answer(
            200,
            r#"[{"name":"phone","createdAt":"2026-01-01T00:00:00+00:00","lastUsedAt":"2026-01-01T00:00:00+00:00"}]"#,
        ),
        "/api/health/status" => answer(
            200,
            r#"{"overall":"healthy","build":{"version":"0.1.0","commitHash":"unknown","buildTimestamp":"unknown"},"process":{"pid":42,"startedAtUtc":"2026-01-01T00:00:00+00:00","uptimeSeconds":61},"connectors":[],"persistence":{"provider":"files"},"telemetry":{"enabled":false,"otlpEndpoint":null},"mode":"reverse-proxy","listeners":{"public":"192.0.2.10:5199","operator":"192.0.2.10:5200"},"operatorCertificates":null}"#,
        ),
        "/api/local-control/v1/pairing-code" => answer(
            200,
            r#"{"formattedCode":"ABCD-EFGH","expiresAt":"2026-01-01T00:05:00Z"}"#,
        ),
        _ => answer(404, r#"{"error":"not found"}"#),
    });

    let out = install.run(&["devices", "list"]);
    ok(&out);
    assert!(stdout(&out).contains("phone"), "{}", stdout(&out));

    let out = install.run(&["whoami"]);
    ok(&out);
    assert!(
        stdout(&out).contains("LocalOperator via operator-mtls"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("uid 0 (root)"), "{}", stdout(&out));

    let out = install.run(&["status"]);
    ok(&out);
    let text = stdout(&out);
    assert!(text.contains("mode reverse-proxy"), "{text}");
    assert!(text.contains("the operator agent at unix:"), "{text}");
    assert!(text.contains("20 days left"), "{text}");

    let out = install.run(&["pair", "--public-url", "https://daemon.example"]);
    ok(&out);
    assert!(
        stdout(&out)
            .contains("netclaw pair join https://daemon.example --code ABCD-EFGH --name <device>"),
        "{}",
        stdout(&out)
    );
    let out = install.run(&["pair"]);
    assert!(
        stdout(&out).contains("pair join <public-url>"),
        "{}",
        stdout(&out)
    );

    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|r| r.path == "/api/pair/devices"));
    for r in seen.iter() {
        assert!(r.header("authorization").is_none(), "{r:?}");
    }
    let mint = seen
        .iter()
        .find(|r| r.path == "/api/local-control/v1/pairing-code")
        .unwrap();
    assert_eq!(mint.method, "POST");
}

#[test]
fn agent_refusal_is_exit_4() {
    let install = Install::reverse_proxy();
    let _seen = fake::unix(&install.socket(), |_| {
        answer(
            403,
            r#"{"error":"uid 1234 is not allowed to use the operator agent"}"#,
        )
    });
    let out = install.run(&["status"]);
    code(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("uid 1234 is not allowed"), "{err}");
    assert!(err.contains("Operator.AllowedGroups"), "{err}");
}

#[test]
fn daemon_unreachable_behind_the_agent_is_exit_3_naming_the_listener() {
    let install = Install::reverse_proxy();
    let _seen = fake::unix(&install.socket(), |req| {
        if req.path == "/agent/v1/status" {
            answer(200, &agent_status(20))
        } else {
            answer(
                502,
                r#"{"error":"daemon unreachable: connect to 192.0.2.10:5200: connection refused"}"#,
            )
        }
    });
    let out = install.run(&["status"]);
    code(&out, 3);
    assert!(stderr(&out).contains("192.0.2.10:5200"), "{}", stderr(&out));
}

#[test]
fn expired_agent_certificate_is_exit_5_naming_rotate_offline() {
    let install = Install::reverse_proxy();
    let _seen = fake::unix(&install.socket(), |req| {
        if req.path == "/agent/v1/status" {
            answer(200, &agent_status(-2))
        } else {
            answer(502, r#"{"error":"daemon unreachable: handshake refused"}"#)
        }
    });
    let out = install.run(&["status"]);
    code(&out, 5);
    assert!(
        stderr(&out).contains("netclaw pki rotate --offline"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pki_rotate_reports_when_the_agent_cannot_rotate_yet() {
    let install = Install::reverse_proxy();
    let seen = fake::unix(&install.socket(), |req| match req.path.as_str() {
        "/agent/v1/status" => answer(200, &agent_status(20)),
        _ => answer(404, r#"{"error":"not found"}"#),
    });
    let out = install.run(&["pki", "rotate"]);
    code(&out, 1);
    assert!(stderr(&out).contains("not available"), "{}", stderr(&out));
    let seen = seen.lock().unwrap();
    let rotate = seen.iter().find(|r| r.path == "/agent/v1/rotate").unwrap();
    assert_eq!(rotate.method, "POST");
}

#[test]
fn pair_join_refuses_plain_http_to_a_non_loopback_host_before_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("t.token");
    let started = Instant::now();
    let out = support::netclaw(&[
        "pair",
        "join",
        "http://daemon.example.invalid:5199",
        "--code",
        "ABCD-EFGH",
        "--name",
        "laptop",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    code(&out, 2);
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!token.exists());

    // Plain http:// to loopback is allowed (here nothing listens: exit 3 after trying).
    let (port, _) = support::free_ports();
    let out = support::netclaw(&[
        "pair",
        "join",
        &format!("http://127.0.0.1:{port}"),
        "--code",
        "ABCD-EFGH",
        "--name",
        "laptop",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    code(&out, 3);
    assert!(!token.exists());
}

#[test]
fn usage_errors_are_exit_2() {
    code(&support::netclaw(&["devices", "frobnicate"]), 2);
    code(&support::netclaw(&["events", "--idle", "0"]), 2);
}

#[test]
fn help_documents_the_exit_codes() {
    for args in [
        &["--help"][..],
        &["status", "--help"],
        &["pair", "join", "--help"],
    ] {
        let out = support::netclaw(args);
        ok(&out);
        let text = stdout(&out);
        assert!(text.contains("Exit codes:"), "{args:?}: {text}");
        assert!(text.contains("3   agent or daemon unreachable"), "{text}");
    }
}

#[test]
fn a_request_through_the_agent_is_one_connection_and_no_status_probe() {
    let install = Install::reverse_proxy();
    let (seen, connections) = fake::unix_counted(&install.socket(), |_| {
        answer(
            200,
            r#"{"principal":"LocalOperator","transport":"operator-mtls"}"#,
        )
    });
    let out = install.run(&["whoami"]);
    ok(&out);
    assert!(stdout(&out).contains("LocalOperator"), "{}", stdout(&out));
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, ["/api/whoami"]);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let install = Install::reverse_proxy();
    let _seen = fake::unix(&install.socket(), |req| match req.path.as_str() {
        "/agent/v1/status" => answer(200, &agent_status(20)),
        _ => answer(
            200,
            r#"{"overall":"healthy","build":{"version":"0.1.0","commitHash":"unknown","buildTimestamp":"unknown"},"process":{"pid":42,"startedAtUtc":"2026-01-01T00:00:00+00:00","uptimeSeconds":61},"connectors":[],"persistence":{"provider":"files"},"telemetry":{"enabled":false,"otlpEndpoint":null},"mode":"reverse-proxy"}"#,
        ),
    });
    for args in [&["status"][..], &["status", "--json"]] {
        // `netclaw status | head -0`: the reader is gone before anything is written.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = install.cmd(args).stdout(writer).output().unwrap();
        code(&out, 0);
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}
