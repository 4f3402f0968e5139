//! The operator path end to end, with real processes: the daemon in `reverse-proxy` mode bound to
//! a non-loopback address inside a network namespace the test creates, the operator agent, and
//! the CLI on the same simulated host.
//!
//! Skipped (with the reason printed) where namespaces cannot be created, unless
//! `NETCLAW_REQUIRE_NAMESPACES` is set.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use netclaw_tests::ns::namespace_or_skip;
use netclaw_tests::{wait_for, Deployment, Proc};

fn deployment(test: &str) -> Option<Deployment> {
    let ns = namespace_or_skip(test)?;
    let mut dep = Deployment::start(ns, &[]).expect("deployment starts");
    dep.start_agent().expect("agent starts");
    Some(dep)
}

#[test]
fn pair_status_and_devices_through_the_agent() {
    let Some(dep) = deployment("pair_status_and_devices_through_the_agent") else {
        return;
    };

    // The CLI reaches the daemon as LocalOperator, attributed to the calling uid.
    let who = dep.json(&["whoami"]).unwrap();
    assert_eq!(who["principal"], "LocalOperator", "{who}");
    assert_eq!(who["transport"], "operator-mtls", "{who}");
    assert_eq!(who["caller"]["uid"], 0, "{who}");

    // Loopback on the same host earns nothing in reverse-proxy mode.
    let (_, body) = netclaw_tests::probe(
        &dep.ns,
        &dep.bins,
        &[
            "GET",
            &format!("http://{}:5199/api/whoami", Deployment::DAEMON_IP),
        ],
    )
    .unwrap();
    assert!(body.contains(r#""principal":"Anonymous""#), "{body}");

    let status = dep.json(&["status"]).unwrap();
    assert_eq!(status["daemon"]["mode"], "reverse-proxy", "{status}");

    let minted = dep.json(&["pair"]).unwrap();
    let code = minted["formattedCode"].as_str().unwrap().to_owned();
    let (http, body) = dep.exchange(&code, "phone").unwrap();
    assert_eq!(http, 200, "{body}");

    let devices = dep.json(&["devices", "list"]).unwrap();
    assert!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "phone"),
        "{devices}"
    );
    let (code, out, err) = dep.run(&["devices", "revoke", "phone"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let devices = dep.json(&["devices", "list"]).unwrap();
    assert!(devices.as_array().unwrap().is_empty(), "{devices}");

    // Human-readable pair output says what to run on the remote device.
    let (code, out, err) = dep.run(&["pair"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("netclaw pair join"), "{out}");
}

#[test]
fn without_the_agent_the_cli_names_the_fix() {
    let Some(mut dep) = deployment("without_the_agent_the_cli_names_the_fix") else {
        return;
    };
    dep.stop_agent();
    let socket = dep.install.socket().unwrap();
    let (code, out, err) = dep.run(&["status"]).unwrap();
    assert_eq!(code, 3, "exit code 3 (unreachable): {out}{err}");
    assert!(err.contains("reverse-proxy"), "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(
        err.contains("systemctl start netclaw-operator-agent"),
        "{err}"
    );
}

#[test]
fn a_caller_outside_the_allowlist_is_refused() {
    let Some(dep) = deployment("a_caller_outside_the_allowlist_is_refused") else {
        return;
    };
    if !dep.ns.real_root() {
        eprintln!("SKIPPED part of a_caller_outside_the_allowlist_is_refused: needs real root to run as another uid");
        return;
    }
    // Let uid 65534 (gid 0) reach the socket through the file system, so that the refusal
    // comes from the agent's peer-credential check and not from file permissions.
    let root = dep.install.root.path();
    for dir in [root.to_path_buf(), root.join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = dep.install.socket().unwrap();
    let endpoint = format!("unix:{}", socket.display());
    let mut cmd = dep.ns.command("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "0", "--clear-groups", "--"])
        .arg(&dep.bins.netclaw)
        .args(["--endpoint", &endpoint, "whoami"]);
    let (code, out, err) = netclaw_tests::text(&cmd.output().unwrap());
    assert_eq!(code, 4, "exit code 4 (refused): {out}{err}");
    assert!(err.contains("Operator.AllowedUsers"), "{err}");

    // The same call as root is admitted.
    let mut cmd = dep.ns.command(&dep.bins.netclaw);
    cmd.args(["--endpoint", &endpoint, "whoami"]);
    let (code, out, err) = netclaw_tests::text(&cmd.output().unwrap());
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn websocket_and_server_sent_events_pass_through_the_agent() {
    let Some(dep) = deployment("websocket_and_server_sent_events_pass_through_the_agent") else {
        return;
    };
    // `netclaw events --follow` through the agent.
    let log = dep.install.log("events");
    let follow = Proc::spawn(
        "netclaw events --follow",
        {
            let mut c: Command = dep.netclaw(&["events", "--follow", "--json"]);
            c.env("NETCLAW_LOG", "warn");
            c
        },
        &log,
    )
    .unwrap();

    // A WebSocket GeneratePairingCode over the agent's Unix socket (a path, reachable from
    // outside the namespace). Minted until the follower (which may still be connecting) shows
    // the event.
    let socket = dep.install.socket().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seen = false;
    for _ in 0..10 {
        let code = runtime.block_on(mint_over_websocket(&socket));
        assert_eq!(code.len(), 9, "{code}");
        seen = wait_for(
            "the pairing event in `events --follow`",
            Duration::from_secs(2),
            || {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|s| s.contains("pairing-code-minted"))
            },
        )
        .is_ok();
        if seen {
            break;
        }
    }
    assert!(
        seen,
        "no event in: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(follow);
}

/// SIGTERM drains the agent on the shared serve loop: a forwarded event stream (`netclaw events
/// --follow` through the agent) ends as soon as the drain starts, instead of holding the drain
/// to its 10 s deadline, so the agent exits within seconds and the follower sees the stream end.
#[test]
fn sigterm_ends_a_forwarded_event_stream_and_the_agent_exits_promptly() {
    let Some(mut dep) =
        deployment("sigterm_ends_a_forwarded_event_stream_and_the_agent_exits_promptly")
    else {
        return;
    };
    let log = dep.install.log("events");
    let mut follow = Proc::spawn(
        "netclaw events --follow",
        {
            let mut c: Command = dep.netclaw(&["events", "--follow", "--json"]);
            c.env("NETCLAW_LOG", "warn");
            c
        },
        &log,
    )
    .unwrap();
    // The stream is open once an event minted now reaches the follower.
    wait_for(
        "the event stream through the agent",
        Duration::from_secs(20),
        || {
            let (code, out, err) = dep.run(&["pair"]).unwrap();
            assert_eq!(code, 0, "{out}{err}");
            std::fs::read_to_string(&log)
                .ok()
                .filter(|s| s.contains("pairing-code-minted"))
        },
    )
    .unwrap();

    let agent = dep.agent.as_mut().unwrap();
    let signalled = std::time::Instant::now();
    agent.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    let code = agent.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "agent log:\n{}", agent.log());
    assert!(
        took < Duration::from_secs(5),
        "the agent took {took:?} to drain (the event stream held it)\nagent log:\n{}",
        agent.log()
    );
    dep.agent = None;
    // The follower saw its stream end (and says so) rather than hanging on it.
    assert!(
        follow.wait_exit(Duration::from_secs(5)).is_some(),
        "the follower still runs: {}",
        follow.log()
    );
}

async fn mint_over_websocket(socket: &std::path::Path) -> String {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://agent/hub/session", stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"type":"GeneratePairingCode"}"#,
    ))
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "PairingCode", "{v}");
    v["formattedCode"].as_str().unwrap().to_owned()
}

#[test]
fn pooled_connections_are_reused_and_systemd_is_notified() {
    let Some(ns) = namespace_or_skip("pooled_connections_are_reused_and_systemd_is_notified")
    else {
        return;
    };
    let mut dep = Deployment::start(ns, &[]).unwrap();
    // systemd's notification socket, as a Type=notify unit has it (a path: reachable from the
    // namespace).
    let notify_path = dep.install.root.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: a shell that execs the agent keeps it.
    let mut cmd = dep.ns.command("sh");
    cmd.arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" --config "$1""#)
        .arg(&dep.bins.agent)
        .arg(&dep.install.config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000");
    let mut agent = Proc::spawn("netclaw-operator-agent", cmd, &dep.install.log("agent")).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}; got {seen:?}; log: {}", agent.log()));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }

    // 100 sequential requests: the pool makes a handful of handshakes, not one per request.
    let socket = dep.install.socket().unwrap();
    let before = netclaw_tests::agent_status(&socket).unwrap()["pool"]["handshakes"]
        .as_u64()
        .unwrap();
    for _ in 0..100 {
        let (code, body) =
            netclaw_tests::unix_request(&socket, "GET", "/api/whoami", None).unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let pool = netclaw_tests::agent_status(&socket).unwrap()["pool"].clone();
    let handshakes = pool["handshakes"].as_u64().unwrap() - before;
    assert!(
        handshakes <= 2,
        "{handshakes} handshakes for 100 requests: {pool}"
    );
    assert!(pool["requests"].as_u64().unwrap() >= 100, "{pool}");

    // The same figures as Prometheus metrics on the socket.
    let (code, text) =
        netclaw_tests::unix_request(&socket, "GET", "/agent/v1/metrics", None).unwrap();
    assert_eq!(code, 200, "{text}");
    let value = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert!(value("netclaw_agent_requests_total") >= 100, "{text}");
    assert!(
        value("netclaw_agent_responses_total{class=\"2xx\"}") >= 100,
        "{text}"
    );
    assert!(
        value("netclaw_agent_upstream_handshakes_total") <= before + 2,
        "{text}"
    );
    assert!(value("netclaw_agent_upstream_connections") >= 1, "{text}");
    assert_eq!(
        value("netclaw_agent_pool_max_in_flight"),
        pool["maxInFlight"].as_u64().unwrap(),
        "{text}"
    );
    assert!(
        value("netclaw_agent_certificate_not_after_seconds") > 1_700_000_000,
        "{text}"
    );
    assert_eq!(
        value("netclaw_agent_renewals_total{result=\"failure\"}"),
        0,
        "{text}"
    );

    // More callers at once than the pool keeps idle: requests beyond `pool.maxInFlight` wait for
    // a pooled connection instead of dialling one the pool would close again (one TLS handshake
    // per request on both sides), so the handshakes stay within `pool.maxIdle`.
    let max_idle = pool["maxIdle"].as_u64().unwrap();
    assert!(pool["maxInFlight"].as_u64().unwrap() < max_idle, "{pool}");
    let clients = max_idle as usize + max_idle as usize / 2;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || netclaw_tests::load(&socket, "/api/whoami", clients, stop))
    };
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = load.join().unwrap();
    assert_eq!(report.failed, 0, "{report:?}\nagent log:\n{}", agent.log());
    assert!(report.ok >= clients as u64, "{report:?}");
    let after = netclaw_tests::agent_status(&socket).unwrap()["pool"].clone();
    let made = after["handshakes"].as_u64().unwrap() - pool["handshakes"].as_u64().unwrap();
    eprintln!(
        "{clients} concurrent callers, {} requests: {made} new upstream handshakes",
        report.ok
    );
    assert!(
        made <= max_idle,
        "{made} handshakes for {} requests from {clients} callers (pool.maxIdle {max_idle}): {after}",
        report.ok
    );

    // SIGTERM: STOPPING=1, then a clean exit. The notification socket has not been read since
    // READY=1, so it is full of watchdog pings (a Unix socket queues 10 datagrams), and the
    // service manager reads it a second after the signal: the agent, drained by then, waits for
    // STOPPING=1 to go out instead of exiting without it.
    agent.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut stopping = String::new();
    while !stopping.contains("STOPPING=1") {
        let n = notify.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "{e}: no STOPPING=1 in {stopping:?}; agent log:\n{}",
                agent.log()
            )
        });
        stopping.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    wait_for("the agent to exit", Duration::from_secs(15), || {
        (!agent.running()).then_some(())
    })
    .unwrap();
    dep.agent = None;
}

