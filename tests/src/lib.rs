//! Support for netclaw's end-to-end tests, quickstart and benchmark: building the three binaries,
//! network namespaces the harness creates itself, processes that are stopped when dropped, and
//! install trees under a temporary root.
//!
//! Network traffic stays on loopback or inside namespaces created here, addressed from the
//! documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod bench;
pub mod fake;
pub mod http;
pub mod loopback;
pub mod ns;
pub mod topology;

pub use ns::Namespace;

/// Paths of the built binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `netclaw`.
    pub netclaw: PathBuf,
    /// `netclaw-daemon`.
    pub daemon: PathBuf,
    /// `netclaw-operator-agent`.
    pub agent: PathBuf,
    /// `netclaw-probe` (a minimal HTTP client the harness runs inside namespaces).
    pub probe: PathBuf,
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `(package, binary)` of `netclaw-daemon`.
pub const DAEMON: (&str, &str) = ("netclaw-daemon", "netclaw-daemon");
/// `(package, binary)` of `netclaw-operator-agent`.
pub const AGENT: (&str, &str) = ("netclaw-operator-agent", "netclaw-operator-agent");
/// `(package, binary)` of `netclaw`.
pub const NETCLAW: (&str, &str) = ("netclaw-cli", "netclaw");
/// `(package, binary)` of `netclaw-probe`.
pub const PROBE: (&str, &str) = ("netclaw-tests", "netclaw-probe");

/// Builds the workspace binaries with the same cargo and profile that runs this program, and
/// returns where they are. Safe to call from several tests: cargo serializes the builds.
pub fn build_binaries() -> Result<Binaries> {
    let dir = build(&[NETCLAW, DAEMON, AGENT, PROBE])?;
    Ok(Binaries {
        netclaw: dir.join(NETCLAW.1),
        daemon: dir.join(DAEMON.1),
        agent: dir.join(AGENT.1),
        probe: dir.join(PROBE.1),
    })
}

/// Builds `bins` (`(package, binary)`) with the same cargo and profile that runs this program and
/// returns the directory they are in. A package's own tests build only the others' binaries
/// (theirs are `CARGO_BIN_EXE_…`): building a binary with another feature set than the test run
/// would make each of the two runs relink it.
pub fn build(bins: &[(&str, &str)]) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "--quiet"]);
    for (package, bin) in bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed with {status}");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// A child process that is terminated (SIGTERM, then SIGKILL after 5 s) when dropped. Its
