//! Recovery with real processes in a namespace: an agent certificate that expired, and one that
//! was revoked, are both reported by the CLI with the fix — `netclaw pki rotate --offline` —
//! and that command restores service without restarting the daemon or the agent.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use netclaw_pki::registry::CertificateKind;
use netclaw_pki::store::{self, AgentPaths, DaemonPkiPaths};
use netclaw_pki::{CertificateLifetime, SpiffeId};
use netclaw_tests::ns::namespace_or_skip;
use netclaw_tests::{agent_status, wait_for, Deployment};

const ROTATE_OFFLINE: &str = "netclaw pki rotate --offline";

fn deployment(test: &str) -> Option<Deployment> {
    let ns = namespace_or_skip(test)?;
    let mut dep = Deployment::start(ns, &[]).expect("deployment starts");
    dep.start_agent().expect("agent starts");
    Some(dep)
}

fn pki(dep: &Deployment) -> DaemonPkiPaths {
    DaemonPkiPaths::new(dep.install.root.path().join("var/lib/netclaw/pki"))
}

fn agent_paths(dep: &Deployment) -> AgentPaths {
    AgentPaths::new(
        dep.install
            .root
            .path()
            .join("var/lib/netclaw-operator-agent"),
    )
}

/// The pids of the daemon and the agent, to show later that neither was restarted.
fn pids(dep: &Deployment) -> (u32, u32) {
    (
        dep.daemon.pid().unwrap(),
        dep.agent.as_ref().unwrap().pid().unwrap(),
    )
}

fn assert_not_restarted(dep: &mut Deployment, before: (u32, u32)) {
    assert_eq!(pids(dep), before);
    assert!(dep.daemon.running(), "daemon log:\n{}", dep.daemon.log());
    let agent = dep.agent.as_mut().unwrap();
    assert!(agent.running(), "agent log:\n{}", agent.log());
}

