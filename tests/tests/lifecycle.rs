//! Certificate lifecycle with real processes in a namespace: automatic renewal, rotation under
//! load, and reloads of bad credentials.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netclaw_tests::ns::namespace_or_skip;
use netclaw_tests::{agent_status, load, unix_request, wait_for, Deployment};

fn deployment(test: &str, extra: &[&str]) -> Option<Deployment> {
    let ns = namespace_or_skip(test)?;
    let mut dep = Deployment::start(ns, extra).expect("deployment starts");
    dep.start_agent().expect("agent starts");
    Some(dep)
}

#[test]
fn a_two_minute_certificate_renews_itself_without_a_failed_request() {
    let Some(dep) = deployment(
        "a_two_minute_certificate_renews_itself_without_a_failed_request",
        &["--certificate-lifetime", "2m"],
    ) else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let first = agent_status(&socket).unwrap();
    let serial = first["serial"].as_str().unwrap().to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || load(&socket, "/api/whoami", 2, stop))
    };
    // Renewal is due at 72–80 s of the 120 s lifetime.
    let renewed = wait_for("automatic renewal", Duration::from_secs(110), || {
        let s = agent_status(&socket).ok()?;
        (s["serial"].as_str()? != serial).then_some(s)
    });
    // Keep the load on across the old serial's grace period and the swap.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let report = loader.join().unwrap();
    let renewed = renewed
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", dep.agent.as_ref().unwrap().log()));
    assert!(renewed["lastRenewal"].is_string(), "{renewed}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.ok > 0, "{report:?}");
}

#[test]
fn rotation_under_load_fails_no_request_and_retires_the_old_serial() {
    let Some(dep) = deployment(
        "rotation_under_load_fails_no_request_and_retires_the_old_serial",
        &[],
    ) else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || load(&socket, "/api/whoami", 4, stop))
    };
    let mut serials = vec![agent_status(&socket).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_owned()];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        let (code, out, err) = dep.run(&["pki", "rotate", "--json"]).unwrap();
        assert_eq!(code, 0, "{out}{err}");
        let rotated: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            rotated["previousSerial"],
            *serials.last().unwrap(),
            "{rotated}"
        );
        serials.push(rotated["serial"].as_str().unwrap().to_owned());
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let report = loader.join().unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.ok > 100, "{report:?}");

    // The registry lists the old serials superseded (refused after the grace period) and only
    // the newest active.
    let registry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dep.install
                .root
                .path()
                .join("var/lib/netclaw/pki/registry.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for (i, serial) in serials.iter().enumerate() {
        let entry = registry["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["serial"] == *serial)
            .unwrap_or_else(|| panic!("{serial} not in {registry}"));
        let want = if i + 1 == serials.len() {
            "active"
        } else {
            "superseded"
        };
        assert_eq!(entry["status"]["state"], want, "{entry}");
    }
}

