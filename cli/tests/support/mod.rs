//! Helpers for the CLI's end-to-end tests: running `netclaw`, installing into a temporary root,
//! running a real `netclaw-daemon` on free loopback ports, and tiny scripted HTTP servers (a fake
//! operator agent on a Unix socket, a redirecting TCP server).

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a subset

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `netclaw` with a clean environment for the variables it reads.
pub(crate) fn cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netclaw"));
    c.env_remove("NETCLAW_CONFIG")
        .env_remove("NETCLAW_ENDPOINT")
        .env_remove("SSL_CERT_FILE");
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

/// Two distinct free loopback ports.
pub(crate) fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A `--root` install.
#[derive(Debug)]
pub(crate) struct Install {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Install {
    /// `local` mode on 127.0.0.1 with free ports.
    pub(crate) fn local() -> Self {
        let (port, op_port) = free_ports();
        Self::with(&[
            "--exposure",
            "local",
            "--port",
            &port.to_string(),
            "--operator-port",
            &op_port.to_string(),
        ])
        .port(port)
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
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        let mut args = vec!["daemon", "install", "--root", &root];
        args.extend_from_slice(flags);
        ok(&netclaw(&args));
        Self { dir, port: 0 }
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
        Self::with(&flags).port(port)
    }

    pub(crate) fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.root().join("etc/netclaw/netclaw.json")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.root().join("run/netclaw/operator.sock")
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

/// `target/<profile>/<name>` for the daemon and the agent, built once per test binary (a cli test
/// cannot use `CARGO_BIN_EXE_` of another package).
pub(crate) fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut c = Command::new(cargo);
        c.current_dir(workspace).args([
            "build",
            "--quiet",
            "-p",
            "netclaw-daemon",
            "-p",
            "netclaw-operator-agent",
        ]);
        if !cfg!(debug_assertions) {
            c.arg("--release");
        }
        let status = c.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of the daemon and the agent failed"
        );
    });
    let bin = Path::new(env!("CARGO_BIN_EXE_netclaw")).with_file_name(name);
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// A running `netclaw-daemon` or `netclaw-operator-agent`; killed on drop.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    log: PathBuf,
}

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
        let child = Command::new(binary(name))
            .arg("--config")
            .arg(install.config())
            .env_remove("NETCLAW_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut p = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("{name} exited with {status}:\n{}", p.log());
            }
            if ready() {
                return p;
            }
            assert!(Instant::now() < deadline, "{name} not ready:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and returns how long the process took to exit, or `None` if it was still
    /// running after `limit` (then it is killed on drop).
    pub(crate) fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.child.try_wait().unwrap().is_some() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Runs the daemon or the agent (`name`) of `install` expecting it to refuse to start: returns
/// its exit code and standard error, or kills it and returns `None` as the code when it is still
/// running after `limit`.
pub(crate) fn run_refused(install: &Install, name: &str, limit: Duration) -> (Option<i32>, String) {
    let err = install.root().join(format!("{name}.refused.log"));
    let mut child = Command::new(binary(name))
        .arg("--config")
        .arg(install.config())
        .env_remove("NETCLAW_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&err).unwrap_or_default())
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request a fake server received.
/// A request a fake server saw (header names lower-cased).
pub(crate) type Seen = netclaw_tests::http::Request;

/// A scripted answer: status, extra header lines, body.
pub(crate) type Answer = (u16, Vec<(String, String)>, String);

/// Everything a fake server received.
pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

pub(crate) fn read_request(stream: &mut impl Read) -> Option<Seen> {
    netclaw_tests::http::read_request(stream)
}

pub(crate) fn write_answer(stream: &mut impl Write, (status, headers, body): Answer) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

/// Serves `answer` for every request on a Unix socket at `path` (a fake operator agent).
pub(crate) fn fake_unix_server(
    path: &Path,
    answer: impl Fn(&Seen) -> Answer + Send + 'static,
) -> Log {
    let listener = UnixListener::bind(path).unwrap();
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(req) = read_request(&mut stream) {
                seen.lock().unwrap().push(req.clone());
                write_answer(&mut stream, answer(&req));
            }
        }
    });
    log
}

/// Serves `answer` for every request on a free loopback TCP port; returns the port.
pub(crate) fn fake_tcp_server(answer: impl Fn(&Seen) -> Answer + Send + 'static) -> (u16, Log) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(req) = read_request(&mut stream) {
                seen.lock().unwrap().push(req.clone());
                write_answer(&mut stream, answer(&req));
            }
        }
    });
    (port, log)
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

pub(crate) fn answer(status: u16, body: &str) -> Answer {
    (status, Vec::new(), body.to_owned())
}
