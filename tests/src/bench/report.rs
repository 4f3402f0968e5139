//! `docs/benchmarks.md` from [`Results`]: machine, method, the sweep with ratios to (a), the
//! targets, the cold CLI, memory, handshakes and (when taken) the agent's profile.

use std::fmt::Write;

use super::{Path, Results, CONCURRENCY, DISTRIBUTION, OPERATOR_DNS, ROUTE};

/// A target from the issue and whether this run met it.
#[derive(Clone, Debug)]
pub struct Target {
    /// What is asked.
    pub name: String,
    /// What was measured.
    pub value: String,
    /// Whether it was met.
    pub met: bool,
}

/// The targets of issue 16, evaluated on `r` (those whose rows are missing are left out).
pub fn targets(r: &Results) -> Vec<Target> {
    let mut out = Vec::new();
    let others = [Path::Stunnel, Path::Nginx, Path::Haproxy];
    // Against the best of stunnel4, nginx and HAProxy in the same run, at each concurrency.
    let mut rate = (Vec::new(), true);
    let mut p50 = (Vec::new(), true);
    for &n in &CONCURRENCY {
        let Some(agent) = r.row(Path::Agent, n) else {
            continue;
        };
        let rows: Vec<_> = others.iter().filter_map(|&o| r.row(o, n)).collect();
        let fastest = rows.iter().max_by(|a, b| a.rate.total_cmp(&b.rate));
        let quickest = rows.iter().min_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
        if let (Some(f), Some(q)) = (fastest, quickest) {
            rate.1 &= agent.rate >= f.rate;
            rate.0.push(format!(
                "c={n}: {:.0} vs {:.0} ({}), {:.2}×",
                agent.rate,
                f.rate,
                f.path.label(),
                agent.rate / f.rate
            ));
            p50.1 &= agent.p50_us <= q.p50_us;
            p50.0.push(format!(
                "c={n}: {:.0} vs {:.0} µs ({})",
                agent.p50_us,
                q.p50_us,
                q.path.label()
            ));
        }
    }
    if !rate.0.is_empty() {
        out.push(Target {
            name: "agent req/s ≥ the best of stunnel4, nginx and HAProxy".into(),
            value: rate.0.join("; "),
            met: rate.1,
        });
        out.push(Target {
            name: "agent p50 ≤ the best of stunnel4, nginx and HAProxy".into(),
            value: p50.0.join("; "),
            met: p50.1,
        });
    }
    if let Some(added) = r.row(Path::Agent, 1).and_then(|c| c.p50_over_direct_us) {
        out.push(Target {
            name: "agent adds ≤ 40 µs p50 over (a) at concurrency 1".into(),
            value: format!("{added:+.1} µs"),
            met: added <= 40.0,
        });
    }
    if let Some(m) = r.memory.iter().find(|m| m.who == Path::Agent.label()) {
        let peak = m.hwm_kib.max(m.load_rss_kib) as f64 / 1024.0;
        out.push(Target {
            name: "agent peak RSS under the 64-client load ≤ 10 MiB".into(),
            value: format!("{peak:.1} MiB"),
            met: peak <= 10.0,
        });
        let idle = m.idle_rss_kib as f64 / 1024.0;
        out.push(Target {
            name: "agent idle RSS ≤ 6 MiB".into(),
            value: format!("{idle:.1} MiB"),
            met: idle <= 6.0,
        });
    }
    out
}

