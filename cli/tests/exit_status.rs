//! The daemon's and the agent's start-up exit status, run as real processes: 64 for what the
//! operator must fix (systemd does not restart it, `RestartPreventExitStatus=64`), 75
//! (`EX_TEMPFAIL`) for what heals by itself and systemd retries: the address not assigned yet,
//! the port still held, the tunnel process not running yet, a certificate not valid yet by this
//! host's clock (behind, before NTP), the socket held by an agent still stopping.

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, SystemTime};

use netclaw_pki::issue::CertificateLifetime;
use netclaw_pki::store::{self, AgentPaths, DaemonPkiPaths};
use netclaw_pki::SpiffeId;
use support::{run_refused, Install, Process};

const LIMIT: Duration = Duration::from_secs(20);
const EX_CONFIG: i32 = 64;
const EX_TEMPFAIL: i32 = 75;

fn pki(install: &Install) -> DaemonPkiPaths {
    DaemonPkiPaths::new(install.root().join("var/lib/netclaw/pki"))
}

fn agent_paths(install: &Install) -> AgentPaths {
    AgentPaths::new(install.root().join("var/lib/netclaw-operator-agent"))
}

const TOMORROW: Duration = Duration::from_secs(86_400);

#[test]
fn the_daemon_exits_75_when_its_port_is_in_use() {
    let install = Install::tunnel(&[]);
    let _holder = TcpListener::bind((Ipv4Addr::LOCALHOST, install.port)).unwrap();
    let (code, stderr) = run_refused(&install, "netclaw-daemon", LIMIT);
    assert_eq!(code, Some(EX_TEMPFAIL), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", install.port)),
        "{stderr}"
    );
}

#[test]
fn the_daemon_exits_75_when_its_address_is_not_assigned_yet() {
    // 192.0.2.10 (documentation range) is on no interface of this host.
    let install = Install::reverse_proxy();
    let (code, stderr) = run_refused(&install, "netclaw-daemon", LIMIT);
    assert_eq!(code, Some(EX_TEMPFAIL), "{stderr}");
    assert!(stderr.contains("192.0.2.10"), "{stderr}");
}

#[test]
fn the_daemon_exits_75_when_the_tunnel_process_is_not_running_yet() {
    if netclaw_core::env::process_running(std::path::Path::new("/proc"), "tailscaled") {
        eprintln!("SKIPPED: tailscaled runs on this host");
        return;
    }
    let (port, op_port) = support::free_ports();
    let install = Install::with(&[
        "--exposure",
        "tailscale-serve",
        "--port",
        &port.to_string(),
        "--operator-port",
        &op_port.to_string(),
    ]);
    let (code, stderr) = run_refused(&install, "netclaw-daemon", LIMIT);
    assert_eq!(code, Some(EX_TEMPFAIL), "{stderr}");
    assert!(stderr.contains("tailscaled"), "{stderr}");
}

#[test]
fn the_daemon_exits_75_when_its_listener_certificate_is_not_valid_yet() {
    let install = Install::tunnel(&[]);
    let pki = pki(&install);
    let ca = store::load_ca(&pki).unwrap();
    let names = netclaw_pki::rotation::current_listener_names(&pki).unwrap();
    let server = ca
        .issue_server(&names, SystemTime::now() + TOMORROW)
        .unwrap();
    store::save_server(&pki, &server).unwrap();
    let (code, stderr) = run_refused(&install, "netclaw-daemon", LIMIT);
    assert_eq!(code, Some(EX_TEMPFAIL), "{stderr}");
}

#[test]
fn the_agent_exits_75_when_its_certificate_is_not_valid_yet() {
    let install = Install::tunnel(&[]);
    let pki = pki(&install);
    let agent = agent_paths(&install);
    let ca = store::load_ca(&pki).unwrap();
    let current = store::load_agent(&agent).unwrap();
    let id: SpiffeId = netclaw_pki::verify::inspect(&current.cert.der)
        .unwrap()
        .sans
        .iter()
        .find_map(|s| s.strip_prefix("URI:")?.parse().ok())
        .unwrap();
    let issued = ca
        .issue_agent(
            &id,
            SystemTime::now() + TOMORROW,
            CertificateLifetime::new(Duration::from_secs(30 * 86_400)).unwrap(),
        )
        .unwrap();
    let bundle = std::fs::read_to_string(agent.ca_bundle()).unwrap();
    store::save_agent(&agent, &issued.key, &issued.cert.pem, &bundle).unwrap();
    let (code, stderr) = run_refused(&install, "netclaw-operator-agent", LIMIT);
    assert_eq!(code, Some(EX_TEMPFAIL), "{stderr}");
}

#[test]
fn a_second_agent_on_a_live_socket_exits_75_and_a_broken_setup_still_exits_64() {
    let install = Install::tunnel(&[]);
    let _agent = Process::start_agent(&install);
    let (code, stderr) = run_refused(&install, "netclaw-operator-agent", LIMIT);
    assert_eq!(code, Some(EX_TEMPFAIL), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");

    // Configuration: a key others can read is for the operator to fix; no restart.
    use std::os::unix::fs::PermissionsExt;
    let key = pki(&install).ca_key();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = run_refused(&install, "netclaw-daemon", LIMIT);
    assert_eq!(code, Some(EX_CONFIG), "{stderr}");
}
