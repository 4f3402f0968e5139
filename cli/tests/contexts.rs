//! A paired device's saved contexts and netclaw's command names, with real processes: a real
//! `netclaw-daemon` in `local` mode for the script-style flow, scripted HTTP servers where the
//! test must see which endpoint got which `Authorization` header.
//!
//! Adversary: a second daemon (or anything at an explicit endpoint) must never receive the token
//! of a context that belongs to another endpoint.

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use netclaw_tests::fake::{self, answer, Log};
use serde_json::Value;
use support::{code, ok, stderr, stdout, Daemon, Install};

/// `netclaw` on a "device" whose configuration directory is `home` and which has no local
/// netclaw configuration.
fn device(home: &Path) -> Command {
    let mut c = support::cmd();
    c.env("XDG_CONFIG_HOME", home);
    c
}

fn run_with_stdin(mut c: Command, input: &str) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json(o: &Output) -> Value {
    ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// What a script does with netclaw's CLI, unchanged: `netclaw daemon pair | grep 'Pairing code:'
/// | awk '{print $NF}'` on the daemon host, `netclaw pair ENDPOINT` with the code and the device
/// name on standard input on the device, then plain `netclaw whoami` there (the saved context
/// attaches the token), `netclaw daemon devices [revoke NAME]` on the host.
#[test]
fn a_script_pairs_a_device_with_netclaws_commands_and_the_device_needs_no_flags_afterwards() {
    let install = Install::local_with(&["--public-url", "https://netclaw.example.test/"]);
    let _daemon = Daemon::start(&install);

    let minted = install.run(&["daemon", "pair"]);
    ok(&minted);
    let text = stdout(&minted);
    let pairing_code = text
        .lines()
        .find(|l| l.contains("Pairing code:"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no 'Pairing code:' line in {text}"))
        .to_owned();
    assert_eq!(pairing_code.len(), 9, "{text}");
    // The join command names Operator.PublicUrl, set once at install.
    assert!(
        text.contains("netclaw pair join https://netclaw.example.test --code "),
        "{text}"
    );

    let home = tempfile::tempdir().unwrap();
    let mut pair = device(home.path());
    pair.args(["pair", &install.url()]);
    let out = run_with_stdin(pair, &format!("{pairing_code}\nscripted laptop\n"));
    ok(&out);
    assert!(
        stderr(&out).contains("Pairing code (XXXX-XXXX): "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Device name ["), "{}", stderr(&out));
    let contexts = home.path().join("netclaw/contexts.json");
    assert_eq!(
        std::fs::metadata(&contexts).unwrap().permissions().mode() & 0o7777,
        0o600
    );

    // No flags: endpoint and token come from the current context.
    let who = json(
        &device(home.path())
            .args(["whoami", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(who["principal"], "Device");
    assert_eq!(who["name"], "scripted laptop");
    let status = device(home.path()).arg("status").output().unwrap();
    ok(&status);
    assert!(
        stdout(&status).contains("saved context"),
        "{}",
        stdout(&status)
    );
    let list = json(
        &device(home.path())
            .args(["context", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(list[0]["device"], "scripted laptop");
    assert_eq!(list[0]["current"], true);
    let saved: Value = serde_json::from_slice(&std::fs::read(&contexts).unwrap()).unwrap();
    let token = saved["contexts"][0]["token"].as_str().unwrap();
    assert!(
        !list.to_string().contains(token),
        "context list shows the token"
    );

    // netclaw's device management on the daemon host.
    let devices = install.run(&["daemon", "devices"]);
    ok(&devices);
    assert!(
        stdout(&devices).contains("scripted laptop"),
        "{}",
        stdout(&devices)
    );
    ok(&install.run(&["daemon", "devices", "revoke", "scripted laptop"]));
    let listed = json(&install.run(&["daemon", "devices", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");

    // The revoked device's context is refused, naming how to pair again.
    let out = device(home.path()).arg("whoami").output().unwrap();
    code(&out, 4);
    assert!(stderr(&out).contains("pair join"), "{}", stderr(&out));
}

/// A scripted daemon on a free loopback port: `/api/pair/exchange` answers `token`,
/// `/api/whoami` answers a Device called `name`.
fn fake_daemon(token: &'static str, name: &'static str) -> (String, Log) {
    let (port, log) = fake::tcp(move |req| {
        if req.path == "/api/pair/exchange" {
            answer(200, &format!(r#"{{"token":"{token}"}}"#))
        } else if req.path == "/api/events" {
            answer(200, "")
        } else if req.path == "/api/whoami" {
            answer(
                200,
                &format!(r#"{{"principal":"Device","name":"{name}","transport":"bearer"}}"#),
            )
        } else {
            answer(404, r#"{"error":"not found"}"#)
        }
    });
    (format!("http://127.0.0.1:{port}"), log)
}

/// The `Authorization` headers `log` saw for `/api/whoami`, in order.
fn whoami_auth(log: &Log) -> Vec<Option<String>> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/api/whoami")
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect()
}

fn context_name(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

fn join(home: &Path, url: &str, name: &str) -> Output {
    device(home)
        .args(["pair", "join", url, "--code", "ABCD-EFGH", "--name", name])
        .output()
        .unwrap()
}

#[test]
fn the_current_context_is_used_and_explicit_choices_win_without_leaking_its_token() {
    let home = tempfile::tempdir().unwrap();
    let (a, log_a) = fake_daemon("token-of-a-0123456789", "on-a");
    let (b, log_b) = fake_daemon("token-of-b-0123456789", "on-b");
    let (c, log_c) = fake_daemon("token-of-c-0123456789", "on-c");
    let (d, log_d) = fake_daemon("token-of-d-0123456789", "on-d");

    ok(&join(home.path(), &a, "dev"));
    ok(&join(home.path(), &b, "dev"));
    // Joining the same endpoint again is refused before the code is sent, unless --force.
    let before = log_b.lock().unwrap().len();
    let again = join(home.path(), &b, "dev");
    code(&again, 1);
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(log_b.lock().unwrap().len(), before);

    // The last join is current.
    ok(&device(home.path()).arg("whoami").output().unwrap());
    assert_eq!(
        whoami_auth(&log_b),
        [Some("Bearer token-of-b-0123456789".to_owned())]
    );

    // --context and NETCLAW_CONTEXT pick another one for one invocation.
    ok(&device(home.path())
        .args(["--context", &context_name(&a), "whoami"])
        .output()
        .unwrap());
    ok(&device(home.path())
        .env("NETCLAW_CONTEXT", context_name(&a))
        .arg("whoami")
        .output()
        .unwrap());
    assert_eq!(
        whoami_auth(&log_a),
        [
            Some("Bearer token-of-a-0123456789".to_owned()),
            Some("Bearer token-of-a-0123456789".to_owned())
        ]
    );
    let unknown = device(home.path())
        .args(["--context", "nowhere", "whoami"])
        .output()
        .unwrap();
    code(&unknown, 2);
    assert!(
        stderr(&unknown).contains(&context_name(&a)),
        "{}",
        stderr(&unknown)
    );

    // `context use` switches.
    ok(&device(home.path())
        .args(["context", "use", &context_name(&a)])
        .output()
        .unwrap());
    ok(&device(home.path()).arg("whoami").output().unwrap());
    assert_eq!(whoami_auth(&log_a).len(), 3);
    let list = stdout(
        &device(home.path())
            .args(["context", "list"])
            .output()
            .unwrap(),
    );
    let current: Vec<&str> = list.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{list}");
    assert!(current[0].contains(&a), "{list}");

    // netclaw's NETCLAW_DAEMON_ENDPOINT is an explicit endpoint: it wins over the context, and
    // the context's token is not sent to it. NETCLAW_ENDPOINT wins over it.
    ok(&device(home.path())
        .env("NETCLAW_DAEMON_ENDPOINT", &c)
        .arg("whoami")
        .output()
        .unwrap());
    assert_eq!(whoami_auth(&log_c), [None]);
    ok(&device(home.path())
        .env("NETCLAW_DAEMON_ENDPOINT", &c)
        .env("NETCLAW_ENDPOINT", &d)
        .arg("whoami")
        .output()
        .unwrap());
    assert_eq!(whoami_auth(&log_d), [None]);
    assert_eq!(whoami_auth(&log_c).len(), 1);
    // An explicit endpoint that is a saved context's own (b is saved, not current) gets that
    // context's token, as netclaw's scripts expect with NETCLAW_DAEMON_ENDPOINT.
    ok(&device(home.path())
        .env("NETCLAW_DAEMON_ENDPOINT", &b)
        .arg("whoami")
        .output()
        .unwrap());
    assert_eq!(
        whoami_auth(&log_b),
        [
            Some("Bearer token-of-b-0123456789".to_owned()),
            Some("Bearer token-of-b-0123456789".to_owned())
        ]
    );
    // A named context with another explicit endpoint is a usage error, nothing is sent.
    let mixed = device(home.path())
        .args(["--context", &context_name(&a), "--endpoint", &c, "whoami"])
        .output()
        .unwrap();
    code(&mixed, 2);
    assert_eq!(whoami_auth(&log_c).len(), 1);

    // --config names this host's configuration, which then wins over the current context (here
    // its daemon is not running: exit 3 naming it, and no context endpoint is contacted).
    let install = Install::local();
    let local = device(home.path())
        .arg("--config")
        .arg(install.config())
        .arg("whoami")
        .output()
        .unwrap();
    code(&local, 3);
    assert!(
        stderr(&local).contains("netclaw-daemon"),
        "{}",
        stderr(&local)
    );
    assert_eq!(whoami_auth(&log_a).len(), 3);
    assert_eq!(whoami_auth(&log_b).len(), 2);

    // Removing a context forgets its token.
    ok(&device(home.path())
        .args(["context", "remove", &context_name(&a)])
        .output()
        .unwrap());
    let saved = std::fs::read_to_string(home.path().join("netclaw/contexts.json")).unwrap();
    assert!(!saved.contains("token-of-a"), "{saved}");
    assert!(saved.contains("token-of-b"), "{saved}");

    // A contexts file others can read is refused (it holds tokens).
    let file: PathBuf = home.path().join("netclaw/contexts.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = device(home.path())
        .args(["--context", &context_name(&b), "whoami"])
        .output()
        .unwrap();
    code(&out, 5);
    assert_eq!(whoami_auth(&log_b).len(), 2);
}

/// A device with no configuration and no saved context is told to pair (not only to install).
#[test]
fn a_device_that_has_not_paired_is_told_to_run_pair_join() {
    if Path::new("/etc/netclaw/netclaw.json").exists() {
        eprintln!("skipped: this host has a system configuration");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    for cmd in [
        &["whoami"][..],
        &["status"],
        &["devices", "list"],
        &["events"],
    ] {
        let out = device(home.path()).args(cmd).output().unwrap();
        code(&out, 3);
        assert!(
            stderr(&out).contains("netclaw pair join"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("netclaw daemon install"),
            "{}",
            stderr(&out)
        );
    }
    // Paired, then `context use --local`: no current context, so the same again.
    let (url, log) = fake_daemon("t-local-0123456789", "x");
    ok(&join(home.path(), &url, "dev"));
    ok(&device(home.path())
        .args(["context", "use", "--local"])
        .output()
        .unwrap());
    let out = device(home.path()).arg("whoami").output().unwrap();
    code(&out, 3);
    assert!(
        stderr(&out).contains("netclaw pair join"),
        "{}",
        stderr(&out)
    );
    assert!(whoami_auth(&log).is_empty());
}

/// `pair ENDPOINT` without a code on standard input spends nothing and says what is missing.
#[test]
fn netclaws_pair_form_without_a_code_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let (url, log) = fake_daemon("t-0123456789abcdef", "x");
    let mut pair = device(home.path());
    pair.args(["pair", &url]);
    let out = run_with_stdin(pair, "\n");
    code(&out, 2);
    assert!(stderr(&out).contains("--code"), "{}", stderr(&out));
    assert!(log.lock().unwrap().is_empty());
    // Minting options do not mix with joining ones.
    code(
        &device(home.path())
            .args(["pair", "--code", "ABCD-EFGH"])
            .output()
            .unwrap(),
        2,
    );
}

/// `events` through a saved context carries the token like every other command (it used to go
/// without `--device-token`'s).
#[test]
fn events_through_a_context_and_with_device_token_send_the_token() {
    let home = tempfile::tempdir().unwrap();
    let (url, log) = fake_daemon("token-for-events-0123", "ev");
    ok(&join(home.path(), &url, "dev"));
    ok(&device(home.path())
        .args(["events", "--idle", "1"])
        .output()
        .unwrap());
    let file = home.path().join("events.token");
    std::fs::write(&file, "file-token-0123456789\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(&support::cmd()
        .args(["--endpoint", &url, "--device-token"])
        .arg(&file)
        .args(["events", "--idle", "1"])
        .output()
        .unwrap());
    let auth: Vec<Option<String>> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/api/events")
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        auth,
        [
            Some("Bearer token-for-events-0123".to_owned()),
            Some("Bearer file-token-0123456789".to_owned())
        ]
    );
}

/// A name clash (409) says the code stays valid and saves nothing, as netclaw's daemon keeps the
/// code after it.
#[test]
fn a_taken_device_name_says_the_code_stays_valid_and_saves_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (port, _log) = fake::tcp(|_| {
        answer(
            409,
            r#"{"error":"a device with that name is already paired"}"#,
        )
    });
    let url = format!("http://127.0.0.1:{port}");
    let out = join(home.path(), &url, "phone");
    code(&out, 1);
    assert!(stderr(&out).contains("another name"), "{}", stderr(&out));
    assert!(stderr(&out).contains("stays valid"), "{}", stderr(&out));
    assert!(!home.path().join("netclaw/contexts.json").exists());
}
