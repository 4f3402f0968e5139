//! The process environment, read through a trait so tests pass a map instead of mutating the
//! real environment.

use std::collections::BTreeMap;

/// Read access to environment variables.
pub trait Env {
    /// One variable.
    fn var(&self, key: &str) -> Option<String>;
    /// Every variable, for override discovery.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }

    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Whether a process named `name` runs, by `<proc_root>/<pid>/comm` (`proc_root` is `/proc` but
/// for tests): the tunnel-process check of the daemon at start and of `netclaw doctor`.
pub fn process_running(proc_root: &std::path::Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
            && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_processes_by_comm() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("42")).unwrap();
        std::fs::write(tmp.path().join("42/comm"), "tailscaled\n").unwrap();
        std::fs::create_dir_all(tmp.path().join("self")).unwrap();
        assert!(process_running(tmp.path(), "tailscaled"));
        assert!(!process_running(tmp.path(), "cloudflared"));
    }
}
