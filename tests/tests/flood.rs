//! A slow-body flood from remote-host on the daemon's public listener, with the daemon at
//! systemd's default descriptor limit (soft 1,024, as for a service without `LimitNOFILE`):
//! the operator path and other public clients must stay available (threat-model row "slow-body
//! flood on the public listener"). Uses the three-host topology of `netclaw_tests::topology`.
//!
//! Needs real root, iproute2, util-linux (`prlimit` too), openssl and curl; skipped with the
//! reason printed where anything is missing, unless `NETCLAW_REQUIRE_NAMESPACES` is set.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netclaw_tests::probe;
use netclaw_tests::topology::{
    json, run, Role, Topology, DAEMON_IP, OPERATOR_PORT, PUBLIC_PORT, REMOTE_IP, REMOTE_IP_2,
    REVERSE_PROXY,
};

/// Descriptors the daemon runs with (soft and hard, so it cannot raise them).
const NOFILE: u64 = 1024;
/// Connections in each flood: more than the descriptor limit.
const CONNECTIONS: usize = 1100;
/// How long each flood lasts.
const FLOOD_SECS: u64 = 15;
/// When the operator path (and a public request) is tried, in seconds into a flood.
const CHECKS: [u64; 3] = [3, 6, 9];

/// Starts `netclaw-probe --flood` on remote-host from `sources`.
fn flood(t: &Topology, sources: &[String]) -> JoinHandle<String> {
    let mut cmd = t.host(Role::Remote).command(&t.bins.probe);
    cmd.args(["--flood", &CONNECTIONS.to_string()])
        .args(["--for", &FLOOD_SECS.to_string(), "--every", "2"])
        .args(["--from", &sources.join(",")])
        .arg(format!("{DAEMON_IP}:{PUBLIC_PORT}"));
    std::thread::spawn(move || {
        let (code, out, err) = run(cmd).unwrap();
        assert_eq!(code, 0, "flood: {err}");
        out.trim().to_owned()
    })
}

/// A fresh mTLS connection to the operator listener with the agent's credentials (the agent
/// may reuse a pooled connection; this one must be accepted now): `GET path`, (curl exit, body).
fn operator_fresh(t: &Topology, path: &str) -> (i32, String, String) {
    let (crt, key, bundle) = t.agent_credentials();
    let mut c = t.host(Role::Daemon).command("curl");
    c.args(["-sS", "-m", "10", "--tlsv1.3", "--cacert"])
        .arg(bundle)
        .arg("--cert")
        .arg(crt)
        .arg("--key")
        .arg(key)
        .arg(format!("https://{DAEMON_IP}:{OPERATOR_PORT}{path}"));
    run(c).unwrap()
}