/// stderr goes to a log file that [`Proc::log`] reads.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// How long [`Proc::stop`] waits after SIGTERM before SIGKILL.
    grace: Duration,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            grace: Duration::from_secs(5),
        })
    }

    /// [`Proc::spawn`], then waits up to `limit` until `ready` says it serves; fails with its
    /// log when it exits first or is not ready in time (it is then killed).
    pub fn spawn_ready(
        name: &str,
        cmd: Command,
        log: &Path,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<Self> {
        let mut p = Self::spawn(name, cmd, log)?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = p.exit_status() {
                bail!("{name} exited with {status}:\n{}", p.log());
            }
            if ready() {
                return Ok(p);
            }
            if Instant::now() >= deadline {
                p.grace = Duration::ZERO;
                p.stop();
                bail!("{name} not ready after {limit:?}:\n{}", p.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process with SIGKILL straight away (no drain) when stopped or dropped.
    pub fn kill_on_drop(mut self) -> Self {
        self.grace = Duration::ZERO;
        self
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `limit` for the process to exit by itself and returns its exit code; `None`
    /// when a signal ended it, or when it was still running at `limit` (it is then killed).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return status.code();
            }
            if Instant::now() >= deadline {
                self.grace = Duration::ZERO;
                self.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the process wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        if let Some(pid) = self.pid() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
        }
        Ok(())
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s, or at once after
    /// [`Proc::kill_on_drop`]) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.grace.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop after SIGTERM; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two distinct free loopback ports, chosen by binding port 0 and released again. The daemon
/// refuses port 0, so tests pick its ports here; a test that starts it retries when another
/// process took one meanwhile.
pub fn free_ports() -> (u16, u16) {
    use std::net::{Ipv4Addr, TcpListener};
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
    };
    let port = |l: &TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no local address: {e}"))
    };
    // Both are bound at once, so the two ports differ.
    let (a, b) = (bind(), bind());
    (port(&a), port(&b))
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An install tree under a temporary root.
#[derive(Debug)]
pub struct Install {
    /// The root directory (removed on drop).
    pub root: tempfile::TempDir,
    /// `ROOT/etc/netclaw/netclaw.json`.
    pub config: PathBuf,
}

impl Install {
    /// Runs `netclaw daemon install --root ROOT <args>` (in `ns` when given, so that the
    /// operator listener's interface addresses are the namespace's).
    pub fn new(bins: &Binaries, ns: Option<&Namespace>, args: &[&str]) -> Result<Self> {
        Self::using(&bins.netclaw, ns, args)
    }

    /// [`Install::new`] with the `netclaw` binary at `netclaw` (the CLI's own tests pass their
    /// `CARGO_BIN_EXE_netclaw`).
    pub fn using(netclaw: &Path, ns: Option<&Namespace>, args: &[&str]) -> Result<Self> {
        let root = tempfile::Builder::new().prefix("netclaw-e2e-").tempdir()?;
        let mut cmd = match ns {
            Some(ns) => ns.command(netclaw),
            None => Command::new(netclaw),
        };
        cmd.env_remove("NETCLAW_CONFIG");
        cmd.args(["daemon", "install", "--root"])
            .arg(root.path())
            .args(args);
        let out = cmd.output().context("running netclaw daemon install")?;
        if !out.status.success() {
            bail!(
                "netclaw daemon install failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let config = root.path().join("etc/netclaw/netclaw.json");
        Ok(Self { root, config })
    }

    /// The parsed configuration file.
    pub fn config_json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&fs::read_to_string(&self.config)?)?)
    }

    /// `Operator.Socket`.
    pub fn socket(&self) -> Result<PathBuf> {
        self.config_json()?["Operator"]["Socket"]
            .as_str()
            .map(PathBuf::from)
            .context("Operator.Socket missing from the config")
    }

    /// A log file path under the root.
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.log"))
    }
}

/// Output as text: (exit code, stdout, stderr).
pub fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `netclaw-probe <args>` inside `ns`: (status, body).
pub fn probe(ns: &Namespace, bins: &Binaries, args: &[&str]) -> Result<(u16, String)> {
    let out = ns.command(&bins.probe).args(args).output()?;
    if !out.status.success() {
        bail!("probe: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    Ok((status.trim().parse()?, body.to_owned()))
}

/// A reverse-proxy deployment on one simulated host: a namespace with `DAEMON_IP`, an install
/// tree, the daemon and (optionally) the agent. Dropping it stops everything and removes it all.
#[derive(Debug)]
pub struct Deployment {
    // Field order is drop order: processes first, then the namespace, then the files.
    /// The agent, when started.
    pub agent: Option<Proc>,
    /// The daemon.
    pub daemon: Proc,
    /// The namespace.
    pub ns: Namespace,
    /// The install tree.
    pub install: Install,
    /// The binaries.
    pub bins: Binaries,
}

impl Deployment {
    /// The daemon host's address inside the namespace.
    pub const DAEMON_IP: &'static str = "192.0.2.10";
    /// The (absent) reverse proxy the daemon trusts.
    pub const PROXY_IP: &'static str = "192.0.2.1";
    /// A remote device's address inside the namespace.
    pub const DEVICE_IP: &'static str = "198.51.100.20";

    /// Installs in reverse-proxy mode inside `ns` (with `extra` install flags), starts the
    /// daemon and waits until it answers.
    pub fn start(ns: Namespace, extra: &[&str]) -> Result<Self> {
        Self::start_with(ns, extra, |_| {})
    }

    /// As [`Deployment::start`], with `edit` applied to `netclaw.json` before the daemon starts.
    pub fn start_with(
        ns: Namespace,
        extra: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Result<Self> {
        let bins = build_binaries()?;
        ns.add_address(&format!("{}/24", Self::DAEMON_IP))?;
        ns.add_address(&format!("{}/24", Self::DEVICE_IP))?;
        let mut args = vec![
            "--exposure",
            "reverse-proxy",
            "--bind",
            Self::DAEMON_IP,
            "--trusted-proxy",
            Self::PROXY_IP,
        ];
        args.extend_from_slice(extra);
        let install = Install::new(&bins, Some(&ns), &args)?;
        let mut config = install.config_json()?;
        edit(&mut config);
        fs::write(&install.config, serde_json::to_vec_pretty(&config)?)?;
        let mut cmd = ns.command(&bins.daemon);
        cmd.arg("--config").arg(&install.config);
        let daemon = Proc::spawn("netclaw-daemon", cmd, &install.log("daemon"))?;
        let dep = Self {
            agent: None,
            daemon,
            ns,
            install,
            bins,
        };
        dep.wait_daemon()?;
        Ok(dep)
    }

    /// Waits until the daemon's public listener answers.
    pub fn wait_daemon(&self) -> Result<()> {
        let url = format!("http://{}:5199/api/health/ready", Self::DAEMON_IP);
        wait_for(
            "the daemon's public listener",
            Duration::from_secs(30),
            || {
                probe(&self.ns, &self.bins, &["GET", &url])
                    .ok()
                    .filter(|(s, _)| *s == 200)
            },
        )
        .with_context(|| format!("daemon log:\n{}", self.daemon.log()))
        .map(drop)
    }

    /// Starts the agent and waits until its socket answers.
    pub fn start_agent(&mut self) -> Result<()> {
        self.start_agent_with_env(&[])
    }

    /// As [`Deployment::start_agent`], with `env` added to the agent's environment.
    pub fn start_agent_with_env(&mut self, env: &[(String, String)]) -> Result<()> {
        let mut cmd = self.agent_command();
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let agent = Proc::spawn("netclaw-operator-agent", cmd, &self.install.log("agent"))?;
        let socket = self.install.socket()?;
        let res = wait_for("the agent socket", Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(drop)
        });
        let log = agent.log();
        self.agent = Some(agent);
        res.with_context(|| format!("agent log:\n{log}"))
    }

    /// The agent's command line inside the namespace (not started).
    pub fn agent_command(&self) -> Command {
        let mut cmd = self.ns.command(&self.bins.agent);
        cmd.arg("--config").arg(&self.install.config);
        cmd
    }

    /// Stops the agent.
    pub fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop();
        }
    }

    /// `netclaw --config CONFIG <args>` inside the namespace.
    pub fn netclaw(&self, args: &[&str]) -> Command {
        let mut c = self.ns.command(&self.bins.netclaw);
        c.arg("--config").arg(&self.install.config).args(args);
        c
    }

    /// Runs `netclaw <args>`: (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let out = self.netclaw(args).output().context("running netclaw")?;
        Ok(text(&out))
    }

    /// Runs `netclaw <args> --json` and parses stdout, failing on a non-zero exit.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let (code, out, err) = self.run(&all)?;
        if code != 0 {
            bail!("netclaw {} exited {code}: {out}{err}", all.join(" "));
        }
        serde_json::from_str(&out).with_context(|| format!("parsing: {out}"))
    }

    /// A remote device exchanges `code` on the public listener: (status, body).
    pub fn exchange(&self, code: &str, name: &str) -> Result<(u16, String)> {
        probe(
            &self.ns,
            &self.bins,
            &[
                "--bind",
                Self::DEVICE_IP,
                "--data",
                &format!(r#"{{"code":"{code}","deviceName":"{name}"}}"#),
                "POST",
                &format!("http://{}:5199/api/pair/exchange", Self::DAEMON_IP),
            ],
        )
    }
}

