//! The three off-the-shelf sidecars the agent is compared with, each configured as what the agent
//! is — a Unix socket in front, a mutual-TLS client to the daemon's operator listener behind,
//! presenting the agent's certificate and verifying the daemon's against the agent's CA bundle:
//!
//! * **stunnel4** in client mode: a byte pipe, one TLS connection (and handshake) per accepted
//!   Unix connection, no HTTP awareness, TLS 1.3 only, `checkIP` on the listener address.
//! * **nginx** as an HTTP reverse proxy: `proxy_pass https://` to an `upstream` block with
//!   `keepalive N` where N is the agent's idle pool size (`pool.maxIdle`; nginx's is per
//!   worker), HTTP/1.1 upstream, TLS 1.3 only,
//!   `proxy_ssl_verify on` with `proxy_ssl_name` set to a DNS name the installer put in the
//!   listener certificate (nginx checks names, not IP addresses), `worker_processes auto`,
//!   no access log, and `keepalive_requests` raised on both sides (the default, 1000, closes
//!   a keep-alive connection after 1000 requests; the agent never does).
//!
//! * **HAProxy** as an HTTP reverse proxy: `bind unix@` in front, a `server … ssl` behind with
//!   the agent's certificate and key (one PEM, as HAProxy wants it), `verify required` against
//!   the agent's CA bundle with `verifyhost` on the same DNS name as nginx, TLS 1.3 only,
//!   `http-reuse always` with `pool-max-conn` set to the agent's idle pool size, its default
//!   threads (one per CPU), no log.
//!
//! None adds the caller headers the agent adds; all reach the daemon as `LocalOperator`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{wait_for, Proc};

/// Where a sidecar gets its credentials and where it forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The daemon's operator listener.
    pub addr: SocketAddr,
    /// A DNS name in the listener certificate (for nginx).
    pub dns_name: String,
    /// The agent's `client.crt`, `client.key` and `ca-bundle.crt`.
    pub agent_dir: PathBuf,
}