/// Observations computed from the results (so that they stay true when the file is
/// regenerated).
fn summary(r: &Results) -> String {
    let mut s = String::from("### What the numbers say\n\n");
    {
        let added: Vec<String> = [
            Path::DirectTls,
            Path::Agent,
            Path::Stunnel,
            Path::Nginx,
            Path::Haproxy,
        ]
        .iter()
        .filter_map(|&p| {
            let row = r.row(p, 1)?;
            Some(format!(
                "{} {:+.0} µs p50 / {:+.0} µs p99",
                p.label(),
                row.p50_over_direct_us?,
                row.p99_over_direct_us?
            ))
        })
        .collect();
        if !added.is_empty() {
            let _ = writeln!(
                s,
                "* Added latency over (a) at concurrency 1: {}.",
                added.join("; ")
            );
        }
    }
    let top = *CONCURRENCY.last().unwrap_or(&1);
    let cpu: Vec<String> = Path::ALL
        .iter()
        .filter_map(|&p| {
            let row = r.row(p, top)?;
            let total = row.client_cpu_us + row.daemon_cpu_us + row.proxy_cpu_us.unwrap_or(0.0);
            Some(format!(
                "({}) {total:.0} µs → at most ≈ {:.0} req/s",
                p.key(),
                r.machine.cpus as f64 * 1e6 / total
            ))
        })
        .collect();
    if !cpu.is_empty() {
        let _ = writeln!(
            s,
            "* CPU per request of client + daemon + sidecar at concurrency {top}, and the rate \
             {} CPUs allow at that cost: {}. The ratio to (a) is bounded by the ratio of these \
             costs; a TLS sidecar in front of the daemon also makes the daemon do TLS.",
            r.machine.cpus,
            cpu.join("; ")
        );
    }
    if let Some(h) = r
        .handshakes
        .iter()
        .find(|h| h.path == Path::Agent && h.concurrency == top)
    {
        let verdict = if h.daemon > 2 * r.max_idle.max(h.concurrency as u64) {
            format!(
                "far more than the {} client connections: with more concurrent requests than \
                 `pool.maxIdle` ({}), connections beyond it are closed as soon as they are idle \
                 and dialled again for the next request, so many requests pay a full TLS \
                 handshake (and the daemon's CPU per request rises with it)",
                h.concurrency, r.max_idle
            )
        } else {
            format!(
                "about one per connection the pool needed ({} client connections, \
                 `pool.maxIdle` {})",
                h.concurrency, r.max_idle
            )
        };
        let _ = writeln!(
            s,
            "* The daemon saw {} TLS handshakes for {} requests through the agent at \
             concurrency {top}: {verdict}.",
            h.daemon, h.requests
        );
    }
    s.push('\n');
    s
}