/// Lets uid 65534 (gid 0) reach the agent's socket through the file system, so that what it
/// gets is the agent's decision and not the file permissions'. `false` (with a note) without
/// real root.
fn open_socket_to_nobody(dep: &Deployment, test: &str) -> bool {
    if !dep.ns.real_root() {
        eprintln!("SKIPPED {test}: needs real root to run as another uid");
        return false;
    }
    let root = dep.install.root.path();
    for dir in [root.to_path_buf(), root.join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    true
}

/// `program` run as uid 65534, gid 0, inside the namespace.
fn as_nobody(dep: &Deployment, program: &std::path::Path) -> Command {
    let mut cmd = dep.ns.command("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "0", "--clear-groups", "--"])
        .arg(program);
    cmd
}

/// `netclaw --endpoint unix:SOCKET <args>` as uid 65534: (exit code, stdout, stderr).
fn netclaw_as_nobody(dep: &Deployment, args: &[&str]) -> (i32, String, String) {
    let endpoint = format!("unix:{}", dep.install.socket().unwrap().display());
    let mut cmd = as_nobody(dep, &dep.bins.netclaw);
    cmd.args(["--endpoint", &endpoint]).args(args);
    netclaw_tests::text(&cmd.output().unwrap())
}

/// Sets `Operator.AllowedUsers` in `netclaw.json` (the file the agent re-reads on reload).
fn set_allowed_users(dep: &Deployment, users: &[&str]) {
    let mut config = dep.install.config_json().unwrap();
    config["Operator"]["AllowedUsers"] = serde_json::json!(users);
    std::fs::write(
        &dep.install.config,
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// One keep-alive connection to the agent's socket owned by uid 65534 (`netclaw-probe --relay`
/// under `setpriv`): the kernel reports that uid for every request sent on it.
struct Relay {
    child: std::process::Child,
    to: std::process::ChildStdin,
    from: std::io::BufReader<std::process::ChildStdout>,
}

/// `netclaw-probe --relay SOCKET` as uid 65534: the process, its stdin (to the socket) and its
/// stdout (from the socket).
fn spawn_relay(
    dep: &Deployment,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::process::ChildStdout,
) {
    let mut cmd = as_nobody(dep, &dep.bins.probe);
    cmd.arg("--relay")
        .arg(dep.install.socket().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let to = child.stdin.take().unwrap();
    let from = child.stdout.take().unwrap();
    (child, to, from)
}

impl Relay {
    fn open(dep: &Deployment) -> Self {
        let (child, to, from) = spawn_relay(dep);
        Self {
            child,
            to,
            from: std::io::BufReader::new(from),
        }
    }

    /// `GET path` on the open connection: (status, body).
    fn get(&mut self, path: &str) -> (u16, String) {
        use std::io::{BufRead, Read, Write};
        write!(self.to, "GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").unwrap();
        self.to.flush().unwrap();
        let mut line = String::new();
        self.from.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.from.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.trim().parse::<usize>().unwrap());
            }
            if k.eq_ignore_ascii_case("connection") {
                assert!(!v.trim().eq_ignore_ascii_case("close"), "connection closed");
            }
            if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.trim().eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.from.read_line(&mut line).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.from.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let mut b = vec![0; length.unwrap_or(0)];
            self.from.read_exact(&mut b).unwrap();
            body = b;
        }
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A caller of the socket cannot reach the daemon's renewal route, however it spells it: it
/// would get a certificate for its own key, a standalone LocalOperator identity. The agent's own
/// renewal (`netclaw pki rotate`) still works.
#[test]
fn the_renewal_route_is_never_forwarded_from_the_socket() {
    let Some(dep) = deployment("the_renewal_route_is_never_forwarded_from_the_socket") else {
        return;
    };
    let config = dep.install.config_json().unwrap();
    let registry = std::path::Path::new(config["Operator"]["PkiDirectory"].as_str().unwrap())
        .join("registry.json");
    let audit_log = std::path::Path::new(config["Daemon"]["StateDirectory"].as_str().unwrap())
        .join("audit.log");
    let renewals = || {
        std::fs::read_to_string(&audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == "cert-renewed")
            .count()
    };
    let registry_before = std::fs::read(&registry).unwrap();
    let renewals_before = renewals();

    // A CSR for a key the caller holds, as the agent itself would send it.
    let key = netclaw_pki::PrivateKey::generate().unwrap();
    let csr = key.certificate_signing_request_pem().unwrap();
    let body = serde_json::json!({ "csr": csr }).to_string();
    let socket = dep.install.socket().unwrap();
    let authority = format!("{}:5200", Deployment::DAEMON_IP);
    for target in [
        "/api/local-control/v1/pki/certificate".to_owned(),
        "/api/local-control/v1/pki/certificate?x=1".to_owned(),
        "/api/local-control/v1/pki/certificate/".to_owned(),
        "/api/local-control/v1/%70ki/certificate".to_owned(),
        "/api/local-control/v1/pki%2Fcertificate".to_owned(),
        "/api/local-control/v1/pki/%63ertificate".to_owned(),
        "/api/local-control/v1//pki/certificate".to_owned(),
        "//api/local-control/v1/pki/certificate".to_owned(),
        "/api/local-control/v1/pairing-code/../pki/certificate".to_owned(),
        "/api/local-control/v1/./pki/certificate".to_owned(),
        "/API/local-control/v1/pki/certificate".to_owned(),
        format!("http://{authority}/api/local-control/v1/pki/certificate"),
        "http://agent/api/local-control/v1/pki/certificate".to_owned(),
    ] {
        let (status, answer) =
            netclaw_tests::unix_request(&socket, "POST", &target, Some(&body)).unwrap();
        assert!(
            matches!(status, 400 | 404),
            "POST {target}: {status} {answer}"
        );
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(
            matches!(
                answer["code"].as_str(),
                Some("route-not-forwarded" | "request-target-form")
            ),
            "POST {target}: {answer}"
        );
    }
    // Nothing reached the daemon: no certificate issued, none recorded.
    assert_eq!(
        std::fs::read(&registry).unwrap(),
        registry_before,
        "the registry changed"
    );
    assert_eq!(renewals(), renewals_before, "a renewal was audited");

    // Routes the CLI uses still pass, and the agent's own renewal (straight to its upstream, not
    // through the socket) still works and is what the check above would have seen.
    let who = dep.json(&["whoami"]).unwrap();
    assert_eq!(who["principal"], "LocalOperator", "{who}");
    let (code, out, err) = dep.run(&["pki", "rotate"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    wait_for(
        "the agent's renewal in the audit log",
        Duration::from_secs(10),
        || (renewals() > renewals_before).then_some(()),
    )
    .unwrap();
    assert_ne!(std::fs::read(&registry).unwrap(), registry_before);
}

/// Removing a user from `Operator.AllowedUsers` and reloading (SIGHUP, then `POST
/// /agent/v1/reload`) refuses that user's next request, on a new connection and on one that was
/// already open; a configuration that does not load keeps the policy in force.
#[test]
fn a_reload_applies_the_operator_policy_to_open_connections() {
    const TEST: &str = "a_reload_applies_the_operator_policy_to_open_connections";
    let Some(ns) = namespace_or_skip(TEST) else {
        return;
    };
    let mut dep = Deployment::start_with(ns, &[], |c| {
        c["Operator"]["AllowedUsers"] = serde_json::json!(["65534"]);
    })
    .unwrap();
    dep.start_agent().unwrap();
    if !open_socket_to_nobody(&dep, TEST) {
        return;
    }
    let socket = dep.install.socket().unwrap();
    let refused_on_new = |dep: &Deployment| {
        let (code, out, err) = netclaw_as_nobody(dep, &["whoami"]);
        match code {
            0 => false,
            4 => true,
            _ => panic!("netclaw whoami as uid 65534 exited {code}: {out}{err}"),
        }
    };

    // Allowed: a new connection and an open keep-alive one both work.
    assert!(!refused_on_new(&dep));
    let mut open = Relay::open(&dep);
    let (status, body) = open.get("/api/whoami");
    assert_eq!(status, 200, "{body}");
    let who: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["caller"]["uid"], 65534, "{who}");

    // Removed, then SIGHUP: refused on a new connection and on the open one.
    set_allowed_users(&dep, &[]);
    dep.agent
        .as_ref()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    wait_for(
        "SIGHUP to apply the new policy",
        Duration::from_secs(10),
        || refused_on_new(&dep).then_some(()),
    )
    .unwrap();
    let (status, body) = open.get("/api/whoami");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Operator.AllowedUsers"), "{body}");

    // Allowed again through `POST /agent/v1/reload`: the same connection works again.
    set_allowed_users(&dep, &["65534"]);
    let (status, body) =
        netclaw_tests::unix_request(&socket, "POST", "/agent/v1/reload", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let reloaded: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reloaded["policyChanged"], true, "{reloaded}");
    assert_eq!(open.get("/api/whoami").0, 200);
    assert!(!refused_on_new(&dep));

    // A configuration that does not load is refused, and the policy in force stays.
    let good = std::fs::read(&dep.install.config).unwrap();
    std::fs::write(&dep.install.config, b"{ not json").unwrap();
    let (status, body) =
        netclaw_tests::unix_request(&socket, "POST", "/agent/v1/reload", None).unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("keeping the current operator policy"),
        "{body}"
    );
    assert_eq!(open.get("/api/whoami").0, 200);
    std::fs::write(&dep.install.config, good).unwrap();

    // Removed again, through `POST /agent/v1/reload`: refused at once, both ways.
    set_allowed_users(&dep, &[]);
    let (status, body) =
        netclaw_tests::unix_request(&socket, "POST", "/agent/v1/reload", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = open.get("/api/whoami");
    assert_eq!(status, 403, "{body}");
    assert!(refused_on_new(&dep));
}

/// An agent whose policy admits uid 65534 (besides root), with its socket reachable by that uid;
/// `None` (with a note) where the test cannot run as another uid.
fn deployment_admitting_nobody(test: &str) -> Option<Deployment> {
    let ns = namespace_or_skip(test)?;
    let mut dep = Deployment::start_with(ns, &[], |c| {
        c["Operator"]["AllowedUsers"] = serde_json::json!(["65534"]);
    })
    .unwrap();
    dep.start_agent().unwrap();
    open_socket_to_nobody(&dep, test).then_some(dep)
}

/// Removes uid 65534 from the policy and sends SIGHUP; returns once a new connection of that uid
/// is refused (the reload applied).
fn remove_nobody_and_sighup(dep: &Deployment) {
    set_allowed_users(dep, &[]);
    dep.agent
        .as_ref()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    wait_for(
        "SIGHUP to apply the new policy",
        Duration::from_secs(10),
        || {
            let (code, out, err) = netclaw_as_nobody(dep, &["whoami"]);
            match code {
                0 => None,
                4 => Some(()),
                _ => panic!("netclaw whoami as uid 65534 exited {code}: {out}{err}"),
            }
        },
    )
    .unwrap();
}

/// The byte stream of one connection to the agent's socket owned by uid 65534 (`netclaw-probe
/// --relay` under `setpriv`, killed when dropped). Call inside a tokio runtime.
type NobodyStream = tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>;

fn connect_as_nobody(dep: &Deployment) -> (NobodyStream, tokio::process::Child) {
    let mut cmd = as_nobody(dep, &dep.bins.probe);
    cmd.arg("--relay")
        .arg(dep.install.socket().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stream = tokio::io::join(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    (stream, child)
}

type Hub<S> = tokio_tungstenite::WebSocketStream<S>;

/// A WebSocket session with the daemon's hub (`/hub/session`) through the agent, over `stream`.
async fn open_hub<S>(stream: S) -> Hub<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (ws, resp) = tokio_tungstenite::client_async("ws://agent/hub/session", stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends `GeneratePairingCode` on `ws`: the code minted, or `None` when no code came back within
/// 5 s (the session is closed, or answered something else).
async fn mint_on<S>(ws: &mut Hub<S>) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request =
        tokio_tungstenite::tungstenite::Message::text(r#"{"type":"GeneratePairingCode"}"#);
    ws.send(request).await.ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .ok()??
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(answer.to_text().ok()?).ok()?;
    (v["type"] == "PairingCode").then(|| v["formattedCode"].as_str().unwrap().to_owned())
}

/// Whether `ws` is closed by the other side within `limit` (any message before is skipped).
async fn closed_within<S>(ws: &mut Hub<S>, limit: Duration) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Whether the agent's `log` says it cut uid 65534's `what` (any of them) because the reloaded
/// policy refuses it.
fn cut_logged(log: &str, what: &[&str]) -> bool {
    log.lines().any(|l| {
        l.contains("the reloaded operator policy refuses it")
            && l.contains("uid=65534")
            && what.iter().any(|w| l.contains(w))
    })
}

/// The adversary: a local user the operator removed from `Operator.AllowedUsers` keeps a hub
/// session it opened before, and with it the host authority to mint pairing codes. A reload
/// (SIGHUP) closes that session within seconds; a GeneratePairingCode sent after it yields no
/// code. Root's session, which the new policy still admits, is not disturbed.
#[test]
fn a_reload_that_removes_a_caller_closes_its_hub_session() {
    const TEST: &str = "a_reload_that_removes_a_caller_closes_its_hub_session";
    let Some(dep) = deployment_admitting_nobody(TEST) else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut removed, _relay, mut kept) = runtime.block_on(async {
        let (stream, relay) = connect_as_nobody(&dep);
        let mut removed = open_hub(stream).await;
        let kept = open_hub(tokio::net::UnixStream::connect(&socket).await.unwrap()).await;
        // Admitted, uid 65534 mints through its session.
        assert!(mint_on(&mut removed).await.is_some());
        (removed, relay, kept)
    });

    remove_nobody_and_sighup(&dep);

    let agent = dep.agent.as_ref().unwrap();
    runtime.block_on(async {
        assert!(
            closed_within(&mut removed, Duration::from_secs(5)).await,
            "uid 65534's hub session is still open after the reload that removed it\n\
             agent log:\n{}",
            agent.log()
        );
        assert_eq!(mint_on(&mut removed).await, None);
        // Root is admitted by every policy: its session stays and mints.
        assert!(mint_on(&mut kept).await.is_some(), "{}", agent.log());
    });
    let log = agent.log();
    assert!(cut_logged(&log, &["upgraded connection"]), "{log}");
}

/// The adversary again, with an event stream it stops reading: its stream's body is then not
/// polled (the socket's buffers are full), so only its connection's watch sees the reload. The
/// reload closes the connection while it is stalled; before, the stream stayed open, holding a
/// stream place and a connection to the daemon, until the caller read again (and then ended
/// cleanly). An idle keep-alive connection of the same caller is not closed: its next request
/// is answered 403, naming the fix.
#[test]
fn a_reload_closes_a_stalled_stream_of_a_removed_caller() {
    const TEST: &str = "a_reload_closes_a_stalled_stream_of_a_removed_caller";
    let Some(dep) = deployment_admitting_nobody(TEST) else {
        return;
    };
    use std::io::{Read, Write};
    let socket = dep.install.socket().unwrap();
    let mut idle = Relay::open(&dep);
    assert_eq!(idle.get("/api/whoami").0, 200);

    // uid 65534 opens the audit stream, reads its head, and stops reading.
    let (mut relay, mut to, mut from) = spawn_relay(&dep);
    to.write_all(b"GET /api/events HTTP/1.1\r\nHost: agent\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    from.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    // Enough events (about 200 bytes each) to fill the relay's pipe, the socket and the
    // agent's write queue, so that the agent stops polling the stream's body.
    for _ in 0..3000 {
        let (code, body) = netclaw_tests::unix_request(
            &socket,
            "POST",
            "/api/local-control/v1/pairing-code",
            None,
        )
        .unwrap();
        assert_eq!(code, 200, "{body}");
    }

    remove_nobody_and_sighup(&dep);
    std::thread::sleep(Duration::from_secs(2));

    // Now read: the stream must have been cut while it was stalled (no end of the chunked
    // body), not ended cleanly once reading resumed.
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = from.read_to_end(&mut rest);
        rest
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let agent = dep.agent.as_ref().unwrap();
    assert!(
        reader.is_finished(),
        "uid 65534's stream is still open after the reload\nagent log:\n{}",
        agent.log()
    );
    let rest = reader.join().unwrap();
    assert!(
        !rest.ends_with(b"\r\n0\r\n\r\n"),
        "the stream ended cleanly once read again, so it stayed open while stalled\n\
         agent log:\n{}",
        agent.log()
    );
    let _ = relay.kill();
    let _ = relay.wait();
    let log = agent.log();
    assert!(
        cut_logged(&log, &["closed a caller's connection, which was streaming"]),
        "{log}"
    );

    // The idle connection was left open: its next request is refused with the fix.
    let (status, body) = idle.get("/api/whoami");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Operator.AllowedUsers"), "{body}");
}

/// `netclaw events --follow` through the agent as uid 65534: (the follower, its log).
fn follow_events_as_nobody(dep: &Deployment) -> (Proc, std::path::PathBuf) {
    let log = dep.install.log("events-nobody");
    let endpoint = format!("unix:{}", dep.install.socket().unwrap().display());
    let mut cmd = as_nobody(dep, &dep.bins.netclaw);
    cmd.args(["--endpoint", &endpoint, "events", "--follow", "--json"])
        .env("NETCLAW_LOG", "warn");
    (
        Proc::spawn("netclaw events --follow (uid 65534)", cmd, &log).unwrap(),
        log,
    )
}

/// `netclaw events --follow` through the agent as root: (the follower, its log).
fn follow_events_as_root(dep: &Deployment) -> (Proc, std::path::PathBuf) {
    let log = dep.install.log("events-root");
    let mut cmd = dep.netclaw(&["events", "--follow", "--json"]);
    cmd.env("NETCLAW_LOG", "warn");
    (
        Proc::spawn("netclaw events --follow", cmd, &log).unwrap(),
        log,
    )
}

/// How many pairing codes the follower writing `log` has seen.
fn minted_seen(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("pairing-code-minted")
        .count()
}

/// Mints pairing codes (as root) until every follower log in `logs` shows one more than it had.
fn mint_until_seen(dep: &Deployment, logs: &[&std::path::Path]) {
    let before: Vec<usize> = logs.iter().map(|l| minted_seen(l)).collect();
    wait_for(
        "a new pairing event in every follower",
        Duration::from_secs(20),
        || {
            let (code, out, err) = dep.run(&["pair"]).unwrap();
            assert_eq!(code, 0, "{out}{err}");
            std::thread::sleep(Duration::from_millis(200));
            logs.iter()
                .zip(&before)
                .all(|(l, n)| minted_seen(l) > *n)
                .then_some(())
        },
    )
    .unwrap();
}

/// The adversary again, with the audit feed: a removed user's open `GET /api/events` stream
/// (`netclaw events --follow`) ends within seconds of the reload that removed it, and it sees no
/// event minted after; root's stream, which the new policy still admits, goes on.
#[test]
fn a_reload_that_removes_a_caller_ends_its_event_stream() {
    const TEST: &str = "a_reload_that_removes_a_caller_ends_its_event_stream";
    let Some(dep) = deployment_admitting_nobody(TEST) else {
        return;
    };
    let (mut removed, removed_log) = follow_events_as_nobody(&dep);
    let (mut kept, kept_log) = follow_events_as_root(&dep);
    mint_until_seen(&dep, &[&removed_log, &kept_log]);

    remove_nobody_and_sighup(&dep);

    let agent = dep.agent.as_ref().unwrap();
    assert!(
        removed.wait_exit(Duration::from_secs(5)).is_some(),
        "uid 65534's event stream is still open after the reload that removed it\n\
         follower: {}\nagent log:\n{}",
        removed.log(),
        agent.log()
    );
    let seen = minted_seen(&removed_log);
    mint_until_seen(&dep, &[&kept_log]);
    assert_eq!(minted_seen(&removed_log), seen);
    assert!(kept.running(), "root's follower ended: {}", kept.log());
    let log = agent.log();
    // The stream's own watch, or its connection's, whichever judged the new policy first.
    assert!(cut_logged(&log, &["event stream", "connection"]), "{log}");
}

/// The control: a reload that publishes a new policy still admitting uid 65534 leaves its hub
/// session and its event stream open and working.
#[test]
fn a_reload_that_still_admits_a_caller_keeps_its_hub_session_and_event_stream() {
    const TEST: &str = "a_reload_that_still_admits_a_caller_keeps_its_hub_session_and_event_stream";
    let Some(dep) = deployment_admitting_nobody(TEST) else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let (mut follower, follower_log) = follow_events_as_nobody(&dep);
    mint_until_seen(&dep, &[&follower_log]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut hub, _relay) = runtime.block_on(async {
        let (stream, relay) = connect_as_nobody(&dep);
        let mut hub = open_hub(stream).await;
        assert!(mint_on(&mut hub).await.is_some());
        (hub, relay)
    });

    // Another policy (uid 1 added), published: the one in force is judged again.
    set_allowed_users(&dep, &["65534", "1"]);
    let (status, body) =
        netclaw_tests::unix_request(&socket, "POST", "/agent/v1/reload", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let reloaded: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reloaded["policyChanged"], true, "{reloaded}");

    let agent = dep.agent.as_ref().unwrap();
    runtime.block_on(async {
        assert!(
            !closed_within(&mut hub, Duration::from_secs(2)).await,
            "{}",
            agent.log()
        );
        assert!(mint_on(&mut hub).await.is_some(), "{}", agent.log());
    });
    mint_until_seen(&dep, &[&follower_log]);
    assert!(follower.running(), "{}", follower.log());
    assert!(
        !agent
            .log()
            .contains("the reloaded operator policy refuses it"),
        "{}",
        agent.log()
    );
}

/// One caller opening more requests than the agent has upstream slots, each with a body it
/// never finishes, does not keep another allowed caller from being answered. The bodies go to
/// the pairing exchange, a route whose handler waits for its body (the agent used to forward it
/// and hold a slot per request until its 30 s deadline; it now refuses it at once), and to
/// `POST /api/local-control/v1/pairing-code`, which the agent forwards: it reads such a body
/// before it takes a slot and ends the request with its typed `body-timeout` answer.
#[test]
fn slow_bodies_from_one_caller_do_not_starve_the_others() {
    let Some(dep) =
        deployment_admitting_nobody("slow_bodies_from_one_caller_do_not_starve_the_others")
    else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let max_in_flight = netclaw_tests::agent_status(&socket).unwrap()["pool"]["maxInFlight"]
        .as_u64()
        .unwrap() as usize;

    // Root opens more requests than there are slots, each announcing a body it trickles a byte
    // a second and never completes.
    use std::io::{Read, Write};
    let open = |path: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n\
                 Content-Length: 4096\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .unwrap();
        s
    };
    let mut exchange: Vec<_> = (0..max_in_flight + 8)
        .map(|_| open("/api/pair/exchange"))
        .collect();
    let mut forwarded: Vec<_> = (0..8)
        .map(|_| open("/api/local-control/v1/pairing-code"))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let writers: Vec<_> = exchange
            .iter()
            .chain(&forwarded)
            .map(|s| s.try_clone().unwrap())
            .collect();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut writers = writers;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for w in &mut writers {
                    let _ = w.write_all(b" ");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // Let the agent take them all in (it used to forward each and hold a slot for it).
    std::thread::sleep(Duration::from_secs(2));

    // Another allowed caller is answered.
    let (code, out, err) = netclaw_as_nobody(&dep, &["whoami", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let who: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(who["caller"]["uid"], 65534, "{who}");
    // And so is root itself on a new connection.
    let (code, body) = netclaw_tests::unix_request(&socket, "GET", "/api/whoami", None).unwrap();
    assert_eq!(code, 200, "{body}");

    // Every stalled request ends with the agent's typed answer, not a hung connection.
    let answer = |s: &mut std::os::unix::net::UnixStream| {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    };
    let text = answer(&mut exchange[0]);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(text.contains(r#""code":"route-not-forwarded""#), "{text}");
    let text = answer(&mut forwarded[0]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"body-timeout""#), "{text}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
}

/// The local caller who would leave the agent burning a CPU: after each forwarded request the
/// agent polls without sleeping for `Operator.BusyPollMicros` only, so once the requests stop
/// its CPU time stops growing. With the window set to 0 it never polls.
#[test]
fn busy_polling_stops_when_the_requests_do() {
    let Some(mut dep) = deployment("busy_polling_stops_when_the_requests_do") else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let windows = |socket: &std::path::Path| -> u64 {
        let (status, text) =
            netclaw_tests::unix_request(socket, "GET", "/agent/v1/metrics", None).unwrap();
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix("netclaw_agent_busy_poll_windows_total "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no busy-poll counter in:\n{text}"))
    };
    let requests = |socket: &std::path::Path| {
        for _ in 0..200 {
            let (status, body) =
                netclaw_tests::unix_request(socket, "GET", "/api/health/ready", None).unwrap();
            assert_eq!(status, 200, "{body}");
        }
    };
    let cpu_ticks = |dep: &Deployment| {
        let pid = dep.agent.as_ref().unwrap().pid().unwrap();
        netclaw_tests::bench::host::cpu_ticks(pid).unwrap()
    };

    // The default window: the requests open windows, and an idle agent uses no CPU.
    requests(&socket);
    assert!(windows(&socket) > 0, "no busy-poll window with the default");
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(&dep);
    std::thread::sleep(Duration::from_secs(2));
    let idle = cpu_ticks(&dep) - before;
    // Clock ticks of 10 ms: an agent still polling would show about 200.
    assert!(idle <= 10, "the idle agent used {idle} ticks in 2 s");

    // Off: no window opens.
    dep.stop_agent();
    let mut config = dep.install.config_json().unwrap();
    config["Operator"]["BusyPollMicros"] = 0.into();
    std::fs::write(&dep.install.config, serde_json::to_vec(&config).unwrap()).unwrap();
    dep.start_agent().unwrap();
    requests(&socket);
    assert_eq!(windows(&socket), 0);
}

/// The local caller who would exhaust the agent's and the daemon's connections with streams: an
/// event stream gives its in-flight slot back at its head but keeps its own upstream TLS
/// connection for as long as it lasts. One caller may hold its share of streams and no more;
/// another caller still opens one, and a closed stream frees its place.
#[test]
fn one_callers_streams_do_not_exhaust_the_agent() {
    let Some(dep) = deployment_admitting_nobody("one_callers_streams_do_not_exhaust_the_agent")
    else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    use std::io::{Read, Write};
    // Opens `GET /api/events` on a new connection and returns it with the answer's head.
    let open = || {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.write_all(
            b"GET /api/events HTTP/1.1\r\nHost: agent\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        (s, String::from_utf8_lossy(&head).into_owned())
    };
    let per_caller = 8;
    let mut held: Vec<_> = (0..per_caller)
        .map(|i| {
            let (s, head) = open();
            assert!(
                head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"),
                "stream {i}: {head}"
            );
            s
        })
        .collect();

    // One more from the same caller is refused, typed, and says what to close.
    let (mut refused, head) = open();
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let mut body = String::new();
    let _ = refused.read_to_string(&mut body);
    assert!(body.contains(r#""code":"caller-stream-limit""#), "{body}");

    // Another caller still follows the events.
    let (follower, log) = follow_events_as_nobody(&dep);
    mint_until_seen(&dep, &[&log]);
    drop(follower);

    // A closed stream frees its place.
    drop(held.pop());
    wait_for("a freed stream slot", Duration::from_secs(10), || {
        let (s, head) = open();
        head.starts_with("HTTP/1.1 200").then_some(s)
    })
    .unwrap();
}
