//! One benchmark run: install, start everything, sweep, the side measurements, tear down.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;

use super::client::{self, Amount, Target};
use super::host::{self, Machine, RssSampler};
use super::sidecar::{self, Sidecar};
use super::{
    profile, Handshakes, MemoryRow, Options, Path, Results, Row, Timing, CONCURRENCY, DISTRIBUTION,
    OPERATOR_DNS, ROUTE,
};
use crate::{build_binaries, wait_for, Binaries, Install, Proc};

/// Everything that is running.
struct Stack {
    // Field order is drop order: the sidecars and processes before the install tree.
    stunnel: Option<Sidecar>,
    nginx: Option<Sidecar>,
    haproxy: Option<Sidecar>,
    agent: Proc,
    daemon: Proc,
    public: SocketAddr,
    operator: SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
    socket: PathBuf,
    install: Install,
    bins: Binaries,
}

impl Stack {
    fn target(&self, path: Path) -> Option<Target> {
        Some(match path {
            Path::Direct => Target::Tcp(self.public),
            Path::DirectTls => Target::Tls {
                addr: self.operator,
                name: ServerName::IpAddress(self.operator.ip().into()),
                config: self.tls.clone(),
            },
            Path::Agent => Target::Unix(self.socket.clone()),
            Path::Stunnel => Target::Unix(self.stunnel.as_ref()?.socket.clone()),
            Path::Nginx => Target::Unix(self.nginx.as_ref()?.socket.clone()),
            Path::Haproxy => Target::Unix(self.haproxy.as_ref()?.socket.clone()),
        })
    }

    /// The processes of the sidecar on `path` (empty for the direct paths).
    fn proxy_pids(&self, path: Path) -> Vec<u32> {
        match path {
            Path::Direct | Path::DirectTls => Vec::new(),
            Path::Agent => self.agent.pid().into_iter().collect(),
            Path::Stunnel => self.stunnel.as_ref().map(Sidecar::pids).unwrap_or_default(),
            Path::Nginx => self.nginx.as_ref().map(Sidecar::pids).unwrap_or_default(),
            Path::Haproxy => self.haproxy.as_ref().map(Sidecar::pids).unwrap_or_default(),
        }
    }

    fn daemon_pid(&self) -> Vec<u32> {
        self.daemon.pid().into_iter().collect()
    }

    fn restart_agent(&mut self) -> Result<()> {
        self.agent.stop();
        self.agent = start_agent(&self.bins, &self.install)?;
        Ok(())
    }

    /// The daemon's count of accepted operator handshakes, read over a new direct mTLS
    /// connection (which itself adds one, already included in the value returned).
    fn daemon_handshakes(&self) -> Result<u64> {
        let target = self.target(Path::DirectTls).context("no mTLS target")?;
        let (status, body) = client::fetch(&target, "/metrics")?;
        if status != 200 {
            bail!("daemon /metrics answered {status}: {body}");
        }
        body.lines()
            .filter(|l| {
                l.starts_with("netclaw_daemon_handshakes_total{")
                    && l.contains("result=\"accepted\"")
            })
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .context("unparsable handshake counter")
            })
            .sum()
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the daemon binds it right after).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn start_agent(bins: &Binaries, install: &Install) -> Result<Proc> {
    let mut cmd = Command::new(&bins.agent);
    cmd.arg("--config").arg(&install.config);
    let agent = Proc::spawn("netclaw-operator-agent", cmd, &install.log("agent"))?;
    let socket = install.socket()?;
    wait_for("the agent socket", Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(&socket)
            .ok()
            .map(drop)
    })
    .with_context(|| format!("agent log:\n{}", agent.log()))?;
    Ok(agent)
}

fn say(text: &str) {
    eprintln!("bench: {text}");
}

