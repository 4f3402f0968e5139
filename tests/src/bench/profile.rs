//! Where a process spends its time under load: `perf record -g` attached to it while the load
//! generator runs, then `perf report --no-children` (self time per symbol), grouped into a few
//! categories by symbol name.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::client::Sample;

/// A category and the share of samples whose own (self) time fell in it.
#[derive(Clone, Debug)]
pub struct Share {
    /// The category or symbol.
    pub name: String,
    /// Percent of all samples.
    pub percent: f64,
}

/// One recording.
#[derive(Clone, Debug)]
pub struct Profile {
    /// What was recorded (process and load).
    pub label: String,
    /// Samples taken.
    pub samples: u64,
    /// The sampled event (`cycles`, or `cpu-clock` where there is no PMU).
    pub event: String,
    /// Requests served while recording.
    pub requests: u64,
    /// The process's CPU time per request while recording, µs.
    pub cpu_us_per_request: f64,
    /// Self time by category, largest first.
    pub categories: Vec<Share>,
    /// The symbols with the most self time.
    pub top: Vec<Share>,
}

/// Categories in match order: the first whose pattern a symbol contains wins.
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "kernel (syscalls, socket and loopback TCP, scheduler)",
        &["[k] "],
    ),
    (
        "TLS: rustls and ring (record encryption, handshakes)",
        &[
            "ring::",
            "ring_core",
            "aes_",
            "aesni",
            "gcm_",
            "GFp",
            "chacha",
            "poly1305",
            "rustls::",
            "sha256",
            "sha512",
            "p256",
            "ecp_nistz",
            "x25519",
            "curve25519",
            "fe4_",
            "tokio_rustls::",
        ],
    ),
    (
        "HTTP: hyper, hyper-util, http (parse, headers, encode, pool)",
        &[
            "hyper::",
            "hyper_util::",
            "http::",
            "httparse",
            "want::",
            "http_body",
        ],
    ),
    (
        "tokio runtime, timers and wakeups",
        &["tokio::", "mio::", "parking_lot", "std::sys::", "futures_"],
    ),
    (
        "memory allocation (malloc/free)",
        &[
            "malloc", "free", "calloc", "realloc", "_int_", "alloc::", "tcache", "__libc_",
        ],
    ),
    (
        "memcpy, memmove, memset",
        &["memcpy", "memmove", "memset", "memcmp"],
    ),
    ("netclaw-operator-agent's own code", &["netclaw"]),
];

