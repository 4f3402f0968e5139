//! `netclaw daemon install --root` and `netclaw pki status`, run as real processes, with the
//! generated files inspected by openssl.

#![allow(clippy::unwrap_used)] // test helpers

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn netclaw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netclaw"))
        .args(args)
        .env_remove("NETCLAW_CONFIG")
        .output()
        .expect("run netclaw")
}

fn install(root: &Path, extra: &[&str]) -> Output {
    let root = root.to_str().unwrap();
    let mut args = vec![
        "daemon",
        "install",
        "--root",
        root,
        "--exposure",
        "reverse-proxy",
        "--bind",
        "192.0.2.10",
        "--trusted-proxy",
        "192.0.2.1",
        "--operator-dns",
        "daemon-host",
    ];
    args.extend_from_slice(extra);
    netclaw(&args)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn config(root: &Path) -> PathBuf {
    root.join("etc/netclaw/netclaw.json")
}

fn status_json(root: &Path) -> (Output, Value) {
    let cfg = config(root);
    let out = netclaw(&["--config", cfg.to_str().unwrap(), "pki", "status", "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn openssl_text(path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(path)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn root_install_writes_a_self_contained_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ok(&install(root, &[]));

    let cfg: Value = serde_json::from_slice(&fs::read(config(root)).unwrap()).unwrap();
    assert_eq!(cfg["Daemon"]["ExposureMode"], "reverse-proxy");
    assert_eq!(cfg["Daemon"]["Host"], "192.0.2.10");
    for p in [
        &cfg["Daemon"]["StateDirectory"],
        &cfg["Operator"]["Socket"],
        &cfg["Operator"]["PkiDirectory"],
        &cfg["Operator"]["AgentDirectory"],
    ] {
        assert!(
            Path::new(p.as_str().unwrap()).starts_with(root),
            "{p} outside the root"
        );
    }
    assert!(cfg["Operator"]["Socket"]
        .as_str()
        .unwrap()
        .ends_with("run/netclaw/operator.sock"));

    let pki = root.join("var/lib/netclaw/pki");
    let agent = root.join("var/lib/netclaw-operator-agent");
    for key in [
        pki.join("ca.key"),
        pki.join("server.key"),
        agent.join("client.key"),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    assert_eq!(mode(&pki.join("registry.json")), 0o600);
    for dir in [&pki, &agent, &root.join("var/lib/netclaw")] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&root.join("run/netclaw")), 0o750);
    assert_eq!(mode(&root.join("var/lib")), 0o755);

    let (out, status) = status_json(root);
    ok(&out);
    assert_eq!(status["healthy"], true);
    let agent_cert = status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "operator-agent")
        .unwrap()
        .clone();
    // Whole days left: 30 when `pki status` runs within the second of issuance, 29 after it.
    let days = agent_cert["daysLeft"].as_i64().unwrap();
    assert!(days == 30 || days == 29, "{agent_cert:#}");
    assert_eq!(agent_cert["registryStatus"], "active");
    let uri = agent_cert["identity"][0].as_str().unwrap();
    assert!(
        uri.starts_with("URI:spiffe://netclaw.internal/host/") && uri.ends_with("/operator-agent"),
        "{uri}"
    );
}

#[test]
fn openssl_shows_the_extensions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ok(&install(root, &["--certificate-lifetime", "2m"]));
    let pki = root.join("var/lib/netclaw/pki");
    let agent = root.join("var/lib/netclaw-operator-agent");

    let ca = openssl_text(&pki.join("ca.crt"));
    assert!(ca.contains("CA:TRUE, pathlen:0"), "{ca}");
    assert!(ca.contains("X509v3 Name Constraints: critical"), "{ca}");
    assert!(ca.contains("IP:192.0.2.10/255.255.255.255"), "{ca}");
    assert!(ca.contains("DNS:daemon-host"), "{ca}");
    assert!(ca.contains("Certificate Sign, CRL Sign"), "{ca}");
    assert!(ca.contains("ASN1 OID: prime256v1"), "{ca}");

    let server = openssl_text(&pki.join("server.crt"));
    assert!(server.contains("IP Address:192.0.2.10"), "{server}");
    assert!(server.contains("DNS:daemon-host"), "{server}");
    assert!(server.contains("TLS Web Server Authentication"), "{server}");
    assert!(
        !server.contains("TLS Web Client Authentication"),
        "{server}"
    );

    let client = openssl_text(&agent.join("client.crt"));
    assert!(
        client.contains("URI:spiffe://netclaw.internal/host/"),
        "{client}"
    );
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(
        !client.contains("TLS Web Server Authentication"),
        "{client}"
    );
    assert!(client.contains("CA:FALSE"), "{client}");

    // openssl agrees that the chain and purpose are right.
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(agent.join("ca-bundle.crt"))
        .arg(agent.join("client.crt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(agent.join("ca-bundle.crt"))
        .arg(agent.join("client.crt"))
        .output()
        .unwrap();
    assert!(
        !verify.status.success(),
        "client cert must not be a server cert"
    );

    // The 2-minute lifetime and the 60 s backdate.
    let dates = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-in",
        ])
        .arg(agent.join("client.crt"))
        .output()
        .unwrap();
    assert!(dates.status.success());
    let text = String::from_utf8(dates.stdout).unwrap();
    let secs = |prefix: &str| -> i64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap();
        let t = line.split('=').nth(1).unwrap();
        // 2026-11-25 00:40:07Z
        let time = &t[11..19];
        let p: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600 + p[1] * 60 + p[2]
    };
    let span = (secs("notAfter") - secs("notBefore")).rem_euclid(86_400);
    assert_eq!(span, 180, "{text}");
}

