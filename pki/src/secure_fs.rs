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
//! [`open_state_file`] and [`read_secret`] open with `O_NOFOLLOW`. Every write goes relative to
//! a handle of the target's directory, opened once and checked (run by root, a directory reached
//! through a link a service user can replace is refused), so a directory swapped for a link after
//! the check is never written into.

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
    let created = match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(PkiError::io("creating directory", dir, e)),
    };
    // The owner and the mode are set through the directory itself, never through a link at
    // its name: root would otherwise chmod whatever a service user pointed the link at.
    let handle = open_dir(dir)?;
    if created {
        if let Some(owner) = owner_for_new_entries(&parent_dir(dir))? {
            std::os::unix::fs::fchown(&handle, Some(owner.uid), Some(owner.gid))
                .map_err(|e| PkiError::io("giving its parent's owner to", dir, e))?;
        }
    }
    handle
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| PkiError::io("setting permissions on", dir, e))
}

/// Opens the directory `dir` itself. Run by root, a symbolic link at `dir` is followed only
/// when no one but root can replace it (its parent is root's and not writable by others, as
/// `/var/lib` is); any other link is refused ([`PkiError::DirectorySymlinkRefused`]): the
/// directories root writes into belong to service users, who could replace one with a link to
/// a system directory. Other users follow links as usual (they can only change what they own).
fn open_dir(dir: &Path) -> Result<File, PkiError> {
    let root = nix::unistd::geteuid().is_root();
    let refused = || PkiError::DirectorySymlinkRefused { path: dir.into() };
    let mut flags = nix::fcntl::OFlag::O_DIRECTORY;
    if root {
        if !is_symlink(dir) {
            flags |= nix::fcntl::OFlag::O_NOFOLLOW;
        } else if !only_root_can_rename(dir) {
            return Err(refused());
        }
    }
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(dir)
        .map_err(|e| {
            // A link swapped in after the check above.
            if root && is_symlink(dir) {
                refused()
            } else {
                PkiError::io("opening directory", dir, e)
            }
        })
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Whether only root can rename or replace the entry `path`: its directory is root's and not
/// writable by group or others.
fn only_root_can_rename(path: &Path) -> bool {
    fs::metadata(parent_dir(path)).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
}

/// Gives `dir` and everything under it to `owner` (a system install run by root hands a
/// service its state this way). Nothing is reached through a symbolic link: a link at `dir` is
/// refused, and below it the walk goes from directory handle to directory handle (`openat` with
/// `O_PATH|O_NOFOLLOW`, `fchownat` on the handle), so a service user who swaps an entry for a
/// link while root walks only gets the link itself. An entry other than a directory with more
/// than one name is refused ([`PkiError::HardLinkRefused`]): it may be a system file linked in.
pub fn give_tree_to(dir: &Path, owner: FileOwner) -> Result<(), PkiError> {
    give_dir_to(open_dir(dir)?.into(), dir, owner)
}

/// A `nix` failure while `action` on `path`.
fn errno<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(nix::errno::Errno) -> PkiError + 'p {
    move |e| PkiError::io(action, path, e.into())
}

fn give_dir_to(dir: std::os::fd::OwnedFd, path: &Path, owner: FileOwner) -> Result<(), PkiError> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    use nix::unistd::{fchownat, Gid, Uid};
    use std::os::unix::ffi::OsStrExt;

    let (uid, gid) = (
        Some(Uid::from_raw(owner.uid)),
        Some(Gid::from_raw(owner.gid)),
    );
    std::os::unix::fs::fchown(&dir, Some(owner.uid), Some(owner.gid))
        .map_err(|e| PkiError::io("changing the owner of", path, e))?;
    let names: Vec<std::ffi::CString> = {
        let listing = dir
            .try_clone()
            .map_err(|e| PkiError::io("listing", path, e))?;
        let mut listing = nix::dir::Dir::from_fd(listing).map_err(errno("listing", path))?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let name = entry
                .map_err(errno("listing", path))?
                .file_name()
                .to_owned();
            if !matches!(name.to_bytes(), b"." | b"..") {
                names.push(name);
            }
        }
        names
    };
    for name in names {
        let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let handle = match openat(
            &dir,
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(handle) => handle,
            // Removed since the listing: nothing left to give.
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(errno("opening", &child)(e)),
        };
        let stat = fstat(&handle).map_err(errno("inspecting", &child))?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            let sub = openat(
                &handle,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno("opening directory", &child))?;
            give_dir_to(sub, &child, owner)?;
        } else if stat.st_nlink > 1 {
            // Not a directory, with another name: it may be a system file (or node) linked in.
            return Err(PkiError::HardLinkRefused {
                path: child,
                links: stat.st_nlink,
            });
        } else {
            // The entry itself (a link stays a link): `AT_EMPTY_PATH` acts on the handle.
            fchownat(&handle, "", uid, gid, nix::fcntl::AtFlags::AT_EMPTY_PATH)
                .map_err(errno("changing the owner of", &child))?;
        }
    }
    Ok(())
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
    use nix::fcntl::{openat, renameat, OFlag};
    use nix::unistd::{unlinkat, UnlinkatFlags};

    let target = Target::of(path)?;
    let tmp_name = temp_name(&target.name)?;
    let tmp = target.dir_path.join(&tmp_name);
    let mut file = File::from(
        openat(
            &target.dir,
            tmp_name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(mode),
        )
        .map_err(|e| PkiError::io("creating", &tmp, e.into()))?,
    );
    let remove_tmp = || {
        unlinkat(
            &target.dir,
            tmp_name.as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        )
    };
    let written = (|| {
        // The directory's owner, before the file appears under its name (see the module doc).
        if let Some(o) = target.owner {
            std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))?;
        }
        // `mode` is filtered by the umask at creation; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        fill(&mut file)?;
        file.sync_all()
    })();
    drop(file);
    if let Err(e) = written {
        let _ = remove_tmp();
        return Err(PkiError::io("writing", path, e));
    }
    if let Err(e) = renameat(
        &target.dir,
        tmp_name.as_os_str(),
        &target.dir,
        target.name.as_os_str(),
    ) {
        let _ = remove_tmp();
        return Err(PkiError::io("renaming into place", path, e.into()));
    }
    target
        .dir
        .sync_all()
        .map_err(|e| PkiError::io("syncing directory", &target.dir_path, e))
}

