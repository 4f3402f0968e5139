//! No secret reaches a log: with both processes logging at `debug`, a device pairs (pairing code,
//! bearer token), uses its token, is revoked, and the agent renews its certificate (a new key);
//! then the daemon's and the agent's logs and the audit log are searched for every one of those
//! secrets, for private-key material and for the raw machine-id (the host-id is derived from it
//! and is the only form that may appear).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use netclaw_tests::ns::namespace_or_skip;
use netclaw_tests::{probe, unix_request, Deployment, Proc};

#[test]
fn no_token_code_key_or_machine_id_is_ever_logged() {
    let Some(ns) = namespace_or_skip("no_token_code_key_or_machine_id_is_ever_logged") else {
        return;
    };
    let mut dep = Deployment::start(ns, &[]).expect("deployment starts");
    let debug = [("NETCLAW_LOG".to_owned(), "debug".to_owned())];
    // The daemon again, at debug level.
    dep.daemon.stop();
    let mut cmd = dep.ns.command(&dep.bins.daemon);
    cmd.arg("--config")
        .arg(&dep.install.config)
        .envs(debug.clone());
    dep.daemon = Proc::spawn("netclaw-daemon", cmd, &dep.install.log("daemon")).unwrap();
    dep.wait_daemon().unwrap();
    dep.start_agent_with_env(&debug).unwrap();
    let socket = dep.install.socket().unwrap();

    let minted = dep.json(&["pair"]).unwrap();
    let formatted = minted["formattedCode"].as_str().unwrap().to_owned();
    let raw_code: String = formatted
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let (status, body) = dep.exchange(&formatted, "phone").unwrap();
    assert_eq!(status, 200, "{body}");
    let exchanged: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = exchanged["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32, "{exchanged}");

    // The token in use, then a wrong one, then revoked: `GET /api/health/status` from the
    // device's address with `Authorization: Bearer <token>`.
    let status_url = format!("http://{}:5199/api/health/status", Deployment::DAEMON_IP);
    let as_device = |token: &str| {
        let auth = format!("Authorization: Bearer {token}");
        let args = [
            "--bind",
            Deployment::DEVICE_IP,
            "-H",
            &auth,
            "GET",
            &status_url,
        ];
        probe(&dep.ns, &dep.bins, &args).unwrap()
    };
    let (status, body) = as_device(&token);
    assert_eq!(status, 200, "{body}");
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &token[..token.len() - 1]);
    assert_eq!(as_device(&wrong).0, 401);
    let (code, out, err) = dep.run(&["devices", "revoke", "phone"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(as_device(&token).0, 401);

    // A renewal: a new key in the agent, a CSR, a certificate.
    let (status, body) = unix_request(&socket, "POST", "/agent/v1/rotate", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let key_path = dep
        .install
        .root
        .path()
        .join("var/lib/netclaw-operator-agent/client.key");
    let key_pem = std::fs::read_to_string(&key_path).unwrap();
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let ca_key_pem =
        std::fs::read_to_string(dep.install.root.path().join("var/lib/netclaw/pki/ca.key"))
            .unwrap();
    let ca_key_line = ca_key_pem
        .lines()
        .find(|l| !l.starts_with("-----"))
        .unwrap()
        .to_owned();
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();

    dep.stop_agent();
    dep.daemon.stop();
    let logs = [
        ("daemon log", dep.install.log("daemon")),
        ("agent log", dep.install.log("agent")),
        (
            "audit log",
            dep.install.root.path().join("var/lib/netclaw/audit.log"),
        ),
    ];
    let mut secrets = vec![
        ("the pairing code", formatted.clone()),
        ("the pairing code without separators", raw_code),
        ("the device token", token),
        ("the agent key", key_body[..40].to_owned()),
        ("the CA key", ca_key_line),
        ("a PEM private key", "PRIVATE KEY".to_owned()),
    ];
    if machine_id.len() == 32 {
        secrets.push(("the raw machine-id", machine_id));
    }
    let mut seen_debug = false;
    for (name, path) in &logs {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.is_empty(), "{name} is empty");
        seen_debug |= text.contains("DEBUG");
        for (what, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} appears in the {name} ({})",
                path.display()
            );
        }
    }
    assert!(seen_debug, "the processes did log at debug level");
}
