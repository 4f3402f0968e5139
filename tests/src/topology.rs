//! Multi-host topologies for the end-to-end tests: three simulated hosts, each a network namespace
//! of its own, joined by veth pairs, with a real nginx or Caddy as the TLS-terminating reverse
//! proxy in front of the daemon's public listener.
//!
//! ```text
//!   remote-host                       proxy-host                         daemon-host
//!   198.51.100.20 (+ .21) ── veth ── 198.51.100.1 │ 192.0.2.1 ── veth ── 192.0.2.10
//!   netclaw pair join, curl           nginx or Caddy on :443             daemon :5199 public, :5200 operator
//!                                     routes between its two links       operator agent, netclaw CLI
//! ```
//!
//! proxy-host also forwards packets between its links (`net.ipv4.ip_forward=1`), so remote-host
//! reaches daemon-host's listeners directly as well, as an attacker on a flat network could: the
//! daemon's defences must hold without a firewall in front of it. The hosts share the file system
//! (only the network is separate), so "copying a file to remote-host" means putting it in
//! [`Topology::remote_dir`].
//!
//! The reverse-proxy configurations are [`NGINX_SITE`] and [`CADDYFILE`]; `docs/operator-guide.md`
//! quotes both verbatim (a test checks that), and the tests change nothing in them but the
//! certificate paths ([`Topology::nginx_site`], [`Topology::caddyfile`]).
//!
//! # Requirements
//!
//! Real root (veth pairs are moved between network namespaces; an unprivileged user namespace
//! cannot do that across namespaces), `ip` and `ss` (iproute2), `unshare` and `nsenter`
//! (util-linux), `openssl`, `curl`, and `nginx` or `caddy` for the tests that start them. Where
//! anything is missing, [`Topology::start`] prints `SKIPPED <test>: <reason>` and returns `None`,
//! unless `NETCLAW_REQUIRE_NAMESPACES` is set ([`crate::ns::REQUIRE_ENV`]), which turns the skip
//! into a failure.
//!
//! # Teardown
//!
//! Dropping a [`Topology`] — also while a failed test unwinds — stops every process it started
//! (the proxies, then the agent, then the daemon; SIGTERM, SIGKILL after 5 s), then kills the
//! three namespace holders: a namespace with no process left is freed by the kernel and its veth
//! ends with it (deleting one end of a veth pair deletes the other). Finally the temporary
//! directory (install tree, certificates, configurations, logs) is removed. Nothing is ever
//! created in the caller's own network namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::ns::{Namespace, REQUIRE_ENV};
use crate::{build_binaries, text, wait_for, Binaries, Install, Proc};

/// daemon-host's address on the link to proxy-host (`Daemon.Host` in `reverse-proxy` mode).
pub const DAEMON_IP: &str = "192.0.2.10";
/// proxy-host's address on the link to daemon-host (the daemon's `TrustedProxies`).
pub const PROXY_INNER_IP: &str = "192.0.2.1";
/// proxy-host's address on the link to remote-host (where the proxy listens for devices).
pub const PROXY_OUTER_IP: &str = "198.51.100.1";
/// remote-host's first address.
pub const REMOTE_IP: &str = "198.51.100.20";
/// remote-host's second address (a second client behind the same proxy).
pub const REMOTE_IP_2: &str = "198.51.100.21";
/// The URL remote devices use: the proxy, over HTTPS.
pub const PROXY_URL: &str = "https://198.51.100.1";

/// The daemon's public port.
pub const PUBLIC_PORT: u16 = 5199;
/// The daemon's operator (mTLS) port.
pub const OPERATOR_PORT: u16 = 5200;

