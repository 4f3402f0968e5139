use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::SystemTime;

use super::*;
use crate::issue::ListenerNames;
use crate::{hostid, CertificateLifetime, SpiffeId};

fn ca_and_agent(now: SystemTime) -> (OperatorCa, crate::AgentCertificate) {
    let names = ListenerNames {
        ips: vec!["127.0.0.1".parse().unwrap()],
        dns: Vec::new(),
    };
    let ca = OperatorCa::generate("test", &names, now).unwrap();
    let id = SpiffeId::operator_agent(
        "netclaw.internal".parse().unwrap(),
        hostid::random().unwrap(),
    );
    let agent = ca
        .issue_agent(&id, now, CertificateLifetime::default())
        .unwrap();
    (ca, agent)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn save_agent_pair_replaces_the_pair_and_leaves_no_staging_files() {
    let now = SystemTime::now();
    let tmp = tempfile::tempdir().unwrap();
    let paths = AgentPaths::new(tmp.path().join("agent"));
    let (ca, first) = ca_and_agent(now);
    save_agent(&paths, &first.key, &first.cert.pem, &ca.certificate().pem).unwrap();

    let second = ca
        .issue_agent(
            &SpiffeId::operator_agent(
                "netclaw.internal".parse().unwrap(),
                hostid::random().unwrap(),
            ),
            now,
            CertificateLifetime::default(),
        )
        .unwrap();
    // Root writing a service user's directory: the files get the directory's owner.
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(paths.dir(), Some(4242), Some(4243)).unwrap();
    }
    let owner = secure_fs::FileOwner::of(paths.dir()).unwrap();
    save_agent_pair(&paths, &second.key, &second.cert.pem, &ca.certificate().pem).unwrap();

    let loaded = load_agent(&paths).unwrap();
    assert_eq!(loaded.cert.serial, second.cert.serial);
    assert_eq!(mode(&paths.client_key()), 0o600);
    assert_eq!(mode(&paths.client_cert()), 0o644);
    assert_eq!(mode(&paths.ca_bundle()), 0o644);
    for p in [paths.client_key(), paths.client_cert(), paths.ca_bundle()] {
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid), "{p:?}");
    }
    assert!(!next_path(&paths.client_key()).exists());
    assert!(!next_path(&paths.client_cert()).exists());
    let names: Vec<_> = std::fs::read_dir(paths.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn save_agent_pair_reports_a_pair_it_did_not_write() {
    let now = SystemTime::now();
    let tmp = tempfile::tempdir().unwrap();
    let paths = AgentPaths::new(tmp.path().join("agent"));
    let (ca, first) = ca_and_agent(now);
    save_agent(&paths, &first.key, &first.cert.pem, &ca.certificate().pem).unwrap();
    let (_, other) = ca_and_agent(now);
    // What ends up in place is checked: here a key that does not belong to the certificate
    // (as when the agent discards a lone staged key in between) is reported, not accepted.
    let err =
        save_agent_pair(&paths, &other.key, &first.cert.pem, &ca.certificate().pem).unwrap_err();
    assert!(err.to_string().contains("run the command again"), "{err}");
}

#[test]
fn registry_and_lock_get_the_directory_owner_and_keep_their_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = DaemonPkiPaths::new(tmp.path().join("pki"));
    secure_fs::ensure_private_dir(paths.dir()).unwrap();
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(paths.dir(), Some(4242), Some(4243)).unwrap();
    }
    let owner = secure_fs::FileOwner::of(paths.dir()).unwrap();
    drop(lock_registry(&paths).unwrap());
    save_registry(&paths, &Registry::default()).unwrap();
    assert_eq!(mode(&paths.registry()), 0o600);
    for p in [paths.registry(), paths.dir().join("registry.lock")] {
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (owner.uid, owner.gid), "{p:?}");
    }
    assert_eq!(load_registry(&paths).unwrap(), Registry::default());
}