/// One HTTP/1.1 request over a Unix socket (`Connection: close`): (status, body). Used to talk to
/// the agent directly, as `curl --unix-socket` would.
pub fn unix_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // One write; an agent that answers before reading everything (a refusal) may close its end
    // early, so a failed write still reads whatever answer arrived.
    let written = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let Some(answer) = http::parse_closed(&raw)? else {
        written.context("writing the request")?;
        read.context("reading the response")?;
        bail!("no response head: {:?}", String::from_utf8_lossy(&raw));
    };
    Ok(answer)
}

/// The agent's `/agent/v1/status` as JSON.
pub fn agent_status(socket: &Path) -> Result<serde_json::Value> {
    let (status, body) = unix_request(socket, "GET", "/agent/v1/status", None)?;
    if status != 200 {
        bail!("agent status {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Outcome of [`load`].
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests that failed (status other than 200, or I/O error mid-request).
    pub failed: u64,
    /// The first few failures.
    pub errors: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Sends `GET path` over keep-alive connections to the agent socket from `clients` threads until
/// `stop` is set; returns the counts.
pub fn load(
    socket: &Path,
    path: &str,
    clients: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> LoadReport {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.to_owned();
            let path = path.to_owned();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut report = LoadReport::default();
                let fail = |report: &mut LoadReport, e: String| {
                    report.failed += 1;
                    if report.errors.len() < 5 {
                        report.errors.push(e);
                    }
                };
                let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n");
                while !stop.load(Ordering::Relaxed) {
                    let stream = match std::os::unix::net::UnixStream::connect(&socket) {
                        Ok(s) => s,
                        Err(e) => {
                            fail(&mut report, format!("connect: {e}"));
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut writer = match stream.try_clone() {
                        Ok(w) => w,
                        Err(e) => {
                            fail(&mut report, format!("clone: {e}"));
                            continue;
                        }
                    };
                    let mut reader = stream;
                    let mut buf = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(e) = writer.write_all(request.as_bytes()) {
                            fail(&mut report, format!("write: {e}"));
                            break;
                        }
                        let (status, body) = match http::read_response(&mut reader, &mut buf) {
                            Ok(answer) => answer,
                            Err(e) => {
                                fail(&mut report, format!("{e:#}"));
                                break;
                            }
                        };
                        if status == 200 {
                            report.ok += 1;
                        } else {
                            fail(
                                &mut report,
                                format!("{status}: {}", String::from_utf8_lossy(&body)),
                            );
                        }
                    }
                }
                report
            })
        })
        .collect();
    let mut total = LoadReport::default();
    for h in handles {
        if let Ok(r) = h.join() {
            total.ok += r.ok;
            total.failed += r.failed;
            for e in r.errors {
                if total.errors.len() < 10 {
                    total.errors.push(e);
                }
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// The environment that runs a process on a clock `offset_secs` ahead of the real one (negative:
/// behind), through libfaketime (the `faketime` package); `None` when libfaketime is not
/// installed. Only the wall clock moves: monotonic time, which timers use, is left alone.
pub fn faketime_env(offset_secs: i64) -> Option<Vec<(String, String)>> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join("faketime/libfaketime.so.1"))
    .find(|p| p.exists())?;
    Some(vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), format!("{offset_secs:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
    ])
}
