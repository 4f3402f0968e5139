#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt;

use super::*;

fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[test]
fn owner_only_secret_and_read_only_anchor_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k.key");
    let crt = tmp.path().join("ca.crt");
    fs::write(&key, b"k").unwrap();
    fs::write(&crt, b"c").unwrap();
    set_mode(&key, 0o600);
    set_mode(&crt, 0o644);
    assert!(check(&key, FileKind::Secret, me()).is_empty());
    assert!(check(&crt, FileKind::TrustAnchor, me()).is_empty());
    assert!(check(tmp.path(), FileKind::Dir, me()).is_empty());
    assert!(check(&tmp.path().join("missing"), FileKind::Secret, me()).is_empty());
}

#[test]
fn readable_secret_names_chmod_600() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("ca.key");
    fs::write(&key, b"k").unwrap();
    set_mode(&key, 0o644);
    let found = check(&key, FileKind::Secret, me());
    assert_eq!(
        found,
        vec![Finding::SecretReadable {
            path: key.clone(),
            mode: 0o644
        }]
    );
    assert_eq!(found[0].fix(), format!("chmod 600 {}", key.display()));
    assert!(found[0].to_string().contains("mode 0644"));
}

#[test]
fn writable_anchor_state_and_dir_name_chmod_go_w() {
    let tmp = tempfile::tempdir().unwrap();
    let crt = tmp.path().join("ca.crt");
    fs::write(&crt, b"c").unwrap();
    for (kind, mode) in [
        (FileKind::TrustAnchor, 0o666),
        (FileKind::State, 0o620),
        (FileKind::TrustAnchor, 0o646),
    ] {
        set_mode(&crt, mode);
        let found = check(&crt, kind, me());
        assert_eq!(
            found,
            vec![Finding::Writable {
                path: crt.clone(),
                kind,
                mode
            }]
        );
        assert_eq!(found[0].fix(), format!("chmod go-w {}", crt.display()));
    }
    // Readable by others is fine for a trust anchor.
    set_mode(&crt, 0o644);
    assert!(check(&crt, FileKind::TrustAnchor, me()).is_empty());
    let dir = tmp.path().join("pki");
    fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o777);
    assert!(matches!(
        check(&dir, FileKind::Dir, me())[..],
        [Finding::Writable {
            kind: FileKind::Dir,
            ..
        }]
    ));
}

#[test]
fn owners_secret_must_be_the_service_user_others_may_be_root() {
    let p = Path::new("/x/ca.key");
    assert!(judge(p, FileKind::Secret, 0o600, 1000, 1000).is_empty());
    let found = judge(p, FileKind::Secret, 0o600, 0, 1000);
    assert!(matches!(
        found[..],
        [Finding::WrongOwner {
            owner: 0,
            expected: 1000,
            ..
        }]
    ));
    assert!(found[0].fix().starts_with("chown "));
    assert!(found[0].fix().ends_with(": /x/ca.key"));
    assert!(judge(p, FileKind::TrustAnchor, 0o644, 0, 1000).is_empty());
    assert_eq!(judge(p, FileKind::TrustAnchor, 0o644, 4242, 1000).len(), 1);
    // The service writes its state files: root's would be unwritable to it.
    assert_eq!(judge(p, FileKind::State, 0o600, 0, 1000).len(), 1);
    // Both problems at once.
    assert_eq!(judge(p, FileKind::State, 0o666, 4242, 1000).len(), 2);
}

#[test]
fn symlinked_secret_and_state_are_refused_anchor_target_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    fs::write(&real, b"x").unwrap();
    set_mode(&real, 0o600);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for kind in [FileKind::Secret, FileKind::State] {
        let found = check(&link, kind, me());
        assert_eq!(
            found,
            vec![Finding::Symlink {
                path: link.clone(),
                kind
            }]
        );
        assert!(found[0].fix().contains("readlink -f"));
    }
    assert!(check(&link, FileKind::TrustAnchor, me()).is_empty());
    set_mode(&real, 0o666);
    assert_eq!(check(&link, FileKind::TrustAnchor, me()).len(), 1);
}

#[test]
fn a_directory_where_a_file_belongs_is_the_wrong_type() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        check(tmp.path(), FileKind::Secret, me())[..],
        [Finding::WrongType { .. }]
    ));
}