/// A running sidecar that can be restarted with the same configuration.
#[derive(Debug)]
pub struct Sidecar {
    /// `stunnel4`, `nginx` or `HAProxy`.
    pub name: &'static str,
    /// The Unix socket it listens on.
    pub socket: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Sidecar {
    /// Writes a stunnel configuration under `dir` and starts `program` with it.
    pub fn stunnel(program: &Path, dir: &Path, up: &Upstream) -> Result<Self> {
        let socket = dir.join("stunnel.sock");
        let conf = dir.join("stunnel.conf");
        let a = &up.agent_dir;
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\n\
                 pid =\n\
                 debug = err\n\
                 output = {log}\n\
                 \n\
                 [netclaw-operator]\n\
                 client = yes\n\
                 accept = {socket}\n\
                 connect = {addr}\n\
                 cert = {cert}\n\
                 key = {key}\n\
                 CAfile = {bundle}\n\
                 verifyChain = yes\n\
                 checkIP = {ip}\n\
                 sslVersionMin = TLSv1.3\n",
                log = dir.join("stunnel.log").display(),
                socket = socket.display(),
                addr = up.addr,
                cert = a.join("client.crt").display(),
                key = a.join("client.key").display(),
                bundle = a.join("ca-bundle.crt").display(),
                ip = up.addr.ip(),
            ),
        )?;
        let mut s = Self {
            name: "stunnel4",
            socket,
            program: program.to_owned(),
            args: vec![conf.display().to_string()],
            log: dir.join("stunnel.out"),
            proc: None,
        };
        s.start()?;
        Ok(s)
    }

    /// Writes an nginx configuration under `dir` and starts `program` with it, keeping up to
    /// `keepalive` idle upstream connections per worker.
    pub fn nginx(program: &Path, dir: &Path, up: &Upstream, keepalive: u64) -> Result<Self> {
        let socket = dir.join("nginx.sock");
        let conf = dir.join("nginx.conf");
        let temp = dir.join("nginx-temp");
        std::fs::create_dir_all(&temp)?;
        let a = &up.agent_dir;
        let t = temp.display();
        std::fs::write(
            &conf,
            format!(
                "daemon off;\n\
                 worker_processes auto;\n\
                 pid {pid};\n\
                 error_log {errors} warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 \x20 access_log off;\n\
                 \x20 client_body_temp_path {t}/body;\n\
                 \x20 proxy_temp_path {t}/proxy;\n\
                 \x20 fastcgi_temp_path {t}/fastcgi;\n\
                 \x20 uwsgi_temp_path {t}/uwsgi;\n\
                 \x20 scgi_temp_path {t}/scgi;\n\
                 \x20 upstream netclaw_operator {{\n\
                 \x20   server {addr};\n\
                 \x20   keepalive {keepalive};\n\
                 \x20   keepalive_requests 1000000000;\n\
                 \x20   keepalive_timeout 60s;\n\
                 \x20 }}\n\
                 \x20 server {{\n\
                 \x20   listen unix:{socket};\n\
                 \x20   keepalive_requests 1000000000;\n\
                 \x20   keepalive_timeout 300s;\n\
                 \x20   location / {{\n\
                 \x20     proxy_pass https://netclaw_operator;\n\
                 \x20     proxy_http_version 1.1;\n\
                 \x20     proxy_set_header Connection \"\";\n\
                 \x20     proxy_ssl_certificate {cert};\n\
                 \x20     proxy_ssl_certificate_key {key};\n\
                 \x20     proxy_ssl_trusted_certificate {bundle};\n\
                 \x20     proxy_ssl_verify on;\n\
                 \x20     proxy_ssl_verify_depth 2;\n\
                 \x20     proxy_ssl_name {name};\n\
                 \x20     proxy_ssl_protocols TLSv1.3;\n\
                 \x20   }}\n\
                 \x20 }}\n\
                 }}\n",
                pid = dir.join("nginx.pid").display(),
                errors = dir.join("nginx-error.log").display(),
                addr = up.addr,
                socket = socket.display(),
                cert = a.join("client.crt").display(),
                key = a.join("client.key").display(),
                bundle = a.join("ca-bundle.crt").display(),
                name = up.dns_name,
            ),
        )?;
        let mut s = Self {
            name: "nginx",
            socket,
            program: program.to_owned(),
            args: vec![
                "-p".into(),
                dir.display().to_string(),
                "-e".into(),
                dir.join("nginx-error.log").display().to_string(),
                "-c".into(),
                conf.display().to_string(),
            ],
            log: dir.join("nginx.out"),
            proc: None,
        };
        s.start()?;
        Ok(s)
    }

    /// Writes an HAProxy configuration under `dir` and starts `program` with it, keeping up to
    /// `pool` idle upstream connections.
    pub fn haproxy(program: &Path, dir: &Path, up: &Upstream, pool: u64) -> Result<Self> {
        let socket = dir.join("haproxy.sock");
        let conf = dir.join("haproxy.cfg");
        let a = &up.agent_dir;
        // HAProxy reads the certificate and its key from one file.
        let pem = dir.join("haproxy-client.pem");
        let mut both = std::fs::read(a.join("client.crt"))?;
        both.extend(std::fs::read(a.join("client.key"))?);
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&pem)?
                .write_all(&both)?;
        }
        std::fs::write(
            &conf,
            format!(
                "global\n\
                 \x20 maxconn 4096\n\
                 \x20 ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\n\
                 defaults\n\
                 \x20 mode http\n\
                 \x20 timeout connect 5s\n\
                 \x20 timeout client 300s\n\
                 \x20 timeout server 300s\n\
                 \x20 timeout http-keep-alive 300s\n\
                 \x20 http-reuse always\n\
                 frontend socket\n\
                 \x20 bind unix@{socket} mode 600\n\
                 \x20 default_backend operator\n\
                 backend operator\n\
                 \x20 server daemon {addr} ssl crt {pem} ca-file {bundle} verify required verifyhost {name} sni str({name}) ssl-min-ver TLSv1.3 pool-max-conn {pool}\n",
                socket = socket.display(),
                addr = up.addr,
                pem = pem.display(),
                bundle = a.join("ca-bundle.crt").display(),
                name = up.dns_name,
            ),
        )?;
        let mut s = Self {
            name: "HAProxy",
            socket,
            program: program.to_owned(),
            args: vec!["-db".into(), "-f".into(), conf.display().to_string()],
            log: dir.join("haproxy.out"),
            proc: None,
        };
        s.start()?;
        Ok(s)
    }

    /// Starts the process and waits until its socket accepts connections.
    pub fn start(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        let proc = Proc::spawn(self.name, cmd, &self.log)?;
        let socket = self.socket.clone();
        let res = wait_for(self.name, Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(drop)
        });
        let log = proc.log();
        self.proc = Some(proc);
        res.with_context(|| format!("{} output:\n{log}", self.name))
    }

    /// Stops and starts it again (empty connection pool, fresh process).
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
        self.start()
    }

    /// The process and its direct children (nginx's workers).
    pub fn pids(&self) -> Vec<u32> {
        self.proc
            .as_ref()
            .and_then(Proc::pid)
            .map(crate::bench::host::with_children)
            .unwrap_or_default()
    }
}

/// The first of `names` found on `PATH` (or in `/usr/sbin`, `/sbin`).
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}