#[test]
fn a_bad_certificate_on_reload_keeps_the_old_one_and_is_reported() {
    let Some(dep) = deployment(
        "a_bad_certificate_on_reload_keeps_the_old_one_and_is_reported",
        &[],
    ) else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let before = agent_status(&socket).unwrap();
    let agent_dir = dep
        .install
        .root
        .path()
        .join("var/lib/netclaw-operator-agent");
    let cert = agent_dir.join("client.crt");
    let good = std::fs::read(&cert).unwrap();

    // A corrupt certificate file.
    std::fs::write(
        &cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    dep.agent
        .as_ref()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    let status = wait_for(
        "the reload failure in status",
        Duration::from_secs(20),
        || {
            let s = agent_status(&socket).ok()?;
            s["lastReloadError"].is_string().then_some(s)
        },
    )
    .unwrap();
    assert_eq!(status["serial"], before["serial"], "{status}");
    assert_eq!(status["healthy"], false, "{status}");
    let (code, body) = unix_request(&socket, "GET", "/api/whoami", None).unwrap();
    assert_eq!(code, 200, "{body}");

    // A certificate that does not belong to the key (another agent's, from a second install).
    let other = netclaw_tests::Install::new(
        &dep.bins,
        Some(&dep.ns),
        &[
            "--exposure",
            "reverse-proxy",
            "--bind",
            Deployment::DAEMON_IP,
            "--trusted-proxy",
            Deployment::PROXY_IP,
        ],
    )
    .unwrap();
    let foreign = std::fs::read(
        other
            .root
            .path()
            .join("var/lib/netclaw-operator-agent/client.crt"),
    )
    .unwrap();
    std::fs::write(&cert, &foreign).unwrap();
    dep.agent
        .as_ref()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    wait_for("the mismatch in status", Duration::from_secs(20), || {
        let s = agent_status(&socket).ok()?;
        s["lastReloadError"]
            .as_str()
            .filter(|e| e.contains("does not belong") || e.contains("match"))
            .map(drop)
    })
    .unwrap();
    let (code, body) = unix_request(&socket, "GET", "/api/whoami", None).unwrap();
    assert_eq!(code, 200, "{body}");

    // Putting the good file back clears the error.
    std::fs::write(&cert, &good).unwrap();
    dep.agent
        .as_ref()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGHUP)
        .unwrap();
    wait_for("recovery", Duration::from_secs(20), || {
        agent_status(&socket).ok()?["lastReloadError"]
            .is_null()
            .then_some(())
    })
    .unwrap();
}

/// A TLS 1.3 handshake plus `GET /api/whoami` against the operator listener with the given
/// client certificate and key files, using `openssl s_client` inside the namespace: whether the
/// daemon answered 200.
fn operator_answers_with(dep: &Deployment, cert: &std::path::Path, key: &std::path::Path) -> bool {
    operator_request(
        dep,
        cert,
        key,
        b"GET /api/whoami HTTP/1.1\r\nHost: daemon\r\nConnection: close\r\n\r\n",
    )
    .starts_with("HTTP/1.1 200")
}

