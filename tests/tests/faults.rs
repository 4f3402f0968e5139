//! Faults with real processes in a namespace: a full disk and a read-only state directory while
//! devices pair and are revoked, an unreachable daemon, an agent killed in the middle of a
//! request, and an agent whose clock disagrees with the daemon's (libfaketime).
//!
//! The daemon's state directory is made small or read-only in a mount namespace of the daemon's
//! own (`unshare --mount`), so nothing on the host changes; the test reads the daemon's view of
//! it through `/proc/<pid>/root`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netclaw_tests::ns::namespace_or_skip;
use netclaw_tests::{agent_status, faketime_env, unix_request, wait_for, Deployment, Proc};
use nix::sys::signal::Signal;

/// The daemon's answer when it cannot save its state (a fixed message, the detail is logged).
const NOT_SAVED: &str = "the daemon could not save its state; nothing was changed";
/// How long a CLI command may take to give up on an unreachable agent or daemon.
const FAST: Duration = Duration::from_secs(5);

/// A deployment whose daemon keeps its state (`devices.json`, `audit.log`) in
/// `ROOT/var/lib/netclaw-state` rather than next to the PKI directory, so that a mount over it
/// leaves the PKI alone.
fn deployment(test: &str) -> Option<(Deployment, PathBuf)> {
    let ns = namespace_or_skip(test)?;
    let mut dep = Deployment::start_with(ns, &[], |c| {
        let state = format!("{}-state", c["Daemon"]["StateDirectory"].as_str().unwrap());
        c["Daemon"]["StateDirectory"] = state.into();
    })
    .expect("deployment starts");
    dep.start_agent().expect("agent starts");
    let state = PathBuf::from(
        dep.install.config_json().unwrap()["Daemon"]["StateDirectory"]
            .as_str()
            .unwrap(),
    );
    Some((dep, state))
}