/// Certificate path in [`NGINX_SITE`] (replaced by the test certificate's path in tests).
pub const NGINX_CERT_PATH: &str = "/etc/nginx/tls/netclaw.crt";
/// Key path in [`NGINX_SITE`].
pub const NGINX_KEY_PATH: &str = "/etc/nginx/tls/netclaw.key";
/// Certificate path in [`CADDYFILE`].
pub const CADDY_CERT_PATH: &str = "/etc/caddy/tls/netclaw.crt";
/// Key path in [`CADDYFILE`].
pub const CADDY_KEY_PATH: &str = "/etc/caddy/tls/netclaw.key";

/// The nginx site the tests run, as `docs/operator-guide.md` shows it. It is included in the
/// `http` block (Debian: `/etc/nginx/sites-enabled/netclaw`).
pub const NGINX_SITE: &str = r#"# /etc/nginx/sites-enabled/netclaw: TLS in front of netclaw-daemon's public listener
map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}

server {
    listen 443 ssl;
    server_name netclaw.example.com;

    ssl_certificate     /etc/nginx/tls/netclaw.crt;
    ssl_certificate_key /etc/nginx/tls/netclaw.key;
    ssl_protocols       TLSv1.2 TLSv1.3;

    # The daemon refuses bodies over 16 KiB itself; refuse them here already.
    client_max_body_size 16k;

    location / {
        # The public listener on the daemon's internal address (Daemon.Host:Daemon.Port).
        proxy_pass http://192.0.2.10:5199;
        proxy_http_version 1.1;
        proxy_set_header Host $host;

        # Append the client's address. The daemon reads only the last entry, and only because
        # this proxy's address (192.0.2.1) is in Daemon.TrustedProxies: what a client puts in
        # front of it changes nothing.
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;

        # WebSocket (/hub/session) and server-sent events (/api/events).
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_buffering off;
        proxy_read_timeout 1h;
    }
}
"#;

/// The Caddyfile the tests run, as `docs/operator-guide.md` shows it.
pub const CADDYFILE: &str = r#"# /etc/caddy/Caddyfile: TLS in front of netclaw-daemon's public listener
{
	admin off
	auto_https disable_redirects
}

:443 {
	tls /etc/caddy/tls/netclaw.crt /etc/caddy/tls/netclaw.key

	# The daemon refuses bodies over 16 KiB itself; refuse them here already.
	request_body {
		max_size 16KiB
	}

	# The public listener on the daemon's internal address (Daemon.Host:Daemon.Port). Caddy sets
	# X-Forwarded-For to the client's address (it trusts no incoming X-Forwarded-* header unless
	# trusted_proxies is configured) and X-Forwarded-Proto, and passes WebSocket upgrades and
	# server-sent events through.
	reverse_proxy 192.0.2.10:5199
}
"#;

/// Which reverse proxy to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// nginx (Debian package `nginx`).
    Nginx,
    /// Caddy (Debian package `caddy`).
    Caddy,
}

impl ProxyKind {
    /// The executable.
    pub fn program(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Caddy => "caddy",
        }
    }
}

/// One of the three simulated hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `daemon-host`: daemon, operator agent, CLI.
    Daemon,
    /// `proxy-host`: the reverse proxy.
    Proxy,
    /// `remote-host`: a remote device.
    Remote,
}

/// A simulated host: a network namespace from [`Namespace`] and its name.
#[derive(Debug)]
pub struct Host {
    name: &'static str,
    pid: u32,
    ns: Namespace,
}

impl Host {
    fn new(name: &'static str, ns: Namespace) -> Result<Self> {
        let pid = holder_pid(&ns)?;
        Ok(Self { name, pid, ns })
    }

    /// The host's name (`daemon-host`, …).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// A command that runs `program` on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.ns.command(program)
    }

    /// Runs `ip <args>` on this host.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        self.ns
            .ip(args)
            .with_context(|| format!("on {}", self.name))
    }

    /// Whether something listens on TCP `port` on this host.
    pub fn listening(&self, port: u16) -> bool {
        self.command("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .map(|o| o.status.success() && !o.stdout.is_empty())
            .unwrap_or(false)
    }
}

