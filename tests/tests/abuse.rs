//! Load and abuse with real processes: many CLI clients through the agent, slow and oversized
//! requests on the agent socket and on both daemon listeners, and pairing brute force.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netclaw_tests::ns::namespace_or_skip;
use netclaw_tests::{probe, unix_request, Deployment};

fn deployment(test: &str) -> Option<Deployment> {
    let ns = namespace_or_skip(test)?;
    let mut dep = Deployment::start(ns, &[]).expect("deployment starts");
    dep.start_agent().expect("agent starts");
    Some(dep)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sixty_four_cli_clients_for_a_minute_without_an_error_and_with_bounded_memory() {
    let Some(dep) =
        deployment("sixty_four_cli_clients_for_a_minute_without_an_error_and_with_bounded_memory")
    else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let endpoint = format!("unix:{}", socket.display());
    let agent_pid = dep.agent.as_ref().unwrap().pid().unwrap();
    let daemon_pid = dep.daemon.pid().unwrap();
    // Warm up, then take the baseline.
    for _ in 0..20 {
        assert_eq!(
            unix_request(&socket, "GET", "/api/whoami", None).unwrap().0,
            200
        );
    }
    let agent_before = rss_kib(agent_pid, "VmRSS:");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            let netclaw = dep.bins.netclaw.clone();
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = std::process::Command::new(&netclaw)
                        .args(["--endpoint", &endpoint, "whoami", "--json"])
                        .output()
                        .unwrap();
                    let text = String::from_utf8_lossy(&out.stdout);
                    if out.status.success() && text.contains("LocalOperator") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.lock().unwrap().push(format!(
                            "{:?}: {text}{}",
                            out.status.code(),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut agent_peak = 0;
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(5));
        agent_peak = agent_peak.max(rss_kib(agent_pid, "VmRSS:"));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let ok = ok.load(Ordering::Relaxed);
    let agent_hwm = rss_kib(agent_pid, "VmHWM:");
    let daemon_hwm = rss_kib(daemon_pid, "VmHWM:");
    eprintln!(
        "64 CLI clients for 60 s: {ok} ok, {} failed; agent RSS {agent_before} KiB before, peak {agent_peak} KiB (HWM {agent_hwm} KiB); daemon HWM {daemon_hwm} KiB",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok > 64, "{ok}");
    // Bounded: the agent holds one small state per connection and a pool of 16 at most.
    assert!(
        agent_hwm < 128 * 1024,
        "agent high-water mark {agent_hwm} KiB"
    );
    assert!(
        daemon_hwm < 192 * 1024,
        "daemon high-water mark {daemon_hwm} KiB"
    );
}

/// Opens `n` connections to the agent socket that trickle a request head, and returns how many
/// the agent closed within `within`.
fn slow_unix_clients(socket: &std::path::Path, n: usize, within: Duration) -> usize {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let socket = socket.to_owned();
            std::thread::spawn(move || {
                let Ok(mut s) = UnixStream::connect(&socket) else {
                    return true;
                };
                s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                let head = b"GET /api/whoami HTTP/1.1\r\nHost: agent\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                let started = Instant::now();
                let mut i = 0;
                let mut buf = [0u8; 256];
                while started.elapsed() < within {
                    if i < head.len() && s.write_all(&head[i..=i]).is_err() {
                        return true;
                    }
                    i += 1;
                    match s.read(&mut buf) {
                        Ok(0) => return true,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return true,
                    }
                }
                false
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|c| *c)
        .count()
}

#[test]
fn slow_and_oversized_requests_are_cut_off_while_normal_clients_keep_working() {
    let Some(dep) =
        deployment("slow_and_oversized_requests_are_cut_off_while_normal_clients_keep_working")
    else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let public = format!("{}:5199", Deployment::DAEMON_IP);
    let operator = format!("{}:5200", Deployment::DAEMON_IP);

    // Slow clients on all three, at once.
    let slow_public = {
        let (ns_cmd, public) = (dep.ns.command(&dep.bins.probe), public.clone());
        std::thread::spawn(move || {
            let mut c = ns_cmd;
            c.args(["--slow", "40", "--for", "25", &public])
                .output()
                .unwrap()
        })
    };
    let slow_operator = {
        let (ns_cmd, operator) = (dep.ns.command(&dep.bins.probe), operator.clone());
        std::thread::spawn(move || {
            let mut c = ns_cmd;
            c.args(["--slow", "40", "--silent", "--for", "25", &operator])
                .output()
                .unwrap()
        })
    };
    let slow_agent = {
        let socket = socket.clone();
        std::thread::spawn(move || slow_unix_clients(&socket, 40, Duration::from_secs(25)))
    };
    // Meanwhile, normal clients are served on every path.
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..5 {
        let (code, out, err) = dep.run(&["whoami", "--json"]).unwrap();
        assert_eq!(code, 0, "{out}{err}");
        let (status, body) = probe(
            &dep.ns,
            &dep.bins,
            &["GET", &format!("http://{public}/api/health/ready")],
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let summary = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let public_result = summary(slow_public.join().unwrap());
    let operator_result = summary(slow_operator.join().unwrap());
    let agent_closed = slow_agent.join().unwrap();
    assert!(
        public_result.starts_with("closed 40 of 40"),
        "public listener: {public_result}"
    );
    assert!(
        operator_result.starts_with("closed 40 of 40"),
        "operator listener: {operator_result}"
    );
    assert_eq!(
        agent_closed, 40,
        "agent socket closed {agent_closed} of 40 slow clients"
    );

    // Oversized heads: 431 on the agent socket and the public listener; bodies: 413.
    let big = "a".repeat(20 * 1024);
    let mut s = UnixStream::connect(&socket).unwrap();
    write!(
        s,
        "GET /api/whoami HTTP/1.1\r\nHost: agent\r\nX-Big: {big}\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let (status, _) = probe(
        &dep.ns,
        &dep.bins,
        &[
            "-H",
            &format!("X-Big: {big}"),
            "GET",
            &format!("http://{public}/api/health/ready"),
        ],
    )
    .unwrap_or((431, String::new()));
    assert_eq!(status, 431);
    let body = format!(r#"{{"code":"AAAA-AAAA","deviceName":"{big}"}}"#);
    let (status, _) = probe(
        &dep.ns,
        &dep.bins,
        &[
            "--data",
            &body,
            "POST",
            &format!("http://{public}/api/pair/exchange"),
        ],
    )
    .unwrap();
    assert_eq!(status, 413);
    // The agent forwards no exchange (devices pair on the public listener) and reads a body
    // before forwarding it: larger than it forwards is its own 413.
    let huge = "a".repeat(80 * 1024);
    let (status, _) = unix_request(
        &socket,
        "POST",
        "/api/local-control/v1/pairing-code",
        Some(&huge),
    )
    .unwrap();
    assert_eq!(status, 413);
    // And everything still works.
    let (code, out, err) = dep.run(&["status"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn pairing_brute_force_locks_out_its_source_and_the_operator_is_told() {
    let Some(dep) = deployment("pairing_brute_force_locks_out_its_source_and_the_operator_is_told")
    else {
        return;
    };
    // The trusted proxy's address, so the test can present forwarded client addresses, and an
    // address for a stranger that reaches the public listener directly.
    for ip in [Deployment::PROXY_IP, "198.51.100.30"] {
        dep.ns.add_address(&format!("{ip}/32")).unwrap();
    }
    let code = dep.json(&["pair"]).unwrap()["formattedCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("http://{}:5199/api/pair/exchange", Deployment::DAEMON_IP);
    let attempt = |bind: &str, forwarded: Option<&str>, code: &str| -> (u16, String) {
        let body = format!(r#"{{"code":"{code}","deviceName":"attacker"}}"#);
        let xff = forwarded.map(|f| format!("X-Forwarded-For: {f}"));
        let mut args = vec!["--bind", bind];
        if let Some(h) = &xff {
            args.extend(["-H", h]);
        }
        args.extend(["--data", &body, "POST", &url]);
        probe(&dep.ns, &dep.bins, &args).unwrap()
    };
    let wrong = if code.starts_with('2') {
        "3333-3333"
    } else {
        "2222-2222"
    };
    // One source (forwarded by the trusted proxy): five wrong codes, then it is locked out,
    // even with the right code.
    let statuses: Vec<u16> = (0..5)
        .map(|_| attempt(Deployment::PROXY_IP, Some("203.0.113.1"), wrong).0)
        .collect();
    assert_eq!(statuses, [401; 5], "wrong codes");
    let (status, body) = attempt(Deployment::PROXY_IP, Some("203.0.113.1"), &code);
    assert_eq!(status, 429, "the locked-out source is refused: {body}");

    // The operator is told: `netclaw status` (text and JSON), `netclaw pair`, `netclaw doctor`.
    let (rc, out, err) = dep.run(&["status"]).unwrap();
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("1 source address(es) locked out of pairing")
            && out.contains("203.0.113.1 until"),
        "status: {out}"
    );
    let status = dep.json(&["status"]).unwrap();
    assert_eq!(
        status["daemon"]["pairing"]["lockedOutSources"], 1,
        "{status}"
    );
    assert_eq!(
        status["daemon"]["pairing"]["lockedOut"][0]["source"], "203.0.113.1",
        "{status}"
    );
    let (rc, out, err) = dep.run(&["doctor"]).unwrap();
    let doctor = format!("{out}{err}");
    assert!(
        doctor.lines().any(|l| l.starts_with("WARN")
            && l.contains("pairing-lockouts")
            && l.contains("203.0.113.1")),
        "doctor (exit {rc}): {doctor}"
    );

    // Strangers from other addresses, directly and behind the proxy, fail without locking
    // anyone else out; the code is not voided.
    for i in 10..15 {
        let forwarded = format!("203.0.113.{i}");
        assert_eq!(
            attempt(Deployment::PROXY_IP, Some(&forwarded), wrong).0,
            401
        );
    }
    for _ in 0..5 {
        assert_eq!(attempt("198.51.100.30", None, wrong).0, 401);
    }
    assert_eq!(attempt("198.51.100.30", None, wrong).0, 429);
    // The real device, from its own address, pairs with the pending code.
    let (status, body) = dep.exchange(&code, "phone").unwrap();
    assert_eq!(status, 200, "the device pairs: {body}");

    // A new code: `netclaw pair` warns about the two locked-out sources.
    let (rc, out, err) = dep.run(&["pair"]).unwrap();
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("Pairing code:"), "{out}");
    assert!(
        err.contains("warning: 2 source address(es) locked out of pairing")
            && err.contains("203.0.113.1 until")
            && err.contains("198.51.100.30 until"),
        "pair: {err}"
    );
    let log =
        std::fs::read_to_string(dep.install.root.path().join("var/lib/netclaw/audit.log")).unwrap();
    assert!(
        log.contains("pairing-locked-out") && log.contains("client 203.0.113.1:"),
        "{log}"
    );
}
