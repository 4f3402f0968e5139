//! `netclaw pki revoke` and `netclaw pki rotate --offline` on an install tree (no daemon, no
//! agent): exit codes for bad arguments, an unknown serial and a missing PKI, and the registry
//! and agent files they change.

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use serde_json::Value;
use support::{code, netclaw, ok, stderr, stdout, Install};

fn registry(install: &Install) -> Value {
    serde_json::from_slice(
        &std::fs::read(install.root().join("var/lib/netclaw/pki/registry.json")).unwrap(),
    )
    .unwrap()
}

fn state(registry: &Value, serial: &str) -> String {
    registry["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["serial"] == serial)
        .unwrap_or_else(|| panic!("{serial} not in {registry}"))["status"]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["pki", "revoke"][..],
        &["pki", "revoke", "01", "--agent"],
        &["pki", "revoke", "not-hex"],
        &["pki", "rotate", "--offline", "extra"],
    ] {
        let out = netclaw(args);
        code(&out, 2);
    }
}

#[test]
fn an_unknown_serial_exits_1_naming_pki_status_and_changes_nothing() {
    let install = Install::reverse_proxy();
    let before = registry(&install);
    let out = install.run(&["pki", "revoke", "0abc"]);
    code(&out, 1);
    assert!(
        stderr(&out).contains("`netclaw pki status`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(registry(&install), before);
}

#[test]
fn without_a_pki_both_exit_5_naming_install() {
    let install = Install::reverse_proxy();
    std::fs::remove_dir_all(install.root().join("var/lib/netclaw/pki")).unwrap();
    for args in [
        &["pki", "revoke", "--agent"][..],
        &["pki", "rotate", "--offline"],
    ] {
        let out = install.run(args);
        code(&out, 5);
        assert!(
            stderr(&out).contains("netclaw daemon install"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn revoke_then_rotate_offline() {
    let install = Install::reverse_proxy();
    let status: Value =
        serde_json::from_slice(&install.run(&["pki", "status", "--json"]).stdout).unwrap();
    let first = status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "operator-agent")
        .unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = install.run(&["pki", "revoke", &first]);
    ok(&out);
    assert!(
        stdout(&out).contains(&format!("revoked agent certificate {first}")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("netclaw pki rotate --offline"),
        "{}",
        stdout(&out)
    );
    assert_eq!(state(&registry(&install), &first), "revoked");
    // Again: already revoked, still success.
    let out = install.run(&["pki", "revoke", &first, "--json"]);
    ok(&out);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["alreadyRevoked"][0], first.as_str(), "{again}");

    let out = install.run(&["pki", "rotate", "--offline"]);
    ok(&out);
    assert!(
        stdout(&out).contains("issued a new operator agent certificate"),
        "{}",
        stdout(&out)
    );
    let out = install.run(&["pki", "status", "--json"]);
    ok(&out);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let agent = status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "operator-agent")
        .unwrap()
        .clone();
    assert_ne!(agent["serial"], first.as_str());
    assert_eq!(agent["registryStatus"], "active", "{agent}");
    // The revoked serial stays revoked (only active serials are superseded).
    assert_eq!(state(&registry(&install), &first), "revoked");
    let leftovers: Vec<_> =
        std::fs::read_dir(install.root().join("var/lib/netclaw-operator-agent"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".next") || n.contains(".tmp-"))
            .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A user who cannot use the PKI directory (a system install run without sudo) gets exit 5
/// naming the directory and `sudo`, and nothing changes.
#[test]
fn without_access_to_the_pki_directory_both_exit_5_naming_sudo() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root()
        || std::process::Command::new("setpriv")
            .arg("--help")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and setpriv to run as another user");
        return;
    }
    let install = Install::reverse_proxy();
    // The configuration is readable by everyone (as /etc/netclaw/netclaw.json); the state and
    // PKI directories stay 0700 root.
    std::fs::set_permissions(install.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = registry(&install);
    for (args, command) in [
        (
            &["pki", "revoke", "--agent"][..],
            "sudo netclaw pki revoke --agent",
        ),
        (
            &["pki", "rotate", "--offline"],
            "sudo netclaw pki rotate --offline",
        ),
    ] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_netclaw"))
            .arg("--config")
            .arg(install.config())
            .args(args)
            .env_remove("NETCLAW_CONFIG")
            .output()
            .unwrap();
        code(&out, 5);
        assert!(stderr(&out).contains(command), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Operator.PkiDirectory")
                || stderr(&out).contains("Operator.AgentDirectory"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(registry(&install), before);
}
