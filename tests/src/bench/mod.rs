//! The benchmark behind `cargo run --release -p netclaw-tests --bin bench`: what the operator
//! agent's extra hop costs, against direct access to the daemon and against stunnel4, nginx and HAProxy
//! doing the agent's job. It writes `docs/benchmarks.md`.
//!
//! Everything runs on this host, on 127.0.0.1 and Unix sockets under a temporary directory:
//! a `local`-mode install on free ports, the daemon, the agent and the sidecars, and a
//! one-thread load generator ([`client`]). Nothing here is a test: the targets are reported,
//! not asserted.

use std::time::Duration;

pub mod client;
pub mod host;
pub mod profile;
pub mod report;
pub mod sidecar;
pub mod suite;
pub mod tls;
pub mod verifier;

/// The route every path is measured with. It is the same handler and the same 18-byte body
/// whoever calls it, so the paths differ only in transport and proxying; the daemon still
/// identifies the principal of every request (`LocalProcess` directly, `LocalOperator`
/// otherwise).
pub const ROUTE: &str = "/api/health/ready";

/// The concurrency sweep: keep-alive connections, one request in flight on each.
pub const CONCURRENCY: [usize; 3] = [1, 16, 64];

/// An extra DNS name put into the operator listener certificate, for nginx's name check.
pub const OPERATOR_DNS: &str = "operator.netclaw.bench";

/// A way to reach the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    /// (a) plain HTTP to the public listener.
    Direct,
    /// (b) mutual TLS to the operator listener.
    DirectTls,
    /// (c) the operator agent's Unix socket.
    Agent,
    /// (d) stunnel4, Unix socket → mTLS.
    Stunnel,
    /// (e) nginx, Unix socket → mTLS with an upstream keep-alive pool.
    Nginx,
    /// (f) HAProxy, Unix socket → mTLS with connection reuse.
    Haproxy,
}

impl Path {
    /// All paths in report order.
    pub const ALL: [Path; 6] = [
        Path::Direct,
        Path::DirectTls,
        Path::Agent,
        Path::Stunnel,
        Path::Nginx,
        Path::Haproxy,
    ];

    /// `a` … `e`.
    pub fn key(self) -> char {
        match self {
            Path::Direct => 'a',
            Path::DirectTls => 'b',
            Path::Agent => 'c',
            Path::Stunnel => 'd',
            Path::Nginx => 'e',
            Path::Haproxy => 'f',
        }
    }

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct HTTP (public listener)",
            Path::DirectTls => "direct mTLS (operator listener)",
            Path::Agent => "netclaw-operator-agent",
            Path::Stunnel => "stunnel4",
            Path::Nginx => "nginx",
            Path::Haproxy => "HAProxy",
        }
    }

    /// Whether the client talks to a Unix socket (a sidecar in front of the operator listener).
    pub fn via_socket(self) -> bool {
        matches!(
            self,
            Path::Agent | Path::Stunnel | Path::Nginx | Path::Haproxy
        )
    }
}

/// How long and how much to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rounds per cell (each figure is the median over them).
    pub rounds: usize,
    /// Unrecorded run-in of each round.
    pub warmup: Duration,
    /// Recorded window of each round.
    pub measure: Duration,
    /// Cold CLI invocations timed per command.
    pub cold_runs: usize,
    /// Requests per handshake count.
    pub handshake_requests: u64,
    /// Profile the agent with perf: `None` when a target is missed, or always / never.
    pub profile: Option<bool>,
    /// Length of each perf recording.
    pub profile_for: Duration,
    /// Benchmark this agent binary instead of the workspace's (to compare a change).
    pub agent: Option<std::path::PathBuf>,
}

impl Options {
    /// The full run (about two minutes, plus the build).
    pub fn full() -> Self {
        Self {
            rounds: 5,
            warmup: Duration::from_millis(200),
            measure: Duration::from_millis(800),
            cold_runs: 30,
            handshake_requests: 10_000,
            profile: None,
            profile_for: Duration::from_secs(4),
            agent: None,
        }
    }

    /// A smoke run (about 30 s): every step, short windows, no profile.
    pub fn quick() -> Self {
        Self {
            rounds: 1,
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(400),
            cold_runs: 5,
            handshake_requests: 1_000,
            profile: Some(false),
            profile_for: Duration::from_secs(1),
            agent: None,
        }
    }
}

/// The quantiles of latency the report lists per path at concurrency 1: where the time of
/// one client's request goes is seen in their spread (findings §8).
pub const DISTRIBUTION: [f64; 7] = [0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95];

