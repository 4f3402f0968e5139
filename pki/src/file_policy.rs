//! Who may own, read and write the files the daemon and the agent trust.
//!
//! [`check`] inspects one path (without following a symbolic link where the service writes or
//! reads a secret) and returns typed [`Finding`]s, each naming the exact `chmod`/`chown` that
//! fixes it. The daemon and the agent refuse to start (and the agent refuses a reload) on any
//! finding; `netclaw doctor` reports the same findings. [`daemon_files`] and [`agent_files`] are
//! the one list of what is checked, shared by all three.
//!
//! The rules, for the service user `expected` (the process's effective uid):
//!
//! | kind | mode | owner | symbolic link |
//! |---|---|---|---|
//! | [`FileKind::Secret`] (keys, the issuance registry) | no group or other bits | `expected` | refused |
//! | [`FileKind::State`] (files the service writes or appends) | not group/other-writable | `expected` | refused |
//! | [`FileKind::TrustAnchor`] (CA bundles, `netclaw.json`) | not group/other-writable | `expected` or root | target checked |
//! | [`FileKind::Dir`] (the directories holding all of these) | not group/other-writable | `expected` or root | target checked |
//!
//! # Security
//!
//! A trust bundle, configuration or directory that someone else can write makes that someone a
//! `LocalOperator` (they add their own CA or point the service elsewhere); a key others can read
//! is a copied identity. A missing file is no finding here: the loaders report it with their own
//! fix.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::store::{AgentPaths, DaemonPkiPaths};

/// What a file is to the service that uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A private key or other secret: owner-only, owned by the service user, never a link.
    Secret,
    /// A file the service trusts but does not keep secret (CA bundle, configuration).
    TrustAnchor,
    /// A file the service itself writes or appends (registry lock, audit log, device registry):
    /// owned by the service user, never a link.
    State,
    /// A directory holding any of the above.
    Dir,
}

impl FileKind {
    fn noun(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::TrustAnchor => "trust anchor",
            Self::State => "state file",
            Self::Dir => "directory",
        }
    }
}

/// One problem with one path, with the command that fixes it ([`Finding::fix`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// A secret that group or others may read (or write).
    SecretReadable {
        /// The file.
        path: PathBuf,
        /// Its mode (permission bits).
        mode: u32,
    },
    /// A trust anchor, state file or directory that group or others may write.
    Writable {
        /// The file or directory.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
        /// Its mode (permission bits).
        mode: u32,
    },
    /// Owned by a user other than the service user (or root, where root is allowed).
    WrongOwner {
        /// The file or directory.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
        /// Its owner's uid.
        owner: u32,
        /// The service user's uid.
        expected: u32,
    },
    /// A symbolic link where the service reads a secret or writes state.
    Symlink {
        /// The link.
        path: PathBuf,
        /// What it stands for.
        kind: FileKind,
    },
    /// Not a regular file (or not a directory, for a directory).
    WrongType {
        /// The path.
        path: PathBuf,
        /// What it should be.
        kind: FileKind,
    },
    /// The path could not be inspected (other than not existing).
    Uninspectable {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Finding {
    /// The path concerned.
    pub fn path(&self) -> &Path {
        match self {
            Self::SecretReadable { path, .. }
            | Self::Writable { path, .. }
            | Self::WrongOwner { path, .. }
            | Self::Symlink { path, .. }
            | Self::WrongType { path, .. }
            | Self::Uninspectable { path, .. } => path,
        }
    }

    /// The exact command (or step) that fixes it.
    pub fn fix(&self) -> String {
        match self {
            Self::SecretReadable { path, .. } => {
                format!("chmod 600 {}", path.display())
            }
            Self::Writable { path, .. } => format!("chmod go-w {}", path.display()),
            Self::WrongOwner { path, expected, .. } => {
                format!("chown {}: {}", user_name(*expected), path.display())
            }
            Self::Symlink { path, .. } => format!(
                "cp --remove-destination \"$(readlink -f {p})\" {p}",
                p = path.display()
            ),
            Self::WrongType { path, kind } => match kind {
                FileKind::Dir => format!("replace {} with a directory", path.display()),
                _ => format!("replace {} with a regular file", path.display()),
            },
            Self::Uninspectable { path, .. } => format!(
                "check that {} is reachable by the service user",
                path.display()
            ),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path().display();
        match self {
            Self::SecretReadable { mode, .. } => write!(
                f,
                "{path}: mode {mode:04o} lets group or others read this secret"
            )?,
            Self::Writable { kind, mode, .. } => write!(
                f,
                "{path}: mode {mode:04o} lets group or others write this {}",
                kind.noun()
            )?,
            Self::WrongOwner {
                kind,
                owner,
                expected,
                ..
            } => write!(
                f,
                "{path}: this {} is owned by {} but the service runs as {}",
                kind.noun(),
                user_name(*owner),
                user_name(*expected)
            )?,
            Self::Symlink { kind, .. } => write!(
                f,
                "{path}: this {} is a symbolic link, which is not followed",
                kind.noun()
            )?,
            Self::WrongType { kind, .. } => write!(f, "{path}: not a regular {}", kind.noun())?,
            Self::Uninspectable { reason, .. } => write!(f, "{path}: cannot inspect: {reason}")?,
        }
        write!(f, "; fix with `{}`", self.fix())
    }
}

/// Every finding, on one line each, for an error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings(pub Vec<Finding>);

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, finding) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}