#[test]
fn reinstall_refuses_without_force_and_keeps_the_ca_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ok(&install(root, &[]));
    let ca_before = fs::read(root.join("var/lib/netclaw/pki/ca.crt")).unwrap();
    let agent_before = fs::read(root.join("var/lib/netclaw-operator-agent/client.crt")).unwrap();

    let again = install(root, &[]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already installed") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        fs::read(root.join("var/lib/netclaw/pki/ca.crt")).unwrap(),
        ca_before
    );

    ok(&install(root, &["--force"]));
    assert_eq!(
        fs::read(root.join("var/lib/netclaw/pki/ca.crt")).unwrap(),
        ca_before,
        "CA replaced"
    );
    assert_ne!(
        fs::read(root.join("var/lib/netclaw-operator-agent/client.crt")).unwrap(),
        agent_before
    );
    let registry: Value =
        serde_json::from_slice(&fs::read(root.join("var/lib/netclaw/pki/registry.json")).unwrap())
            .unwrap();
    let agents: Vec<&Value> = registry["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "agent")
        .collect();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0]["status"]["state"], "superseded");
    assert_eq!(agents[1]["status"]["state"], "active");

    // --force with a listener address the CA's name constraints do not permit is refused.
    let out = netclaw(&[
        "daemon",
        "install",
        "--root",
        root.to_str().unwrap(),
        "--force",
        "--exposure",
        "reverse-proxy",
        "--bind",
        "198.51.100.20",
        "--trusted-proxy",
        "198.51.100.1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replace-ca"));
}

fn config_json(root: &Path) -> Value {
    serde_json::from_slice(&fs::read(config(root)).unwrap()).unwrap()
}

/// `--force` alone keeps every setting (allowed users, certificate lifetime, the listener's extra
/// DNS name, the addresses); a changed one is reported as `Section.Key: old -> new`.
#[test]
fn reinstall_keeps_the_settings_not_given_and_reports_each_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ok(&install(
        root,
        &["--operator-user", "nobody", "--certificate-lifetime", "7d"],
    ));
    let before = config_json(root);
    let r = root.to_str().unwrap();

    let out = netclaw(&["daemon", "install", "--root", r, "--force", "--json"]);
    ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["changes"], serde_json::json!([]), "{report:#}");
    assert_eq!(config_json(root), before);
    let server = openssl_text(&root.join("var/lib/netclaw/pki/server.crt"));
    assert!(server.contains("DNS:daemon-host"), "{server}");
    let agent = openssl_text(&root.join("var/lib/netclaw-operator-agent/client.crt"));
    let (_, status) = status_json(root);
    let agent_status = status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "operator-agent")
        .unwrap()
        .clone();
    let lifetime = agent_status["notAfterUnix"].as_u64().unwrap()
        - agent_status["notBeforeUnix"].as_u64().unwrap();
    assert!(
        (7 * 86_400..7 * 86_400 + 120).contains(&lifetime),
        "lifetime {lifetime}: {agent}"
    );

    let change = |dry: bool| {
        let mut args = vec![
            "daemon",
            "install",
            "--root",
            r,
            "--force",
            "--certificate-lifetime",
            "2d",
            "--operator-user",
            "root",
        ];
        if dry {
            args.push("--dry-run");
        }
        netclaw(&args)
    };
    // --dry-run shows the changes and writes nothing.
    let agent_before = fs::read(root.join("var/lib/netclaw-operator-agent/client.crt")).unwrap();
    let out = change(true);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would change:      Operator.CertificateLifetime: \"7d\" -> \"2d\""),
        "{text}"
    );
    assert_eq!(config_json(root), before);
    assert_eq!(
        fs::read(root.join("var/lib/netclaw-operator-agent/client.crt")).unwrap(),
        agent_before
    );

    let out = change(false);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed:           Operator.AllowedUsers: [\"nobody\"] -> [\"root\"]"),
        "{text}"
    );
    assert!(
        text.contains("changed:           Operator.CertificateLifetime: \"7d\" -> \"2d\""),
        "{text}"
    );
    let after = config_json(root);
    assert_eq!(after["Daemon"], before["Daemon"]);
    assert_eq!(after["Operator"]["CertificateLifetime"], "2d");
}

