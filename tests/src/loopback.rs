//! A daemon on loopback for the daemon's socket tests: an install tree written with the `pki`
//! crate's own issuing functions, the real `netclaw-daemon` binary as a child process (stopped on
//! drop), a raw HTTP/1.1 connection for tests that must control the bytes on the wire (limits,
//! keep-alive, refusals), TLS client configurations and audit-log polling.
//!
//! Everything listens and connects on loopback (127.0.0.0/8) only. Nothing sleeps as an
//! assertion: every wait is a poll against a deadline.

// Test support: a failed set-up step is a failed test, with its panic message.
#![allow(clippy::unwrap_used)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{free_ports, http, Proc};
use netclaw_pki::issue::ListenerNames;
use netclaw_pki::registry::{CertificateKind, Registry};
use netclaw_pki::store::{self, DaemonPkiPaths};
use netclaw_pki::{
    hostid, AgentCertificate, CertificateLifetime, HostId, IssuedCertificate, OperatorCa,
    PrivateKey, Serial, SpiffeId, TrustDomain,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Upper bound for any single wait (daemon start, a response, an audit event). Generous: the
/// tests must not flake on a loaded two-core machine.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Interval between polls.
pub const POLL: Duration = Duration::from_millis(25);

/// The address both listeners bind.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How the install's `netclaw.json` is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    /// `Daemon.ExposureMode`.
    pub exposure: &'static str,
    /// `Daemon.TrustedProxies`.
    pub trusted_proxies: Vec<&'static str>,
    /// `Operator.AllowedSources` (`None`: this host's interface addresses).
    pub allowed_sources: Option<Vec<&'static str>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            exposure: "local",
            trusted_proxies: Vec::new(),
            allowed_sources: None,
        }
    }
}

/// An install tree under a temporary root, as `netclaw daemon install --root` lays it out: the
/// operator CA, the listener's server certificate, one active agent certificate and the
/// issuance registry, all written through `netclaw_pki::store`.
#[derive(Debug)]
pub struct Install {
    tmp: tempfile::TempDir,
    setup: Setup,
    /// `etc/netclaw/netclaw.json`.
    pub config_path: PathBuf,
    /// `Daemon.StateDirectory` (audit.log, devices.json).
    pub state_dir: PathBuf,
    /// `Operator.PkiDirectory`.
    pub pki: DaemonPkiPaths,
    /// The CA on disk, loaded back.
    pub ca: OperatorCa,
    /// The host-id the daemon will derive.
    pub host_id: HostId,
    /// `Operator.TrustDomain` (the default).
    pub trust_domain: TrustDomain,
    /// The good agent certificate, recorded active.
    pub agent: AgentCertificate,
}

impl Install {
    /// Writes the PKI for `setup`. The configuration itself is written by [`DaemonProcess::start`],
    /// which picks the ports.
    pub fn new(setup: Setup) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let config_path = root.join("etc/netclaw/netclaw.json");
        let state_dir = root.join("var/lib/netclaw");
        let pki = DaemonPkiPaths::new(root.join("var/lib/netclaw/pki"));
        netclaw_pki::secure_fs::ensure_private_dir(&state_dir).unwrap();
        netclaw_pki::secure_fs::ensure_private_dir(pki.dir()).unwrap();

        let now = SystemTime::now();
        let host_id = daemon_host_id(&pki);
        let trust_domain: TrustDomain = TrustDomain::DEFAULT.parse().unwrap();
        let names = ListenerNames {
            ips: vec![LOOPBACK],
            dns: Vec::new(),
        };
        let ca = OperatorCa::generate(&host_id.as_str()[..8], &names, now).unwrap();
        store::save_ca(&pki, &ca).unwrap();
        let server = ca.issue_server(&names, now).unwrap();
        store::save_server(&pki, &server).unwrap();
        let id = SpiffeId::operator_agent(trust_domain.clone(), host_id.clone());
        let agent = ca
            .issue_agent(&id, now, CertificateLifetime::default())
            .unwrap();

        let mut registry = Registry::default();
        registry.record(
            ca.certificate().serial.clone(),
            CertificateKind::Ca,
            "operator CA".into(),
            now,
            ca.certificate().not_after,
        );
        registry.record(
            server.cert.serial.clone(),
            CertificateKind::Server,
            "IP:127.0.0.1".into(),
            now,
            server.cert.not_after,
        );
        registry.record(
            agent.cert.serial.clone(),
            CertificateKind::Agent,
            id.to_string(),
            now,
            agent.cert.not_after,
        );
        store::save_registry(&pki, &registry).unwrap();
        // Load the CA back from disk, as `netclaw pki rotate --offline` would.
        let ca = store::load_ca(&pki).unwrap();