/// Runs the whole benchmark.
pub fn run(options: Options) -> Result<Results> {
    if cfg!(debug_assertions) {
        say("WARNING: this is a debug build; numbers are only meaningful with --release");
    }
    let mut bins = build_binaries()?;
    if let Some(agent) = &options.agent {
        bins.agent = agent.clone();
    }
    let priority = host::raise_priority(-10);
    say(&format!("scheduling priority: {priority}"));
    let started = Instant::now();
    let stunnel_bin = sidecar::find_program(&["stunnel4", "stunnel"]);
    let nginx_bin = sidecar::find_program(&["nginx"]);
    let haproxy_bin = sidecar::find_program(&["haproxy"]);
    let machine = Machine::describe(
        stunnel_bin.as_deref().and_then(FsPath::to_str),
        nginx_bin.as_deref().and_then(FsPath::to_str),
        haproxy_bin.as_deref().and_then(FsPath::to_str),
    );
    let mut machine = machine;
    machine.priority = priority;
    let mut skipped = Vec::new();

    let (public_port, operator_port) = (free_port()?, free_port()?);
    say(&format!(
        "installing in local mode: public 127.0.0.1:{public_port}, operator 127.0.0.1:{operator_port}"
    ));
    let install = Install::new(
        &bins,
        None,
        &[
            "--exposure",
            "local",
            "--bind",
            "127.0.0.1",
            "--port",
            &public_port.to_string(),
            "--operator-port",
            &operator_port.to_string(),
            "--operator-dns",
            OPERATOR_DNS,
        ],
    )?;
    let config = install.config_json()?;
    let agent_dir = PathBuf::from(
        config["Operator"]["AgentDirectory"]
            .as_str()
            .context("Operator.AgentDirectory missing from the config")?,
    );
    let public = SocketAddr::from((Ipv4Addr::LOCALHOST, public_port));
    let operator = SocketAddr::from((Ipv4Addr::LOCALHOST, operator_port));

    let mut cmd = Command::new(&bins.daemon);
    cmd.arg("--config").arg(&install.config);
    let daemon = Proc::spawn("netclaw-daemon", cmd, &install.log("daemon"))?;
    wait_for("the daemon", Duration::from_secs(30), || {
        client::fetch(&Target::Tcp(public), ROUTE)
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .with_context(|| format!("daemon log:\n{}", daemon.log()))?;
    let agent = start_agent(&bins, &install)?;
    let socket = install.socket()?;
    let tls = super::tls::agent_client_config(&agent_dir)?;

    // nginx gets the same idle pool size as the agent.
    let max_idle = crate::agent_status(&socket)?["pool"]["maxIdle"]
        .as_u64()
        .context("pool.maxIdle missing from the agent status")?;
    let upstream = sidecar::Upstream {
        addr: operator,
        dns_name: OPERATOR_DNS.to_owned(),
        agent_dir: agent_dir.clone(),
    };
    let dir = install.root.path().to_owned();
    let stunnel = match &stunnel_bin {
        Some(p) => Some(Sidecar::stunnel(p, &dir, &upstream)?),
        None => {
            skipped.push("(d) stunnel4: not installed (`apt-get install stunnel4`)".to_owned());
            None
        }
    };
    let nginx = match &nginx_bin {
        Some(p) => Some(Sidecar::nginx(p, &dir, &upstream, max_idle)?),
        None => {
            skipped.push("(e) nginx: not installed (`apt-get install nginx-light`)".to_owned());
            None
        }
    };
    let haproxy = match &haproxy_bin {
        Some(p) => Some(Sidecar::haproxy(p, &dir, &upstream, max_idle)?),
        None => {
            skipped.push("(f) HAProxy: not installed (`apt-get install haproxy`)".to_owned());
            None
        }
    };
    let mut stack = Stack {
        stunnel,
        nginx,
        haproxy,
        agent,
        daemon,
        public,
        operator,
        tls,
        socket,
        install,
        bins,
    };
    let paths: Vec<Path> = Path::ALL
        .into_iter()
        .filter(|p| stack.target(*p).is_some())
        .collect();

    // Each path answers, and the daemon sees the principal it should.
    let mut principals = Vec::new();
    for &path in &paths {
        let target = stack.target(path).context("target")?;
        let (status, body) = client::fetch(&target, "/api/whoami")
            .with_context(|| format!("({}) {}", path.key(), path.label()))?;
        if status != 200 {
            bail!(
                "({}) {} answered {status}: {body}",
                path.key(),
                path.label()
            );
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let principal = v["principal"].as_str().unwrap_or("?").to_owned();
        let transport = v["transport"].as_str().unwrap_or("?");
        principals.push((path, format!("{principal} ({transport})")));
    }

    // Memory when idle (after the requests above).
    let groups = memory_groups(&stack);
    let idle: Vec<(String, u64)> = groups
        .iter()
        .map(|(who, pids)| (who.clone(), host::memory_sum(pids).rss_kib))
        .collect();

    // The sweep.
    let mut rows = Vec::new();
    let sampler = RssSampler::start(groups.clone());
    let all_pids = || -> Vec<u32> { groups.iter().flat_map(|(_, p)| p.clone()).collect() };
    let sweep_started = Instant::now();
    let ours_before = host::cpu_seconds(&all_pids()) + host::own_cpu_seconds();
    let (busy_before, steal_before) = host::machine_cpu_seconds();
    for &concurrency in &CONCURRENCY {
        let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); paths.len()];
        for _ in 0..options.rounds {
            for (i, &path) in paths.iter().enumerate() {
                rounds[i].push(round(&stack, path, concurrency, &options)?);
            }
        }
        let direct = paths
            .iter()
            .position(|&p| p == Path::Direct)
            .map(|i| rounds[i].clone());
        for (&path, rounds) in paths.iter().zip(&rounds) {
            let row = aggregate(
                path,
                concurrency,
                rounds,
                direct.as_deref().filter(|_| path != Path::Direct),
                stack.proxy_pids(path).is_empty(),
            );
            say(&format!(
                "({}) {:<32} c={:<3} {:>9.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  (rounds: {})",
                path.key(),
                path.label(),
                concurrency,
                row.rate,
                row.p50_us,
                row.p99_us,
                rounds
                    .iter()
                    .map(|r| format!("{:.0}", r.rate))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            rows.push(row);
        }
    }
    let (busy_after, steal_after) = host::machine_cpu_seconds();
    let other = (busy_after - busy_before)
        - (host::cpu_seconds(&all_pids()) + host::own_cpu_seconds() - ours_before);
    let other_load = (
        other.max(0.0),
        steal_after - steal_before,
        sweep_started.elapsed(),
    );
    let peaks = sampler.finish();
    let memory: Vec<MemoryRow> = groups
        .iter()
        .zip(&idle)
        .map(|((who, pids), (_, idle_rss))| MemoryRow {
            who: who.clone(),
            idle_rss_kib: *idle_rss,
            load_rss_kib: peaks.get(who).copied().unwrap_or(0),
            hwm_kib: host::memory_sum(pids).hwm_kib,
        })
        .collect();

    let mut results = Results {
        machine,
        options: options.clone(),
        rows,
        principals,
        cold: Vec::new(),
        memory,
        handshakes: Vec::new(),
        profiles: Vec::new(),
        syscalls: Vec::new(),
        verifier: None,
        max_idle,
        other_load,
        skipped,
        wall: Duration::ZERO,
    };

    // Profile the agent when a target is missed (or when asked to).
    let want_profile = options
        .profile
        .unwrap_or_else(|| !super::report::targets(&results).iter().all(|t| t.met));
    if want_profile {
        if sidecar::find_program(&["perf"]).is_none() {
            results
                .skipped
                .push("profile: perf is not installed".to_owned());
        } else {
            for concurrency in [1, 64] {
                say(&format!("profiling the agent at concurrency {concurrency}"));
                match profile_agent(&stack, concurrency, &options) {
                    Ok(p) => results.profiles.push(p),
                    Err(e) => results.skipped.push(format!("profile: {e:#}")),
                }
            }
            for &path in paths.iter().filter(|p| p.via_socket()) {
                say(&format!(
                    "counting system calls of {} at concurrency 1",
                    path.label()
                ));
                match count_syscalls(&stack, path, &options) {
                    Ok(s) => results.syscalls.push(s),
                    Err(e) => results.skipped.push(format!("perf trace: {e:#}")),
                }
            }
        }
    }

    say("timing the daemon's client-certificate check");
    let pki_dir = PathBuf::from(
        config["Operator"]["PkiDirectory"]
            .as_str()
            .context("Operator.PkiDirectory missing from the config")?,
    );
    match (
        stack.target(Path::DirectTls),
        stack.target(Path::Direct),
        stack.daemon.pid(),
    ) {
        (Some(tls), Some(tcp), Some(daemon)) => {
            results.verifier = Some(super::verifier::measure(
                &pki_dir,
                &agent_dir,
                &tls,
                &tcp,
                daemon,
                options.rounds == 1,
            )?);
        }
        _ => results
            .skipped
            .push("verifier cost: no daemon or targets".to_owned()),
    }

    results.cold = cold_cli(&stack, &options, &mut results.skipped)?;
    results.handshakes = handshakes(&mut stack, &paths, &options)?;
    results.wall = started.elapsed();
    Ok(results)
}

/// (name, pids) of each server process group whose memory is reported.
fn memory_groups(stack: &Stack) -> Vec<(String, Vec<u32>)> {
    let mut groups = vec![
        ("netclaw-daemon".to_owned(), stack.daemon_pid()),
        (
            "netclaw-operator-agent".to_owned(),
            stack.proxy_pids(Path::Agent),
        ),
    ];
    if stack.stunnel.is_some() {
        groups.push(("stunnel4".to_owned(), stack.proxy_pids(Path::Stunnel)));
    }
    if stack.nginx.is_some() {
        groups.push((
            "nginx (master + workers)".to_owned(),
            stack.proxy_pids(Path::Nginx),
        ));
    }
    if stack.haproxy.is_some() {
        groups.push(("HAProxy".to_owned(), stack.proxy_pids(Path::Haproxy)));
    }
    groups
}

/// One round of one cell.
#[derive(Clone, Debug)]
struct Round {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    distribution_us: [f64; DISTRIBUTION.len()],
    recorded: u64,
    non_200: u64,
    daemon_cpu: f64,
    proxy_cpu: f64,
    client_cpu: f64,
    daemon_switches: f64,
    proxy_switches: f64,
}

/// Counters read at the start and at the end of a recorded window.
struct Reading {
    daemon_cpu: f64,
    proxy_cpu: f64,
    client_cpu: f64,
    daemon_switches: std::collections::BTreeMap<u32, u64>,
    proxy_switches: std::collections::BTreeMap<u32, u64>,
}

/// Runs one round of `path` at `concurrency`.
fn round(stack: &Stack, path: Path, concurrency: usize, options: &Options) -> Result<Round> {
    let target = stack.target(path).context("target")?;
    let daemon = stack.daemon_pid();
    let proxy = stack.proxy_pids(path);
    let amount = Amount::Timed {
        warmup: options.warmup,
        measure: options.measure,
    };
    // Counters are read when the recorded window starts and ends, with the connections open
    // (stunnel's per-connection threads exist only then).
    let mut readings: Vec<Reading> = Vec::with_capacity(2);
    let sample = client::run_observed(&target, ROUTE, concurrency, amount, &mut || {
        readings.push(Reading {
            daemon_cpu: host::cpu_seconds(&daemon),
            proxy_cpu: host::cpu_seconds(&proxy),
            client_cpu: host::thread_cpu_seconds(),
            daemon_switches: host::context_switches(&daemon),
            proxy_switches: host::context_switches(&proxy),
        });
    })
    .with_context(|| {
        format!(
            "({}) {} at concurrency {concurrency}",
            path.key(),
            path.label()
        )
    })?;
    let [start, end] = &readings[..] else {
        bail!("expected two readings, got {}", readings.len());
    };
    Ok(Round {
        rate: sample.rate(),
        p50_us: sample.quantile_us(0.50),
        p99_us: sample.quantile_us(0.99),
        distribution_us: DISTRIBUTION.map(|q| sample.quantile_us(q)),
        recorded: sample.latencies.len() as u64,
        non_200: sample.non_200,
        daemon_cpu: (end.daemon_cpu - start.daemon_cpu).max(0.0),
        proxy_cpu: (end.proxy_cpu - start.proxy_cpu).max(0.0),
        client_cpu: (end.client_cpu - start.client_cpu).max(0.0),
        daemon_switches: host::switches_between(&start.daemon_switches, &end.daemon_switches)
            as f64,
        proxy_switches: host::switches_between(&start.proxy_switches, &end.proxy_switches) as f64,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of each figure over the rounds; CPU per request over all of them. Comparisons
/// with (a) are the median of the per-round differences (round i of this path against round
/// i of (a), which ran right before it), so that a burst of other work on the machine that
/// slows one round down does not count as overhead.
fn aggregate(
    path: Path,
    concurrency: usize,
    rounds: &[Round],
    against: Option<&[Round]>,
    direct: bool,
) -> Row {
    let median_of = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let paired = |f: &dyn Fn(&Round, &Round) -> f64| {
        against.map(|a| median(rounds.iter().zip(a).map(|(r, a)| f(r, a)).collect()))
    };
    let answered = (rounds.iter().map(|r| r.recorded).sum::<u64>() as f64).max(1.0);
    let per = |f: &dyn Fn(&Round) -> f64| rounds.iter().map(f).sum::<f64>() * 1e6 / answered;
    Row {
        path,
        concurrency,
        rate: median_of(&|r| r.rate),
        p50_us: median_of(&|r| r.p50_us),
        p99_us: median_of(&|r| r.p99_us),
        distribution_us: std::array::from_fn(|i| median_of(&|r| r.distribution_us[i])),
        ratio_to_direct: paired(&|r, a| r.rate / a.rate),
        p50_over_direct_us: paired(&|r, a| r.p50_us - a.p50_us),
        p99_over_direct_us: paired(&|r, a| r.p99_us - a.p99_us),
        requests: rounds.iter().map(|r| r.recorded).sum(),
        non_200: rounds.iter().map(|r| r.non_200).sum(),
        daemon_cpu_us: per(&|r| r.daemon_cpu),
        proxy_cpu_us: (!direct).then(|| per(&|r| r.proxy_cpu)),
        client_cpu_us: per(&|r| r.client_cpu),
        daemon_switches: per(&|r| r.daemon_switches) / 1e6,
        proxy_switches: (!direct).then(|| per(&|r| r.proxy_switches) / 1e6),
    }
}

fn profile_agent(stack: &Stack, concurrency: usize, options: &Options) -> Result<profile::Profile> {
    let pid = stack.agent.pid().context("agent pid")?;
    let target = stack.target(Path::Agent).context("target")?;
    let data = stack
        .install
        .root
        .path()
        .join(format!("perf-agent-c{concurrency}.data"));
    let length = options.profile_for + Duration::from_millis(800);
    profile::record(
        &format!("agent, concurrency {concurrency}"),
        pid,
        length,
        &data,
        || host::cpu_seconds(&[pid]),
        || {
            client::run(
                &target,
                ROUTE,
                concurrency,
                Amount::Timed {
                    warmup: Duration::ZERO,
                    measure: options.profile_for,
                },
            )
        },
    )
}

/// System calls per request of the sidecar on `path` at concurrency 1: the connection is
/// opened, perf attaches, exactly `syscall_requests` requests are sent, perf stops.
fn count_syscalls(stack: &Stack, path: Path, options: &Options) -> Result<profile::Syscalls> {
    let target = stack.target(path).context("target")?;
    let mut perf = None;
    let mut failed = None;
    let requests = options.handshake_requests / 2;
    client::run_observed(&target, ROUTE, 1, Amount::Count(requests), &mut || {
        if perf.is_none() && failed.is_none() {
            match profile::start_trace(&stack.proxy_pids(path)) {
                Ok(p) => perf = Some(p),
                Err(e) => failed = Some(e),
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let perf = perf.context("perf trace did not start")?;
    profile::finish_trace(path.label(), perf, requests)
}

/// Cold CLI wall times: `netclaw status` against `curl --unix-socket` doing the same requests.
fn cold_cli(stack: &Stack, options: &Options, skipped: &mut Vec<String>) -> Result<Vec<Timing>> {
    let mut out = Vec::new();
    let mut status = Command::new(&stack.bins.netclaw);
    status
        .arg("--config")
        .arg(&stack.install.config)
        .arg("status");
    out.push(time_command(
        "`netclaw status` (agent status, then `/api/health/status` through the agent)",
        status,
        options.cold_runs,
    )?);
    if sidecar::find_program(&["curl"]).is_none() {
        skipped.push("cold CLI: curl is not installed".to_owned());
        return Ok(out);
    }
    let sock = stack.socket.display().to_string();
    let mut one = Command::new("curl");
    one.args(["-sS", "--fail", "-o", "/dev/null", "--unix-socket", &sock])
        .arg("http://agent/agent/v1/status");
    out.push(time_command(
        "`curl --unix-socket SOCK http://agent/agent/v1/status`",
        one,
        options.cold_runs,
    )?);
    let mut both = Command::new("curl");
    both.args(["-sS", "--fail", "-o", "/dev/null", "-o", "/dev/null"])
        .args(["--unix-socket", &sock])
        .args([
            "http://agent/agent/v1/status",
            "http://agent/api/health/status",
        ]);
    out.push(time_command(
        "`curl --unix-socket` with both of `netclaw status`'s requests (one connection)",
        both,
        options.cold_runs,
    )?);
    Ok(out)
}

fn time_command(what: &str, mut cmd: Command, runs: usize) -> Result<Timing> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let out = cmd.output().with_context(|| format!("running {what}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    say(&format!("{what}: median {:.2} ms", at(0.5)));
    Ok(Timing {
        what: what.to_owned(),
        median_ms: at(0.5),
        min_ms: times[0],
        p90_ms: at(0.9),
        runs,
    })
}

/// Handshakes the daemon saw while each freshly started sidecar forwarded
/// `options.handshake_requests` requests, at each concurrency.
fn handshakes(stack: &mut Stack, paths: &[Path], options: &Options) -> Result<Vec<Handshakes>> {
    let mut out = Vec::new();
    for &path in paths.iter().filter(|p| p.via_socket()) {
        for &concurrency in &CONCURRENCY {
            match path {
                Path::Agent => stack.restart_agent()?,
                Path::Stunnel => {
                    if let Some(s) = stack.stunnel.as_mut() {
                        s.restart()?;
                    }
                    // stunnel dials the daemon for the readiness probe's connection too; let
                    // that handshake land before the first reading.
                    std::thread::sleep(Duration::from_millis(300));
                }
                Path::Nginx => {
                    if let Some(s) = stack.nginx.as_mut() {
                        s.restart()?;
                    }
                }
                Path::Haproxy => {
                    if let Some(s) = stack.haproxy.as_mut() {
                        s.restart()?;
                    }
                }
                Path::Direct | Path::DirectTls => continue,
            }
            // The agent's status probes the daemon on its own pooled connection: read it once
            // before so that probe's handshake is not counted against the requests.
            let agent_before = if path == Path::Agent {
                Some(pool_handshakes(&stack.socket)?)
            } else {
                None
            };
            let daemon_before = stack.daemon_handshakes()?;
            let target = stack.target(path).context("target")?;
            let sample = client::run(
                &target,
                ROUTE,
                concurrency,
                Amount::Count(options.handshake_requests),
            )?;
            if sample.non_200 > 0 {
                bail!(
                    "({}) {} answered {} requests with a status other than 200",
                    path.key(),
                    path.label(),
                    sample.non_200
                );
            }
            let agent = match agent_before {
                Some(before) => Some(pool_handshakes(&stack.socket)?.saturating_sub(before)),
                None => None,
            };
            // Minus one: the read itself is a new mTLS connection.
            let daemon = stack.daemon_handshakes()?.saturating_sub(daemon_before + 1);
            say(&format!(
                "({}) {} c={concurrency}: {daemon} handshakes for {} requests",
                path.key(),
                path.label(),
                options.handshake_requests
            ));
            out.push(Handshakes {
                path,
                concurrency,
                requests: options.handshake_requests,
                daemon,
                agent,
            });
        }
    }
    Ok(out)
}

fn pool_handshakes(socket: &FsPath) -> Result<u64> {
    crate::agent_status(socket)?["pool"]["handshakes"]
        .as_u64()
        .context("pool.handshakes missing from the agent status")
}
