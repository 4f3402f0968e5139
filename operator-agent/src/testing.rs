//! Test fixtures for the credential manager and the router: an operator CA, an agent
//! credential directory, a configuration file, a clock that follows tokio's (paused) clock, and a
//! daemon stand-in that issues renewals from the CA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use netclaw_core::config::Config;
use netclaw_core::wire::RenewResponse;
use netclaw_pki::issue::{CertificateLifetime, ListenerNames, OperatorCa};
use netclaw_pki::store::{self, AgentPaths};
use netclaw_pki::{hostid, secure_fs, SpiffeId};
use rustls::pki_types::ServerName;

use crate::manager::{Clock, Handle, Manager, Settings};
use crate::renew::RenewError;
use crate::renew::Renewer;
use crate::upstream::{Stats, Upstream};

/// A wall clock that advances with tokio's clock (so with `tokio::time::pause`), and that a
/// test can move forward at once (a host resuming from suspend).
#[derive(Clone, Debug)]
pub(crate) struct TestClock {
    origin: SystemTime,
    start: tokio::time::Instant,
    jump: Arc<Mutex<Duration>>,
}

impl TestClock {
    /// Must be called inside the test's runtime.
    pub(crate) fn new() -> Self {
        Self {
            origin: SystemTime::now(),
            start: tokio::time::Instant::now(),
            jump: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Moves the wall clock so that it reads `at` now.
    pub(crate) fn set(&self, at: SystemTime) {
        let base = self.origin + self.start.elapsed();
        *self.jump.lock().unwrap() = at.duration_since(base).unwrap();
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        self.origin + *self.jump.lock().unwrap() + self.start.elapsed()
    }

    fn draw(&self) -> f64 {
        0.5
    }
}

/// An operator CA and an agent directory holding a certificate it issued.
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) paths: AgentPaths,
    pub(crate) ca: Arc<OperatorCa>,
    pub(crate) id: SpiffeId,
    pub(crate) config_path: PathBuf,
    pub(crate) config: Config,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir.path().join("agent");
        secure_fs::ensure_private_dir(&agent_dir).unwrap();
        let config_path = dir.path().join("netclaw.json");
        let text = serde_json::json!({
            "Operator": {
                "AgentDirectory": agent_dir,
                "Socket": dir.path().join("operator.sock"),
            }
        })
        .to_string();
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::from_json(&config_path, &text, &BTreeMap::new()).unwrap();
        let names = ListenerNames {
            ips: vec!["127.0.0.1".parse().unwrap()],
            dns: vec![],
        };
        let ca = OperatorCa::generate("testhost", &names, SystemTime::now()).unwrap();
        let id = SpiffeId::operator_agent(
            config.operator().trust_domain().clone(),
            hostid::random().unwrap(),
        );
        let fixture = Self {
            paths: AgentPaths::new(&agent_dir),
            _dir: dir,
            ca: Arc::new(ca),
            id,
            config_path,
            config,
        };
        let issued = fixture
            .ca
            .issue_agent(
                &fixture.id,
                SystemTime::now(),
                CertificateLifetime::default(),
            )
            .unwrap();
        store::save_agent(
            &fixture.paths,
            &issued.key,
            &issued.cert.pem,
            &fixture.ca.certificate().pem,
        )
        .unwrap();
        fixture
    }

    /// Replaces the agent's pair with a new one from the CA (what an offline rotation does).
    pub(crate) fn write_new_pair(&self) -> netclaw_pki::Serial {
        let issued = self
            .ca
            .issue_agent(&self.id, SystemTime::now(), CertificateLifetime::default())
            .unwrap();
        store::save_agent_pair(
            &self.paths,
            &issued.key,
            &issued.cert.pem,
            &self.ca.certificate().pem,
        )
        .unwrap();
        issued.cert.serial
    }

    /// Starts a manager on this directory, for a daemon at `addr`.
    pub(crate) fn manager(
        &self,
        addr: SocketAddr,
        daemon: FakeDaemon,
        clock: TestClock,
    ) -> (Manager<FakeDaemon, TestClock>, Handle, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let settings = Settings {
            config: self.config.clone(),
            config_path: self.config_path.clone(),
            env: Box::new(BTreeMap::<String, String>::new()),
            addr,
            name: ServerName::IpAddress(addr.ip().into()),
            stats: stats.clone(),
        };
        let (manager, handle) = Manager::start(settings, daemon, clock).unwrap();
        (manager, handle, stats)
    }

    /// A daemon stand-in issuing from this fixture's CA at `clock`'s time.
    pub(crate) fn daemon(&self, clock: &TestClock) -> FakeDaemon {
        FakeDaemon(Arc::new(FakeInner {
            ca: self.ca.clone(),
            id: self.id.clone(),
            paths: AgentPaths::new(self.paths.dir()),
            clock: clock.clone(),
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            lose: AtomicU32::new(0),
            delay: Mutex::new(Duration::ZERO),
            confirmed: Mutex::new(Vec::new()),
            fail_confirm: AtomicU32::new(0),
        }))
    }
}

