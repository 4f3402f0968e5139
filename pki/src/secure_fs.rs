//! File primitives for key material and state: private directories, atomic writes, and reads
//! that refuse key files other users could read.
//!
//! A write goes to a fresh temporary file in the target's directory (opened with `create_new`
//! and the final mode), is flushed with `fsync`, renamed over the target, and the directory is
//! fsynced. A reader therefore sees either the old file or the new one, never a torn write, and a
//! writer that fails part-way leaves the old file untouched and removes its temporary file.
//!
//! Ownership rule: every file written here belongs to the owner of the directory it lands in.
//! When root writes (a `netclaw pki` command or an install in a system install), the temporary
//! file is given the directory's uid and gid before it is renamed into place, so the service
//! user that owns the directory can still read and replace it; a new directory likewise gets
//! its parent's owner. Other users can only create files they own, which is the same thing in a
//! directory they own.
//!
//! Symbolic links are never followed when writing: the temporary file is created with
//! `O_CREAT|O_EXCL` and renamed over the target (replacing a link, not its target), and
//! [`open_state_file`] and [`read_secret`] open with `O_NOFOLLOW`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::PkiError;

/// Mode of every private key file.
pub const KEY_MODE: u32 = 0o600;
/// Mode of public files (certificates, bundles): readable by the agent and the CLI.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of directories that hold keys.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700, or checks that an existing `dir` is not
/// accessible to group or others.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    ensure_dir_mode(dir, PRIVATE_DIR_MODE)
}

/// Creates `dir` (and missing parents) with `mode`; an existing directory is set to `mode`.
///
/// Missing parents are created with the usual 0755, so that a private leaf does not hide its
/// siblings (e.g. `/var/lib` stays traversable when `/var/lib/netclaw` is 0700).
pub fn ensure_dir_mode(dir: &Path, mode: u32) -> Result<(), PkiError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| PkiError::io("creating directory", parent, e))?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            if let Some(owner) = owner_for_new_entries(&parent_dir(dir))? {
                std::os::unix::fs::lchown(dir, Some(owner.uid), Some(owner.gid))
                    .map_err(|e| PkiError::io("giving its parent's owner to", dir, e))?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(PkiError::io("creating directory", dir, e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| PkiError::io("setting permissions on", dir, e))
}

/// Atomically replaces `path` with `data`, created with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    write_atomic_with(path, mode, |f| f.write_all(data))
}

/// Atomically replaces `path` with whatever `fill` writes, created with `mode`.
///
/// If `fill` fails, the temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), PkiError> {
    let dir = parent_dir(path);
    let owner = owner_for_new_entries(&dir)?;
    let tmp = temp_path(path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| PkiError::io("creating", &tmp, e))?;
    let written = (|| {
        // The directory's owner, before the file appears under its name (see the module doc).
        if let Some(o) = owner {
            std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))?;
        }
        // `mode` is filtered by the umask at creation; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        fill(&mut file)?;
        file.sync_all()
    })();
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::io("writing", path, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(PkiError::io("renaming into place", path, e));
    }
    sync_dir(&dir)
}

/// Atomically replaces the regular file `path` with `data`, keeping its owner and its mode
/// without the group and other write bits (a configuration others can write is refused at
/// start). A missing file (or a symbolic link, which is replaced, not followed) is written as
/// [`write_atomic`] writes it, with `new_mode`. If the old owner cannot be kept (a non-root
/// writer replacing another user's file), nothing is replaced.
pub fn replace_atomic(path: &Path, data: &[u8], new_mode: u32) -> Result<(), PkiError> {
    let old = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => meta,
        Ok(_) => return write_atomic(path, data, new_mode),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return write_atomic(path, data, new_mode),
        Err(e) => return Err(PkiError::io("inspecting", path, e)),
    };
    let mode = old.mode() & 0o777 & !0o022;
    write_atomic_with(path, mode, |f| {
        let now = f.metadata()?;
        if (now.uid(), now.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(&*f, Some(old.uid()), Some(old.gid()))?;
            // A change of owner may clear mode bits; set the mode again.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(data)
    })
}

/// The owner of a directory, which every file written into it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOwner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl FileOwner {
    /// The owner of `path`.
    pub fn of(path: &Path) -> Result<Self, PkiError> {
        let meta = fs::metadata(path).map_err(|e| PkiError::io("inspecting", path, e))?;
        Ok(Self {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// The owner new entries of `dir` must be given explicitly: the directory's owner when this
/// process is root (a non-root process can only create files it owns).
fn owner_for_new_entries(dir: &Path) -> Result<Option<FileOwner>, PkiError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    FileOwner::of(dir).map(Some)
}

/// Opens the state file `path` for writing (appending when `append`), creating it with `mode`
/// when it is missing; never follows a symbolic link (`O_NOFOLLOW`: a link at `path` is an
/// error). Opened by root, the file is given the directory's owner (also repairing one that an
/// older root-run command left to root).
pub fn open_state_file(path: &Path, mode: u32, append: bool) -> Result<File, PkiError> {
    let dir = parent_dir(path);
    let owner = owner_for_new_entries(&dir)?;
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(false)
        .mode(mode)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| PkiError::io("opening (symbolic links are not followed)", path, e))?;
    if let Some(o) = owner {
        std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))
            .map_err(|e| PkiError::io("giving its directory's owner to", path, e))?;
    }
    Ok(file)
}

