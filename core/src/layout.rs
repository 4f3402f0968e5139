//! Where an install keeps its files: system, per-user, or under a `--root` directory.

use std::path::{Path, PathBuf};

use crate::env::Env;

/// Environment variable naming the configuration file (read by [`resolve_config_path`]).
pub const CONFIG_ENV: &str = "NETCLAW_CONFIG";

/// The files and directories of one install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallLayout {
    /// `netclaw.json`.
    pub config_path: PathBuf,
    /// Daemon state (device registry, audit log).
    pub state_dir: PathBuf,
    /// Daemon PKI (CA, server certificate, issuance registry).
    pub pki_dir: PathBuf,
    /// Agent credentials.
    pub agent_dir: PathBuf,
    /// Agent socket.
    pub socket: PathBuf,
}

impl InstallLayout {
    /// The system install (run as root; systemd units use these paths).
    pub fn system() -> Self {
        Self::under(Path::new("/"))
    }

    /// A self-contained install under `root`, mirroring the system layout.
    pub fn under(root: &Path) -> Self {
        Self {
            config_path: root.join("etc/netclaw/netclaw.json"),
            state_dir: root.join("var/lib/netclaw"),
            pki_dir: root.join("var/lib/netclaw/pki"),
            agent_dir: root.join("var/lib/netclaw-operator-agent"),
            socket: root.join("run/netclaw/operator.sock"),
        }
    }

    /// A per-user install in the XDG directories (no root needed). Fails when the home or
    /// runtime directory cannot be determined.
    pub fn user() -> Result<Self, String> {
        let dirs = directories::ProjectDirs::from("", "", "netclaw")
            .ok_or("cannot determine the home directory for a user install; use --root DIR")?;
        let runtime = dirs
            .runtime_dir()
            .ok_or("XDG_RUNTIME_DIR is not set, so a user install has no place for the agent socket; log in through a session that sets it, or use --root DIR")?;
        let data = dirs.data_dir();
        Ok(Self {
            config_path: dirs.config_dir().join("netclaw.json"),
            state_dir: data.to_owned(),
            pki_dir: data.join("pki"),
            agent_dir: data.join("operator-agent"),
            socket: runtime.join("operator.sock"),
        })
    }
}

/// Which configuration file to use: `--config`, then `NETCLAW_CONFIG`, then the install
/// location (the system file when it exists or when running as root, else the user file).
pub fn resolve_config_path(flag: Option<&Path>, env: &dyn Env, is_root: bool) -> PathBuf {
    if let Some(p) = flag {
        return p.to_owned();
    }
    if let Some(p) = env.var(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let system = InstallLayout::system().config_path;
    if is_root || system.exists() {
        return system;
    }
    match InstallLayout::user() {
        Ok(user) if user.config_path.exists() => user.config_path,
        _ => system,
    }
}
