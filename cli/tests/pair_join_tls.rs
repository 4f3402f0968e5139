//! `netclaw pair join https://…` against a TLS server whose certificate comes from a private CA:
//! trusted with `--ca-file`, refused without it (and then no token is written).

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::SystemTime;

use netclaw_pki::issue::ListenerNames;
use netclaw_pki::OperatorCa;
use netclaw_tests::fake::{self, answer};
use support::{code, ok, stderr, stdout};

const TOKEN: &str = "dGVzdC10b2tlbi1mcm9tLWEtcHJpdmF0ZS1jYQ";

/// A one-request-per-connection HTTPS server on 127.0.0.1 with a certificate from a new CA;
/// returns the port, the CA's PEM and what it received.
fn https_server() -> (u16, String, fake::Log) {
    let now = SystemTime::now();
    let names = ListenerNames {
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        dns: Vec::new(),
    };
    let ca = OperatorCa::generate("test", &names, now).unwrap();
    let server = ca.issue_server(&names, now).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server.cert.der.clone()], server.key.to_rustls())
    .unwrap();
    let (port, log) = fake::tls(Arc::new(config), |req| {
        if req.path == "/api/pair/exchange" {
            answer(200, &format!(r#"{{"token":"{TOKEN}"}}"#))
        } else if req.path == "/api/whoami" {
            answer(
                200,
                r#"{"principal":"Device","name":"laptop","transport":"bearer"}"#,
            )
        } else {
            answer(404, r#"{"error":"not found"}"#)
        }
    });
    (port, ca.certificate().pem.clone(), log)
}

/// `netclaw pair join URL --code ABCD-EFGH --name laptop`, the rest to add.
fn join(url: &str) -> std::process::Command {
    let mut cmd = support::cmd();
    cmd.args([
        "pair",
        "join",
        url,
        "--code",
        "ABCD-EFGH",
        "--name",
        "laptop",
    ]);
    cmd
}

#[test]
fn pair_join_over_https_trusts_the_ca_file_and_stores_the_token() {
    let (port, ca_pem, seen) = https_server();
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let token = tmp.path().join("device.token");
    let url = format!("https://127.0.0.1:{port}");

    // Without the CA (an empty system bundle): the handshake fails, nothing is stored.
    let empty = tmp.path().join("empty-bundle.pem");
    std::fs::write(&empty, "").unwrap();
    let out = join(&url)
        .env("SSL_CERT_FILE", &empty)
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(!token.exists());

    let other = OperatorCa::generate(
        "other",
        &ListenerNames {
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            dns: Vec::new(),
        },
        SystemTime::now(),
    )
    .unwrap();
    let other_pem = tmp.path().join("other.pem");
    std::fs::write(&other_pem, &other.certificate().pem).unwrap();
    let out = join(&url)
        .arg("--ca-file")
        .arg(&other_pem)
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    code(&out, 3);
    assert!(stderr(&out).contains("TLS"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--ca-file"), "{}", stderr(&out));
    assert!(!token.exists());
    assert!(
        seen.lock().unwrap().is_empty(),
        "a request went out over an untrusted connection"
    );

    // With the right CA.
    let out = join(&url)
        .arg("--ca-file")
        .arg(&ca)
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(std::fs::read_to_string(&token).unwrap().trim(), TOKEN);
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let req = {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        seen[0].clone()
    };
    assert_eq!(req.method, "POST");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"code": "ABCD-EFGH", "deviceName": "laptop"})
    );
    assert!(req.header("authorization").is_none());

    // A second join does not overwrite the token without --force (checked before sending).
    let out = support::cmd()
        .args([
            "pair",
            "join",
            &url,
            "--code",
            "WXYZ-2345",
            "--name",
            "laptop",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    code(&out, 1);
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Without --token-file the token and the CA are saved as the current context: later commands
/// need neither --endpoint, --device-token nor --ca-file, even once the CA file is gone.
#[test]
fn pair_join_over_https_saves_the_ca_with_the_context() {
    let (port, ca_pem, seen) = https_server();
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let home = tmp.path().join("home");
    let url = format!("https://127.0.0.1:{port}");
    let out = join(&url)
        .env("XDG_CONFIG_HOME", &home)
        .arg("--ca-file")
        .arg(&ca)
        .output()
        .unwrap();
    ok(&out);
    assert!(stdout(&out).contains("netclaw whoami"), "{}", stdout(&out));
    std::fs::remove_file(&ca).unwrap();

    let empty = tmp.path().join("empty-bundle.pem");
    std::fs::write(&empty, "").unwrap();
    let out = support::cmd()
        .env("XDG_CONFIG_HOME", &home)
        .env("SSL_CERT_FILE", &empty)
        .args(["whoami", "--json"])
        .output()
        .unwrap();
    ok(&out);
    let seen = seen.lock().unwrap();
    let who = seen.iter().find(|r| r.path == "/api/whoami").unwrap();
    assert_eq!(
        who.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}
