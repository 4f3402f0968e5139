use std::collections::BTreeMap;

use super::*;
use crate::exit::ExitCode;

fn config(json: &str) -> Config {
    Config::from_json(
        Path::new("/etc/netclaw/netclaw.json"),
        json,
        &BTreeMap::new(),
    )
    .unwrap()
}

fn local() -> Config {
    config(r#"{"Daemon":{"Port":5199},"Operator":{"Socket":"/run/netclaw/operator.sock"}}"#)
}

fn mode(m: &str) -> Config {
    let host = if m == "reverse-proxy" {
        r#""Host":"192.0.2.10","TrustedProxies":["192.0.2.1"],"#
    } else {
        ""
    };
    config(&format!(
        r#"{{"Daemon":{{{host}"ExposureMode":"{m}","SkipTunnelProcessCheck":true}},"Operator":{{"Socket":"/run/netclaw/operator.sock"}}}}"#
    ))
}

fn answered() -> Probe {
    Probe::Answered {
        status: 200,
        agent: None,
    }
}

#[test]
fn explicit_endpoint_wins_and_the_socket_is_not_probed() {
    let r = plan(Some("http://127.0.0.1:6000"), Some(&local()), |_| {
        panic!("probed the socket")
    })
    .unwrap();
    assert_eq!(r.source, Source::Explicit);
    assert_eq!(r.endpoint.to_string(), "http://127.0.0.1:6000");
}

#[test]
fn agent_socket_is_preferred_in_local_mode() {
    let r = plan(None, Some(&local()), |p| {
        assert_eq!(p, Path::new("/run/netclaw/operator.sock"));
        answered()
    })
    .unwrap();
    assert_eq!(r.source, Source::Agent);
    assert_eq!(r.endpoint.to_string(), "unix:/run/netclaw/operator.sock");
}

#[test]
fn local_mode_falls_back_to_loopback_when_the_socket_is_missing_or_stale() {
    for probe in [Probe::Missing, Probe::Stale, Probe::NoAnswer("x".into())] {
        let r = plan(None, Some(&local()), |_| probe).unwrap();
        assert_eq!(r.source, Source::Loopback);
        assert_eq!(r.endpoint.to_string(), "http://127.0.0.1:5199");
    }
}

#[test]
fn other_modes_never_fall_back_to_loopback() {
    for m in [
        "reverse-proxy",
        "tailscale-serve",
        "tailscale-funnel",
        "cloudflare-tunnel",
    ] {
        let e = plan(None, Some(&mode(m)), |_| Probe::Missing).unwrap_err();
        assert_eq!(e.exit_code(), ExitCode::Unreachable, "{m}");
        for needle in [
            m,
            "/run/netclaw/operator.sock",
            "systemctl start netclaw-operator-agent",
        ] {
            assert!(e.to_string().contains(needle), "{m}: {}", e);
        }
        let r = plan(None, Some(&mode(m)), |_| answered()).unwrap();
        assert_eq!(r.source, Source::Agent);
    }
}

#[test]
fn a_socket_this_user_cannot_open_is_a_refusal_outside_local_mode() {
    let e = plan(None, Some(&mode("tailscale-serve")), |_| {
        Probe::NoPermission
    })
    .unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Refused);
    assert!(
        e.to_string().contains("netclaw-operators"),
        "{}",
        e.to_string()
    );
    // In local mode loopback still works.
    let r = plan(None, Some(&local()), |_| Probe::NoPermission).unwrap();
    assert_eq!(r.source, Source::Loopback);
}

#[tokio::test]
async fn probe_treats_a_stale_socket_as_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("operator.sock");
    assert!(matches!(probe_agent(&path).await, Probe::Missing));
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert!(matches!(probe_agent(&path).await, Probe::Stale));
}

#[tokio::test(start_paused = true)]
async fn probe_gives_up_after_two_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("operator.sock");
    // Listening but never answering.
    let _listener = tokio::net::UnixListener::bind(&path).unwrap();
    let started = tokio::time::Instant::now();
    let probed = probe_agent(&path).await;
    assert!(matches!(probed, Probe::NoAnswer(_)), "{probed:?}");
    assert_eq!(started.elapsed(), PROBE_TIMEOUT);
}

/// Every "no endpoint" message and exit code, by what the socket did and the mode, pinned.
#[test]
fn no_endpoint_messages_are_pinned() {
    let mut out = String::new();
    for m in ["reverse-proxy", "tailscale-funnel"] {
        for probe in [
            Probe::Missing,
            Probe::Stale,
            Probe::NoPermission,
            Probe::NoAnswer("no connection within 2 s".into()),
        ] {
            let name = format!("{m}, socket {}", probe.why());
            let e = plan(None, Some(&mode(m)), |_| probe).unwrap_err();
            out.push_str(&format!("{name}\n  exit {}: {e}\n", e.exit_code()));
        }
    }
    let e = plan(None, None, |_| Probe::Missing).unwrap_err();
    out.push_str(&format!(
        "no configuration\n  exit {}: {e}\n",
        e.exit_code()
    ));
    let e = plan(Some("ftp://x"), None, |_| Probe::Missing).unwrap_err();
    out.push_str(&format!("bad endpoint\n  exit {}: {e}\n", e.exit_code()));
    insta::assert_snapshot!(out);
}

#[tokio::test]
async fn a_connection_to_the_socket_is_what_chooses_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("operator.sock");
    assert!(matches!(connect_agent(&path).await, Err(Probe::Missing)));
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(matches!(connect_agent(&path).await, Err(Probe::Stale)));
    std::fs::remove_file(&path).unwrap();
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let held = connect_agent(&path).await.unwrap();
    // Nothing was sent on it (and it stays open for the command's request): resolving asks the
    // agent nothing.
    let (mut accepted, _) = listener.accept().await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_millis(50),
        tokio::io::AsyncReadExt::read(&mut accepted, &mut buf),
    )
    .await;
    assert!(read.is_err(), "the resolver sent {read:?}");
    drop(held);
}