#[test]
fn world_readable_key_is_reported_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ok(&install(root, &[]));
    let key = root.join("var/lib/netclaw-operator-agent/client.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let (out, status) = status_json(root);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(status["healthy"], false);
    let k = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "operator-agent")
        .unwrap();
    assert_eq!(k["mode"], "0644");
    assert!(k["check"]
        .as_str()
        .unwrap()
        .contains(&format!("chmod 600 {}", key.display())));
}

#[test]
fn invalid_install_options_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    // A reverse-proxy install with `bind` and `proxies` (each `--trusted-proxy`).
    let reverse_proxy = |bind: &str, proxies: &[&str]| {
        let mut args = vec![
            "daemon",
            "install",
            "--root",
            root.to_str().unwrap(),
            "--exposure",
            "reverse-proxy",
            "--bind",
            bind,
        ];
        for p in proxies {
            args.extend(["--trusted-proxy", p]);
        }
        netclaw(&args)
    };
    // reverse-proxy on loopback.
    let out = reverse_proxy("127.0.0.1", &["192.0.2.1"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Daemon.Host"));
    // An unparsable trusted proxy.
    let out = reverse_proxy("192.0.2.10", &["proxy.example"]);
    assert_eq!(out.status.code(), Some(64));
    // A loopback proxy in reverse-proxy mode: a loopback final hop is never trusted there.
    let out = reverse_proxy("192.0.2.10", &["192.0.2.1", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loopback") && err.contains("never trusted"),
        "{err}"
    );
    assert!(!root.exists(), "a refused install must not write anything");
}

#[test]
fn missing_config_names_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("nope.json");
    let out = netclaw(&["--config", cfg.to_str().unwrap(), "pki", "status"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("netclaw daemon install"));
}

/// A configuration as netclaw has it: `configVersion` and its 22 top-level sections.
const NETCLAW_JSON: &str = include_str!("../../core/testdata/netclaw.json");

/// The text of each root entry of `json` (pretty-printed with two spaces), in order.
fn root_entries(json: &str) -> Vec<(String, String)> {
    let body = json.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out: Vec<(String, String)> = Vec::new();
    for part in body.split(",\n  \"") {
        let part = part.trim_start().trim_start_matches('"');
        let (name, value) = part.split_once("\": ").unwrap();
        out.push((name.to_owned(), value.trim_end().to_owned()));
    }
    out
}

#[test]
fn install_into_a_netclaw_configuration_adds_operator_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cfg = config(root);
    fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    fs::write(&cfg, NETCLAW_JSON).unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o640)).unwrap();

    // No --force needed: the file has no Operator section yet.
    let out = install(root, &["--json"]);
    ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["keptSections"].as_array().unwrap().len(), 21);

    let after = fs::read_to_string(&cfg).unwrap();
    assert_eq!(mode(&cfg), 0o640, "the file's mode is kept");
    let before = root_entries(NETCLAW_JSON);
    let now = root_entries(&after);
    assert_eq!(before.len(), 23);
    // Every root entry but Daemon byte for byte and in place; Operator appended.
    assert_eq!(now.len(), 24, "{after}");
    for ((name, text), (name_now, text_now)) in before.iter().zip(&now) {
        assert_eq!(name, name_now);
        if name != "Daemon" {
            assert_eq!(text, text_now, "{name}");
        }
    }
    assert_eq!(now[23].0, "Operator");
    let v: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(v["configVersion"], 1);
    assert_eq!(v["Daemon"]["ExposureMode"], "reverse-proxy");
    assert_eq!(v["Daemon"]["Host"], "192.0.2.10");
    assert_eq!(v["Daemon"]["DisableSelfUpdate"], true);
    assert_eq!(v["Daemon"]["UpdateChannel"], "beta");
    assert!(v["Operator"]["PkiDirectory"].is_string());

    // The merged file loads: pki status reads it.
    let (out, status) = status_json(root);
    ok(&out);
    assert_eq!(status["healthy"], true, "{status}");

    // Now installed: a second install needs --force, and --force keeps the foreign sections.
    let again = install(root, &[]);
    assert_eq!(again.status.code(), Some(1));
    ok(&install(root, &["--force"]));
    let forced = fs::read_to_string(&cfg).unwrap();
    for ((name, text), (_, text_now)) in before.iter().zip(&root_entries(&forced)) {
        if name != "Daemon" {
            assert_eq!(text, text_now, "{name}");
        }
    }
}

#[test]
fn install_refuses_a_netclaw_configuration_with_a_misspelled_owned_section() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cfg = config(root);
    fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    let typo = NETCLAW_JSON.replacen("\"Daemon\":", "\"Deamon\":", 1);
    fs::write(&cfg, &typo).unwrap();
    let out = install(root, &[]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Deamon") && err.contains("Daemon"), "{err}");
    assert_eq!(
        fs::read_to_string(&cfg).unwrap(),
        typo,
        "the file was changed"
    );
}
