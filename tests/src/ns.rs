//! Network namespaces created by the harness: as root a plain network namespace, otherwise a
//! network namespace inside an unprivileged user namespace (where the kernel allows it).
//!
//! A namespace lives as long as its holder process (`sleep`), which [`Namespace`] kills on drop;
//! every process started through [`Namespace::command`] joins it with `nsenter`.

use std::ffi::OsStr;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Environment variable that turns a namespace skip into a failure (set by `.ci/run`).
pub const REQUIRE_ENV: &str = "NETCLAW_REQUIRE_NAMESPACES";

/// A network namespace held open by a child process.
#[derive(Debug)]
pub struct Namespace {
    holder: Child,
    user: bool,
}

fn ns_link(pid: &str, kind: &str) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

impl Namespace {
    /// Creates a namespace with loopback up. As root a network namespace; otherwise a user plus
    /// network namespace in which the harness is root.
    pub fn new() -> Result<Self> {
        let root = nix::unistd::geteuid().is_root();
        let mut cmd = Command::new("unshare");
        if root {
            cmd.arg("--net");
        } else {
            cmd.args(["--user", "--map-root-user", "--net"]);
        }
        let holder = cmd
            .args(["--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting `unshare` (util-linux)")?;
        let mut ns = Self {
            holder,
            user: !root,
        };
        let pid = ns.holder.id().to_string();
        let ours = ns_link("self", "net");
        let entered = crate::wait_for("the namespace holder", Duration::from_secs(5), || {
            if let Ok(Some(status)) = ns.holder.try_wait() {
                return Some(Err(status));
            }
            // `unshare` execs `sleep` after creating the namespaces.
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (comm.trim() == "sleep" && ns_link(&pid, "net") != ours).then_some(Ok(()))
        })?;
        if let Err(status) = entered {
            let mut err = String::new();
            if let Some(mut e) = ns.holder.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            bail!(
                "cannot create a network namespace ({status}): {}",
                err.trim()
            );
        }
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target").arg(self.holder.id().to_string());
        if self.user {
            cmd.arg("--user");
        }
        cmd.arg("--net").arg("--").arg(program);
        cmd
    }

    /// Runs `ip <args>` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let out = self
            .command("ip")
            .args(args)
            .output()
            .context("running `ip` (iproute2)")?;
        if !out.status.success() {
            bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Adds `cidr` (for example `192.0.2.10/24`) to the namespace's loopback interface.
    pub fn add_address(&self, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", "lo"])
    }

    /// Whether the harness is real root (not only root inside a user namespace): needed to run
    /// processes as other uids.
    pub fn real_root(&self) -> bool {
        !self.user
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// For tests: `Some(ns)`, or `None` after printing why namespaces are unavailable. Panics
/// instead of skipping when [`REQUIRE_ENV`] is set.
pub fn namespace_or_skip(test: &str) -> Option<Namespace> {
    match Namespace::new() {
        Ok(ns) => Some(ns),
        Err(e) => {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("{test}: network namespaces are required ({REQUIRE_ENV} is set) but unavailable: {e:#}");
            }
            eprintln!("SKIPPED {test}: network namespaces are unavailable here: {e:#}");
            None
        }
    }
}