/// One request (`raw`, with `Connection: close`) over a TLS 1.3 connection to the operator
/// listener presenting the given client certificate and key files, using `openssl s_client`
/// inside the namespace: the raw answer.
fn operator_request(
    dep: &Deployment,
    cert: &std::path::Path,
    key: &std::path::Path,
    raw: &[u8],
) -> String {
    use std::io::Write;
    let ca = dep.install.root.path().join("var/lib/netclaw/pki/ca.crt");
    let mut child = dep
        .ns
        .command("openssl")
        .args(["s_client", "-quiet", "-tls1_3", "-connect"])
        .arg(format!("{}:5200", Deployment::DAEMON_IP))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-CAfile")
        .arg(&ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(raw);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rotations_and_a_ca_rotation_under_load_fail_no_request() {
    let Some(ns) = namespace_or_skip("rotations_and_a_ca_rotation_under_load_fail_no_request")
    else {
        return;
    };
    let mut dep = Deployment::start_with(ns, &[], |c| {
        c["Operator"]["RotationGrace"] = "3s".into();
    })
    .unwrap();
    dep.start_agent().unwrap();
    let socket = dep.install.socket().unwrap();
    let agent_dir = dep
        .install
        .root
        .path()
        .join("var/lib/netclaw-operator-agent");
    let saved = dep.install.root.path().join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    let save = |i: usize| {
        for f in ["client.crt", "client.key"] {
            std::fs::copy(agent_dir.join(f), saved.join(format!("{i}-{f}"))).unwrap();
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || load(&socket, "/api/whoami", 8, stop))
    };
    let started = std::time::Instant::now();
    let mut retired = 0;
    for i in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        save(i);
        retired += 1;
        let (code, out, err) = dep.run(&["pki", "rotate"]).unwrap();
        assert_eq!(code, 0, "{out}{err}");
    }
    for step in ["prepare", "activate", "retire"] {
        if step == "activate" {
            save(3);
            retired += 1;
        }
        let (code, out, err) = dep.run(&["pki", "rotate", "--ca", step]).unwrap();
        assert_eq!(code, 0, "--ca {step}: {out}{err}");
    }
    // Keep the load on for 20 s in all.
    if let Some(rest) = Duration::from_secs(20).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::Relaxed);
    let report = loader.join().unwrap();
    let rate = report.ok as f64 / report.elapsed.as_secs_f64();
    eprintln!(
        "load through the agent: {} ok, {} failed in {:.1?} ({rate:.0} requests/s, 8 clients)",
        report.ok, report.failed, report.elapsed
    );
    assert_eq!(report.failed, 0, "{report:?}");

    // After the grace period, every superseded certificate is refused by a fresh handshake,
    // while the current one is served.
    std::thread::sleep(Duration::from_secs(4));
    assert!(operator_answers_with(
        &dep,
        &agent_dir.join("client.crt"),
        &agent_dir.join("client.key")
    ));
    for i in 0..retired {
        let (cert, key) = (
            saved.join(format!("{i}-client.crt")),
            saved.join(format!("{i}-client.key")),
        );
        assert!(
            !operator_answers_with(&dep, &cert, &key),
            "old certificate {i} still accepted"
        );
    }
    // The CA rotation finished: one CA in both bundles.
    let (code, out, err) = dep.run(&["pki", "status", "--json"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["caRotation"], "none", "{status}");
}

fn audit_log(dep: &Deployment) -> String {
    std::fs::read_to_string(dep.install.root.path().join("var/lib/netclaw/audit.log"))
        .unwrap_or_default()
}

#[test]
fn a_superseded_key_used_after_its_successor_is_a_suspected_clone_and_can_lock_the_identity() {
    let Some(ns) = namespace_or_skip(
        "a_superseded_key_used_after_its_successor_is_a_suspected_clone_and_can_lock_the_identity",
    ) else {
        return;
    };
    let mut dep = Deployment::start_with(ns, &[], |c| {
        c["Operator"]["LockOnSuspectedClone"] = true.into();
    })
    .unwrap();
    dep.start_agent().unwrap();
    let agent_dir = dep
        .install
        .root
        .path()
        .join("var/lib/netclaw-operator-agent");
    let saved = dep.install.root.path().join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    for f in ["client.crt", "client.key"] {
        std::fs::copy(agent_dir.join(f), saved.join(f)).unwrap();
    }
    let (code, out, err) = dep.run(&["pki", "rotate"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    // The agent uses its new certificate, and keeps using it past the settle time.
    let (code, out, err) = dep.run(&["whoami"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    std::thread::sleep(Duration::from_secs(6));
    assert!(!audit_log(&dep).contains("possible-key-clone"));

    // Someone else presents the old certificate (still inside its grace period).
    let _ = operator_answers_with(&dep, &saved.join("client.crt"), &saved.join("client.key"));
    wait_for("the clone audit event", Duration::from_secs(10), || {
        let log = audit_log(&dep);
        (log.contains("possible-key-clone") && log.contains("identity-locked")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", audit_log(&dep)));

    // Locked: the agent's current certificate is revoked too, until an operator re-issues.
    let (code, out, err) = dep.run(&["whoami"]).unwrap();
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains("netclaw pki rotate --offline"), "{err}");
    let (code, out, err) = dep.run(&["pki", "rotate", "--offline"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let who = wait_for("service after re-issue", Duration::from_secs(20), || {
        let (code, out, _) = dep.run(&["whoami", "--json"]).ok()?;
        (code == 0).then_some(out)
    })
    .unwrap();
    assert!(who.contains("LocalOperator"), "{who}");
}

/// Copies the agent's certificate and key aside, as someone who can read them would: their paths.
fn steal_agent_key(dep: &Deployment) -> (std::path::PathBuf, std::path::PathBuf) {
    let agent_dir = dep
        .install
        .root
        .path()
        .join("var/lib/netclaw-operator-agent");
    let stolen = dep.install.root.path().join("stolen");
    std::fs::create_dir_all(&stolen).unwrap();
    for f in ["client.crt", "client.key"] {
        std::fs::copy(agent_dir.join(f), stolen.join(f)).unwrap();
    }
    (stolen.join("client.crt"), stolen.join("client.key"))
}

/// The holder of a copied key asks for a certificate as the agent does: the agent's own renewal
/// request (a CSR for a new key, no caller headers) over mTLS with the copied certificate. The
/// raw answer.
fn renew_with_copy(dep: &Deployment, cert: &std::path::Path, key: &std::path::Path) -> String {
    let new_key = netclaw_pki::PrivateKey::generate().unwrap();
    let body = serde_json::json!({ "csr": new_key.certificate_signing_request_pem().unwrap() })
        .to_string();
    let raw = format!(
        "POST /api/local-control/v1/pki/certificate HTTP/1.1\r\nHost: daemon\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    operator_request(dep, cert, key, raw.as_bytes())
}

/// The active agent serials in the daemon's registry.
fn active_agent_serials(dep: &Deployment) -> Vec<String> {
    let pki = netclaw_pki::store::DaemonPkiPaths::new(
        dep.install.root.path().join("var/lib/netclaw/pki"),
    );
    netclaw_pki::store::load_registry(&pki)
        .unwrap()
        .active(netclaw_pki::registry::CertificateKind::Agent)
        .map(|e| e.serial.to_string())
        .collect()
}

fn wait_for_audit(dep: &Deployment, needles: &[&str]) {
    wait_for("the audit event", Duration::from_secs(10), || {
        audit_log(dep)
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {needles:?} in\n{}", audit_log(dep)));
}

#[test]
fn a_copy_of_a_key_replaced_offline_cannot_renew_inside_the_grace_period() {
    let Some(dep) = deployment(
        "a_copy_of_a_key_replaced_offline_cannot_renew_inside_the_grace_period",
        &[],
    ) else {
        return;
    };
    let socket = dep.install.socket().unwrap();
    let (cert, key) = steal_agent_key(&dep);
    let old = agent_status(&socket).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = dep.json(&["pki", "rotate", "--offline"]).unwrap();
    let new = rotated["serial"].as_str().unwrap().to_owned();

    // Inside the grace period (60 s by default), before the agent used its new certificate:
    // the old serial never asked for a renewal, so there is no lost answer to make up for.
    let answer = renew_with_copy(&dep, &cert, &key);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    wait_for_audit(
        &dep,
        &["renewal-refused", &old, "superseded-by-replacement"],
    );
    assert!(!audit_log(&dep).contains("lost-answer-renewal"));
    assert_eq!(active_agent_serials(&dep), std::slice::from_ref(&new));

    // The agent is not locked out: it serves with its new certificate.
    wait_for(
        "the agent on its new certificate",
        Duration::from_secs(20),
        || {
            let (code, _, _) = dep.run(&["whoami"]).ok()?;
            (code == 0 && agent_status(&socket).ok()?["serial"] == new.as_str()).then_some(())
        },
    )
    .unwrap();
    assert_eq!(active_agent_serials(&dep), [new]);
}

#[test]
fn a_copy_of_the_key_before_a_rotation_cannot_renew_although_no_request_followed() {
    let Some(dep) = deployment(
        "a_copy_of_the_key_before_a_rotation_cannot_renew_although_no_request_followed",
        &[],
    ) else {
        return;
    };
    let (cert, key) = steal_agent_key(&dep);
    let rotated = dep.json(&["pki", "rotate"]).unwrap();
    let (old, new) = (
        rotated["previousSerial"].as_str().unwrap().to_owned(),
        rotated["serial"].as_str().unwrap().to_owned(),
    );

    // No request through the agent since the rotation (not even its status, which probes the
    // daemon): only the agent's own confirming handshake used the new certificate. The copy
    // of the old key, inside the grace period, may not renew as if the answer had been lost.
    let answer = renew_with_copy(&dep, &cert, &key);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    wait_for_audit(
        &dep,
        &["renewal-refused", &old, "superseded-successor-in-use"],
    );
    wait_for_audit(&dep, &["possible-key-clone", &old]);
    assert!(!audit_log(&dep).contains("lost-answer-renewal"));
    assert_eq!(active_agent_serials(&dep), std::slice::from_ref(&new));

    // The agent keeps its certificate and serves.
    let (code, out, err) = dep.run(&["whoami"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let socket = dep.install.socket().unwrap();
    assert_eq!(agent_status(&socket).unwrap()["serial"], new.as_str());
}
