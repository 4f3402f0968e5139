//! The agent's Unix socket: taken from systemd socket activation, or created 0660 in a 0750
//! directory. An existing socket file is replaced only when nothing answers on it.
//!
//! A socket the agent creates itself takes its directory's group (`/run/netclaw` is
//! `netclaw-operator-agent:netclaw-operators`, setgid, from tmpfiles.d), so that operators can
//! open it as they can the socket unit's (`SocketGroup=netclaw-operators`); where neither the
//! setgid bit nor a `chown` can give it that group, a warning names the fix.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

/// Mode of the socket file.
pub const SOCKET_MODE: u32 = 0o660;
/// Mode of a socket directory the agent creates.
pub const DIR_MODE: u32 = 0o750;

/// Socket setup failures, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process answers on the socket.
    #[error("{0} is in use by a running process (another operator agent?); stop it first")]
    InUse(String),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; remove it or set Operator.Socket to another path")]
    NotASocket(String),
    /// Any other I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SocketError + '_ {
    move |source| SocketError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The listener handed over by systemd (`LISTEN_FDS`), if any.
pub fn from_systemd() -> io::Result<Option<UnixListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    match fds.take_unix_listener(0)? {
        Some(std) => {
            std.set_nonblocking(true)?;
            UnixListener::from_std(std).map(Some)
        }
        None => Ok(None),
    }
}

/// Creates the socket at `path`: the parent directory is created 0750 if missing, a stale socket
/// (nothing accepts on it) is removed, a live one or a non-socket is an error; the new socket is
/// made 0660.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err(dir))?;
        }
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.display().to_string())),
                Err(_) => {
                    tracing::info!(path = %path.display(), "removing stale socket");
                    fs::remove_file(path).map_err(io_err(path))?;
                }
            }
        }
        Ok(_) => return Err(SocketError::NotASocket(path.display().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE)).map_err(io_err(path))?;
    take_directory_group(path);
    Ok(listener)
}

/// Gives the socket its directory's group when it did not inherit it (a directory without the
/// setgid bit). Failing that (the agent's user is not in the group), the socket stays usable
/// by fewer users, never more, and a warning names the fix.
fn take_directory_group(path: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Some(dir) = path.parent() else { return };
    let (Ok(socket), Ok(directory)) = (fs::metadata(path), fs::metadata(dir)) else {
        return;
    };
    if socket.gid() == directory.gid() {
        return;
    }
    if let Err(e) = std::os::unix::fs::chown(path, None, Some(directory.gid())) {
        tracing::warn!(
            socket = %path.display(),
            socket_gid = socket.gid(),
            directory_gid = directory.gid(),
            error = %e,
            "the socket did not get its directory's group, so members of that group cannot open it; \
             start the agent through netclaw-operator-agent.socket, or make the directory setgid \
             (`chmod g+s {}`)",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_replaces_stale_refuses_live_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/netclaw/operator.sock");
        let first = bind(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), SOCKET_MODE);
        assert_eq!(mode(path.parent().unwrap()), DIR_MODE);

        // Live: something accepts.
        let err = bind(&path).unwrap_err();
        assert!(matches!(err, SocketError::InUse(_)), "{err}");

        // Stale: the listener is gone but the file remains.
        drop(first);
        assert!(path.exists());
        let _second = bind(&path).unwrap();

        // Not a socket.
        let file = tmp.path().join("file.sock");
        fs::write(&file, b"x").unwrap();
        let err = bind(&file).unwrap_err();
        assert!(matches!(err, SocketError::NotASocket(_)), "{err}");
        assert!(err.to_string().contains("Operator.Socket"));
    }

    /// An agent started without socket activation made its socket with its own group, which
    /// operators (the directory's group) could not open.
    #[tokio::test]
    async fn a_socket_it_creates_takes_its_directorys_group() {
        use std::os::unix::fs::MetadataExt as _;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: giving a file another group needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE)).unwrap();
        std::os::unix::fs::chown(&dir, None, Some(65534)).unwrap();
        let path = dir.join("operator.sock");
        let _l = bind(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.gid(), 65534);
        assert_eq!(meta.mode() & 0o777, SOCKET_MODE);
    }
}
