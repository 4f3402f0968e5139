//! Drop-in compatibility with netclaw's own clients (issue 15): netclaw-rs driven with the exact
//! requests and expectations of netclaw's pairing smoke test (`tests/smoke/scenarios/pairing.sh`
//! and its `wait_for_health`), its CLI's `DaemonApi` and DTOs (`DaemonRuntimeStatus.Response`,
//! `PairedDeviceInfoDto`, `PairingCodeResultDto`), and its device store (`config/devices.json`
//! as `DeviceRegistry` writes it), against real daemon processes.
//!
//! Where netclaw-rs answers differently on purpose, the test asserts netclaw-rs's answer and
//! names the difference; `docs/compatibility.md` lists each one with its reason.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::process::Command;

use base64::Engine as _;
use netclaw_tests::loopback::{get, request, send_once, DaemonProcess, Install, Response, Setup};
use netclaw_tests::ns::namespace_or_skip;
use netclaw_tests::{build_binaries, probe, text, Binaries, Deployment};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

/// The pairing-code alphabet netclaw's `PairingCodeService` draws from.
const CODE_ALPHABET: &str = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

fn post(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    request("POST", path, headers, body.as_bytes())
}

async fn call(addr: SocketAddr, raw: &[u8]) -> Response {
    send_once(addr, raw).await
}

/// `wait_for_health` of netclaw's smoke library: `curl -fsS /api/health/ready` must print
/// `healthy` or `"healthy"`; netclaw's `DaemonApi.ProbeReadinessAsync` reads the generation
/// header as an integer.
async fn assert_ready_as_netclaw_probes_it(addr: SocketAddr) {
    let ready = call(addr, &get("/api/health/ready", &[])).await;
    assert_eq!(ready.status, 200);
    assert_eq!(String::from_utf8_lossy(&ready.body), "\"healthy\"");
    let generation = ready.header("x-netclaw-generation").unwrap();
    assert!(generation.parse::<i32>().is_ok(), "{generation}");
}