/// One cell of the sweep.
#[derive(Clone, Debug)]
pub struct Row {
    /// The path.
    pub path: Path,
    /// Open connections, one request in flight on each.
    pub concurrency: usize,
    /// Requests per second (median over the rounds).
    pub rate: f64,
    /// Median latency, µs (median over the rounds).
    pub p50_us: f64,
    /// 99th percentile latency, µs (median over the rounds).
    pub p99_us: f64,
    /// Latency at each of [`DISTRIBUTION`], µs (median over the rounds).
    pub distribution_us: [f64; DISTRIBUTION.len()],
    /// Rate ÷ the rate of (a), median over the rounds (none for (a)).
    pub ratio_to_direct: Option<f64>,
    /// p50 − the p50 of (a), µs, median over the rounds (none for (a)).
    pub p50_over_direct_us: Option<f64>,
    /// p99 − the p99 of (a), µs, median over the rounds (none for (a)).
    pub p99_over_direct_us: Option<f64>,
    /// Requests recorded in all rounds.
    pub requests: u64,
    /// Answers other than 200 (must be 0).
    pub non_200: u64,
    /// Daemon CPU time per request, µs (user + system, all threads, from `/proc`).
    pub daemon_cpu_us: f64,
    /// The sidecar's CPU time per request, µs (none for the direct paths).
    pub proxy_cpu_us: Option<f64>,
    /// The load generator's CPU time per request, µs.
    pub client_cpu_us: f64,
    /// Daemon context switches per request (all threads, from `/proc/PID/task/*/status`).
    pub daemon_switches: f64,
    /// The sidecar's context switches per request.
    pub proxy_switches: Option<f64>,
}

/// Wall time of a command run many times, ms.
#[derive(Clone, Debug)]
pub struct Timing {
    /// What ran.
    pub what: String,
    /// Median.
    pub median_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// Runs.
    pub runs: usize,
}

/// Memory of one server process (group), KiB.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    /// `netclaw-daemon`, `netclaw-operator-agent`, `stunnel4`, `nginx (master + workers)`.
    pub who: String,
    /// `VmRSS` idle, after the first requests.
    pub idle_rss_kib: u64,
    /// Largest `VmRSS` sampled (every 20 ms) while it served the sweep.
    pub load_rss_kib: u64,
    /// `VmHWM` at the end of the sweep (peak over its life).
    pub hwm_kib: u64,
}

/// TLS handshakes the daemon saw while a fresh sidecar forwarded a fixed number of requests.
#[derive(Clone, Debug)]
pub struct Handshakes {
    /// Through what.
    pub path: Path,
    /// Open client connections.
    pub concurrency: usize,
    /// Requests sent.
    pub requests: u64,
    /// The daemon's `netclaw_daemon_handshakes_total{result="accepted"}` increase.
    pub daemon: u64,
    /// The agent's own `pool.handshakes` increase (agent only).
    pub agent: Option<u64>,
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Results {
    /// The machine.
    pub machine: host::Machine,
    /// The options it ran with.
    pub options: Options,
    /// The sweep.
    pub rows: Vec<Row>,
    /// `GET /api/whoami` principal per path.
    pub principals: Vec<(Path, String)>,
    /// Cold CLI timings.
    pub cold: Vec<Timing>,
    /// Memory.
    pub memory: Vec<MemoryRow>,
    /// Handshake counts.
    pub handshakes: Vec<Handshakes>,
    /// The agent profile, when one was taken.
    pub profiles: Vec<profile::Profile>,
    /// System calls per request of each sidecar at concurrency 1, when profiled.
    pub syscalls: Vec<profile::Syscalls>,
    /// The daemon's certificate check per handshake, when measured.
    pub verifier: Option<verifier::VerifierCost>,
    /// The agent's `pool.maxIdle` (nginx's `keepalive` is set to it).
    pub max_idle: u64,
    /// CPU seconds other processes on the machine used during the sweep, CPU seconds the
    /// hypervisor stole, and the sweep's wall time.
    pub other_load: (f64, f64, Duration),
    /// Paths or steps skipped, and why.
    pub skipped: Vec<String>,
    /// Wall time of the run (without the build).
    pub wall: Duration,
}

impl Results {
    /// The row for `path` at `concurrency`.
    pub fn row(&self, path: Path, concurrency: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.path == path && r.concurrency == concurrency)
    }
}
