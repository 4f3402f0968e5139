//! `netclaw` through a real `netclaw-operator-agent` and `netclaw-daemon` (local mode, loopback
//! ports): the socket is preferred over loopback, the daemon sees `LocalOperator` with this
//! process's uid, events stream through the agent, `pki rotate` re-issues the certificate and
//! `doctor` checks the whole path.

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ok, stdout, Install, Process};

fn json(o: &std::process::Output) -> Value {
    ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn commands_go_through_the_agent_when_it_answers() {
    let install = Install::local();
    let _daemon = Process::start(&install);
    let _agent = Process::start_agent(&install);

    let who = json(&install.run(&["whoami", "--json"]));
    assert_eq!(who["principal"], "LocalOperator", "{who}");
    assert_eq!(who["transport"], "operator-mtls");
    assert_eq!(
        who["caller"]["uid"].as_u64().unwrap(),
        u64::from(nix::unistd::getuid().as_raw())
    );

    let status = json(&install.run(&["status", "--json"]));
    assert_eq!(
        status["endpoint"],
        format!("unix:{}", install.socket().display())
    );
    assert_eq!(status["agent"]["healthy"], true, "{status:#}");
    let serial = status["agent"]["serial"].as_str().unwrap().to_owned();

    // Events through the agent's proxied SSE stream.
    let mut events = install
        .cmd(&["events", "--json", "--idle", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(events.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("the operator agent"), "{line}");
    let pair = json(&install.run(&["pair", "--json"]));
    assert!(pair["joinCommand"]
        .as_str()
        .unwrap()
        .contains(&install.url()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "events did not stop when idle");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = events.wait_with_output().unwrap();
    ok(&out);
    let first: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "pairing-code-minted");
    assert!(
        first["principal"]
            .as_str()
            .unwrap()
            .starts_with("LocalOperator("),
        "{first}"
    );

    // Rotation through the agent.
    let rotated = json(&install.run(&["pki", "rotate", "--json"]));
    assert_eq!(rotated["previousSerial"], serial.as_str());
    assert_ne!(rotated["serial"], serial.as_str());
    let status = json(&install.run(&["status", "--json"]));
    assert_eq!(status["agent"]["serial"], rotated["serial"]);

    let report = json(&install.run(&["doctor", "--json"]));
    assert_eq!(report["ok"], true, "{report:#}");
    let outcome = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["outcome"].clone())
    };
    assert_eq!(outcome("agent-socket").unwrap(), "pass");
    assert_eq!(outcome("agent-status").unwrap(), "pass");
    assert_eq!(outcome("daemon-through-agent").unwrap(), "pass");
}

/// A member of the operators group (here `nobody`, allowed by `Operator.AllowedUsers`, the socket
/// given to its group) runs `doctor`: the daemon's and the agent's directories are 0700, so the
/// PKI checks say they need root instead of failing, nothing suggests the destructive
/// `install --force`, and the checks this user can run (the agent, the daemon through it) pass.
#[test]
fn doctor_as_an_operator_checks_what_it_can_and_says_what_needs_root() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: running the CLI as another user needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let install = Install::tunnel(&["--operator-user", "nobody"]);
    std::fs::set_permissions(install.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The socket's directory belongs to the operators' group (as tmpfiles.d makes it); the
    // agent, started without socket activation, gives its socket that group.
    let run_dir = install.socket().parent().unwrap().to_owned();
    std::os::unix::fs::chown(&run_dir, None, Some(nobody.gid.as_raw())).unwrap();
    let _daemon = Process::start(&install);
    let _agent = Process::start_agent(&install);
    {
        use std::os::unix::fs::MetadataExt as _;
        let gid = std::fs::metadata(install.socket()).unwrap().gid();
        assert_eq!(
            gid,
            nobody.gid.as_raw(),
            "the socket did not take its directory's group"
        );
    }

    let as_operator = |args: &[&str]| {
        install
            .cmd(args)
            .uid(nobody.uid.as_raw())
            .gid(nobody.gid.as_raw())
            .output()
            .unwrap()
    };
    let out = as_operator(&["doctor", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), support::stderr(&out)));
    assert_eq!(report["ok"], true, "{report:#}");
    ok(&out);
    let checks = report["checks"].as_array().unwrap();
    let outcome = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {report:#}"))["outcome"]
            .clone()
    };
    for name in ["pki-files", "key-permissions", "file-permissions", "clock"] {
        assert_eq!(outcome(name), "needs-root", "{name}: {report:#}");
    }
    for name in ["agent-socket", "agent-status", "daemon-through-agent"] {
        assert_eq!(outcome(name), "pass", "{name}: {report:#}");
    }
    for c in checks {
        assert!(
            !c["fix"].as_str().unwrap_or_default().contains("--force"),
            "{c:#}"
        );
    }
    let text = stdout(&as_operator(&["doctor"]));
    assert!(text.contains("need root (`sudo netclaw doctor`)"), "{text}");

    // A socket with another group (as an agent started without its socket unit made it before):
    // doctor names the cause, not "join the group".
    std::os::unix::fs::chown(install.socket(), None, Some(0)).unwrap();
    let report: Value = serde_json::from_slice(&as_operator(&["doctor", "--json"]).stdout).unwrap();
    let socket_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent-socket")
        .unwrap()
        .clone();
    assert_eq!(socket_check["outcome"], "fail", "{report:#}");
    let fix = socket_check["fix"].as_str().unwrap();
    assert!(
        fix.contains("systemctl restart netclaw-operator-agent.socket"),
        "{socket_check:#}"
    );
    assert!(!fix.contains("usermod"), "{socket_check:#}");
    std::os::unix::fs::chown(install.socket(), None, Some(nobody.gid.as_raw())).unwrap();

    // Root checks everything.
    let report = json(&install.run(&["doctor", "--json"]));
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "pass"),
        "{report:#}"
    );
}

