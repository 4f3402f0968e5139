//! The CLI's end-to-end tests on `netclaw-tests`, the one test-support crate: installs, processes,
//! ports, binaries and the scripted fake servers come from there. What stays here is what only
//! this package has: its own `netclaw` binary (`CARGO_BIN_EXE_netclaw`), run with a clean
//! environment, and the install shapes these tests use.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a subset

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) use netclaw_tests::free_ports;
use netclaw_tests::Proc;

/// `netclaw` with a clean environment for the variables it reads, and a configuration
/// directory of its own (saved contexts) shared by this test binary; a test that pairs sets its
/// own `XDG_CONFIG_HOME`.
pub(crate) fn cmd() -> Command {
    static CONFIG_HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = CONFIG_HOME.get_or_init(|| tempfile::tempdir().unwrap());
    let mut c = Command::new(env!("CARGO_BIN_EXE_netclaw"));
    c.env_remove("NETCLAW_CONFIG")
        .env_remove("NETCLAW_ENDPOINT")
        .env_remove("NETCLAW_DAEMON_ENDPOINT")
        .env_remove("NETCLAW_CONTEXT")
        .env_remove("SSL_CERT_FILE")
        .env("XDG_CONFIG_HOME", home.path());
    c
}

/// Runs `netclaw args…`.
pub(crate) fn netclaw(args: &[&str]) -> Output {
    cmd().args(args).output().expect("run netclaw")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success, printing both streams otherwise.
pub(crate) fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Asserts the exit code, printing both streams otherwise.
pub(crate) fn code(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A `--root` install ([`netclaw_tests::Install`]) made by this package's `netclaw`.
#[derive(Debug)]
pub(crate) struct Install {
    install: netclaw_tests::Install,
    /// The public listener's port (`local` installs).
    pub(crate) port: u16,
}

impl Install {
    /// `local` mode on 127.0.0.1 with free ports.
    pub(crate) fn local() -> Self {
        Self::local_with(&[])
    }

    /// `local` mode on 127.0.0.1 with free ports and these extra flags.
    pub(crate) fn local_with(extra: &[&str]) -> Self {
        let (port, op_port) = free_ports();
        let (port_s, op_port_s) = (port.to_string(), op_port.to_string());
        let mut flags = vec![
            "--exposure",
            "local",
            "--port",
            &port_s,
            "--operator-port",
            &op_port_s,
        ];
        flags.extend_from_slice(extra);
        let mut install = Self::with(&flags);
        install.port = port;
        install
    }

    /// `reverse-proxy` mode on a documentation address (never started, never contacted).
    pub(crate) fn reverse_proxy() -> Self {
        Self::with(&[
            "--exposure",
            "reverse-proxy",
            "--bind",
            "192.0.2.10",
            "--trusted-proxy",
            "192.0.2.1",
        ])
    }

    /// An install with these extra flags.
    pub(crate) fn with(flags: &[&str]) -> Self {
        let install =
            netclaw_tests::Install::using(Path::new(env!("CARGO_BIN_EXE_netclaw")), None, flags)
                .unwrap_or_else(|e| panic!("{e:#}"));
        Self { install, port: 0 }
    }

    /// `tailscale-serve` mode (loopback listeners, loopback not trusted: local operators use the
    /// agent, as in a system install) on free ports, the tunnel process check skipped, with
    /// `extra` flags.
    pub(crate) fn tunnel(extra: &[&str]) -> Self {
        let (port, op_port) = free_ports();
        let (port_s, op_s) = (port.to_string(), op_port.to_string());
        let mut flags = vec![
            "--exposure",
            "tailscale-serve",
            "--skip-tunnel-process-check",
            "--port",
            &port_s,
            "--operator-port",
            &op_s,
        ];
        flags.extend_from_slice(extra);
        let mut install = Self::with(&flags);
        install.port = port;
        install
    }

    pub(crate) fn root(&self) -> &Path {
        self.install.root.path()
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.install.config.clone()
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.install.socket().unwrap()
    }

    /// `netclaw --config <this install> args…`.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run netclaw")
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = cmd();
        c.arg("--config").arg(self.config()).args(args);
        c
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Where the daemon and the agent are, built once per test binary (a cli test cannot use
/// `CARGO_BIN_EXE_` of another package).
fn services_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        netclaw_tests::build(&[netclaw_tests::DAEMON, netclaw_tests::AGENT])
            .expect("cargo build of the daemon and the agent")
    })
}

/// `netclaw-daemon` or `netclaw-operator-agent` of `install`, not started.
fn service(install: &Install, name: &str) -> Command {
    let mut c = Command::new(services_dir().join(name));
    c.arg("--config")
        .arg(install.config())
        .env_remove("NETCLAW_CONFIG")
        .env_remove("NOTIFY_SOCKET");
    c
}

/// A running `netclaw-daemon` or `netclaw-operator-agent` ([`Proc`]); killed on drop.
#[derive(Debug)]
pub(crate) struct Process(Proc);

/// The daemon.
pub(crate) type Daemon = Process;

impl Process {
    /// Starts the daemon of `install` and waits until its public listener accepts.
    pub(crate) fn start(install: &Install) -> Self {
        let port = install.port;
        Self::spawn(install, "netclaw-daemon", move || {
            std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        })
    }

    /// Starts the daemon of `install` with its public listener on `ip` and waits until it accepts.
    pub(crate) fn start_on(install: &Install, ip: std::net::IpAddr) -> Self {
        let port = install.port;
        Self::spawn(install, "netclaw-daemon", move || {
            std::net::TcpStream::connect((ip, port)).is_ok()
        })
    }

    /// Starts the operator agent of `install` and waits until its socket accepts.
    pub(crate) fn start_agent(install: &Install) -> Self {
        let socket = install.socket();
        Self::spawn(install, "netclaw-operator-agent", move || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        })
    }

    fn spawn(install: &Install, name: &str, ready: impl Fn() -> bool) -> Self {
        let log = install.root().join(format!("{name}.log"));
        let p = Proc::spawn_ready(
            name,
            service(install, name),
            &log,
            Duration::from_secs(20),
            ready,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        Self(p.kill_on_drop())
    }

    pub(crate) fn log(&self) -> String {
        self.0.log()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.0.pid().expect("a running process")
    }

    /// Sends SIGTERM and returns how long the process took to exit, or `None` if it was still
    /// running after `limit` (then it is killed on drop).
    pub(crate) fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        self.0
            .signal(nix::sys::signal::Signal::SIGTERM)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if self.0.exit_status().is_some() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Runs the daemon or the agent (`name`) of `install` expecting it to refuse to start: returns
/// its exit code and its output, or kills it and returns `None` as the code when it is still
/// running after `limit`.
pub(crate) fn run_refused(install: &Install, name: &str, limit: Duration) -> (Option<i32>, String) {
    let log = install.root().join(format!("{name}.refused.log"));
    let mut p = Proc::spawn(name, service(install, name), &log)
        .unwrap_or_else(|e| panic!("start {name}: {e:#}"));
    (p.wait_exit(limit), p.log())
}

/// JSON of an `AgentStatus` with `days_left`.
pub(crate) fn agent_status(days_left: i64) -> String {
    serde_json::json!({
        "healthy": days_left >= 0,
        "problems": if days_left >= 0 { vec![] } else { vec!["certificate expired; run `netclaw pki rotate --offline` as root"] },
        "identity": "spiffe://netclaw.internal/host/0123456789abcdef0123456789abcdef/operator-agent",
        "serial": "7a78929bec666ad6fe525830378be756",
        "notBefore": "2026-01-01T00:00:00Z",
        "notAfter": "2026-01-31T00:00:00Z",
        "daysLeft": days_left,
        "daemonEndpoint": "192.0.2.10:5200",
        "daemonReachable": days_left >= 0,
        "lastReload": "2026-01-01T00:00:00Z",
        "lastReloadError": null,
        "pool": { "open": 1, "maxIdle": 4, "handshakes": 1, "requests": 3 }
    })
    .to_string()
}