/// The user name of `uid`, or the number when it has none.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// Inspects `path` as a `kind` for the service user `expected`. A missing path has no findings.
pub fn check(path: &Path, kind: FileKind, expected: u32) -> Vec<Finding> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![uninspectable(path, &e)],
    };
    let meta = if meta.file_type().is_symlink() {
        match kind {
            FileKind::Secret | FileKind::State => {
                return vec![Finding::Symlink {
                    path: path.to_owned(),
                    kind,
                }]
            }
            FileKind::TrustAnchor | FileKind::Dir => match fs::metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
                Err(e) => return vec![uninspectable(path, &e)],
            },
        }
    } else {
        meta
    };
    let ft = meta.file_type();
    let right_type = match kind {
        FileKind::Dir => ft.is_dir(),
        // A socket or FIFO is never one of these files.
        _ => ft.is_file() && !ft.is_socket() && !ft.is_fifo(),
    };
    if !right_type {
        return vec![Finding::WrongType {
            path: path.to_owned(),
            kind,
        }];
    }
    judge(path, kind, meta.mode() & 0o7777, meta.uid(), expected)
}

/// The rules of [`check`] over a mode and owner already read.
pub fn judge(path: &Path, kind: FileKind, mode: u32, owner: u32, expected: u32) -> Vec<Finding> {
    let mut findings = Vec::new();
    match kind {
        FileKind::Secret if mode & 0o077 != 0 => findings.push(Finding::SecretReadable {
            path: path.to_owned(),
            mode,
        }),
        FileKind::TrustAnchor | FileKind::State | FileKind::Dir if mode & 0o022 != 0 => findings
            .push(Finding::Writable {
                path: path.to_owned(),
                kind,
                mode,
            }),
        _ => {}
    }
    let owner_ok = match kind {
        FileKind::Secret | FileKind::State => owner == expected,
        FileKind::TrustAnchor | FileKind::Dir => owner == expected || owner == 0,
    };
    if !owner_ok {
        findings.push(Finding::WrongOwner {
            path: path.to_owned(),
            kind,
            owner,
            expected,
        });
    }
    findings
}

fn uninspectable(path: &Path, e: &io::Error) -> Finding {
    Finding::Uninspectable {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// [`check`] over a list of paths, every finding in order.
pub fn check_all(files: &[(PathBuf, FileKind)], expected: u32) -> Vec<Finding> {
    files
        .iter()
        .flat_map(|(p, k)| check(p, *k, expected))
        .collect()
}

/// What the daemon uses: its PKI directory and files, its state directory, device registry and
/// audit log. (The configuration file is checked where it is loaded.)
pub fn daemon_files(pki: &DaemonPkiPaths, state_dir: &Path) -> Vec<(PathBuf, FileKind)> {
    let dir = pki.dir();
    vec![
        (state_dir.to_owned(), FileKind::Dir),
        (state_dir.join("devices.json"), FileKind::State),
        (state_dir.join("audit.log"), FileKind::State),
        (dir.to_owned(), FileKind::Dir),
        (pki.ca_key(), FileKind::Secret),
        (pki.ca_cert(), FileKind::TrustAnchor),
        (pki.server_key(), FileKind::Secret),
        (pki.server_cert(), FileKind::State),
        (pki.registry(), FileKind::Secret),
        (dir.join("registry.lock"), FileKind::State),
        (pki.host_id(), FileKind::State),
        (dir.join("ca-next.key"), FileKind::Secret),
        (dir.join("ca-next.crt"), FileKind::TrustAnchor),
        (dir.join("ca-rotation.json"), FileKind::State),
    ]
}

/// What the agent uses: its directory, key, certificate and trust bundle (and a staged pair).
pub fn agent_files(paths: &AgentPaths) -> Vec<(PathBuf, FileKind)> {
    vec![
        (paths.dir().to_owned(), FileKind::Dir),
        (paths.client_key(), FileKind::Secret),
        (paths.client_cert(), FileKind::State),
        (paths.ca_bundle(), FileKind::TrustAnchor),
        (
            crate::store::next_path(&paths.client_key()),
            FileKind::Secret,
        ),
        (
            crate::store::next_path(&paths.client_cert()),
            FileKind::State,
        ),
    ]
}

/// The configuration file and its directory.
pub fn config_files(config: &Path) -> Vec<(PathBuf, FileKind)> {
    let mut files = Vec::new();
    if let Some(dir) = config.parent().filter(|d| !d.as_os_str().is_empty()) {
        files.push((dir.to_owned(), FileKind::Dir));
    }
    files.push((config.to_owned(), FileKind::TrustAnchor));
    files
}

#[cfg(test)]
mod tests;