/// The pid of the process that holds `ns` open (what `ip link … netns PID` takes).
///
/// NOTE: [`Namespace`] does not expose it; the `nsenter --target PID` command it builds names it.
/// Replace this with an accessor on `Namespace` if it gets one.
fn holder_pid(ns: &Namespace) -> Result<u32> {
    let cmd = ns.command("true");
    let mut args = cmd.get_args();
    while let Some(a) = args.next() {
        if a == "--target" {
            let pid = args.next().context("nsenter --target without a pid")?;
            return pid
                .to_str()
                .and_then(|p| p.parse().ok())
                .context("nsenter --target with a non-numeric pid");
        }
    }
    bail!("the namespace command names no holder pid")
}

/// Joins `a` and `b` with a veth pair: `a_if` with `a_cidr` on `a`, `b_if` with `b_cidr` on `b`.
/// The pair is created inside `a` with its peer directly in `b`, so it never appears in the
/// caller's namespace and concurrent tests cannot collide on interface names.
fn link(a: &Host, a_if: &str, a_cidr: &str, b: &Host, b_if: &str, b_cidr: &str) -> Result<()> {
    let pid = b.pid.to_string();
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &pid,
    ])?;
    for (host, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
        host.ip(&["addr", "add", cidr, "dev", ifname])?;
        host.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// The test CA and the proxy's server certificate (generated with `openssl`).
#[derive(Debug)]
pub struct ProxyTls {
    /// The CA certificate devices trust (`--ca-file`).
    pub ca: PathBuf,
    /// The proxy's certificate.
    pub cert: PathBuf,
    /// The proxy's key.
    pub key: PathBuf,
}

impl ProxyTls {
    /// A fresh CA (ECDSA P-256, 1 day) and a server certificate signed by it for the IP
    /// addresses `ips` (EKU serverAuth), in `dir`.
    pub fn generate(dir: &Path, ips: &[&str]) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let ca = dir.join("proxy-ca.pem");
        let ca_key = dir.join("proxy-ca.key");
        let cert = dir.join("proxy.crt");
        let key = dir.join("proxy.key");
        let csr = dir.join("proxy.csr");
        let ext = dir.join("proxy.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&ca)
                .args(["-days", "1", "-subj", "/CN=netclaw topology test proxy CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE,pathlen:0"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        )?;
        openssl(
            Command::new("openssl")
                .args(["req", "-new"])
                .args(ec)
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", "/CN=netclaw topology test proxy"]),
        )?;
        let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                sans.join(",")
            ),
        )?;
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .args(["-CAcreateserial", "-days", "1", "-extfile"])
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        )?;
        Ok(Self { ca, cert, key })
    }
}