        Self {
            tmp,
            setup,
            config_path,
            state_dir,
            pki,
            ca,
            host_id,
            trust_domain,
            agent,
        }
    }

    /// The install root.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// This host's operator-agent SPIFFE id.
    pub fn agent_id(&self) -> SpiffeId {
        SpiffeId::operator_agent(self.trust_domain.clone(), self.host_id.clone())
    }

    /// Issues an agent certificate for `id` from the CA on disk at `now`, and records it active in
    /// the registry, so that any refusal is due to the certificate itself.
    pub fn issue_registered(
        &self,
        id: &SpiffeId,
        now: SystemTime,
        lifetime: CertificateLifetime,
    ) -> AgentCertificate {
        let cert = self.ca.issue_agent(id, now, lifetime).unwrap();
        self.register(&cert.cert, &id.to_string(), now);
        cert
    }

    /// Records `cert` as an active agent certificate.
    pub fn register(&self, cert: &IssuedCertificate, subject: &str, now: SystemTime) {
        let mut registry = store::load_registry(&self.pki).unwrap();
        registry.record(
            cert.serial.clone(),
            CertificateKind::Agent,
            subject.to_owned(),
            now,
            cert.not_after,
        );
        store::save_registry(&self.pki, &registry).unwrap();
    }

    /// What `netclaw pki rotate --offline` (or `netclaw daemon install --force`) does to the
    /// registry: under the registry lock, issues a new agent certificate from the CA on disk at
    /// `now`, records it active and supersedes every other agent serial with `grace` (a
    /// replacement, not a renewal). Returns the new certificate.
    pub fn replace_agent(&self, now: SystemTime, grace: Duration) -> AgentCertificate {
        let id = self.agent_id();
        let cert = self
            .ca
            .issue_agent(&id, now, CertificateLifetime::default())
            .unwrap();
        let _lock = store::lock_registry(&self.pki).unwrap();
        let mut registry = store::load_registry(&self.pki).unwrap();
        registry.replace(
            &cert.cert,
            CertificateKind::Agent,
            id.to_string(),
            now,
            grace,
        );
        store::save_registry(&self.pki, &registry).unwrap();
        cert
    }

    /// Marks `serial` revoked in `registry.json` on disk (as `netclaw pki revoke` does).
    pub fn revoke(&self, serial: &Serial) {
        let mut registry = store::load_registry(&self.pki).unwrap();
        assert!(
            registry.revoke(serial, SystemTime::now()),
            "{serial} unknown"
        );
        store::save_registry(&self.pki, &registry).unwrap();
    }

    /// The CA bundle the agent trusts for the listener's certificate.
    pub fn bundle(&self) -> Vec<CertificateDer<'static>> {
        store::load_trust_bundle(&self.pki.ca_cert()).unwrap()
    }

    fn write_config(&self, public_port: u16, operator_port: u16) {
        let root = self.root();
        let mut daemon = json!({
            "Host": "127.0.0.1",
            "Port": public_port,
            "ExposureMode": self.setup.exposure,
            "StateDirectory": self.state_dir,
        });
        if !self.setup.trusted_proxies.is_empty() {
            daemon["TrustedProxies"] = json!(self.setup.trusted_proxies);
        }
        if self.setup.exposure != "local" {
            // No tailscaled or cloudflared runs on a test machine.
            daemon["SkipTunnelProcessCheck"] = json!(true);
        }
        let mut operator = json!({
            "Port": operator_port,
            "Socket": root.join("run/netclaw/operator.sock"),
            "PkiDirectory": self.pki.dir(),
            "AgentDirectory": root.join("var/lib/netclaw-operator-agent"),
        });
        if let Some(sources) = &self.setup.allowed_sources {
            operator["AllowedSources"] = json!(sources);
        }
        let config = json!({ "Daemon": daemon, "Operator": operator });
        std::fs::create_dir_all(self.config_path.parent().unwrap()).unwrap();
        std::fs::write(
            &self.config_path,
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
    }
}

/// The host-id the daemon derives (`OperatorPki::load`): from `/etc/machine-id` when usable,
/// else a random one persisted in the PKI directory — exactly what the install does.
fn daemon_host_id(pki: &DaemonPkiPaths) -> HostId {
    if let Ok(contents) = std::fs::read("/etc/machine-id") {
        if let Some(id) = hostid::from_machine_id(&contents) {
            return id;
        }
    }
    let id = hostid::random().unwrap();
    store::save_host_id(pki, &id).unwrap();
    id
}