/// Restarts the daemon in a mount namespace of its own where `setup` (a shell snippet; `$S` is
/// the state directory) has run first.
fn restart_daemon_with_mounts(dep: &mut Deployment, state: &Path, setup: &str) {
    dep.daemon.stop();
    let mut cmd = dep.ns.command("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(r#"S="$1"; {setup} && exec "$2" --config "$3""#))
        .arg("sh")
        .arg(state)
        .arg(&dep.bins.daemon)
        .arg(&dep.install.config);
    dep.daemon = Proc::spawn("netclaw-daemon", cmd, &dep.install.log("daemon")).unwrap();
    dep.wait_daemon().unwrap();
}

/// Runs `args` in the daemon's mount namespace.
fn in_daemon_mounts(dep: &Deployment, args: &[&str]) {
    let mut cmd = Command::new("nsenter");
    cmd.arg("--target")
        .arg(dep.daemon.pid().unwrap().to_string());
    if !dep.ns.real_root() {
        cmd.arg("--user");
    }
    let out = cmd.arg("--mount").arg("--").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The state directory as the daemon sees it.
fn daemon_view(dep: &Deployment, state: &Path) -> PathBuf {
    Path::new(&format!("/proc/{}/root", dep.daemon.pid().unwrap()))
        .join(state.strip_prefix("/").unwrap())
}

/// Temporary files of interrupted atomic writes in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

fn mint(dep: &Deployment) -> String {
    let v = dep.json(&["pair"]).unwrap();
    v["formattedCode"].as_str().unwrap().to_owned()
}

fn device_names(dep: &Deployment) -> Vec<String> {
    let v = dep.json(&["devices", "list"]).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_full_disk_fails_pairing_with_a_503_and_leaves_no_partial_state() {
    let Some((mut dep, state)) =
        deployment("a_full_disk_fails_pairing_with_a_503_and_leaves_no_partial_state")
    else {
        return;
    };
    restart_daemon_with_mounts(
        &mut dep,
        &state,
        r#"mount -t tmpfs -o size=256k,mode=0700 netclaw-state "$S""#,
    );
    let (status, body) = dep.exchange(&mint(&dep), "before").unwrap();
    assert_eq!(status, 200, "{body}");
    let view = daemon_view(&dep, &state);
    let devices_before = std::fs::read(view.join("devices.json")).unwrap();

    // Fill the file system.
    let filler = view.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        let err = loop {
            if let Err(e) = f.write_all(&chunk) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");
    }

    // Minting needs no disk; storing the device does: 503 with the fixed message, and nothing
    // changed — the registry is the old one, no temporary file is left, the device is not listed.
    let code = mint(&dep);
    let (status, body) = dep.exchange(&code, "during").unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_of(&body), NOT_SAVED);
    assert_eq!(
        std::fs::read(view.join("devices.json")).unwrap(),
        devices_before
    );
    assert_eq!(temp_files(&view), Vec::<String>::new());
    assert_eq!(device_names(&dep), ["before"]);
    assert!(
        dep.daemon.log().contains("No space left on device"),
        "the detail is logged:\n{}",
        dep.daemon.log()
    );
    // Revoking needs the disk too: the CLI says what happened, the device stays.
    let (code_rc, out, err) = dep.run(&["devices", "revoke", "before"]).unwrap();
    assert_eq!(code_rc, 1, "{out}{err}");
    assert!(err.contains(NOT_SAVED), "{err}");
    assert_eq!(device_names(&dep), ["before"]);

    // With space again the same code still pairs: a failed store does not consume it.
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = dep.exchange(&code, "during").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(device_names(&dep), ["before", "during"]);
    assert_eq!(temp_files(&view), Vec::<String>::new());
}

#[test]
fn a_read_only_state_directory_fails_pairing_and_revocation_clearly_and_changes_nothing() {
    let Some((mut dep, state)) = deployment(
        "a_read_only_state_directory_fails_pairing_and_revocation_clearly_and_changes_nothing",
    ) else {
        return;
    };
    // A mount namespace of the daemon's own, where a read-only bind mount of the directory onto
    // itself goes on top later (remounting the directory read-only would fail while the daemon
    // holds audit.log open for writing; the mount on top leaves that open file alone).
    restart_daemon_with_mounts(&mut dep, &state, "true");
    let (status, body) = dep.exchange(&mint(&dep), "phone").unwrap();
    assert_eq!(status, 200, "{body}");
    let view = daemon_view(&dep, &state);
    let devices_before = std::fs::read(view.join("devices.json")).unwrap();

    let state_arg = state.to_str().unwrap();
    in_daemon_mounts(&dep, &["mount", "--bind", "-o", "ro", state_arg, state_arg]);
    let code = mint(&dep);
    let (status, body) = dep.exchange(&code, "tablet").unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_of(&body), NOT_SAVED);
    let (rc, out, err) = dep.run(&["devices", "revoke", "phone"]).unwrap();
    assert_eq!(rc, 1, "{out}{err}");
    assert!(err.contains(NOT_SAVED), "{err}");
    eprintln!(
        "netclaw devices revoke, read-only state: exit {rc}: {}",
        err.trim()
    );
    assert_eq!(
        std::fs::read(view.join("devices.json")).unwrap(),
        devices_before
    );
    assert_eq!(device_names(&dep), ["phone"]);
    assert!(
        dep.daemon.log().contains("Read-only file system"),
        "the detail is logged:\n{}",
        dep.daemon.log()
    );

    in_daemon_mounts(&dep, &["umount", state_arg]);
    let (status, body) = dep.exchange(&code, "tablet").unwrap();
    assert_eq!(status, 200, "{body}");
    let (rc, out, err) = dep.run(&["devices", "revoke", "phone"]).unwrap();
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(device_names(&dep), ["tablet"]);
    assert_eq!(temp_files(&view), Vec::<String>::new());
}

/// Runs `netclaw <args>`, asserting it finishes within [`FAST`]: (exit code, stderr).
fn run_fast(dep: &Deployment, args: &[&str]) -> (i32, String) {
    let started = Instant::now();
    let (code, out, err) = dep.run(args).unwrap();
    let took = started.elapsed();
    assert!(took < FAST, "netclaw {args:?} took {took:?}: {out}{err}");
    (code, format!("{out}{err}"))
}

#[test]
fn an_unreachable_daemon_or_agent_fails_the_cli_fast_with_exit_3() {
    let Some((mut dep, _)) =
        deployment("an_unreachable_daemon_or_agent_fails_the_cli_fast_with_exit_3")
    else {
        return;
    };
    dep.daemon.stop();

    // Through the agent: the agent cannot connect and says so.
    for args in [
        &["whoami"][..],
        &["status"],
        &["devices", "list"],
        &["pair"],
    ] {
        let (code, text) = run_fast(&dep, args);
        assert_eq!(code, 3, "netclaw {args:?}: {text}");
        eprintln!(
            "netclaw {args:?}, daemon stopped: exit {code}: {}",
            text.trim()
        );
        assert!(
            text.contains("could not reach the daemon") || text.contains("unreachable"),
            "netclaw {args:?}: {text}"
        );
    }
    // Straight at the stopped daemon's public listener.
    let endpoint = format!("http://{}:5199", Deployment::DAEMON_IP);
    let (code, text) = run_fast(&dep, &["--endpoint", &endpoint, "status"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains(&endpoint) || text.contains("refused"),
        "{text}"
    );
    // An address nothing in the namespace answers for.
    let (code, text) = run_fast(&dep, &["--endpoint", "http://203.0.113.7:5199", "status"]);
    assert_eq!(code, 3, "{text}");

    // Without the agent either: no endpoint resolves in reverse-proxy mode, and the error names
    // the mode, the socket and how to start the agent.
    dep.stop_agent();
    let (code, text) = run_fast(&dep, &["whoami"]);
    assert_eq!(code, 3, "{text}");
    eprintln!("netclaw whoami, no agent: exit {code}: {}", text.trim());
    let socket = dep.install.socket().unwrap();
    assert!(text.contains("reverse-proxy"), "{text}");
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("netclaw-operator-agent"), "{text}");
}

#[test]
fn an_agent_killed_mid_request_is_reported_by_the_cli() {
    let Some((mut dep, _)) = deployment("an_agent_killed_mid_request_is_reported_by_the_cli")
    else {
        return;
    };

    // A request in flight: the daemon is stopped (SIGSTOP), so the agent waits for its answer
    // when it is killed. (The endpoint is named explicitly: resolving it would first probe the
    // agent's status, which waits for the stopped daemon too.)
    let endpoint = format!("unix:{}", dep.install.socket().unwrap().display());
    dep.daemon.signal(Signal::SIGSTOP).unwrap();
    let mut whoami = dep
        .netclaw(&["--endpoint", &endpoint, "whoami"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        whoami.try_wait().unwrap().is_none(),
        "whoami returned while the daemon was stopped"
    );
    let killed = Instant::now();
    dep.agent.as_ref().unwrap().signal(Signal::SIGKILL).unwrap();
    let out = whoami.wait_with_output().unwrap();
    dep.daemon.signal(Signal::SIGCONT).unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(killed.elapsed() < FAST, "{:?}", killed.elapsed());
    assert_eq!(out.status.code(), Some(3), "{text}");
    eprintln!("netclaw whoami, agent killed mid-request: {}", text.trim());
    assert!(
        text.contains(&endpoint),
        "the CLI names what failed: {text}"
    );
    dep.stop_agent();

    // A stream held open through a fresh agent ends with the same report when the agent dies.
    dep.start_agent().unwrap();
    let mut events = dep
        .netclaw(&["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(events.stderr.take().unwrap());
    let mut note = String::new();
    err.read_line(&mut note).unwrap();
    assert!(note.contains("until interrupted"), "{note}");
    let killed = Instant::now();
    dep.agent.as_ref().unwrap().signal(Signal::SIGKILL).unwrap();
    let status = events.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(killed.elapsed() < FAST, "{:?}", killed.elapsed());
    assert_eq!(status.code(), Some(3), "{rest}");
    eprintln!("netclaw events --follow, agent killed: {}", rest.trim());
    assert!(!rest.trim().is_empty(), "the CLI says why the stream ended");
}

#[test]
fn a_hung_daemon_is_reported_as_the_daemon_not_as_a_missing_agent() {
    let Some((dep, _)) =
        deployment("a_hung_daemon_is_reported_as_the_daemon_not_as_a_missing_agent")
    else {
        return;
    };
    // The daemon stops answering (SIGSTOP: its sockets accept, nothing reads). The CLI's probe
    // of the agent must still get the agent's status (which says the daemon did not answer), and
    // the failure must name the daemon, not tell the operator to start an agent that runs.
    dep.daemon.signal(Signal::SIGSTOP).unwrap();
    let started = Instant::now();
    let (code, out, err) = dep.run(&["whoami"]).unwrap();
    let took = started.elapsed();
    dep.daemon.signal(Signal::SIGCONT).unwrap();
    eprintln!(
        "netclaw whoami, daemon hung: exit {code} after {took:?}: {}",
        err.trim()
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        !err.contains("no endpoint") && !err.contains("start the agent"),
        "the agent runs; the daemon hangs: {err}"
    );
    assert!(err.contains("daemon"), "{err}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // Once it runs again, so does the CLI.
    let (code, out, err) = dep.run(&["whoami"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
}

/// The agent's environment for a clock `offset_secs` off the daemon's, or `None` (the test
/// skips, or fails when namespaces are required) without libfaketime.
fn skewed_clock(test: &str, offset_secs: i64) -> Option<Vec<(String, String)>> {
    let env = faketime_env(offset_secs);
    if env.is_none() {
        if std::env::var_os("NETCLAW_REQUIRE_NAMESPACES").is_some() {
            panic!("{test}: libfaketime is required (apt install faketime)");
        }
        eprintln!("SKIPPED {test}: libfaketime is not installed (apt install faketime)");
    }
    env
}

/// Restarts the agent on a clock `offset_secs` off the daemon's.
fn restart_agent_skewed(dep: &mut Deployment, env: &[(String, String)]) {
    dep.stop_agent();
    dep.start_agent_with_env(env).unwrap();
}

#[test]
fn clocks_five_minutes_apart_still_work_and_a_larger_skew_is_a_clear_error() {
    const TEST: &str = "clocks_five_minutes_apart_still_work_and_a_larger_skew_is_a_clear_error";
    let Some((mut dep, _)) = deployment(TEST) else {
        return;
    };
    let Some(behind_5) = skewed_clock(TEST, -5 * 60) else {
        return;
    };
    let socket = dep.install.socket().unwrap();

    // The agent's clock 5 minutes behind the daemon's, then 5 minutes ahead: certificates the
    // daemon's clock issued (at install, by renewal) and its listener certificate are accepted,
    // requests work, status is healthy and shows the offset.
    for (offset, env) in [(-5 * 60, behind_5), (5 * 60, faketime_env(5 * 60).unwrap())] {
        restart_agent_skewed(&mut dep, &env);
        let (code, out, err) = dep.run(&["whoami", "--json"]).unwrap();
        assert_eq!(code, 0, "agent clock {offset:+} s: {out}{err}");
        assert!(out.contains("LocalOperator"), "{out}");
        let status = agent_status(&socket).unwrap();
        assert_eq!(
            status["healthy"], true,
            "agent clock {offset:+} s: {status}"
        );
        let seen = status["daemonClockOffsetSecs"].as_i64().unwrap();
        assert!(
            (seen + offset).abs() <= 2,
            "agent clock {offset:+} s: {status}"
        );
        // A renewal: the daemon issues with its own clock, the agent checks with its own.
        let before = status["serial"].clone();
        let (rc, body) = unix_request(&socket, "POST", "/agent/v1/rotate", None).unwrap();
        assert_eq!(rc, 200, "agent clock {offset:+} s: {body}");
        let status = agent_status(&socket).unwrap();
        assert_ne!(status["serial"], before, "{status}");
        assert_eq!(status["healthy"], true, "{status}");
        let (code, out, err) = dep.run(&["whoami"]).unwrap();
        assert_eq!(
            code, 0,
            "after renewal, agent clock {offset:+} s: {out}{err}"
        );
    }

    // 20 minutes behind: every certificate the daemon issued is "not valid yet" to the agent,
    // which refuses to start and names both clocks and the fix.
    dep.stop_agent();
    let log = dep.install.log("agent-behind");
    let mut agent = {
        let mut cmd = dep.agent_command();
        cmd.envs(faketime_env(-20 * 60).unwrap());
        Proc::spawn("netclaw-operator-agent", cmd, &log).unwrap()
    };
    wait_for("the agent to exit", Duration::from_secs(10), || {
        (!agent.running()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    let text = agent.log();
    eprintln!("agent 20 min behind the daemon: {}", text.trim());
    assert!(text.contains("not valid yet"), "{text}");
    assert!(text.contains("clock"), "{text}");
    assert!(text.contains("timedatectl"), "{text}");
    assert!(
        !text.contains("re-issue"),
        "the certificate is fine: {text}"
    );

    // 20 minutes ahead: nothing the agent checks is out of its window, so requests still work,
    // but status is unhealthy and says the clocks disagree, by how much, and the fix.
    restart_agent_skewed(&mut dep, &faketime_env(20 * 60).unwrap());
    let (code, out, err) = dep.run(&["whoami"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let status = agent_status(&socket).unwrap();
    assert_eq!(status["healthy"], false, "{status}");
    let problems = status["problems"].to_string();
    assert!(
        problems.contains("clock is 1200 s behind")
            || problems.contains("clock is 1199 s behind")
            || problems.contains("clock is 1201 s behind"),
        "{status}"
    );
    let (code, out, err) = dep.run(&["status"]).unwrap();
    eprintln!("netclaw status, agent 20 min ahead: exit {code}: {out}{err}");
    assert!(format!("{out}{err}").contains("timedatectl"), "{out}{err}");
}