/// Records `pid` for `length` while `load` runs (it should run for about as long), then
/// summarizes. `cpu_seconds` reads the process's CPU time.
pub fn record(
    label: &str,
    pid: u32,
    length: Duration,
    data: &Path,
    cpu_seconds: impl Fn() -> f64,
    load: impl FnOnce() -> Result<Sample>,
) -> Result<Profile> {
    let mut perf = Command::new("perf")
        .args(["record", "-F", "2999", "-g", "-o"])
        .arg(data)
        .args(["-p", &pid.to_string(), "--", "sleep"])
        .arg(format!("{:.1}", length.as_secs_f64()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record")?;
    std::thread::sleep(Duration::from_millis(300));
    let cpu_before = cpu_seconds();
    let sample = load()?;
    let cpu = cpu_seconds() - cpu_before;
    let status = perf.wait()?;
    if !status.success() {
        bail!("perf record exited with {status}");
    }
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-n",
            "--sort",
            "sym",
            "-g",
            "none",
        ])
        .args(["--percent-limit", "0", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    if !out.status.success() {
        bail!("perf report exited with {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (samples, symbols) = parse_report(&text);
    let event = text
        .lines()
        .find_map(|l| l.split_once("of event '"))
        .and_then(|(_, rest)| rest.split(['\'', ':']).next())
        .unwrap_or("unknown")
        .to_owned();
    if symbols.is_empty() {
        bail!("perf recorded no samples of pid {pid}");
    }
    let mut categories: Vec<Share> = CATEGORIES
        .iter()
        .map(|(name, _)| Share {
            name: (*name).to_owned(),
            percent: 0.0,
        })
        .chain(std::iter::once(Share {
            name: "other".into(),
            percent: 0.0,
        }))
        .collect();
    for s in &symbols {
        let i = CATEGORIES
            .iter()
            .position(|(_, pats)| pats.iter().any(|p| s.name.contains(p)))
            .unwrap_or(CATEGORIES.len());
        categories[i].percent += s.percent;
    }
    let top = symbols
        .into_iter()
        .take(15)
        .map(|s| Share {
            name: shorten(&s.name),
            percent: s.percent,
        })
        .collect();
    categories.retain(|c| c.percent >= 0.05);
    categories.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    let requests = sample.latencies.len() as u64;
    Ok(Profile {
        label: label.to_owned(),
        samples,
        event,
        requests,
        cpu_us_per_request: cpu * 1e6 / (requests.max(1) as f64),
        categories,
        top,
    })
}

/// (sample count, symbols with their self-time percent, largest first) from
/// `perf report --stdio -n --sort sym` (lines `  12.34%  567  [k] symbol`).
fn parse_report(text: &str) -> (u64, Vec<Share>) {
    let mut samples = 0;
    let mut symbols = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        let Some((pct, rest)) = t.split_once('%') else {
            continue;
        };
        let Ok(percent) = pct.trim().parse::<f64>() else {
            continue;
        };
        let rest = rest.trim_start();
        let (count, sym) = rest.split_once(char::is_whitespace).unwrap_or(("0", rest));
        samples += count.parse::<u64>().unwrap_or(0);
        symbols.push(Share {
            name: sym.trim().to_owned(),
            percent,
        });
    }
    symbols.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    (samples, symbols)
}

/// Drops generic arguments and hashes from a Rust symbol so the table stays readable; keeps the
/// `[k]`/`[.]` marker.
fn shorten(sym: &str) -> String {
    let mut out = String::with_capacity(sym.len());
    let mut depth = 0usize;
    for c in sym.chars() {
        match c {
            '<' => {
                if depth == 0 {
                    out.push_str("<…>");
                }
                depth += 1;
            }
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let out = match out.rfind("::h") {
        Some(i) if out[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) && out.len() - i == 19 => {
            out[..i].to_owned()
        }
        _ => out,
    };
    if out.chars().count() > 110 {
        let cut: String = out.chars().take(110).collect();
        format!("{cut}…")
    } else {
        out
    }
}

/// System calls per request of one server, counted with `perf trace -s`.
#[derive(Clone, Debug)]
pub struct Syscalls {
    /// Whose.
    pub label: String,
    /// Requests served while tracing.
    pub requests: u64,
    /// (system call, calls per request), most frequent first.
    pub per_request: Vec<(String, f64)>,
}

impl Syscalls {
    /// All system calls per request.
    pub fn total(&self) -> f64 {
        self.per_request.iter().map(|(_, n)| n).sum()
    }
}

/// Starts `perf trace -s` on all current threads of `pids` (until [`finish_trace`]) and gives
/// it time to attach. Called once the client's connection exists, so that per-connection
/// threads (stunnel's) are traced too.
pub fn start_trace(pids: &[u32]) -> Result<std::process::Child> {
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let child = Command::new("perf")
        .args(["trace", "-s", "-p", &list])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting perf trace")?;
    std::thread::sleep(Duration::from_millis(700));
    Ok(child)
}

/// Stops a [`start_trace`] (SIGINT) and turns its summary into calls per request.
pub fn finish_trace(label: &str, perf: std::process::Child, requests: u64) -> Result<Syscalls> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(perf.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let out = perf.wait_with_output()?;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // `   epoll_wait   1234   0   12.345  0.001 ...`
        if f.len() >= 8 && f[0].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            if let Ok(n) = f[1].parse::<u64>() {
                *counts.entry(f[0].to_owned()).or_default() += n;
            }
        }
    }
    if counts.is_empty() {
        bail!(
            "perf trace reported no system calls for {label} ({})",
            out.status
        );
    }
    let mut per_request: Vec<(String, f64)> = counts
        .into_iter()
        .map(|(k, n)| (k, n as f64 / requests.max(1) as f64))
        .filter(|(_, n)| *n >= 0.01)
        .collect();
    per_request.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Syscalls {
        label: label.to_owned(),
        requests,
        per_request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_parsed_and_shortened() {
        let text = "# Samples: 12K of event 'cpu-clock:ppp'\n#\n    10.50%  105  [k] _raw_spin_unlock\n     2.00%  20  [.] hyper::proto::h1::role::Server::parse<hyper::X>::h0123456789abcdef\n";
        let (n, s) = parse_report(text);
        assert_eq!(n, 125);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "[k] _raw_spin_unlock");
        assert_eq!(
            shorten(&s[1].name),
            "[.] hyper::proto::h1::role::Server::parse<…>"
        );
    }
}