/// The Markdown document. `analysis` is appended as is (hand-written findings).
pub fn render(r: &Results, analysis: &str) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let o = &r.options;
    let _ = writeln!(
        s,
        "# Benchmarks\n\n\
         What the operator agent's extra hop costs: the same request to the daemon directly, \
         through `netclaw-operator-agent`, and through stunnel4, nginx and HAProxy doing the agent's job \
         with the same certificates. This file is generated by\n\n\
         ```sh\ncargo run --release -p netclaw-tests --bin bench\n```\n\n\
         which rewrites it (the \"Findings\" section at the end is kept from \
         `tests/src/bench/findings.md`). The run took {:.0} s after the build. \
         `--quick` runs every step with short windows (about 30 s) and prints the report \
         instead of writing this file. The targets are goals, not tests.\n",
        r.wall.as_secs_f64()
    );

    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| CPU | {} |", m.cpu);
    let _ = writeln!(s, "| logical CPUs | {} |", m.cpus);
    let _ = writeln!(s, "| memory | {} MiB |", m.memory_mib);
    let _ = writeln!(s, "| kernel | {} |", m.kernel);
    let _ = writeln!(s, "| rustc | {} |", m.rustc);
    let _ = writeln!(s, "| commit | {} |", m.commit);
    let _ = writeln!(
        s,
        "| stunnel | {} |",
        m.stunnel.as_deref().unwrap_or("not installed")
    );
    let _ = writeln!(
        s,
        "| nginx | {} |",
        m.nginx.as_deref().unwrap_or("not installed")
    );
    let _ = writeln!(
        s,
        "| HAProxy | {} |",
        m.haproxy.as_deref().unwrap_or("not installed")
    );
    let _ = writeln!(
        s,
        "| 1-minute load average at the start | {} |",
        m.load_before
    );
    let _ = writeln!(s, "| scheduling priority of the run | {} |", m.priority);
    let _ = writeln!(s, "| virtualization and idle | {} |", m.idle);
    let (other, steal, sweep) = r.other_load;
    let capacity = sweep.as_secs_f64() * m.cpus.max(1) as f64;
    let _ = writeln!(
        s,
        "| CPU used by other processes during the sweep | {other:.1} s of {:.1} s × {} CPUs ({:.0} %); stolen by the hypervisor {steal:.1} s ({:.0} %) |",
        sweep.as_secs_f64(),
        m.cpus,
        100.0 * other / capacity,
        100.0 * steal / capacity
    );
    if let Some(agent) = &o.agent {
        let _ = writeln!(
            s,
            "| agent binary | `{}` (not the workspace build) |",
            agent.display()
        );
    }
    s.push('\n');

    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "* A `local`-mode install under a temporary directory (`netclaw daemon install --root DIR \
         --exposure local --bind 127.0.0.1 --port P --operator-port Q --operator-dns {OPERATOR_DNS}`, \
         free ports), the release binaries, everything on 127.0.0.1 and Unix sockets.\n\
         * Every request is `GET {ROUTE}` (18-byte JSON body; the daemon still identifies the \
         principal of each request). Principals the daemon reported for `GET /api/whoami` on each path: {}.\n\
         * Paths: **(a)** plain HTTP to the public listener (`LocalProcess`); **(b)** mutual TLS \
         straight to the operator listener, rustls with the agent's `client.crt`/`client.key`, \
         verifying the listener against `ca-bundle.crt` (TLS 1.3, as the agent); **(c)** the \
         agent's Unix socket; **(d)** stunnel4 in client mode, Unix socket → mTLS (TLS 1.3, \
         `verifyChain`, `checkIP`), one TLS connection per client connection; **(e)** nginx, \
         `listen unix:` → `proxy_pass https://` an upstream with `keepalive {}` (the agent's \
         idle pool size `pool.maxIdle`, per nginx worker), `keepalive_requests` raised from \
         its default of 1000 on both sides, `proxy_ssl_certificate`/`_key`, `proxy_ssl_verify on`, TLS 1.3, \
         `worker_processes auto`, no access log; **(f)** HAProxy, `bind unix@` → `server … ssl` \
         with the agent's certificate, `verify required`, `verifyhost`, TLS 1.3, `http-reuse \
         always`, its default threads (one per CPU), no log.\n\
         * The load generator is one thread (a current-thread tokio runtime, like `wrk -t1 -cN`) \
         with N keep-alive HTTP/1.1 connections, one request in flight on each: the same code \
         over TCP for (a), over rustls for (b), and over a Unix socket for (c), (d) and (e). \
         Connections and TLS handshakes are made before timing starts. Each cell is {} rounds of \
         {:.1} s warm-up and {:.1} s recorded, with the paths interleaved round by round, and \
         every figure is the median over the rounds; the columns comparing with (a) are the median \
         of the per-round comparisons (round i against round i of (a), run just before it). \
         Both damp bursts of other work on the machine.\n\
         * Latency is per request, from writing the request to having read the whole response. \
         CPU per request is user + system time from `/proc/PID/stat` over the recorded windows \
         divided by the requests in them (clock ticks of 10 ms, so ± a few %); context switches \
         per request likewise from `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of \
         every thread. \
         The load generator shares the machine with the servers.",
        r.principals
            .iter()
            .map(|(p, who)| format!("({}) {who}", p.key()))
            .collect::<Vec<_>>()
            .join(", "),
        r.max_idle,
        o.rounds,
        o.warmup.as_secs_f64(),
        o.measure.as_secs_f64()
    );
    for skip in &r.skipped {
        let _ = writeln!(s, "* Skipped: {skip}");
    }
    s.push('\n');

    let _ = writeln!(s, "## Throughput and latency\n");
    let _ = writeln!(
        s,
        "| path | conc. | req/s | × (a) | p50 µs | p99 µs | p50 − (a) µs | p99 − (a) µs | daemon CPU µs/req | sidecar CPU µs/req | client CPU µs/req | daemon ctx sw/req | sidecar ctx sw/req |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for &n in &CONCURRENCY {
        for p in Path::ALL {
            let Some(row) = r.row(p, n) else { continue };
            let ratio = row
                .ratio_to_direct
                .map_or_else(|| "1.00".into(), |x| format!("{x:.2}"));
            let d50 = row
                .p50_over_direct_us
                .map_or_else(|| "—".into(), |d| format!("{d:+.1}"));
            let d99 = row
                .p99_over_direct_us
                .map_or_else(|| "—".into(), |d| format!("{d:+.1}"));
            let errors = if row.non_200 > 0 {
                format!(" ({} non-200!)", row.non_200)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| ({}) {} | {n} | {:.0}{errors} | {ratio} | {:.1} | {:.1} | {d50} | {d99} | {:.1} | {} | {:.1} | {:.2} | {} |",
                p.key(),
                p.label(),
                row.rate,
                row.p50_us,
                row.p99_us,
                row.daemon_cpu_us,
                row.proxy_cpu_us.map_or("—".into(), |c| format!("{c:.1}")),
                row.client_cpu_us,
                row.daemon_switches,
                row.proxy_switches.map_or("—".into(), |c| format!("{c:.2}")),
            );
        }
    }
    s.push('\n');

    let _ = writeln!(s, "### Latency distribution at concurrency 1\n");
    let _ = writeln!(
        s,
        "Quantiles of the per-request latency, µs (median over the rounds). Through a sidecar the \
         fastest requests are those during which no vCPU halted (findings §2 and §8).\n"
    );
    let head: Vec<String> = DISTRIBUTION
        .iter()
        .map(|q| format!("{:.0} %", q * 100.0))
        .collect();
    let _ = writeln!(
        s,
        "| path | {} |\n|---|{}",
        head.join(" | "),
        "--:|".repeat(DISTRIBUTION.len())
    );
    for p in Path::ALL {
        let Some(row) = r.row(p, 1) else { continue };
        let cells: Vec<String> = row
            .distribution_us
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect();
        let _ = writeln!(s, "| ({}) {} | {} |", p.key(), p.label(), cells.join(" | "));
    }
    s.push('\n');

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| target | measured | met |\n|---|---|---|");
    for t in targets(r) {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            t.name,
            t.value,
            if t.met { "yes" } else { "**no**" }
        );
    }
    s.push('\n');

    s.push_str(&summary(r));

    let _ = writeln!(s, "## Cold CLI\n");
    let _ = writeln!(
        s,
        "Wall time of a whole process, from spawn to exit, {} runs each (the agent and its pool \
         already warm).\n",
        r.cold.first().map_or(0, |t| t.runs)
    );
    let _ = writeln!(
        s,
        "| command | median ms | min ms | p90 ms |\n|---|--:|--:|--:|"
    );
    for t in &r.cold {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} |",
            t.what, t.median_ms, t.min_ms, t.p90_ms
        );
    }
    s.push('\n');

    let _ = writeln!(s, "## Memory\n");
    let _ = writeln!(
        s,
        "`VmRSS` after the first requests, the largest `VmRSS` sampled every 20 ms during the \
         sweep (the daemon serves every path; each sidecar only its own cells, up to 64 client \
         connections), and `VmHWM` (peak) at the end of the sweep, from `/proc/PID/status`. \
         nginx is its master plus workers.\n"
    );
    let _ = writeln!(
        s,
        "| process | idle RSS MiB | under load RSS MiB | peak (VmHWM) MiB |\n|---|--:|--:|--:|"
    );
    for row in &r.memory {
        let mib = |k: u64| k as f64 / 1024.0;
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.1} | {:.1} |",
            row.who,
            mib(row.idle_rss_kib),
            mib(row.load_rss_kib),
            mib(row.hwm_kib)
        );
    }
    s.push('\n');

    let _ = writeln!(s, "## TLS handshakes\n");
    let _ = writeln!(
        s,
        "Each sidecar is restarted (empty pool), then sent exactly the stated number of requests \
         over N keep-alive client connections. **daemon** is the increase of the daemon's own \
         counter `netclaw_daemon_handshakes_total{{result=\"accepted\"}}` (operator listener \
         `GET /metrics`, read over a separate mTLS connection whose own handshake is subtracted); \
         **agent** is the increase of the agent's `pool.handshakes` from `/agent/v1/status` (its \
         status probe's connection is made before the first reading). The agent keeps at most \
         {} idle connections; nginx as many per worker.\n",
        r.max_idle
    );
    let _ = writeln!(
        s,
        "| path | client connections | requests | daemon handshakes | agent `pool.handshakes` | per 10,000 requests |\n|---|--:|--:|--:|--:|--:|"
    );
    for h in &r.handshakes {
        let _ = writeln!(
            s,
            "| ({}) {} | {} | {} | {} | {} | {:.0} |",
            h.path.key(),
            h.path.label(),
            h.concurrency,
            h.requests,
            h.daemon,
            h.agent.map_or("—".into(), |a| a.to_string()),
            h.daemon as f64 * 10_000.0 / h.requests.max(1) as f64
        );
    }
    s.push('\n');

    if let Some(v) = &r.verifier {
        let _ = writeln!(s, "## The daemon's certificate check per handshake\n");
        let _ = writeln!(
            s,
            "Timed in the benchmark process on the install's own files: the verifier the daemon \
             runs on every presented agent certificate (`verify_agent_certificate`: webpki chain \
             and validity, EKU, SPIFFE identity; {} runs) and the issuance-registry lookup \
             (`Registry::admit_agent`; {} runs), against one request on a new connection \
             ({} each, sequential, from the client's side) — which is what a pooled agent \
             connection saves.\n",
            v.verify_runs, v.admit_runs, v.connections
        );
        let _ = writeln!(s, "| | time |\n|---|--:|");
        let rows = [
            ("verifier, per handshake", format!("{:.1} µs", v.verify_us)),
            (
                "registry admission, per handshake",
                format!("{:.0} ns", v.admit_ns),
            ),
            (
                "a request on a new mutual-TLS connection (handshake included)",
                format!("{:.0} µs", v.tls_connection_us),
            ),
            (
                "a request on a new plain TCP connection",
                format!("{:.0} µs", v.tcp_connection_us),
            ),
            (
                "daemon CPU per new mutual-TLS connection",
                format!("{:.0} µs", v.daemon_cpu_per_tls_connection_us),
            ),
        ];
        for (what, t) in rows {
            let _ = writeln!(s, "| {what} | {t} |");
        }
        let _ = writeln!(
            s,
            "\nThe check is {:.0} % of the daemon's CPU for a new connection; the rest is the \
             TLS handshake itself (key exchange and signatures) and serving the request.\n",
            100.0 * (v.verify_us + v.admit_ns / 1000.0)
                / v.daemon_cpu_per_tls_connection_us.max(f64::MIN_POSITIVE)
        );
    }

    if !r.profiles.is_empty() {
        let _ = writeln!(s, "## Where the agent's time goes\n");
        let _ = writeln!(
            s,
            "`perf record -F 2999 -g -p AGENT` for {:.1} s while the load generator ran through the \
             agent; self time (`perf report --no-children --sort sym`), grouped by symbol name. \
             Recording roughly doubles the agent's CPU per request at concurrency 1 (compare the \
             sidecar CPU column above): read the shares, and the µs as an upper bound.",
            o.profile_for.as_secs_f64()
        );
        if r.profiles.iter().any(|p| p.event.starts_with("cpu-clock")) {
            let _ = writeln!(
                s,
                "Here perf sampled the `cpu-clock` software event (no hardware PMU in this VM), a \
                 timer that cannot fire while interrupts are disabled: the scheduler's \
                 `finish_task_switch` and `_raw_spin_unlock_irqrestore` collect the cost of \
                 going to sleep and being woken.\n"
            );
        } else {
            s.push('\n');
        }
        for p in &r.profiles {
            let _ = writeln!(
                s,
                "### {}\n\n{} samples, {} requests, agent CPU {:.1} µs per request.\n",
                p.label, p.samples, p.requests, p.cpu_us_per_request
            );
            let _ = writeln!(
                s,
                "| category | self time | ≈ µs per request |\n|---|--:|--:|"
            );
            for c in &p.categories {
                let _ = writeln!(
                    s,
                    "| {} | {:.1} % | {:.1} |",
                    c.name,
                    c.percent,
                    c.percent / 100.0 * p.cpu_us_per_request
                );
            }
            let _ = writeln!(s, "\n<details><summary>top symbols</summary>\n");
            let _ = writeln!(s, "| self | symbol |\n|--:|---|");
            for t in &p.top {
                let _ = writeln!(
                    s,
                    "| {:.1} % | `{}` |",
                    t.percent,
                    t.name.replace('|', "\\|")
                );
            }
            let _ = writeln!(s, "\n</details>\n");
        }
    }

    if !r.syscalls.is_empty() {
        let _ = writeln!(s, "### System calls per request, concurrency 1\n");
        let _ = writeln!(
            s,
            "`perf trace -s -p PIDS` (all threads; nginx's workers, stunnel's per-connection \
             threads) while one keep-alive client sent requests through each sidecar. Tracing \
             slows the calls down; the counts are exact.\n"
        );
        let _ = writeln!(
            s,
            "| sidecar | requests | system calls per request | most frequent |\n|---|--:|--:|---|"
        );
        for c in &r.syscalls {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} |",
                c.label,
                c.requests,
                c.total(),
                c.per_request
                    .iter()
                    .take(8)
                    .map(|(k, n)| format!("{k} {n:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        s.push('\n');
    }

    if !analysis.trim().is_empty() {
        let _ = writeln!(s, "## Findings\n");
        s.push_str(analysis.trim());
        s.push('\n');
    }
    s
}