/// `nc daemon pair`: netclaw's newer CLI posts a local-control proof to the bind address. In
/// `local` mode the caller is on loopback, which is the authority here; the proof is not read.
async fn daemon_pair(addr: SocketAddr) -> String {
    let resp = call(
        addr,
        &post(
            "/api/local-control/v1/pairing-code",
            &[],
            r#"{"proof":"CfDJ8-host-cli-proof"}"#,
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let code = resp.json();
    let formatted = code["formattedCode"].as_str().unwrap().to_owned();
    assert!(code["expiresAt"].is_string(), "{code}");
    let (a, b) = formatted.split_once('-').unwrap();
    assert_eq!((a.len(), b.len()), (4, 4), "{formatted}");
    assert!(
        a.chars()
            .chain(b.chars())
            .all(|c| CODE_ALPHABET.contains(c)),
        "{formatted}"
    );
    formatted
}

/// The smoke test's exchange: `curl -X POST /api/pair/exchange -d '{"code","deviceName"}'`.
async fn exchange(addr: SocketAddr, code: &str, name: &str) -> Response {
    let body = format!(r#"{{"code":"{code}","deviceName":"{name}"}}"#);
    call(addr, &post("/api/pair/exchange", &[], &body)).await
}

/// `netclaw daemon devices` as netclaw's CLI reads it: `List<PairedDeviceInfoDto>`.
async fn devices(addr: SocketAddr) -> Vec<Value> {
    let resp = call(addr, &get("/api/pair/devices", &[])).await;
    assert_eq!(resp.status, 200);
    let list = resp.json().as_array().unwrap().clone();
    for d in &list {
        for field in ["createdAt", "lastUsedAt"] {
            let t = d[field].as_str().unwrap();
            assert!(t.ends_with("+00:00"), "{field} {t}");
        }
    }
    list
}

fn device<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|d| d["name"] == name)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn netclaws_pairing_smoke_scenario_in_local_mode() {
    let bins = build_binaries().unwrap();
    let install = Install::new(Setup::default());
    let mut daemon = DaemonProcess::start(&bins.daemon, &install).await;
    let addr = daemon.public;
    assert_ready_as_netclaw_probes_it(addr).await;

    // "an unproved remote request cannot create a pairing code": netclaw answers 401 even on
    // loopback. Here `local` mode makes loopback the host authority (DESIGN: loopback trust
    // exists in `local` mode only), so a proof is neither needed nor read: 200.
    let unproved = call(
        addr,
        &post(
            "/api/local-control/v1/pairing-code",
            &[],
            r#"{"proof":"remote-request"}"#,
        ),
    )
    .await;
    assert_eq!(unproved.status, 200);

    let name = "smoke-pairing-4242";
    let retry_name = "smoke-pairing-retry-4242";
    let code = daemon_pair(addr).await;
    let exchanged = exchange(addr, &code, name).await;
    assert_eq!(exchanged.status, 200);
    let token = exchanged.json()["token"].as_str().unwrap().to_owned();

    // "Restarting the daemon to verify durable device state".
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
    let mut daemon = DaemonProcess::start(&bins.daemon, &install).await;
    let addr = daemon.public;
    assert_ready_as_netclaw_probes_it(addr).await;
    let list = devices(addr).await;
    let paired = device(&list, name).unwrap();
    assert_eq!(paired["createdAt"], paired["lastUsedAt"], "{paired}");

    // "bearer token authenticates protected endpoint (/api/pair/devices)": netclaw lets any
    // paired device list every device. Here the token authenticates (whoami, status) and the
    // listing answers 403 with a code and a message that say what a device may do.
    let auth = bearer(&token);
    let listed = call(addr, &get("/api/pair/devices", &[("Authorization", &auth)])).await;
    assert_eq!(listed.status, 403);
    let refused = listed.json();
    assert_eq!(refused["code"], "host-authority-required", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("revoke itself"),
        "{refused}"
    );
    let who = call(addr, &get("/api/whoami", &[("Authorization", &auth)])).await;
    assert_eq!(who.status, 200);
    assert_eq!(who.json()["name"], name);
    // netclaw's `DaemonRuntimeStatus.Response` with its required members, for a device too.
    let status = call(
        addr,
        &get("/api/health/status", &[("Authorization", &auth)]),
    )
    .await;
    assert_eq!(status.status, 200);
    let status = status.json();
    for field in ["build", "process", "connectors", "persistence", "telemetry"] {
        assert!(!status[field].is_null(), "{field}: {status}");
    }
    for (section, field) in [
        ("build", "version"),
        ("build", "commitHash"),
        ("build", "buildTimestamp"),
        ("persistence", "provider"),
    ] {
        assert!(
            status[section][field].is_string(),
            "{section}.{field}: {status}"
        );
    }
    assert!(status["process"]["pid"].is_u64(), "{status}");
    assert!(status["process"]["uptimeSeconds"].is_u64(), "{status}");
    assert_eq!(status["overall"], "healthy");

    // `lastUsedAt` follows the bearer logins at once, and reaches the disk at shutdown.
    let used = devices(addr).await;
    assert!(device(&used, name).unwrap()["lastUsedAt"].as_str() >= paired["lastUsedAt"].as_str());
    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
    let stored: Value =
        serde_json::from_slice(&std::fs::read(install.state_dir.join("devices.json")).unwrap())
            .unwrap();
    let record = stored["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap();
    assert!(record["lastUsedAt"].is_u64(), "{stored}");
    let daemon = DaemonProcess::start(&bins.daemon, &install).await;
    let addr = daemon.public;

    // "a duplicate name does not consume a fresh code".
    let retry_code = daemon_pair(addr).await;
    assert_eq!(exchange(addr, &retry_code, name).await.status, 409);
    let retry = exchange(addr, &retry_code, retry_name).await;
    assert_eq!(retry.status, 200);
    assert!(retry.json()["token"].is_string());

    // `nc daemon devices revoke NAME`: `DELETE /api/pair/devices/{name}` → 204.
    for n in [name, retry_name] {
        let path = format!("/api/pair/devices/{n}");
        let revoked = call(addr, &request("DELETE", &path, &[], b"")).await;
        assert_eq!(revoked.status, 204, "{n}");
    }
    // "revoked token is rejected (expect HTTP 401)".
    let after = call(addr, &get("/api/pair/devices", &[("Authorization", &auth)])).await;
    assert_eq!(after.status, 401);
    // netclaw's `RevokePairedDeviceAsync` reads anything but 204 as "not found".
    let again = call(
        addr,
        &request("DELETE", &format!("/api/pair/devices/{name}"), &[], b""),
    )
    .await;
    assert_eq!(again.status, 404);
}

/// A device as netclaw's `PairingCoordinator` pairs it: the base64url token its client keeps,
/// and the `PairedDevice` record its `DeviceRegistry` writes (SHA-256(token bytes || salt
/// bytes), lowercase hex).
fn netclaw_device(name: &str, bootstrap: bool) -> (String, Value) {
    let rng = SystemRandom::new();
    let mut token = [0u8; 32];
    let mut salt = [0u8; 16];
    rng.fill(&mut token).unwrap();
    rng.fill(&mut salt).unwrap();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&token);
    ctx.update(&salt);
    let record = serde_json::json!({
        "Name": name,
        "IsBootstrapDevice": bootstrap,
        "TokenHash": hex::encode(ctx.finish()),
        "Salt": hex::encode(salt),
        "CreatedAt": "2026-01-02T03:04:05.1234567+00:00",
        "LastUsedAt": "2026-01-03T03:04:05.7654321+00:00",
    });
    (
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token),
        record,
    )
}

/// netclaw's `config/devices.json` with `records` (`WriteIndented`, PascalCase).
fn write_netclaw_store(dir: &std::path::Path, records: &[Value]) -> std::path::PathBuf {
    let path = dir.join("devices.json");
    std::fs::write(&path, serde_json::to_vec_pretty(records).unwrap()).unwrap();
    path
}

fn netclaw_cli(
    bins: &Binaries,
    install: &Install,
    addr: SocketAddr,
    args: &[&str],
) -> (i32, String, String) {
    let endpoint = format!("http://{addr}");
    let out = Command::new(&bins.netclaw)
        .arg("--config")
        .arg(&install.config_path)
        .args(["--endpoint", &endpoint])
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    text(&out)
}

/// The names in netclaw-rs's registry file.
fn stored_names(install: &Install) -> Vec<String> {
    let stored: Value =
        serde_json::from_slice(&std::fs::read(install.state_dir.join("devices.json")).unwrap())
            .unwrap();
    stored["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn devices_paired_with_netclaw_keep_their_tokens_after_an_import() {
    let bins = build_binaries().unwrap();
    let install = Install::new(Setup::default());
    let daemon = DaemonProcess::start(&bins.daemon, &install).await;
    let addr = daemon.public;
    let netclaw_home = tempfile::tempdir().unwrap();
    let home_for_big = tempfile::tempdir().unwrap();
    let (token, laptop) = netclaw_device("aaron-laptop", false);
    let (bootstrap_token, bootstrap) = netclaw_device("daemon-host-bootstrap", true);
    let store = write_netclaw_store(netclaw_home.path(), &[laptop, bootstrap]);

    let (code, out, err) = netclaw_cli(
        &bins,
        &install,
        addr,
        &["devices", "import", store.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported device \"aaron-laptop\""), "{out}");
    assert!(out.contains("left out netclaw's bootstrap device"), "{out}");

    // The original netclaw token authenticates; a wrong one, and the bootstrap device's, do not.
    let who = call(
        addr,
        &get("/api/whoami", &[("Authorization", &bearer(&token))]),
    )
    .await;
    assert_eq!(who.status, 200);
    assert_eq!(who.json()["principal"], "Device");
    assert_eq!(who.json()["name"], "aaron-laptop");
    let (wrong, _) = netclaw_device("x", false);
    for t in [wrong.as_str(), bootstrap_token.as_str()] {
        let refused = call(addr, &get("/api/whoami", &[("Authorization", &bearer(t))])).await;
        assert_eq!(refused.status, 401, "{t}");
    }
    // Listed with netclaw's times, and its last use is the login just made.
    let list = devices(addr).await;
    let laptop = device(&list, "aaron-laptop").unwrap();
    assert!(
        laptop["createdAt"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-02T03:04:05"),
        "{laptop}"
    );
    assert!(
        laptop["lastUsedAt"].as_str().unwrap() > "2026-01-03T03:04:06",
        "{laptop}"
    );

    // All or nothing: importing the same store again is refused (the name is taken) and
    // changes nothing; the registry stays 0600.
    // Compared by names: a periodic last-use write may change the file meanwhile.
    let before = stored_names(&install);
    let (code, out, err) = netclaw_cli(
        &bins,
        &install,
        addr,
        &["devices", "import", store.to_str().unwrap()],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("already paired"), "{err}");
    assert_eq!(stored_names(&install), before);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(install.state_dir.join("devices.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A device may not import (nor may anyone without host authority).
    let body = r#"{"devices":[]}"#;
    let as_device = call(
        addr,
        &post(
            "/api/local-control/v1/devices/import",
            &[("Authorization", &bearer(&token))],
            body,
        ),
    )
    .await;
    assert_eq!(as_device.status, 403);

    // More devices than one request carries: the CLI says to split the file, nothing changes.
    let many: Vec<Value> = (0..120)
        .map(|i| netclaw_device(&format!("tablet-{i}"), false).1)
        .collect();
    let big = write_netclaw_store(home_for_big.path(), &many);
    let (code, out, err) = netclaw_cli(
        &bins,
        &install,
        addr,
        &["devices", "import", big.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("split the array"), "{err}");
    assert_eq!(stored_names(&install), before);
    drop(daemon);
}

/// In `reverse-proxy` mode nothing on the public listener is host authority: netclaw's newer
/// CLI's proof is refused with a code that names the supported way, and the operator imports
/// through the agent, after which the imported device works from its remote address.
#[test]
fn reverse_proxy_mode_refuses_netclaws_proof_and_imports_through_the_agent() {
    let test = "reverse_proxy_mode_refuses_netclaws_proof_and_imports_through_the_agent";
    let Some(ns) = namespace_or_skip(test) else {
        return;
    };
    let mut dep = Deployment::start(ns, &[]).unwrap();
    dep.start_agent().unwrap();
    let base = format!("http://{}:5199", Deployment::DAEMON_IP);
    let from_device = |extra: &[&str]| {
        let mut args = vec!["--bind", Deployment::DEVICE_IP];
        args.extend_from_slice(extra);
        probe(&dep.ns, &dep.bins, &args).unwrap()
    };

    let (status, body) = from_device(&[
        "--data",
        r#"{"proof":"remote-request"}"#,
        "POST",
        &format!("{base}/api/local-control/v1/pairing-code"),
    ]);
    assert_eq!(status, 401, "{body}");
    let refused: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["code"], "local-control-proof-unsupported", "{body}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("netclaw daemon pair"),
        "{body}"
    );

    let home = tempfile::tempdir().unwrap();
    let (token, phone) = netclaw_device("pixel", false);
    let store = write_netclaw_store(home.path(), &[phone]);
    let imported = dep
        .json(&["devices", "import", store.to_str().unwrap()])
        .unwrap();
    assert_eq!(imported["imported"], serde_json::json!(["pixel"]));

    let auth = format!("Authorization: Bearer {token}");
    let (status, body) = from_device(&["-H", &auth, "GET", &format!("{base}/api/whoami")]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"pixel\""), "{body}");
    let list = dep.json(&["devices", "list"]).unwrap();
    assert_eq!(list[0]["name"], "pixel", "{list}");
}
