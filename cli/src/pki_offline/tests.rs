use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use netclaw_pki::identity::from_unix_seconds;
use netclaw_pki::registry::Admission;

use super::*;
use crate::exit::ExitCode;
use crate::install::{self, InstallOptions, Target};

const NOW: u64 = 1_800_000_000;

fn serial(s: &str) -> Serial {
    s.parse().unwrap()
}

fn t(s: u64) -> SystemTime {
    from_unix_seconds(s)
}

/// 01 active, 02 superseded inside its grace, 03 superseded past it, 04 revoked, 05 a server.
fn registry() -> Registry {
    let mut r = Registry::default();
    for s in ["01", "02", "03", "04"] {
        r.record(
            serial(s),
            CertificateKind::Agent,
            "spiffe://netclaw.internal/host/x/operator-agent".into(),
            t(NOW - 1000),
            t(NOW + 1000),
        );
    }
    r.record(
        serial("05"),
        CertificateKind::Server,
        "IP:192.0.2.10".into(),
        t(NOW - 1000),
        t(NOW + 1000),
    );
    let mut status = |s: &str, st: Status| {
        r.entries
            .iter_mut()
            .find(|e| e.serial == serial(s))
            .unwrap()
            .status = st
    };
    status(
        "02",
        Status::Superseded {
            at: NOW - 10,
            grace_until: NOW + 50,
            successor: serial("01"),
        },
    );
    status(
        "03",
        Status::Superseded {
            at: NOW - 100,
            grace_until: NOW - 40,
            successor: serial("02"),
        },
    );
    status("04", Status::Revoked { at: NOW - 5 });
    r
}

#[test]
fn agent_revokes_every_serial_the_daemon_would_still_accept() {
    let plan = plan_revoke(&registry(), &RevokeTarget::Agent, t(NOW)).unwrap();
    assert_eq!(plan.revoke, vec![serial("01"), serial("02")]);
    assert!(plan.already_revoked.is_empty());
}

#[test]
fn one_serial_is_revoked_once() {
    let r = registry();
    let plan = plan_revoke(&r, &RevokeTarget::Serial(serial("03")), t(NOW)).unwrap();
    assert_eq!(plan.revoke, vec![serial("03")]);
    let plan = plan_revoke(&r, &RevokeTarget::Serial(serial("04")), t(NOW)).unwrap();
    assert!(plan.revoke.is_empty());
    assert_eq!(plan.already_revoked, vec![serial("04")]);
}

#[test]
fn an_unknown_serial_names_pki_status() {
    let e = plan_revoke(&registry(), &RevokeTarget::Serial(serial("0abc")), t(NOW)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Failure);
    assert!(e.to_string().contains("0abc"), "{}", e.to_string());
    assert!(
        e.to_string().contains("`netclaw pki status`"),
        "{}",
        e.to_string()
    );
}

#[test]
fn a_non_agent_serial_is_refused() {
    let e = plan_revoke(&registry(), &RevokeTarget::Serial(serial("05")), t(NOW)).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Failure);
    assert!(
        e.to_string().contains("not an agent certificate"),
        "{}",
        e.to_string()
    );
}

#[test]
fn permission_denied_names_the_directory_and_sudo() {
    let pki = DaemonPkiPaths::new("/var/lib/netclaw/pki");
    let e = access(
        PkiError::io(
            "opening",
            "/var/lib/netclaw/pki/registry.lock",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        ),
        &pki,
        "netclaw pki revoke --agent",
    );
    assert_eq!(e.exit_code(), ExitCode::Credentials);
    assert!(
        e.to_string().contains("/var/lib/netclaw/pki"),
        "{}",
        e.to_string()
    );
    assert!(
        e.to_string().contains("Operator.PkiDirectory"),
        "{}",
        e.to_string()
    );
    assert!(
        e.to_string().contains("`sudo netclaw pki revoke --agent`"),
        "{}",
        e.to_string()
    );
}

struct Installed {
    _dir: tempfile::TempDir,
    config: Config,
    machine_id: PathBuf,
    identity: String,
    serial: String,
}

fn installed() -> Installed {
    let dir = tempfile::tempdir().unwrap();
    let machine_id = dir.path().join("machine-id");
    std::fs::write(&machine_id, "4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e\n").unwrap();
    let opts = InstallOptions {
        target: Target::Root(dir.path().join("root")),
        exposure: Some("reverse-proxy".into()),
        bind: Some("192.0.2.10".into()),
        port: None,
        trusted_proxies: vec!["192.0.2.1".into()],
        operator_host: None,
        operator_port: None,
        operator_users: Vec::new(),
        operator_groups: Vec::new(),
        allowed_sources: Vec::new(),
        public_url: None,
        trust_domain: None,
        certificate_lifetime: None,
        operator_dns: Vec::new(),
        skip_tunnel_process_check: false,
        force: false,
        replace_ca: false,
        dry_run: false,
        machine_id_path: machine_id.clone(),
    };
    let report = install::install(&opts, &BTreeMap::new(), SystemTime::now()).unwrap();
    let config = Config::load(&report.config_path, &BTreeMap::new()).unwrap();
    Installed {
        _dir: dir,
        config,
        machine_id,
        identity: report.agent_identity,
        serial: report.agent_serial,
    }
}

