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