/// Waits until `netclaw whoami --json` through the agent answers `LocalOperator`.
fn wait_for_local_operator(dep: &Deployment, within: Duration) {
    let res = wait_for("whoami as LocalOperator", within, || {
        let (code, out, _) = dep.run(&["whoami", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (code == 0 && v["principal"] == "LocalOperator").then_some(())
    });
    if let Err(e) = res {
        panic!(
            "{e}\nlast whoami: {:?}\nagent log:\n{}\ndaemon log:\n{}",
            dep.run(&["whoami"]).unwrap(),
            dep.agent.as_ref().unwrap().log(),
            dep.daemon.log()
        );
    }
}

/// `netclaw pki rotate --offline --json`, asserting success; returns the new serial.
fn rotate_offline(dep: &Deployment) -> String {
    let (code, out, err) = dep.run(&["pki", "rotate", "--offline", "--json"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["serial"].as_str().unwrap().to_owned()
}

/// Replaces the agent's key and certificate with a certificate from the install's real CA, for
/// this host's identity, that expired a day ago, and lists it active in the registry (so that
/// expiry is the only thing wrong with it).
fn install_expired_certificate(dep: &Deployment) -> String {
    let (pki, agent) = (pki(dep), agent_paths(dep));
    let _lock = store::lock_registry(&pki).unwrap();
    let ca = store::load_ca(&pki).unwrap();
    let current = store::load_agent(&agent).unwrap();
    let info = netclaw_pki::verify::inspect(&current.cert.der).unwrap();
    let id: SpiffeId = info
        .sans
        .iter()
        .find_map(|s| s.strip_prefix("URI:"))
        .unwrap()
        .parse()
        .unwrap();
    let issued_at = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let day = CertificateLifetime::new(Duration::from_secs(86_400)).unwrap();
    let expired = ca.issue_agent(&id, issued_at, day).unwrap();
    let mut registry = store::load_registry(&pki).unwrap();
    registry.record(
        expired.cert.serial.clone(),
        CertificateKind::Agent,
        id.to_string(),
        issued_at,
        expired.cert.not_after,
    );
    store::save_registry(&pki, &registry).unwrap();
    let bundle = std::fs::read_to_string(pki.ca_cert()).unwrap();
    store::save_agent_pair(&agent, &expired.key, &expired.cert.pem, &bundle).unwrap();
    expired.cert.serial.to_string()
}

#[test]
fn an_expired_agent_certificate_is_named_and_rotate_offline_restores_service() {
    let Some(mut dep) =
        deployment("an_expired_agent_certificate_is_named_and_rotate_offline_restores_service")
    else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let before = pids(&dep);
    wait_for_local_operator(&dep, Duration::from_secs(10));

    let expired = install_expired_certificate(&dep);
    dep.agent
        .as_ref()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    let status = wait_for(
        "the agent to load the expired certificate",
        Duration::from_secs(20),
        || {
            let s = agent_status(&socket).ok()?;
            (s["serial"] == expired.as_str() && s["daysLeft"].as_i64()? < 0).then_some(s)
        },
    )
    .unwrap();
    assert_eq!(status["healthy"], false, "{status}");

    // `status` exits 5 and names the fix.
    let (code, out, err) = dep.run(&["status"]).unwrap();
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains(ROTATE_OFFLINE), "{out}{err}");
    // So does a request through the agent (its 503 credential-expired).
    let (code, out, err) = dep.run(&["whoami"]).unwrap();
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains(ROTATE_OFFLINE), "{out}{err}");
    // `doctor` fails (exit 1, as for every failing check) with the fix on the failing check.
    let (code, out, err) = dep.run(&["doctor"]).unwrap();
    assert_eq!(code, 1, "{out}{err}");
    let line = out
        .lines()
        .skip_while(|l| !l.starts_with("FAIL  agent-certificate"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(line.contains("expired"), "{out}");
    assert!(line.contains(ROTATE_OFFLINE), "{out}");
    assert!(!line.contains("then restart"), "{out}");

    // The fix, with neither process restarted.
    let started = Instant::now();
    let serial = rotate_offline(&dep);
    wait_for_local_operator(&dep, Duration::from_secs(10));
    eprintln!(
        "service restored {:?} after the rotation",
        started.elapsed()
    );
    let status = agent_status(&socket).unwrap();
    assert_eq!(status["serial"], serial.as_str(), "{status}");
    assert!(status["daysLeft"].as_i64().unwrap() > 0, "{status}");
    let (code, out, err) = dep.run(&["status"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_not_restarted(&mut dep, before);
}

#[test]
fn a_revoked_agent_is_cut_off_and_rotate_offline_restores_service() {
    let Some(mut dep) =
        deployment("a_revoked_agent_is_cut_off_and_rotate_offline_restores_service")
    else {
        return;
    };
    let before = pids(&dep);
    wait_for_local_operator(&dep, Duration::from_secs(10));

    // An event stream held open through the agent.
    let mut events = dep
        .netclaw(&["events", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut note = String::new();
    let mut events_err = BufReader::new(events.stderr.take().unwrap());
    events_err.read_line(&mut note).unwrap();
    assert!(note.contains("until interrupted"), "{note}");

    let (code, out, err) = dep.run(&["pki", "revoke", "--agent", "--json"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        !report["revoked"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(report["agentCutOff"], true, "{report}");
    assert!(
        report["next"].as_str().unwrap().contains(ROTATE_OFFLINE),
        "{report}"
    );

    // The open stream ends (the daemon cuts the revoked serial's connections).
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = events.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = events.kill();
            panic!("events --follow still running after the revocation");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut events_err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(3), "{rest}");

    // From now on every request fails: the daemon has re-read the registry (it cut the stream)
    // and refuses the agent's certificate in the handshake. The CLI says so with exit 5 and the
    // fix (a request that races a pooled connection being closed may first see exit 3).
    let mut attempts = Vec::new();
    let refused = wait_for("whoami to be refused", Duration::from_secs(10), || {
        let r = dep.run(&["whoami"]).unwrap();
        attempts.push(r.clone());
        (r.0 == 5).then_some(r)
    });
    assert!(
        attempts.iter().all(|(code, _, _)| *code == 3 || *code == 5),
        "{attempts:#?}"
    );
    let (_, out, err) = refused.unwrap_or_else(|e| panic!("{e}: {attempts:#?}"));
    assert!(err.contains(ROTATE_OFFLINE), "{out}{err}");
    assert!(err.contains("revoked"), "{out}{err}");
    eprintln!("whoami attempts until exit 5: {}", attempts.len());
    // The agent's own status names the fix too.
    let status = agent_status(&dep.install.socket().unwrap()).unwrap();
    assert_eq!(status["healthy"], false, "{status}");
    assert!(
        status["problems"].to_string().contains(ROTATE_OFFLINE),
        "{status}"
    );

    // Revoking an unknown serial names `pki status` and changes nothing.
    let (code, out, err) = dep.run(&["pki", "revoke", "0abc"]).unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("netclaw pki status"), "{out}{err}");

    let serial = rotate_offline(&dep);
    wait_for_local_operator(&dep, Duration::from_secs(10));
    assert_eq!(
        agent_status(&dep.install.socket().unwrap()).unwrap()["serial"],
        serial.as_str()
    );
    assert_not_restarted(&mut dep, before);
}