#[test]
fn offline_rotation_then_revocation_on_a_real_install_tree() {
    let i = installed();
    let now = SystemTime::now();
    let rotated = rotate_offline(&i.config, &i.machine_id, now).unwrap();
    assert_eq!(rotated.identity, i.identity);
    assert_eq!(rotated.superseded, vec![i.serial.clone()]);
    assert_eq!(rotated.grace_seconds, 60);
    assert!(
        rotated.next.contains("no restart") || rotated.next.contains("neither needs a restart")
    );

    let agent = AgentPaths::new(i.config.operator().agent_dir());
    let creds = store::load_agent(&agent).unwrap();
    assert_eq!(creds.cert.serial.to_string(), rotated.serial);
    assert_eq!(
        std::fs::metadata(agent.client_key())
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    let pki = DaemonPkiPaths::new(i.config.operator().pki_dir());
    let registry = store::load_registry(&pki).unwrap();
    assert_eq!(
        registry.admit_agent(&serial(&rotated.serial), now),
        Admission::Active
    );
    assert_eq!(
        registry.admit_agent(&serial(&i.serial), now),
        Admission::Grace
    );
    let text = render_rotate(&rotated);
    assert!(text.contains(&rotated.serial), "{text}");
    assert!(text.contains("superseded"), "{text}");

    // --agent revokes the new serial and the old one still in its grace period.
    let revoked = revoke(&i.config, &RevokeTarget::Agent, now).unwrap();
    assert_eq!(revoked.revoked.len(), 2, "{revoked:?}");
    assert!(revoked.agent_cut_off);
    assert_eq!(
        revoked.agent_serial.as_deref(),
        Some(rotated.serial.as_str())
    );
    assert!(revoked.next.contains(ROTATE_OFFLINE), "{}", revoked.next);
    let registry = store::load_registry(&pki).unwrap();
    for s in &revoked.revoked {
        assert!(matches!(
            registry.admit_agent(&serial(s), now),
            Admission::Refused(_)
        ));
    }
    let text = render_revoke(&revoked);
    assert!(text.contains("revoked agent certificate"), "{text}");

    // Nothing left to revoke; an unknown serial is an error and changes nothing.
    let again = revoke(&i.config, &RevokeTarget::Agent, now).unwrap();
    assert!(again.revoked.is_empty() && again.already_revoked.is_empty());
    assert!(again.next.contains("nothing was revoked"));
    let before = std::fs::read(pki.registry()).unwrap();
    let e = revoke(&i.config, &RevokeTarget::Serial(serial("0abc")), now).unwrap_err();
    assert!(
        e.to_string().contains("netclaw pki status"),
        "{}",
        e.to_string()
    );
    assert_eq!(std::fs::read(pki.registry()).unwrap(), before);

    // Rotation restores an active serial.
    let restored = rotate_offline(&i.config, &i.machine_id, now).unwrap();
    let registry = store::load_registry(&pki).unwrap();
    assert_eq!(
        registry.admit_agent(&serial(&restored.serial), now),
        Admission::Active
    );
    assert!(restored.superseded.is_empty(), "{restored:?}");
}

#[test]
fn offline_rotation_without_a_pki_names_install() {
    let i = installed();
    std::fs::remove_dir_all(i.config.operator().pki_dir()).unwrap();
    let e = rotate_offline(&i.config, &i.machine_id, SystemTime::now()).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Credentials);
    assert!(
        e.to_string().contains("netclaw daemon install"),
        "{}",
        e.to_string()
    );
    let e = revoke(&i.config, &RevokeTarget::Agent, SystemTime::now()).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Credentials);
}

#[test]
fn offline_rotation_without_an_agent_directory_changes_nothing() {
    let i = installed();
    let pki = DaemonPkiPaths::new(i.config.operator().pki_dir());
    let before = std::fs::read(pki.registry()).unwrap();
    std::fs::remove_dir_all(i.config.operator().agent_dir()).unwrap();
    let e = rotate_offline(&i.config, &i.machine_id, SystemTime::now()).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Credentials);
    assert!(
        e.to_string().contains("Operator.AgentDirectory"),
        "{}",
        e.to_string()
    );
    assert_eq!(std::fs::read(pki.registry()).unwrap(), before);
}

/// As root (a system install), the files written belong to their directory's owner: the daemon's
/// user for the registry and its lock, the agent's user for its credentials.
#[test]
fn as_root_files_get_their_directorys_owner() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to hand files to other users");
        return;
    }
    let i = installed();
    let (daemon_uid, agent_uid) = (64_001, 64_002);
    let chown_tree = |dir: &Path, uid: u32| {
        std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
        for e in std::fs::read_dir(dir).unwrap() {
            std::os::unix::fs::chown(e.unwrap().path(), Some(uid), Some(uid)).unwrap();
        }
    };
    let pki = DaemonPkiPaths::new(i.config.operator().pki_dir());
    let agent = AgentPaths::new(i.config.operator().agent_dir());
    chown_tree(pki.dir(), daemon_uid);
    chown_tree(agent.dir(), agent_uid);

    rotate_offline(&i.config, &i.machine_id, SystemTime::now()).unwrap();
    revoke(&i.config, &RevokeTarget::Agent, SystemTime::now()).unwrap();

    let owner = |p: PathBuf| {
        let m = std::fs::metadata(&p).unwrap();
        (p, m.uid(), m.gid())
    };
    for (p, uid, gid) in [
        owner(pki.registry()),
        owner(pki.dir().join("registry.lock")),
    ] {
        assert_eq!((uid, gid), (daemon_uid, daemon_uid), "{}", p.display());
    }
    for (p, uid, gid) in [
        owner(agent.client_key()),
        owner(agent.client_cert()),
        owner(agent.ca_bundle()),
    ] {
        assert_eq!((uid, gid), (agent_uid, agent_uid), "{}", p.display());
    }
}