/// Where a write lands: `path`'s directory, opened once ([`open_dir`]: run by root, never
/// through a link a service user can replace), the owner new entries get there, and the file
/// name. Everything after goes relative to the handle (`openat`, `renameat`), so a directory
/// swapped for a link after the check is never written into.
struct Target {
    dir: File,
    dir_path: PathBuf,
    owner: Option<FileOwner>,
    name: std::ffi::OsString,
}

impl Target {
    fn of(path: &Path) -> Result<Self, PkiError> {
        let name = path
            .file_name()
            .ok_or_else(|| PkiError::io("naming", path, io::ErrorKind::InvalidInput.into()))?
            .to_owned();
        let dir_path = parent_dir(path);
        let dir = open_dir(&dir_path)?;
        let owner = if nix::unistd::geteuid().is_root() {
            let meta = dir
                .metadata()
                .map_err(|e| PkiError::io("inspecting", &dir_path, e))?;
            Some(FileOwner {
                uid: meta.uid(),
                gid: meta.gid(),
            })
        } else {
            None
        };
        Ok(Self {
            dir,
            dir_path,
            owner,
            name,
        })
    }
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
/// The directory itself, not a link's target: [`open_dir`] refuses a link at `dir` for root.
fn owner_for_new_entries(dir: &Path) -> Result<Option<FileOwner>, PkiError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let meta = open_dir(dir)?
        .metadata()
        .map_err(|e| PkiError::io("inspecting", dir, e))?;
    Ok(Some(FileOwner {
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

/// Opens the state file `path` for writing (appending when `append`), creating it with `mode`
/// when it is missing; never follows a symbolic link (`O_NOFOLLOW`: a link at `path` is an
/// error). Opened by root, the file is given the directory's owner (also repairing one that an
/// older root-run command left to root).
pub fn open_state_file(path: &Path, mode: u32, append: bool) -> Result<File, PkiError> {
    use nix::fcntl::{openat, OFlag};

    let target = Target::of(path)?;
    let mut flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if append {
        flags |= OFlag::O_APPEND;
    }
    let file = File::from(
        openat(
            &target.dir,
            target.name.as_os_str(),
            flags,
            nix::sys::stat::Mode::from_bits_truncate(mode),
        )
        .map_err(|e| PkiError::io("opening (symbolic links are not followed)", path, e.into()))?,
    );
    if let Some(o) = target.owner {
        // A file with another name may be a system file linked in: not root's to give away.
        let links = file
            .metadata()
            .map_err(|e| PkiError::io("inspecting", path, e))?
            .nlink();
        if links > 1 {
            return Err(PkiError::HardLinkRefused {
                path: path.into(),
                links,
            });
        }
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

/// A fresh temporary name beside `name` (`.NAME.tmp-<16 hex digits>`), which
/// [`remove_stale_temp_files`] recognises.
fn temp_name(name: &std::ffi::OsStr) -> Result<std::ffi::OsString, PkiError> {
    let mut nonce = [0u8; 8];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| PkiError::Random)?;
    Ok(format!(".{}.tmp-{}", name.to_string_lossy(), hex::encode(nonce)).into())
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

    /// The adversary: a service user who replaces a directory of its own with a link to a
    /// system directory, or links a system file in, before root runs an install or a PKI
    /// command. Root must neither write through the link nor give the target away.
    #[test]
    fn root_never_writes_or_gives_away_through_a_service_users_link() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        // The system directory the link points at: root's, 0755, with a file and a subdirectory.
        let victim = tmp.path().join("etc");
        fs::create_dir(&victim).unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(victim.join("passwd"), b"root:x:0:0").unwrap();
        fs::create_dir(victim.join("sub")).unwrap();
        fs::write(victim.join("sub/shadow"), b"root:*").unwrap();
        // The service's directory, and its `pki` replaced by a link.
        let svc = tmp.path().join("svc");
        ensure_private_dir(&svc).unwrap();
        std::os::unix::fs::chown(&svc, Some(4242), Some(4243)).unwrap();
        let pki = svc.join("pki");
        std::os::unix::fs::symlink(&victim, &pki).unwrap();
        std::os::unix::fs::lchown(&pki, Some(4242), Some(4243)).unwrap();
        let refused = |r: Result<(), PkiError>| {
            assert!(
                matches!(r, Err(PkiError::DirectorySymlinkRefused { ref path }) if *path == pki),
                "{r:?}"
            )
        };

        refused(ensure_private_dir(&pki));
        refused(write_atomic(&pki.join("ca.key"), b"k", KEY_MODE));
        refused(open_state_file(&pki.join("registry.lock"), KEY_MODE, false).map(drop));
        refused(give_tree_to(
            &pki,
            FileOwner {
                uid: 4242,
                gid: 4243,
            },
        ));
        // Giving the service its directory gives it the link, not what the link points at.
        give_tree_to(
            &svc,
            FileOwner {
                uid: 4242,
                gid: 4243,
            },
        )
        .unwrap();
        assert_eq!(owner(&pki), (4242, 4243));
        for p in [&victim, &victim.join("passwd"), &victim.join("sub/shadow")] {
            assert_eq!(owner(p), (0, 0), "{}", p.display());
        }
        assert_eq!(mode(&victim), 0o755);
        assert!(!victim.join("ca.key").exists() && !victim.join("registry.lock").exists());

        // A system file linked in under another name is not given away either.
        fs::hard_link(victim.join("passwd"), svc.join("state.json")).unwrap();
        let r = give_tree_to(
            &svc,
            FileOwner {
                uid: 4242,
                gid: 4243,
            },
        );
        assert!(
            matches!(r, Err(PkiError::HardLinkRefused { links: 2, .. })),
            "{r:?}"
        );
        assert_eq!(owner(&victim.join("passwd")), (0, 0));
        // Nor by opening it as a state file (the registry lock, the audit log).
        let r = open_state_file(&svc.join("state.json"), KEY_MODE, true).map(drop);
        assert!(
            matches!(r, Err(PkiError::HardLinkRefused { links: 2, .. })),
            "{r:?}"
        );
        assert_eq!(owner(&victim.join("passwd")), (0, 0));
        assert_eq!(fs::read(victim.join("passwd")).unwrap(), b"root:x:0:0");

        // A link only root can replace (its directory is root's, 0700 here) is followed.
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        let trusted = tmp.path().join("lib");
        std::os::unix::fs::symlink(&real, &trusted).unwrap();
        ensure_private_dir(&trusted).unwrap();
        write_atomic(&trusted.join("state.json"), b"{}", KEY_MODE).unwrap();
        assert_eq!(mode(&real), PRIVATE_DIR_MODE);
        assert!(real.join("state.json").exists());
    }

    /// The same adversary racing root: it swaps its directory with a link to a system
    /// directory and back as fast as it can (`renameat2` with `RENAME_EXCHANGE`) while root
    /// writes. A check of the path followed by a write by path lands in the system directory
    /// now and then; writes relative to the checked directory's handle never do.
    #[test]
    fn root_never_writes_through_a_link_swapped_in_while_it_writes() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("etc");
        fs::create_dir(&victim).unwrap();
        let svc = tmp.path().join("svc");
        ensure_private_dir(&svc).unwrap();
        std::os::unix::fs::chown(&svc, Some(4242), Some(4243)).unwrap();
        let pki = svc.join("pki");
        ensure_private_dir(&pki).unwrap();
        let link = svc.join("pki.link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, pki, link) = (stop.clone(), pki.clone(), link.clone());
            std::thread::spawn(move || {
                let cwd = nix::fcntl::AT_FDCWD;
                while !stop.load(Ordering::Relaxed) {
                    nix::fcntl::renameat2(
                        cwd,
                        &pki,
                        cwd,
                        &link,
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    )
                    .unwrap();
                }
            })
        };
        for i in 0..500 {
            let _ = write_atomic(&pki.join("server.key"), b"k", KEY_MODE);
            let _ = open_state_file(&pki.join(format!("lock-{i}")), KEY_MODE, false);
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        let planted: Vec<_> = fs::read_dir(&victim)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            planted.is_empty(),
            "root wrote into the link's target: {planted:?}"
        );
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
