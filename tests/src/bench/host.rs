//! What the benchmark reads about the machine and its processes: the machine description for the
//! report, and per-process memory (`VmRSS`, `VmHWM`) and CPU time from `/proc`.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The machine the numbers were taken on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu: String,
    /// Logical CPUs (`processor` entries in `/proc/cpuinfo`).
    pub cpus: usize,
    /// `MemTotal` in MiB.
    pub memory_mib: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// `git describe`-like commit of the workspace (`+dirty` when the tree has changes).
    pub commit: String,
    /// The 1-minute load average when the run started.
    pub load_before: String,
    /// `stunnel -version` first line, when installed.
    pub stunnel: Option<String>,
    /// `nginx -v`, when installed.
    pub nginx: Option<String>,
    /// `haproxy -v` first line, when installed.
    pub haproxy: Option<String>,
    /// The scheduling priority the benchmark's processes ran at.
    pub priority: String,
    /// Whether `/proc/cpuinfo` has the `hypervisor` flag, and the cpuidle driver (in a VM an
    /// idle vCPU that halts is woken through the hypervisor, which makes wake-ups slow).
    pub idle: String,
}

impl Machine {
    /// Reads the description (missing pieces become `unknown`).
    pub fn describe(stunnel: Option<&str>, nginx: Option<&str>, haproxy: Option<&str>) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let memory_mib = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let rustc =
            first_line("rustc", &["--version"], "rustc").unwrap_or_else(|| "unknown".into());
        let root = crate::workspace_root();
        let rev = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let dirty = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .ok()
            .is_some_and(|o| !o.stdout.is_empty());
        let commit = match rev {
            Some(r) if dirty => format!("{r}+dirty"),
            Some(r) => r,
            None => "unknown".into(),
        };
        let load_before = fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpu,
            cpus,
            memory_mib,
            kernel,
            rustc,
            commit,
            load_before,
            stunnel: stunnel.and_then(|p| first_line(p, &["-version"], "stunnel")),
            nginx: nginx.and_then(|p| first_line(p, &["-v"], "nginx")),
            haproxy: haproxy.and_then(|p| first_line(p, &["-v"], "HAProxy")),
            priority: "unchanged".into(),
            idle: idle_description(&cpuinfo),
        }
    }
}

fn idle_description(cpuinfo: &str) -> String {
    let virtualized = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let driver =
        read("/sys/devices/system/cpu/cpuidle/current_driver").unwrap_or_else(|| "none".into());
    let poll = read("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .map(|ns| format!(", guest_halt_poll_ns={ns}"))
        .unwrap_or_default();
    format!(
        "{}; cpuidle driver {driver}{poll}",
        if virtualized {
            "virtual machine"
        } else {
            "no hypervisor flag"
        }
    )
}

/// The first line starting with `prefix` that a command prints (stdout, then stderr).
fn first_line(program: &str, args: &[&str], prefix: &str) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

/// `VmRSS` and `VmHWM` of a process, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident set now.
    pub rss_kib: u64,
    /// Peak resident set since the process started.
    pub hwm_kib: u64,
}

/// Reads `/proc/PID/status`.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Sum of [`memory`] over `pids` (a master process and its workers count as one server).
pub fn memory_sum(pids: &[u32]) -> Memory {
    pids.iter()
        .filter_map(|&p| memory(p))
        .fold(Memory::default(), |a, m| Memory {
            rss_kib: a.rss_kib + m.rss_kib,
            hwm_kib: a.hwm_kib + m.hwm_kib,
        })
}

/// User plus system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU time of the calling thread, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    stat_ticks("/proc/thread-self/stat").unwrap_or(0) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

/// utime + stime from a `stat` file of `/proc`.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may contain spaces; fields count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// [`cpu_ticks`] summed over `pids`, in seconds.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_ticks(p)).sum::<u64>() as f64 / clock_ticks()
}

/// CPU time of the whole machine so far, in seconds, from the first line of `/proc/stat`:
/// (busy — user, nice, system, irq, softirq —, stolen by the hypervisor).
pub fn machine_cpu_seconds() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let at = |i: usize| f.get(i).copied().unwrap_or(0) as f64 / clock_ticks();
    (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
}

/// CPU time of this process (all threads), in seconds.
pub fn own_cpu_seconds() -> f64 {
    stat_ticks("/proc/self/stat").unwrap_or(0) as f64 / clock_ticks()
}

/// Context switches (voluntary and involuntary) of each thread of `pids` so far, by thread id.
pub fn context_switches(pids: &[u32]) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let n = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
            out.insert(tid, n);
        }
    }
    out
}

/// Context switches between two [`context_switches`] readings: the threads alive at the end,
/// each counted from the first reading (or from zero when it started in between). A thread
/// that exited in between (stunnel's thread of an earlier connection) is left out, instead of
/// making the sum go backwards.
pub fn switches_between(start: &BTreeMap<u32, u64>, end: &BTreeMap<u32, u64>) -> u64 {
    end.iter()
        .map(|(tid, n)| n.saturating_sub(start.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// `pid` and its direct children (nginx's master and workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let parent = fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(pid) {
                out.push(child);
            }
        }
    }
    out
}

/// Samples the summed `VmRSS` of groups of processes every 20 ms on a thread, keeping the
/// largest value per group, until [`RssSampler::finish`].
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<BTreeMap<String, u64>>>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `groups` (name → pids).
    pub fn start(groups: Vec<(String, Vec<u32>)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(BTreeMap::new()));
        let thread = {
            let (stop, peaks) = (stop.clone(), peaks.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (name, pids) in &groups {
                        let rss = memory_sum(pids).rss_kib;
                        if let Ok(mut p) = peaks.lock() {
                            let e = p.entry(name.clone()).or_insert(0);
                            *e = (*e).max(rss);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    /// Stops sampling: the peak summed `VmRSS` per group, KiB.
    pub fn finish(mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peaks.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Raises the scheduling priority of the calling thread to nice `value` with `renice` (root
/// only), so that other work on the machine disturbs the measurement less. Threads and
/// processes started afterwards inherit it. Returns what was done, for the report.
pub fn raise_priority(value: i32) -> String {
    let out = Command::new("renice")
        .args(["-n", &value.to_string(), "-p"])
        .arg(nix::unistd::gettid().to_string())
        .output();
    match out {
        Ok(o) if o.status.success() => format!("nice {value} (raised with renice)"),
        Ok(o) => format!(
            "nice 0 (renice refused: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("nice 0 (renice not run: {e})"),
    }
}
