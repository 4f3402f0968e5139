//! `netclaw` against a real `netclaw-daemon` in `local` mode on 127.0.0.1 (no agent: the CLI
//! resolves loopback, which grants LocalProcess in local mode only).

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{code, ok, stderr, stdout, Daemon, Install};

fn json(o: &std::process::Output) -> Value {
    ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn mint(install: &Install) -> String {
    let v = json(&install.run(&["pair", "--json"]));
    let code = v["formattedCode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 9);
    assert_eq!(&code[4..5], "-");
    code
}

#[test]
fn health_whoami_and_status_over_loopback() {
    let install = Install::local();
    let _daemon = Daemon::start(&install);

    let out = install.run(&["health"]);
    ok(&out);
    assert!(stdout(&out).contains("ready"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&install.url()), "{}", stdout(&out));

    let who = json(&install.run(&["whoami", "--json"]));
    assert_eq!(who["principal"], "LocalProcess");
    assert_eq!(who["transport"], "loopback");

    let status = json(&install.run(&["status", "--json"]));
    assert_eq!(status["daemon"]["mode"], "local");
    assert_eq!(status["endpoint"], install.url());
    assert!(status["agent"].is_null());

    // An explicit endpoint reaches the same daemon.
    let out = support::netclaw(&["--endpoint", &install.url(), "health", "--json"]);
    assert_eq!(json(&out), "healthy");
}

#[test]
fn pairing_flow_with_events_devices_and_revocation() {
    let install = Install::local();
    let _daemon = Daemon::start(&install);

    // Subscribe first: the event stream carries what happens while it is open.
    let mut events = install
        .cmd(&["events", "--json", "--idle", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(events.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("listening for events"), "{line}");

    // Mint, then join as a "remote" device over loopback HTTP.
    let pair = install.run(&["pair"]);
    ok(&pair);
    let text = stdout(&pair);
    assert!(
        text.contains(&format!("netclaw pair join {} --code ", install.url())),
        "{text}"
    );
    // As netclaw's smoke test reads it: grep 'Pairing code:' | awk '{print $NF}'.
    let code1 = text
        .lines()
        .find(|l| l.contains("Pairing code:"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_owned();
    let xdg = install.root().join("device-home/.config");
    let device = || {
        let mut c = support::cmd();
        c.env("XDG_CONFIG_HOME", &xdg);
        c
    };
    let out = device()
        .args([
            "pair",
            "join",
            &install.url(),
            "--code",
            &code1,
            "--name",
            "laptop one",
        ])
        .output()
        .unwrap();
    ok(&out);
    // Saved as the current context, 0600 in a 0700 directory, the token never printed.
    let contexts = xdg.join("netclaw/contexts.json");
    assert!(
        stdout(&out).contains(&contexts.display().to_string()),
        "{}",
        stdout(&out)
    );
    let meta = std::fs::metadata(&contexts).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::metadata(contexts.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o700
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&contexts).unwrap()).unwrap();
    let token = saved["contexts"][0]["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32);
    assert!(!stdout(&out).contains(&token), "token printed");
    assert_eq!(saved["current"], format!("127.0.0.1:{}", install.port));

    // Later commands on the device need no flags: the context carries endpoint and token.
    let who = json(&device().args(["whoami", "--json"]).output().unwrap());
    assert_eq!(who["principal"], "Device");
    assert_eq!(who["name"], "laptop one");

    // A second device with an explicit --token-file.
    let code2 = mint(&install);
    let second = install.root().join("second.token");
    ok(&support::netclaw(&[
        "pair",
        "join",
        &install.url(),
        "--code",
        &code2,
        "--name",
        "phone",
        "--token-file",
        second.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::metadata(&second).unwrap().permissions().mode() & 0o7777,
        0o600
    );

    let list = json(&install.run(&["devices", "list", "--json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    assert!(names.contains(&"laptop one") && names.contains(&"phone"));
    let text = stdout(&install.run(&["devices", "list"]));
    assert!(text.contains("laptop one"), "{text}");

    // A token file works as a bearer, but only to an explicit endpoint.
    let who = json(&support::netclaw(&[
        "--endpoint",
        &install.url(),
        "--device-token",
        second.to_str().unwrap(),
        "whoami",
        "--json",
    ]));
    assert_eq!(who["principal"], "Device");
    assert_eq!(who["name"], "phone");
    let refused = install.run(&["--device-token", second.to_str().unwrap(), "whoami"]);
    code(&refused, 2);
    assert!(
        stderr(&refused).contains("explicit --endpoint"),
        "{}",
        stderr(&refused)
    );

    // Revoke (a name with a space travels percent-encoded).
    ok(&install.run(&["devices", "revoke", "laptop one"]));
    let list = json(&install.run(&["devices", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "phone");
    // The revoked device's saved context is refused, naming how to pair again.
    let out = device().arg("whoami").output().unwrap();
    code(&out, 4);
    assert!(stderr(&out).contains("pair join"), "{}", stderr(&out));
    let out = install.run(&["devices", "revoke", "laptop one"]);
    code(&out, 1);
    assert!(
        stderr(&out).contains("no device with that name"),
        "{}",
        stderr(&out)
    );

    // The event stream stops by itself once idle, having printed one JSON line per event.
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "events did not stop when idle");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = events.wait_with_output().unwrap();
    ok(&out);
    let kinds: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "pairing-code-minted",
            "device-paired",
            "pairing-code-minted",
            "device-paired",
            "device-revoked"
        ],
        "{}",
        stdout(&out)
    );
}

#[test]
fn wrong_pairing_code_is_refused_and_writes_no_token() {
    let install = Install::local();
    let _daemon = Daemon::start(&install);
    let good = mint(&install);
    let wrong = if good.starts_with('A') {
        "BBBB-BBBB"
    } else {
        "AAAA-AAAA"
    };
    let token = install.root().join("t.token");
    let out = support::netclaw(&[
        "pair",
        "join",
        &install.url(),
        "--code",
        wrong,
        "--name",
        "intruder",
        "--token-file",
        token.to_str().unwrap(),
    ]);
    code(&out, 4);
    assert!(
        stderr(&out).contains("wrong pairing code"),
        "{}",
        stderr(&out)
    );
    assert!(!token.exists());
}

#[test]
fn doctor_passes_in_local_mode_with_the_daemon_running() {
    let install = Install::local();
    let _daemon = Daemon::start(&install);
    let out = install.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    ok(&out);
    assert_eq!(report["ok"], true, "{report:#}");
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check: {report:#}"))
    };
    assert_eq!(check("daemon-over-loopback")["outcome"], "pass");
    assert_eq!(check("agent-socket")["outcome"], "warn");
    assert_eq!(check("key-permissions")["outcome"], "pass");
    assert_eq!(check("agent-certificate")["outcome"], "pass");
    let text = stdout(&install.run(&["doctor"]));
    assert!(text.contains("doctor: no failing check"), "{text}");
}

#[test]
fn daemon_down_in_local_mode_is_exit_3() {
    let install = Install::local();
    let out = install.run(&["health"]);
    code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains(&install.url()), "{err}");
    assert!(err.contains("netclaw-daemon"), "{err}");
    let out = install.run(&["doctor"]);
    code(&out, 1);
    assert!(
        stdout(&out).contains("FAIL  daemon-over-loopback"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn doctor_fails_on_a_host_id_mismatch_naming_install_force() {
    let tmp = tempfile::tempdir().unwrap();
    let (installed, here) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::write(&installed, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(&here, "fedcba9876543210fedcba9876543210\n").unwrap();
    let (port, op) = support::free_ports();
    let install = Install::with(&[
        "--exposure",
        "local",
        "--port",
        &port.to_string(),
        "--operator-port",
        &op.to_string(),
        "--machine-id-file",
        installed.to_str().unwrap(),
    ]);
    let out = install.run(&["doctor", "--machine-id-file", here.to_str().unwrap()]);
    code(&out, 1);
    let text = stdout(&out);
    let line = text
        .lines()
        .position(|l| l.starts_with("FAIL  host-id"))
        .unwrap_or_else(|| panic!("{text}"));
    let fix = text.lines().nth(line + 1).unwrap();
    assert!(fix.contains("netclaw daemon install --force"), "{text}");

    let out = install.run(&["doctor", "--machine-id-file", installed.to_str().unwrap()]);
    assert!(stdout(&out).contains("PASS  host-id"), "{}", stdout(&out));
}

/// `netclaw pair join` under the name a phone gives itself, a hub session with its token, and
/// `netclaw devices revoke` of that name: the session ends at once.
#[test]
fn devices_revoke_closes_the_devices_open_hub_session() {
    use std::io::{Read, Write};

    let install = Install::local();
    let _daemon = Daemon::start(&install);
    let name = "Aaron\u{2019}s iPhone \u{1F4F1}";
    let code = mint(&install);
    let token_file = install.root().join("phone.token");
    ok(&support::netclaw(&[
        "pair",
        "join",
        &install.url(),
        "--code",
        &code,
        "--name",
        name,
        "--token-file",
        token_file.to_str().unwrap(),
    ]));
    let token = std::fs::read_to_string(&token_file).unwrap();

    // A raw WebSocket upgrade with the device's bearer token.
    let mut ws = std::net::TcpStream::connect(("127.0.0.1", install.port)).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        ws,
        "GET /hub/session HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(ws.read(&mut byte).unwrap(), 1, "closed during the upgrade");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    ok(&install.run(&["devices", "revoke", name]));

    // The daemon sends a close frame (1008) and closes; a read timeout fails the test.
    let mut rest = Vec::new();
    match ws.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the hub session is still open after `devices revoke`: {e}"),
    }
    assert_eq!(
        rest.first(),
        Some(&0x88),
        "expected a close frame: {rest:?}"
    );
    assert_eq!(rest.get(2..4), Some(&1008u16.to_be_bytes()[..]), "{rest:?}");
}