fn openssl(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().context("running `openssl`")?;
    if !out.status.success() {
        bail!(
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The path of `program` in `PATH` (and the sbin directories, where nginx lives).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Prints why `test` is skipped and returns `None`, or panics when [`REQUIRE_ENV`] is set.
pub fn skip<T>(test: &str, reason: &str) -> Option<T> {
    if std::env::var_os(REQUIRE_ENV).is_some() {
        panic!(
            "{test}: cannot run ({REQUIRE_ENV} is set, so this is a failure, not a skip): {reason}"
        );
    }
    eprintln!("SKIPPED {test}: {reason}");
    None
}

/// Three hosts, the daemon and the operator agent on daemon-host, the reverse proxies the test
/// started, and everything they need on disk. Dropping it tears all of it down (see the module
/// documentation).
#[derive(Debug)]
pub struct Topology {
    // Field order is drop order: processes, then the namespaces, then the files.
    proxies: Vec<Proc>,
    agent: Option<Proc>,
    daemon: Option<Proc>,
    /// daemon-host.
    pub daemon_host: Host,
    /// proxy-host.
    pub proxy_host: Host,
    /// remote-host.
    pub remote_host: Host,
    /// The install tree (under its own temporary root).
    pub install: Install,
    /// The proxies' TLS material.
    pub tls: ProxyTls,
    dir: tempfile::TempDir,
    /// The binaries.
    pub bins: Binaries,
}

/// Install flags for the usual deployment: `reverse-proxy` mode bound to [`DAEMON_IP`], trusting
/// the proxy at [`PROXY_INNER_IP`].
pub const REVERSE_PROXY: &[&str] = &[
    "--exposure",
    "reverse-proxy",
    "--bind",
    DAEMON_IP,
    "--trusted-proxy",
    PROXY_INNER_IP,
];

impl Topology {
    /// Builds the binaries and the three hosts, runs `netclaw daemon install --root … <install>`
    /// on daemon-host, and starts the daemon and the agent there. `programs` are the executables
    /// the test needs besides the always needed `ip`, `ss`, `unshare`, `nsenter`, `openssl` and
    /// `curl` (e.g. `nginx`). Returns `None` after printing why when the test cannot run here
    /// (panics instead when [`REQUIRE_ENV`] is set); panics when something fails after that.
    pub fn start(test: &str, programs: &[&str], install: &[&str]) -> Option<Self> {
        let base = ["ip", "ss", "unshare", "nsenter", "openssl", "curl"];
        let missing: Vec<&str> = base
            .iter()
            .chain(programs)
            .copied()
            .filter(|p| find_program(p).is_none())
            .collect();
        if !missing.is_empty() {
            return skip(
                test,
                &format!(
                    "missing programs: {} (Debian packages: iproute2, util-linux, openssl, curl, nginx, caddy)",
                    missing.join(", ")
                ),
            );
        }
        if !nix::unistd::geteuid().is_root() {
            return skip(
                test,
                "needs real root: veth pairs are moved between network namespaces",
            );
        }
        let first = crate::ns::namespace_or_skip(test)?;
        if !first.real_root() {
            return skip(test, "needs real root (not a user namespace)");
        }
        let daemon_host = Host::new("daemon-host", first).expect("daemon-host");
        let proxy_host = Host::new(
            "proxy-host",
            Namespace::new().expect("proxy-host namespace"),
        )
        .expect("proxy-host");
        let remote_host = Host::new(
            "remote-host",
            Namespace::new().expect("remote-host namespace"),
        )
        .expect("remote-host");
        if let Err(e) = network(&daemon_host, &proxy_host, &remote_host) {
            return skip(test, &format!("cannot build the veth network: {e:#}"));
        }
        let bins = build_binaries().expect("building the binaries");
        let dir = tempfile::Builder::new()
            .prefix("netclaw-topology-")
            .tempdir()
            .expect("temporary directory");
        fs::create_dir_all(dir.path().join("remote-host")).expect("remote-host directory");
        let tls = ProxyTls::generate(
            &dir.path().join("proxy-tls"),
            &[PROXY_OUTER_IP, DAEMON_IP, "127.0.0.1"],
        )
        .expect("proxy certificates");
        let install = Install::new(&bins, Some(&daemon_host.ns), install).expect("install");
        let mut topo = Self {
            proxies: Vec::new(),
            agent: None,
            daemon: None,
            daemon_host,
            proxy_host,
            remote_host,
            install,
            tls,
            dir,
            bins,
        };
        topo.start_daemon().expect("the daemon starts");
        topo.start_agent().expect("the agent starts");
        Some(topo)
    }

    /// The simulated host for `role`.
    pub fn host(&self, role: Role) -> &Host {
        match role {
            Role::Daemon => &self.daemon_host,
            Role::Proxy => &self.proxy_host,
            Role::Remote => &self.remote_host,
        }
    }

    /// remote-host's own directory (its token files, copies of stolen files, …).
    pub fn remote_dir(&self) -> PathBuf {
        self.dir.path().join("remote-host")
    }

    /// The scratch directory (configurations and logs of the proxies).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The parsed `netclaw.json`.
    pub fn config(&self) -> serde_json::Value {
        self.install.config_json().expect("netclaw.json")
    }

    /// `Daemon.Host`.
    pub fn public_ip(&self) -> String {
        self.config()["Daemon"]["Host"]
            .as_str()
            .expect("Daemon.Host")
            .to_owned()
    }

    /// `http://Daemon.Host:Daemon.Port`.
    pub fn public_url(&self) -> String {
        format!("http://{}:{PUBLIC_PORT}", self.public_ip())
    }

    /// Starts the daemon on daemon-host and waits until its public listener answers.
    pub fn start_daemon(&mut self) -> Result<()> {
        self.start_daemon_wrapped(&[])
    }

    /// Starts the daemon on daemon-host under `wrapper` (a program and its arguments that execs
    /// the rest of its command line, e.g. `prlimit --nofile=1024:1024 --`), and waits until its
    /// public listener answers.
    pub fn start_daemon_wrapped(&mut self, wrapper: &[&str]) -> Result<()> {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = self.daemon_host.command(program);
                c.args(args).arg(&self.bins.daemon);
                c
            }
            None => self.daemon_host.command(&self.bins.daemon),
        };
        cmd.arg("--config").arg(&self.install.config);
        let daemon = Proc::spawn("netclaw-daemon", cmd, &self.install.log("daemon"))?;
        self.daemon = Some(daemon);
        self.wait_daemon()
    }

    /// Waits until the daemon's public listener answers `/api/health/ready`.
    pub fn wait_daemon(&self) -> Result<()> {
        let url = format!("{}/api/health/ready", self.public_url());
        wait_for(
            "the daemon's public listener",
            Duration::from_secs(30),
            || {
                crate::probe(&self.daemon_host.ns, &self.bins, &["GET", &url])
                    .ok()
                    .filter(|(s, _)| *s == 200)
            },
        )
        .map(drop)
        .with_context(|| format!("daemon log:\n{}", self.daemon_log()))
    }

    /// Stops the daemon (SIGTERM) and waits for it to exit.
    pub fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
    }

    /// The daemon process.
    pub fn daemon(&self) -> Option<&Proc> {
        self.daemon.as_ref()
    }

    /// Everything the daemon processes of this topology logged.
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.install.log("daemon")).unwrap_or_default()
    }

    /// Starts the operator agent on daemon-host and waits until its socket answers.
    pub fn start_agent(&mut self) -> Result<()> {
        let mut cmd = self.daemon_host.command(&self.bins.agent);
        cmd.arg("--config").arg(&self.install.config);
        self.agent = Some(Proc::spawn(
            "netclaw-operator-agent",
            cmd,
            &self.install.log("agent"),
        )?);
        let socket = self.install.socket()?;
        wait_for("the agent socket", Duration::from_secs(30), || {
            crate::agent_status(&socket).ok()
        })
        .map(drop)
        .with_context(|| format!("agent log:\n{}", self.agent_log()))
    }

    /// Stops the agent.
    pub fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop();
        }
    }

    /// The agent process.
    pub fn agent(&self) -> Option<&Proc> {
        self.agent.as_ref()
    }

    /// What the agent logged.
    pub fn agent_log(&self) -> String {
        fs::read_to_string(self.install.log("agent")).unwrap_or_default()
    }

    /// The pids of every process this topology runs now: namespace holders, daemon, agent and
    /// proxies (with their children, e.g. nginx's workers).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![
            self.daemon_host.pid,
            self.proxy_host.pid,
            self.remote_host.pid,
        ];
        let procs = self
            .proxies
            .iter()
            .chain(self.agent.iter())
            .chain(self.daemon.iter());
        for p in procs.filter_map(Proc::pid) {
            pids.push(p);
            pids.extend(children(p));
        }
        pids
    }

    /// The network namespaces of the three hosts (as `readlink /proc/PID/ns/net` shows them).
    pub fn namespace_ids(&self) -> Vec<PathBuf> {
        [&self.daemon_host, &self.proxy_host, &self.remote_host]
            .iter()
            .filter_map(|h| fs::read_link(format!("/proc/{}/ns/net", h.pid)).ok())
            .collect()
    }

    /// [`NGINX_SITE`] with the test certificate's paths.
    pub fn nginx_site(&self) -> String {
        NGINX_SITE
            .replace(NGINX_CERT_PATH, &self.tls.cert.display().to_string())
            .replace(NGINX_KEY_PATH, &self.tls.key.display().to_string())
    }

    /// [`CADDYFILE`] with the test certificate's paths.
    pub fn caddyfile(&self) -> String {
        CADDYFILE
            .replace(CADDY_CERT_PATH, &self.tls.cert.display().to_string())
            .replace(CADDY_KEY_PATH, &self.tls.key.display().to_string())
    }

    /// Starts the usual proxy of `kind` on proxy-host ([`Topology::nginx_site`] or
    /// [`Topology::caddyfile`]) and waits until it answers devices at [`PROXY_URL`].
    pub fn start_proxy(&mut self, kind: ProxyKind) -> Result<()> {
        match kind {
            ProxyKind::Nginx => self.start_nginx(Role::Proxy, &self.nginx_site(), 443)?,
            ProxyKind::Caddy => self.start_caddy(Role::Proxy, &self.caddyfile(), 443)?,
        }
        let url = format!("{PROXY_URL}/api/health/ready");
        wait_for(
            "the proxy to reach the daemon",
            Duration::from_secs(20),
            || {
                let (code, out, _) = self
                    .curl(
                        Role::Remote,
                        &["-w", "%{http_code}", "-o", "/dev/null", &url],
                    )
                    .ok()?;
                (code == 0 && out == "200").then_some(())
            },
        )
        .with_context(|| self.proxy_logs())
    }

    /// Starts nginx on `on` with `site` included in a minimal main configuration (pid file,
    /// logs and temporary files in this topology's directory), in the foreground, and waits
    /// until it listens on `port` (the one `site` names).
    pub fn start_nginx(&mut self, on: Role, site: &str, port: u16) -> Result<()> {
        let dir = self.proxy_dir("nginx")?;
        let site_path = dir.join("site.conf");
        fs::write(&site_path, site)?;
        let conf = dir.join("nginx.conf");
        fs::write(&conf, nginx_main(&dir, &site_path))?;
        let error_log = dir.join("error.log");
        let mut cmd = self
            .host(on)
            .command(find_program("nginx").context("nginx")?);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"]);
        let proc = Proc::spawn("nginx", cmd, &dir.join("stderr.log"))?;
        self.proxies.push(proc);
        self.wait_listening(on, port)
    }

    /// Starts `caddy run` on `on` with `caddyfile` (its storage in this topology's directory)
    /// and waits until it listens on `port` (the one `caddyfile` names).
    pub fn start_caddy(&mut self, on: Role, caddyfile: &str, port: u16) -> Result<()> {
        let dir = self.proxy_dir("caddy")?;
        let path = dir.join("Caddyfile");
        fs::write(&path, caddyfile)?;
        let mut cmd = self
            .host(on)
            .command(find_program("caddy").context("caddy")?);
        cmd.args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"));
        let proc = Proc::spawn("caddy", cmd, &dir.join("stderr.log"))?;
        self.proxies.push(proc);
        self.wait_listening(on, port)
    }

    fn proxy_dir(&self, kind: &str) -> Result<PathBuf> {
        let dir = self
            .dir
            .path()
            .join(format!("{kind}-{}", self.proxies.len()));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn wait_listening(&mut self, on: Role, port: u16) -> Result<()> {
        let res = wait_for(
            &format!("a listener on {}:{port}", self.host(on).name),
            Duration::from_secs(20),
            || self.host(on).listening(port).then_some(()),
        );
        if res.is_err() {
            if let Some(p) = self.proxies.last_mut() {
                if !p.running() {
                    bail!("the proxy exited:\n{}", self.proxy_logs());
                }
            }
        }
        res.with_context(|| self.proxy_logs())
    }

    /// Every proxy's logs (for failure messages).
    pub fn proxy_logs(&self) -> String {
        let mut all = String::new();
        for i in 0..self.proxies.len() {
            for kind in ["nginx", "caddy"] {
                let dir = self.dir.path().join(format!("{kind}-{i}"));
                for f in ["stderr.log", "error.log", "access.log"] {
                    if let Ok(s) = fs::read_to_string(dir.join(f)) {
                        all.push_str(&format!("--- {kind}-{i}/{f}\n{s}"));
                    }
                }
            }
        }
        all
    }

    /// `netclaw --config <netclaw.json> <args>` on daemon-host: the operator's CLI, which
    /// resolves the agent socket.
    pub fn operator(&self, args: &[&str]) -> Command {
        let mut c = self.netclaw(Role::Daemon);
        c.arg("--config").arg(&self.install.config).args(args);
        c
    }

    /// `netclaw <args>` on `on`, with no configuration and none of netclaw's variables.
    pub fn netclaw(&self, on: Role) -> Command {
        let mut c = self.host(on).command(&self.bins.netclaw);
        c.env_remove("NETCLAW_CONFIG")
            .env_remove("NETCLAW_ENDPOINT")
            .env_remove("NETCLAW_DAEMON_ENDPOINT")
            .env_remove("NETCLAW_CONTEXT")
            .env("HOME", self.remote_dir())
            .env("XDG_CONFIG_HOME", self.remote_dir().join("config"));
        c
    }

    /// `netclaw --endpoint PROXY_URL --ca-file <proxy CA> --device-token <token> <args>` on
    /// remote-host: a paired device's CLI through the proxy.
    pub fn device(&self, token: &Path, args: &[&str]) -> Command {
        let mut c = self.netclaw(Role::Remote);
        c.args(["--endpoint", PROXY_URL, "--ca-file"])
            .arg(&self.tls.ca)
            .arg("--device-token")
            .arg(token)
            .args(args);
        c
    }

    /// Mints a code through the agent (`netclaw pair --json` on daemon-host) and has remote-host
    /// exchange it through the proxy with `netclaw pair join`; returns the token file.
    pub fn pair_remote_device(&self, name: &str) -> Result<PathBuf> {
        let minted = json(self.operator(&["pair", "--json"]))?;
        let code = minted["formattedCode"]
            .as_str()
            .context("formattedCode")?
            .to_owned();
        let token = self.remote_dir().join(format!("{name}.token"));
        let mut join = self.netclaw(Role::Remote);
        join.args(["pair", "join", &format!("{PROXY_URL}/"), "--code", &code])
            .args(["--name", name, "--ca-file"])
            .arg(&self.tls.ca)
            .arg("--token-file")
            .arg(&token);
        let (code, out, err) = run(join)?;
        if code != 0 {
            bail!("pair join exited {code}: {out}{err}\n{}", self.proxy_logs());
        }
        Ok(token)
    }

    /// `curl -sS -m 10 --cacert <proxy CA> <args>` on `on`: (exit code, stdout, stderr).
    pub fn curl(&self, on: Role, args: &[&str]) -> Result<(i32, String, String)> {
        let mut c = self.host(on).command("curl");
        c.args(["-sS", "-m", "10", "--cacert"])
            .arg(&self.tls.ca)
            .args(args);
        run(c)
    }

    /// The daemon's audit events so far (`StateDirectory/audit.log`).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let dir = self.config()["Daemon"]["StateDirectory"]
            .as_str()
            .map(PathBuf::from)
            .expect("Daemon.StateDirectory");
        fs::read_to_string(dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until an audit event of `kind` whose detail contains `detail` appears.
    pub fn wait_audit(&self, kind: &str, detail: &str) -> Result<serde_json::Value> {
        wait_for(
            &format!("audit event {kind} with {detail:?}"),
            Duration::from_secs(10),
            || {
                self.audit().into_iter().find(|e| {
                    e["kind"] == kind && e["detail"].as_str().is_some_and(|d| d.contains(detail))
                })
            },
        )
        .with_context(|| format!("audit log: {:#?}", self.audit()))
    }

    /// The agent's credential files: (client.crt, client.key, ca-bundle.crt).
    pub fn agent_credentials(&self) -> (PathBuf, PathBuf, PathBuf) {
        let dir = PathBuf::from(
            self.config()["Operator"]["AgentDirectory"]
                .as_str()
                .expect("Operator.AgentDirectory"),
        );
        (
            dir.join("client.crt"),
            dir.join("client.key"),
            dir.join("ca-bundle.crt"),
        )
    }
}

/// The network: daemon-host ↔ proxy-host on 192.0.2.0/24, remote-host ↔ proxy-host on
/// 198.51.100.0/24, proxy-host routing between them.
fn network(daemon: &Host, proxy: &Host, remote: &Host) -> Result<()> {
    link(
        daemon,
        "to-proxy",
        &format!("{DAEMON_IP}/24"),
        proxy,
        "to-daemon",
        &format!("{PROXY_INNER_IP}/24"),
    )?;
    link(
        remote,
        "to-proxy",
        &format!("{REMOTE_IP}/24"),
        proxy,
        "to-remote",
        &format!("{PROXY_OUTER_IP}/24"),
    )?;
    remote.ip(&[
        "addr",
        "add",
        &format!("{REMOTE_IP_2}/24"),
        "dev",
        "to-proxy",
    ])?;
    remote.ip(&["route", "add", "192.0.2.0/24", "via", PROXY_OUTER_IP])?;
    daemon.ip(&["route", "add", "198.51.100.0/24", "via", PROXY_INNER_IP])?;
    // /proc/sys/net belongs to the network namespace of the process that opens it: this sets
    // proxy-host's, not the machine's.
    let out = proxy
        .command("sh")
        .args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        .output()
        .context("running sh")?;
    if !out.status.success() {
        bail!(
            "net.ipv4.ip_forward=1 on proxy-host: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The minimal main configuration the tests wrap [`NGINX_SITE`] in: everything nginx writes goes
/// to `dir`, one worker, run as root inside the test's namespace.
pub fn nginx_main(dir: &Path, site: &Path) -> String {
    let d = dir.display();
    format!(
        "user root;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 128; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {};\n\
         }}\n",
        site.display()
    )
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Runs `cmd`: (exit code, stdout, stderr).
pub fn run(mut cmd: Command) -> Result<(i32, String, String)> {
    let out: Output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    Ok(text(&out))
}

/// Runs `cmd` and reports how long it took: (exit code, stdout, stderr, elapsed).
pub fn run_timed(cmd: Command) -> Result<(i32, String, String, Duration)> {
    let started = Instant::now();
    let (code, out, err) = run(cmd)?;
    Ok((code, out, err, started.elapsed()))
}

/// Runs `cmd`, fails unless it exits 0, and parses its stdout as JSON.
pub fn json(cmd: Command) -> Result<serde_json::Value> {
    let shown = format!("{cmd:?}");
    let (code, out, err) = run(cmd)?;
    if code != 0 {
        bail!("{shown} exited {code}: {out}{err}");
    }
    serde_json::from_str(&out).with_context(|| format!("parsing {out:?} from {shown}"))
}

/// Whether a process with `pid` exists (a zombie counts as gone).
pub fn process_exists(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Whether any process on the machine is still in one of the network namespaces `ids`.
pub fn namespaces_in_use(ids: &[PathBuf]) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/ns/net"))
                .map(|ns| ids.contains(&ns))
                .unwrap_or(false)
        })
        .collect()
}