/// A host-id that is not this host's.
pub fn other_host_id(mine: &HostId) -> HostId {
    let other = if mine.as_str().starts_with('0') {
        "1".repeat(32)
    } else {
        "0".repeat(32)
    };
    other.parse().unwrap()
}

/// A running `netclaw-daemon`, killed when dropped.
#[derive(Debug)]
pub struct DaemonProcess {
    proc: Proc,
    /// Public listener.
    pub public: SocketAddr,
    /// Operator listener.
    pub operator: SocketAddr,
}

impl DaemonProcess {
    /// Writes the configuration with fresh ports (see [`free_ports`]), starts the daemon binary
    /// `bin` with `--config` and waits until both listeners are ready; retries with other ports
    /// when another process took one meanwhile.
    pub async fn start(bin: &Path, install: &Install) -> Self {
        for attempt in 0..5 {
            let (public_port, operator_port) = free_ports();
            install.write_config(public_port, operator_port);
            // A fresh log per process: a restarted daemon must not be taken for ready by its
            // predecessor's "listener ready" lines.
            let log = (0..)
                .map(|n| install.root().join(format!("daemon-{attempt}-{n}.stderr")))
                .find(|p| !p.exists())
                .unwrap();
            let mut cmd = Command::new(bin);
            cmd.arg("--config")
                .arg(&install.config_path)
                .env_clear()
                .env("NETCLAW_LOG", "info")
                .env("NO_COLOR", "1");
            let mut daemon = Self {
                proc: Proc::spawn("netclaw-daemon", cmd, &log)
                    .unwrap()
                    .kill_on_drop(),
                public: SocketAddr::new(LOOPBACK, public_port),
                operator: SocketAddr::new(LOOPBACK, operator_port),
            };
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                let log = daemon.log();
                if log.contains("public listener ready") && log.contains("operator listener ready")
                {
                    return daemon;
                }
                if let Some(status) = daemon.proc.exit_status() {
                    if log.contains("cannot listen on") {
                        break; // a port was taken meanwhile: try others
                    }
                    panic!("netclaw-daemon exited with {status}:\n{log}");
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "netclaw-daemon not ready within {DEADLINE:?}:\n{log}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
        panic!("could not find free ports for netclaw-daemon");
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Stops the daemon as its service manager does (SIGTERM: it drains and saves) and waits
    /// for it to exit; its exit code (`None`: killed after [`DEADLINE`]).
    pub fn terminate(&mut self) -> Option<i32> {
        self.proc.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
        self.proc.wait_exit(DEADLINE)
    }
}

// ---------------------------------------------------------------------------------------------
// Audit log.

/// The audit events recorded so far (`audit.log`, one JSON object a line).
pub fn audit_events(install: &Install) -> Vec<Value> {
    std::fs::read_to_string(install.state_dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the audit log holds an event of `kind` whose principal and detail together
/// contain every one of `needles`, and returns it.
pub async fn wait_for_audit(install: &Install, kind: &str, needles: &[&str]) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let events = audit_events(install);
        if let Some(e) = events.iter().find(|e| {
            let text = format!(
                "{} {}",
                e["principal"].as_str().unwrap_or_default(),
                e["detail"].as_str().unwrap_or_default()
            );
            e["kind"] == kind && needles.iter().all(|n| text.contains(n))
        }) {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} audit event containing {needles:?}; audit log:\n{events:#?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 over raw sockets (requests written by hand; responses parsed by `netclaw_tests::http`).

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request head plus body, as bytes.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `GET path` with `headers`.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request("GET", path, headers, b"")
}

/// An HTTP/1.1 connection that keeps what it read past one response for the next.
#[derive(Debug)]
pub struct HttpConn<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> HttpConn<S> {
    /// Wraps a connected stream.
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::new(),
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Writes `raw` without reading.
    pub async fn write(&mut self, raw: &[u8]) -> io::Result<()> {
        within(async {
            self.io.write_all(raw).await?;
            self.io.flush().await
        })
        .await
    }

    /// Sends `raw` and reads one response.
    pub async fn send(&mut self, raw: &[u8]) -> io::Result<Response> {
        within(async {
            self.io.write_all(raw).await?;
            self.io.flush().await?;
            self.read_response().await
        })
        .await
    }

    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn fill_or_eof(&mut self) -> io::Result<()> {
        if self.fill().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-response",
            ));
        }
        Ok(())
    }

    /// Reads one response (head and chunked bodies parsed by `netclaw_tests::http`).
    pub async fn read_response(&mut self) -> io::Result<Response> {
        let head = loop {
            if let Some(head) = http::parse_head(&self.buf).map_err(invalid_data)? {
                break head;
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response head; read {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        if head.version != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP/1.1 response: HTTP/1.{}", head.version),
            ));
        }
        self.buf.drain(..head.len);
        let body = if let Some(len) = head.content_length().map_err(invalid_data)? {
            while self.buf.len() < len {
                self.fill_or_eof().await?;
            }
            self.buf.drain(..len).collect()
        } else if head.chunked() {
            loop {
                if let Some((len, body)) = http::parse_chunked(&self.buf).map_err(invalid_data)? {
                    self.buf.drain(..len);
                    break body;
                }
                self.fill_or_eof().await?;
            }
        } else {
            while self.fill().await? > 0 {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// Reads until the peer closes and returns what arrived; a reset or a TLS error counts as
    /// closed. Fails the test when the connection stays open past the deadline.
    pub async fn read_until_closed(&mut self) -> Vec<u8> {
        let closed = tokio::time::timeout(DEADLINE, async {
            while let Ok(n) = self.fill().await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the connection is still open after {DEADLINE:?}"
        );
        std::mem::take(&mut self.buf)
    }
}

fn invalid_data(e: anyhow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{e:#}"))
}

/// Runs `f` with the test deadline; a timeout is an error.
pub async fn within<T>(f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))
}

/// A plain TCP connection to `addr` from the loopback source address `source`.
pub async fn tcp_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    assert!(source.is_loopback(), "tests only use loopback addresses");
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    let stream = within(socket.connect(addr)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A plain HTTP connection to `addr` from `source`.
pub async fn http_from(source: Ipv4Addr, addr: SocketAddr) -> HttpConn<TcpStream> {
    HttpConn::new(tcp_from(source, addr).await)
}

/// One request on a fresh plain connection from 127.0.0.1.
pub async fn send_once(addr: SocketAddr, raw: &[u8]) -> Response {
    http_from(Ipv4Addr::LOCALHOST, addr)
        .await
        .send(raw)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// TLS clients.

/// A client configuration that verifies the operator listener against `bundle` and presents
/// `client` (certificate and key) when given. `versions` defaults to TLS 1.3.
pub fn client_config(
    bundle: &[CertificateDer<'static>],
    client: Option<(&IssuedCertificate, &PrivateKey)>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in bundle {
        roots.add(ca.clone()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert.der.clone()], key.to_rustls())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// TLS 1.3 only, as the operator agent.
pub const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A TLS connection to the operator listener from 127.0.0.1.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    tls_connect_from(Ipv4Addr::LOCALHOST, addr, config).await
}

/// A TLS connection to the operator listener from the loopback address `source`.
pub async fn tls_connect_from(
    source: Ipv4Addr,
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(source, addr).await;
    let name = ServerName::IpAddress(addr.ip().into());
    within(TlsConnector::from(config).connect(name, tcp)).await
}

/// Connects with `config` and sends `GET /api/whoami`. `Err` says how the daemon refused: a
/// failed handshake, or a connection closed without any HTTP response (the error text carries
/// the TLS alert when one was received).
pub async fn try_whoami(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Response, String> {
    let tls = match tls_connect(addr, config).await {
        Ok(tls) => tls,
        Err(e) => return Err(format!("handshake failed: {e}")),
    };
    let mut conn = HttpConn::new(tls);
    match conn.send(&get("/api/whoami", &[])).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            assert_ne!(e.kind(), io::ErrorKind::TimedOut, "no refusal: {e}");
            Err(format!("closed after the handshake: {e}"))
        }
    }
}

/// Connects with `config` and expects the daemon to refuse: the handshake fails, or the daemon
/// closes the connection without sending application data. Returns how it showed (the error
/// text, with the TLS alert when one was received).
///
/// Nothing is written after the handshake: in TLS 1.3 the client finishes its handshake before
/// the server has checked its certificate, and a request the server never reads would turn the
/// server's close into a reset that can overtake the alert.
pub async fn expect_refused(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    let mut tls = match tls_connect(addr, config).await {
        Ok(tls) => tls,
        Err(e) => return format!("handshake failed: {e}"),
    };
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(DEADLINE, tls.read(&mut buf)).await {
        Err(_) => panic!("the operator listener kept a connection it must refuse open"),
        Ok(Ok(0)) => "closed after the handshake".to_owned(),
        Ok(Ok(n)) => panic!(
            "the operator listener sent data to a client it must refuse: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Ok(Err(e)) => format!("closed after the handshake: {e}"),
    }
}