/// The daemon's open descriptors now.
fn open_descriptors(t: &Topology) -> usize {
    let pid = t.daemon().unwrap().pid().unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The operator path while a flood runs: the CLI through the agent, and a new mTLS connection.
fn operator_path_works(t: &Topology, when: &str) {
    let who = json(t.operator(&["whoami", "--json"]))
        .unwrap_or_else(|e| panic!("{when}: netclaw whoami through the agent: {e:#}"));
    assert_eq!(who["principal"], "LocalOperator", "{when}: {who}");
    let (code, out, err) = operator_fresh(t, "/api/whoami");
    assert_eq!(
        code,
        0,
        "{when}: new operator connection failed: {err}\n{}",
        tail(&t.daemon_log())
    );
    assert!(out.contains("LocalOperator"), "{when}: {out}");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Checks the operator path (and with `public_from`, a public request from that address)
/// three times while `flood` runs, and that each answer came while it was still running (not
/// once it ended and freed the descriptors); returns the most descriptors the daemon had open.
fn during(
    t: &Topology,
    flood: &JoinHandle<String>,
    started: Instant,
    public_from: Option<&str>,
) -> usize {
    let mut most = 0;
    for at in CHECKS {
        while started.elapsed() < Duration::from_secs(at) {
            std::thread::sleep(Duration::from_millis(200));
        }
        most = most.max(open_descriptors(t));
        let when = format!("{at} s into the flood");
        operator_path_works(t, &when);
        if let Some(source) = public_from {
            let url = format!("http://{DAEMON_IP}:{PUBLIC_PORT}/api/health/ready");
            let (status, body) = probe(
                t.host(Role::Remote).namespace(),
                &t.bins,
                &["--bind", source, "GET", &url],
            )
            .unwrap_or_else(|e| panic!("{when}: public request from {source}: {e:#}"));
            assert_eq!(status, 200, "{when}: public request from {source}: {body}");
        }
        // The flood holds its connections until FLOOD_SECS: an answer after that proves nothing.
        assert!(
            !flood.is_finished() && started.elapsed() < Duration::from_secs(FLOOD_SECS),
            "{when}: the answers came only after the flood had ended ({:?} in)",
            started.elapsed()
        );
        most = most.max(open_descriptors(t));
    }
    most
}

#[test]
fn a_slow_body_flood_on_the_public_listener_leaves_the_operator_path_available() {
    let test = "a_slow_body_flood_on_the_public_listener_leaves_the_operator_path_available";
    let Some(mut t) = Topology::start(test, &["prlimit"], REVERSE_PROXY) else {
        return;
    };
    // The daemon again, at systemd's default descriptor limit.
    t.stop_daemon();
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    t.start_daemon_wrapped(&["prlimit", &nofile, "--"]).unwrap();
    operator_path_works(&t, "before the flood");

    // 1. From one address: 1,100 connections announcing a 16 kB body and trickling it.
    let started = Instant::now();
    let one = flood(&t, &[REMOTE_IP.to_owned()]);
    let most_one = during(&t, &one, started, Some(REMOTE_IP_2));
    let report_one = one.join().unwrap();

    // 2. From 20 addresses of remote-host, 55 connections each (under the per-source cap): the
    // total cap refuses the rest and the operator's reserve holds. Public clients may be told
    // 503 now; the operator path must not notice.
    let sources: Vec<String> = (100..120).map(|i| format!("198.51.100.{i}")).collect();
    for s in &sources {
        t.host(Role::Remote)
            .ip(&["addr", "add", &format!("{s}/24"), "dev", "to-proxy"])
            .unwrap();
    }
    let started = Instant::now();
    let many = flood(&t, &sources);
    let most_many = during(&t, &many, started, None);
    let report_many = many.join().unwrap();
    eprintln!(
        "one source: {report_one}, daemon descriptors at most {most_one}; \
         20 sources: {report_many}, at most {most_many}"
    );

    // Both floods were refused at the caps, and the descriptors in use stayed clear of the limit.
    let (code, metrics, err) = operator_fresh(&t, "/metrics");
    assert_eq!(code, 0, "{err}");
    for reason in ["source-cap", "total-cap"] {
        assert!(
            metrics.contains(&format!(
                "netclaw_daemon_public_connections_refused_total{{reason=\"{reason}\"}}"
            )),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("netclaw_daemon_request_body_timeouts_total{listener=\"public\"}"),
        "{metrics}"
    );
    for most in [most_one, most_many] {
        assert!(
            most as u64 <= NOFILE - 128,
            "the daemon had {most} descriptors open of {NOFILE}"
        );
    }

    // After the flood the daemon is healthy on both paths.
    assert!(t.daemon().is_some_and(|d| d.pid().is_some()));
    t.wait_daemon().unwrap();
    let url = format!("http://{DAEMON_IP}:{PUBLIC_PORT}/api/health/ready");
    let (status, body) = probe(
        t.host(Role::Remote).namespace(),
        &t.bins,
        &["--bind", REMOTE_IP, "GET", &url],
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    operator_path_works(&t, "after the flood");
    let status = json(t.operator(&["status", "--json"])).unwrap();
    assert!(status.is_object(), "{status}");
}