/// Moving the listeners to an address the operator CA's name constraints do not permit: the
/// documented path (`daemon install --force --bind NEW --operator-host NEW` is refused naming
/// `--replace-ca`, changes nothing; with it, the settings move, a new CA is issued for the new
/// address; restart both services) ends with the CLI reaching the daemon through the agent.
#[test]
fn moving_the_listeners_to_a_new_address_with_replace_ca_works_after_a_restart() {
    let install = Install::tunnel(&["--certificate-lifetime", "3d"]);
    let root = install.root().to_str().unwrap().to_owned();
    let daemon = Process::start(&install);
    let agent = Process::start_agent(&install);
    ok(&install.run(&["whoami"]));
    let config_before = std::fs::read(install.config()).unwrap();

    let mv = |extra: &[&str]| {
        let mut args = vec![
            "daemon",
            "install",
            "--root",
            &root,
            "--force",
            "--bind",
            "127.0.0.2",
            "--operator-host",
            "127.0.0.2",
        ];
        args.extend_from_slice(extra);
        support::netclaw(&args)
    };
    let refused = mv(&[]);
    support::code(&refused, 5);
    assert!(
        support::stderr(&refused).contains("--replace-ca"),
        "{}",
        support::stderr(&refused)
    );
    assert_eq!(std::fs::read(install.config()).unwrap(), config_before);

    let out = mv(&["--replace-ca", "--json"]);
    let report = json(&out);
    let changes: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "Daemon.Host: unset -> \"127.0.0.2\"",
            "Operator.Host: unset -> \"127.0.0.2\""
        ],
        "{report:#}"
    );
    assert_eq!(report["caKept"], false);
    let config: Value = serde_json::from_slice(&std::fs::read(install.config()).unwrap()).unwrap();
    assert_eq!(
        config["Operator"]["CertificateLifetime"], "3d",
        "{config:#}"
    );

    drop((daemon, agent));
    let _daemon = Process::start_on(&install, "127.0.0.2".parse().unwrap());
    let _agent = Process::start_agent(&install);
    let who = json(&install.run(&["whoami", "--json"]));
    assert_eq!(who["principal"], "LocalOperator", "{who}");
    let status = json(&install.run(&["pki", "status", "--json"]));
    assert_eq!(status["healthy"], true, "{status:#}");
}

fn wait_until(what: &str, mut f: impl FnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A key mode broken and fixed again is seen by the agent without a reload (its file poll
/// follows the status-change time, not only the modification time); `pki status` and `doctor`
/// agree on a revoked agent certificate (it was "healthy" to `pki status`).
#[test]
fn a_fixed_key_mode_heals_without_a_reload_and_pki_status_agrees_with_doctor() {
    use std::os::unix::fs::PermissionsExt;
    let install = Install::local();
    let _daemon = Process::start(&install);
    let _agent = Process::start_agent(&install);
    let key = install
        .root()
        .join("var/lib/netclaw-operator-agent/client.key");
    let agent_healthy = |want: bool| {
        let s = json(&install.run(&["status", "--json"]));
        (s["agent"]["healthy"] == want).then_some(s)
    };

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = wait_until("the agent to refuse the readable key", || {
        agent_healthy(false)
    });
    assert!(
        s["agent"]["problems"].to_string().contains("client.key"),
        "{s:#}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_until("the agent to take the fixed key back", || {
        agent_healthy(true)
    });

    let status = json(&install.run(&["pki", "status", "--json"]));
    assert_eq!(status["healthy"], true, "{status:#}");
    ok(&install.run(&["pki", "revoke", "--agent"]));
    let out = install.run(&["pki", "status"]);
    support::code(&out, 5);
    let text = stdout(&out);
    assert!(text.contains("status: UNHEALTHY"), "{text}");
    assert!(text.contains("problem: operator-agent: revoked"), "{text}");
    assert!(text.contains("netclaw pki rotate --offline"), "{text}");
    let report: Value = serde_json::from_slice(&install.run(&["doctor", "--json"]).stdout).unwrap();
    let agent_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent-certificate")
        .unwrap()
        .clone();
    assert_eq!(agent_check["outcome"], "fail", "{report:#}");
    assert!(
        agent_check["detail"].as_str().unwrap().contains("revoked"),
        "{agent_check:#}"
    );
}

/// The CA rotation's phases take seconds each: each says on stderr what it is doing, while
/// stdout stays one JSON document for `--json`.
#[test]
fn ca_rotation_phases_say_what_they_do_on_stderr_and_keep_json_clean() {
    let install = Install::local();
    let _daemon = Process::start(&install);
    let _agent = Process::start_agent(&install);
    for (step, says) in [
        ("prepare", "generating a new operator CA"),
        (
            "activate",
            "issuing the listener certificate from the new CA",
        ),
        (
            "retire",
            "checking that the listener and agent certificates chain to the new CA",
        ),
    ] {
        let out = install.run(&["pki", "rotate", "--ca", step, "--json"]);
        let report = json(&out);
        let err = support::stderr(&out);
        assert!(report["phase"].is_string(), "{report:#}");
        assert!(err.contains(&format!("netclaw: {says}")), "{step}: {err}");
        assert!(
            err.contains("netclaw: waiting 2.5 s for the daemon"),
            "{step}: {err}"
        );
    }
    let who = json(&install.run(&["whoami", "--json"]));
    assert_eq!(who["principal"], "LocalOperator", "{who}");
}