/// Removes temporary files that an interrupted [`write_atomic`] left in `dir`.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize, PkiError> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(PkiError::io("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| PkiError::io("listing", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            fs::remove_file(entry.path()).map_err(|e| PkiError::io("removing", entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Reads a secret file, refusing it when group or others have any access to it or when it is a
/// symbolic link (opened with `O_NOFOLLOW`; the mode is that of the file actually opened).
pub fn read_secret(
    path: &Path,
    what: &'static str,
    fix: &'static str,
) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    use std::io::Read;
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PkiError::Missing {
                what,
                path: path.to_owned(),
                fix,
            })
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(PkiError::SymlinkRefused {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(PkiError::io("reading", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| PkiError::io("reading", path, e))?;
    check_private_mode(path, meta.permissions().mode())?;
    let mut data = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.read_to_end(&mut data)
        .map_err(|e| PkiError::io("reading", path, e))?;
    Ok(data)
}

/// Refuses a key file whose mode grants group or others any access.
pub fn check_private_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    if mode & 0o077 != 0 {
        return Err(PkiError::InsecurePermissions {
            path: path.to_owned(),
            mode: mode & 0o7777,
            wanted: KEY_MODE,
        });
    }
    Ok(())
}

/// Reads a public file (certificate, bundle, registry).
pub fn read_public(
    path: &Path,
    what: &'static str,
    fix: &'static str,
) -> Result<Vec<u8>, PkiError> {
    match fs::read(path) {
        Ok(data) => Ok(data),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PkiError::Missing {
            what,
            path: path.to_owned(),
            fix,
        }),
        Err(e) => Err(PkiError::io("reading", path, e)),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> Result<PathBuf, PkiError> {
    let mut nonce = [0u8; 8];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| PkiError::Random)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(parent_dir(path).join(format!(".{name}.tmp-{}", hex::encode(nonce))))
}

fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PkiError::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_exactly_0600_and_dir_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
            0o700
        );
        let key = dir.join("k.key");
        write_atomic(&key, b"secret", KEY_MODE).unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(&read_secret(&key, "key", "fix").unwrap()[..], b"secret");
    }

    #[test]
    fn world_readable_key_is_refused_with_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("k.key");
        write_atomic(&key, b"secret", KEY_MODE).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&key, "key", "fix").unwrap_err().to_string();
        assert!(err.contains("0644"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", key.display())),
            "{err}"
        );
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_secret(&key, "key", "fix").is_err());
    }

    #[test]
    fn interrupted_write_leaves_old_file_and_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        write_atomic(&path, b"old state", KEY_MODE).unwrap();
        let err = write_atomic_with(&path, KEY_MODE, |f| {
            f.write_all(b"new st")?;
            Err(io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old state");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn replacing_keeps_the_mode_without_group_and_other_write() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("netclaw.json");
        replace_atomic(&path, b"new", PUBLIC_MODE).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), PUBLIC_MODE);
        for (before, after) in [
            (0o640, 0o640),
            (0o600, 0o600),
            (0o666, 0o644),
            (0o4775, 0o755),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(before)).unwrap();
            replace_atomic(&path, b"again", PUBLIC_MODE).unwrap();
            assert_eq!(mode(&path), after, "{before:o}");
            assert_eq!(fs::read(&path).unwrap(), b"again");
        }
        if nix::unistd::geteuid().is_root() {
            // Root keeps the file's owner, not the directory's.
            std::os::unix::fs::chown(&path, Some(4242), Some(4243)).unwrap();
            replace_atomic(&path, b"owned", PUBLIC_MODE).unwrap();
            let meta = fs::metadata(&path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4243));
            assert_eq!(mode(&path), 0o755);
        }
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn stale_temp_files_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(".state.json.tmp-0011223344556677"), b"x").unwrap();
        fs::write(tmp.path().join("state.json"), b"x").unwrap();
        assert_eq!(remove_stale_temp_files(tmp.path()).unwrap(), 1);
        assert!(tmp.path().join("state.json").exists());
    }

    #[test]
    fn root_writes_get_the_directory_owner() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to write into another user's directory");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("svc");
        ensure_private_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(4242), Some(4243)).unwrap();
        write_atomic(&dir.join("k.key"), b"secret", KEY_MODE).unwrap();
        drop(open_state_file(&dir.join("audit.log"), 0o600, true).unwrap());
        ensure_private_dir(&dir.join("sub")).unwrap();
        for p in ["k.key", "audit.log", "sub"] {
            let meta = fs::metadata(dir.join(p)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "{p}");
        }
        assert_eq!(
            fs::metadata(dir.join("k.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o600
        );
    }

    #[test]
    fn links_are_not_followed_for_secrets_and_state() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        write_atomic(&target, b"secret", KEY_MODE).unwrap();
        let link = tmp.path().join("k.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            read_secret(&link, "key", "fix"),
            Err(PkiError::SymlinkRefused { .. })
        ));
        assert!(open_state_file(&link, 0o600, true).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"secret");
        // An atomic write replaces the link itself, never its target.
        write_atomic(&link, b"new", KEY_MODE).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"secret");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn missing_secret_names_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read_secret(
            &tmp.path().join("nope"),
            "agent key",
            "run `netclaw daemon install`",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("agent key not found"), "{err}");
        assert!(err.contains("netclaw daemon install"), "{err}");
    }
}
