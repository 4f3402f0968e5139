//! Start-up refusals on unsafe file modes, owners and links (real `netclaw-daemon` and
//! `netclaw-operator-agent` processes on `--root` installs): a secret others can read, a trust
//! anchor, configuration, state file or directory others can write, a file owned by another
//! user, or a symbolic link where a key or the audit log belongs. Each makes the service exit
//! 64 with the exact `chmod`/`chown` in its message, and `netclaw doctor` fails its
//! `file-permissions` check with the same fix. A reload of the agent with such files is refused
//! and the old credentials stay in use.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ok, run_refused, Install, Process};

const DAEMON: &str = "netclaw-daemon";
const AGENT: &str = "netclaw-operator-agent";
/// Far longer than a refusal takes; a service still running then was not refused.
const LIMIT: Duration = Duration::from_secs(8);
/// A uid no file of the install belongs to.
const OTHER_UID: u32 = 65534;

struct Paths {
    config: PathBuf,
    state: PathBuf,
    pki: PathBuf,
    agent: PathBuf,
}

fn paths(install: &Install) -> Paths {
    let r = install.root();
    Paths {
        config: install.config(),
        state: r.join("var/lib/netclaw"),
        pki: r.join("var/lib/netclaw/pki"),
        agent: r.join("var/lib/netclaw-operator-agent"),
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_other(p: &Path) {
    std::os::unix::fs::chown(p, Some(OTHER_UID), None).unwrap();
}

/// Moves `p` aside and leaves a symbolic link to it in its place.
fn symlink_in_place(p: &Path) {
    let aside = p.with_extension("aside");
    if p.exists() {
        std::fs::rename(p, &aside).unwrap();
    } else {
        std::fs::write(&aside, b"").unwrap();
        chmod(&aside, 0o600);
    }
    std::os::unix::fs::symlink(&aside, p).unwrap();
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::geteuid().to_string())
}

/// One broken install: what breaks it, which service must refuse, and the fix it must name.
fn case(service: &str, breaks: impl FnOnce(&Paths) -> String) {
    let install = Install::local();
    let p = paths(&install);
    let fix = breaks(&p);
    let (code, stderr) = run_refused(&install, service, LIMIT);
    assert_eq!(
        code,
        Some(64),
        "{service} did not refuse to start (exit {code:?}); wanted `{fix}`:\n{stderr}"
    );
    assert!(
        stderr.contains(&fix),
        "{service} does not name `{fix}`:\n{stderr}"
    );

    let out = install.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "file-permissions")
        .unwrap_or_else(|| panic!("no file-permissions check: {report:#}"))
        .clone();
    assert_eq!(check["outcome"], "fail", "{check:#}");
    assert!(
        check["fix"].as_str().unwrap().contains(&fix),
        "doctor does not name `{fix}`: {check:#}"
    );
    assert_eq!(out.status.code(), Some(1), "{report:#}");
}

#[test]
fn daemon_refuses_a_readable_ca_key() {
    case(DAEMON, |p| {
        chmod(&p.pki.join("ca.key"), 0o644);
        format!("chmod 600 {}", p.pki.join("ca.key").display())
    });
}

#[test]
fn daemon_refuses_a_writable_ca_certificate() {
    case(DAEMON, |p| {
        chmod(&p.pki.join("ca.crt"), 0o666);
        format!("chmod go-w {}", p.pki.join("ca.crt").display())
    });
}

#[test]
fn daemon_and_agent_refuse_a_writable_configuration() {
    for service in [DAEMON, AGENT] {
        case(service, |p| {
            chmod(&p.config, 0o666);
            format!("chmod go-w {}", p.config.display())
        });
    }
}

#[test]
fn daemon_refuses_a_writable_device_registry() {
    case(DAEMON, |p| {
        let devices = p.state.join("devices.json");
        std::fs::write(&devices, br#"{"version":1,"devices":[]}"#).unwrap();
        chmod(&devices, 0o666);
        format!("chmod go-w {}", devices.display())
    });
}

#[test]
fn daemon_refuses_a_writable_pki_directory() {
    case(DAEMON, |p| {
        chmod(&p.pki, 0o777);
        format!("chmod go-w {}", p.pki.display())
    });
}

#[test]
fn daemon_refuses_a_key_owned_by_another_user() {
    case(DAEMON, |p| {
        chown_other(&p.pki.join("server.key"));
        format!("chown {}: {}", me(), p.pki.join("server.key").display())
    });
}

#[test]
fn daemon_refuses_a_symlinked_key() {
    case(DAEMON, |p| {
        symlink_in_place(&p.pki.join("ca.key"));
        format!("readlink -f {}", p.pki.join("ca.key").display())
    });
}

#[test]
fn daemon_refuses_a_symlinked_audit_log() {
    case(DAEMON, |p| {
        symlink_in_place(&p.state.join("audit.log"));
        format!("readlink -f {}", p.state.join("audit.log").display())
    });
}

#[test]
fn agent_refuses_a_writable_bundle() {
    case(AGENT, |p| {
        chmod(&p.agent.join("ca-bundle.crt"), 0o666);
        format!("chmod go-w {}", p.agent.join("ca-bundle.crt").display())
    });
}

#[test]
fn agent_refuses_a_writable_directory() {
    case(AGENT, |p| {
        chmod(&p.agent, 0o777);
        format!("chmod go-w {}", p.agent.display())
    });
}

#[test]
fn agent_refuses_a_key_owned_by_another_user() {
    case(AGENT, |p| {
        chown_other(&p.agent.join("client.key"));
        format!("chown {}: {}", me(), p.agent.join("client.key").display())
    });
}

#[test]
fn agent_reload_with_a_writable_bundle_is_refused_and_keeps_serving() {
    let install = Install::local();
    let p = paths(&install);
    let _daemon = Process::start(&install);
    let agent = Process::start_agent(&install);
    ok(&install.run(&["whoami", "--json"]));

    let bundle = p.agent.join("ca-bundle.crt");
    chmod(&bundle, 0o666);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let fix = format!("chmod go-w {}", bundle.display());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = install.run(&["status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let error = status["agent"]["lastReloadError"]
            .as_str()
            .unwrap_or_default();
        if error.contains(&fix) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload was not refused naming `{fix}`: {status:#}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The old credentials are still in use.
    let who: Value = serde_json::from_slice(&install.run(&["whoami", "--json"]).stdout).unwrap();
    assert_eq!(who["principal"], "LocalOperator", "{who}");
}