/// The daemon's renewal route, in process: issues for the CSR's key from the fixture's CA.
#[derive(Clone, Debug)]
pub(crate) struct FakeDaemon(Arc<FakeInner>);

#[derive(Debug)]
pub(crate) struct FakeInner {
    ca: Arc<OperatorCa>,
    id: SpiffeId,
    paths: AgentPaths,
    clock: TestClock,
    calls: Mutex<Vec<tokio::time::Instant>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    lose: AtomicU32,
    delay: Mutex<Duration>,
    /// The serials confirmed, in order.
    confirmed: Mutex<Vec<netclaw_pki::Serial>>,
    fail_confirm: AtomicU32,
}

impl FakeDaemon {
    /// When each request arrived.
    pub(crate) fn calls(&self) -> Vec<tokio::time::Instant> {
        self.0.calls.lock().unwrap().clone()
    }

    /// The most requests that were ever in flight at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.0.max_in_flight.load(Ordering::SeqCst)
    }

    /// The next `n` requests lose their answer (a transport failure after the request left).
    pub(crate) fn lose_answers(&self, n: u32) {
        self.0.lose.store(n, Ordering::SeqCst);
    }

    /// Each request takes this long.
    pub(crate) fn set_delay(&self, d: Duration) {
        *self.0.delay.lock().unwrap() = d;
    }

    /// The serials the agent confirmed with a handshake after a renewal, in order.
    pub(crate) fn confirmed(&self) -> Vec<netclaw_pki::Serial> {
        self.0.confirmed.lock().unwrap().clone()
    }

    /// The next `n` confirmations fail (the daemon cannot be reached).
    pub(crate) fn fail_confirmations(&self, n: u32) {
        self.0.fail_confirm.store(n, Ordering::SeqCst);
    }
}

impl Renewer for FakeDaemon {
    async fn request(
        &self,
        upstream: &Upstream,
        csr_pem: String,
    ) -> Result<RenewResponse, RenewError> {
        let me = &self.0;
        me.calls.lock().unwrap().push(tokio::time::Instant::now());
        let now_in_flight = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        me.max_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
        // No other renewal has staged files while this one is under way.
        assert!(!store::next_path(&me.paths.client_cert()).exists());
        assert!(!store::next_path(&me.paths.client_key()).exists());
        let delay = *me.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        me.in_flight.fetch_sub(1, Ordering::SeqCst);
        if me
            .lose
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(RenewError::Transport(
                "connection closed before message completed".into(),
            ));
        }
        let der = netclaw_pki::issue::csr_from_pem(csr_pem.as_bytes())?;
        let cert = me.ca.issue_agent_from_csr(
            &der,
            &me.id,
            me.clock.now(),
            CertificateLifetime::default(),
        )?;
        Ok(RenewResponse {
            certificate: cert.pem,
            bundle: me.ca.certificate().pem.clone(),
            serial: cert.serial.to_string(),
            previous_serial: upstream.creds.identity.serial.to_string(),
            not_after: netclaw_core::wire::format_unix(netclaw_pki::identity::unix_seconds(
                cert.not_after,
            )),
        })
    }

    async fn confirm(&self, upstream: &Upstream) -> Result<(), RenewError> {
        let me = &self.0;
        if me
            .fail_confirm
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(RenewError::Transport("connection refused".into()));
        }
        me.confirmed
            .lock()
            .unwrap()
            .push(upstream.creds.identity.serial.clone());
        Ok(())
    }
}

/// A TLS 1.3 server configuration (no client authentication) presenting a listener certificate
/// for 127.0.0.1 issued by `ca` at `issued`: the daemon's side of a handshake in tests.
pub(crate) fn loopback_acceptor(ca: &OperatorCa, issued: SystemTime) -> tokio_rustls::TlsAcceptor {
    let names = ListenerNames {
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        dns: vec![],
    };
    let server = ca.issue_server(&names, issued).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server.cert.der.clone()], server.key.to_rustls())
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
