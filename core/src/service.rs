//! What the two long-running binaries (`netclaw-daemon`, `netclaw-operator-agent`) do the same
//! way around their own work: logging, loading the configuration, the runtime, the systemd
//! watchdog and the shutdown signal. Behind the `service` feature, so that the CLI does not link
//! it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::config::Config;
use crate::env::{Env, SystemEnv};
use crate::layout::resolve_config_path;

/// Exit code for configuration and startup validation errors (`EX_USAGE`-like, as linkerd):
/// restarting cannot fix them, so the units say `RestartPreventExitStatus=64`.
pub const EX_CONFIG: u8 = 64;

/// Exit code for a start-up failure that heals by itself (`EX_TEMPFAIL`, sysexits.h): the
/// address not yet assigned at boot, the port still held by a previous instance, the tunnel
/// process not running yet, the clock behind until NTP catches up. systemd restarts it
/// (`Restart=on-failure`).
pub const EX_TEMPFAIL: u8 = 75;

/// What kind of start-up failure: decided where the failure happens, by its type, and turned
/// into the exit code here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupClass {
    /// The configuration, the files or their modes are wrong: exit 64, not restarted.
    Config,
    /// The moment is wrong, not the setup: exit 75, restarted.
    Transient,
}

impl StartupClass {
    /// The exit status.
    pub fn exit_status(self) -> u8 {
        match self {
            Self::Config => EX_CONFIG,
            Self::Transient => EX_TEMPFAIL,
        }
    }

    /// A failure to bind: the address not (yet) assigned to this host and the port in use are
    /// transient (boot ordering, a previous instance still closing); anything else (a port
    /// below 1024 without the capability, an address of the wrong family) is configuration.
    pub fn of_bind(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable => Self::Transient,
            _ => Self::Config,
        }
    }

    /// A PKI failure: a certificate not valid yet (this host's clock behind, before NTP) is
    /// transient, anything else configuration.
    pub fn of_pki(e: &netclaw_pki::PkiError) -> Self {
        if e.is_not_yet_valid() {
            Self::Transient
        } else {
            Self::Config
        }
    }
}

/// Prints `program: error` (a start-up failure) and returns the exit code for its class. In the
/// journal a configuration failure is an error (`<3>`), a transient one that systemd retries a
/// warning (`<4>`), so that `journalctl -p err` lists what needs the operator.
pub fn startup_failed(
    program: &str,
    error: &dyn std::fmt::Display,
    class: StartupClass,
) -> ExitCode {
    match class {
        StartupClass::Config => report_error(program, error),
        StartupClass::Transient => {
            if LogSink::of_stderr(&SystemEnv) == LogSink::Journal {
                eprintln!(
                    "<4>{program}: {error} (exit 75: transient; systemd restarts the service)"
                );
            } else {
                eprintln!("{program}: {error} (exit 75: transient; systemd restarts the service)");
            }
        }
    }
    ExitCode::from(class.exit_status())
}

/// Everything before the program's own work: logging, then the configuration, then the runtime.
/// On failure the reason is printed as `program: reason` and the exit code returned.
pub fn start(
    program: &str,
    explicit_config: Option<&Path>,
    flavor: Flavor,
) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    init_logging();
    let config = load_config(program, explicit_config)?;
    Ok((config, runtime(program, flavor)?))
}

/// Blocking-pool threads of a [`Flavor::CurrentThread`] runtime.
const MAX_BLOCKING_THREADS: usize = 8;

/// Which tokio runtime a service runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// One worker thread per CPU (the daemon: its listeners serve many peers at once).
    MultiThread,
    /// One event loop on the main thread (the agent: a relay whose every request waits on a
    /// socket, where handing a woken task to another worker costs more than the work).
    CurrentThread,
}

/// Logs to stderr, filtered by `NETCLAW_LOG` (default `info`), in the form [`LogSink`] picks.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(std::env::var("NETCLAW_LOG").ok().as_deref());
    // The builder's own level (INFO by default) would hide what `filter` lets through.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::TRACE);
    match LogSink::of_stderr(&SystemEnv) {
        LogSink::Journal => builder
            .with_ansi(false)
            .event_format(journal_format())
            .finish()
            .with(filter)
            .init(),
        LogSink::Terminal => builder.with_ansi(true).finish().with(filter).init(),
        LogSink::Other => builder.with_ansi(false).finish().with(filter).init(),
    }
}

/// `NETCLAW_LOG`'s filter: a level (`debug`), and targets with their own levels
/// (`netclaw_operator_agent=debug,info`). Unset, empty or unreadable, `info`. (The filter is
/// [`Targets`](tracing_subscriber::filter::Targets), not the regex-based `EnvFilter`: the
/// agent's resident size is mostly its own code pages, and span and field filters are not
/// needed to read a service's log.)
pub fn log_filter(spec: Option<&str>) -> tracing_subscriber::filter::Targets {
    let info = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    match spec.map(str::trim) {
        None | Some("") => info(),
        Some(spec) => spec.parse().unwrap_or_else(|_| info()),
    }
}

/// Where stderr goes, which decides the log lines' form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSink {
    /// The journal (systemd connected stderr to it): no time (journald records it), no colour,
    /// and a `<N>` syslog priority prefix per line (`SyslogLevelPrefix=`, on by default) so that
    /// `journalctl -p err` finds errors.
    Journal,
    /// A terminal: time and colour.
    Terminal,
    /// A file or pipe: time, no colour.
    Other,
}

impl LogSink {
    /// This process's stderr: the journal when `$JOURNAL_STREAM` names stderr's device and inode
    /// (systemd.exec(5)), a terminal when it is one.
    pub fn of_stderr(env: &dyn Env) -> Self {
        use std::io::IsTerminal as _;
        use std::os::fd::AsFd as _;
        let stderr = std::io::stderr();
        let journal = env.var("JOURNAL_STREAM").is_some_and(|v| {
            nix::sys::stat::fstat(stderr.as_fd())
                .is_ok_and(|st| journal_stream_is(&v, st.st_dev, st.st_ino))
        });
        if journal {
            Self::Journal
        } else if stderr.is_terminal() {
            Self::Terminal
        } else {
            Self::Other
        }
    }
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`, decimal) names the file with `dev` and `ino`.
fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
}

/// The syslog priority journald records for a tracing level (sd-daemon(3) prefixes).
fn syslog_priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// The event format for the journal: the default one without time or colour, behind a `<N>`
/// priority prefix.
fn journal_format() -> SyslogPriority<
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, ()>,
> {
    SyslogPriority(
        tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false),
    )
}

/// Prefixes each event with its `<N>` syslog priority.
#[derive(Debug)]
struct SyslogPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for SyslogPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Prints `program: message` on stderr for a failure before or outside logging, with the `<3>`
/// (error) prefix when stderr is the journal.
pub fn report_error(program: &str, message: &dyn std::fmt::Display) {
    if LogSink::of_stderr(&SystemEnv) == LogSink::Journal {
        eprintln!("<3>{program}: {message}");
    } else {
        eprintln!("{program}: {message}");
    }
}

/// Loads and validates the configuration at `--config`, `$NETCLAW_CONFIG` or the install
/// location; on failure prints `program: reason` and returns the exit code. A configuration
/// file (or directory) that others can write, or that another user owns, is refused (see
/// [`netclaw_pki::file_policy`]).
fn load_config(program: &str, explicit: Option<&Path>) -> Result<Config, ExitCode> {
    use netclaw_pki::file_policy::{check_all, config_files, Findings};
    let env = SystemEnv;
    let euid = nix::unistd::geteuid();
    let path = resolve_config_path(explicit, &env, euid.is_root());
    let findings = check_all(&config_files(&path), euid.as_raw());
    if !findings.is_empty() {
        report_error(
            program,
            &format_args!("refusing to start: {}", Findings(findings)),
        );
        return Err(ExitCode::from(EX_CONFIG));
    }
    Config::load(&path, &env).map_err(|e| {
        report_error(program, &e);
        ExitCode::from(EX_CONFIG)
    })
}

/// The tokio runtime of `flavor`; on failure prints why and returns the exit code.
fn runtime(program: &str, flavor: Flavor) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = match flavor {
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        Flavor::CurrentThread => {
            let mut b = tokio::runtime::Builder::new_current_thread();
            // The loop hands blocking work (user database lookups, file reads) to these; a
            // burst of new connections queues there instead of starting hundreds of threads.
            b.max_blocking_threads(MAX_BLOCKING_THREADS);
            b
        }
    };
    builder.enable_all().build().map_err(|e| {
        report_error(program, &format_args!("cannot start the runtime: {e}"));
        ExitCode::FAILURE
    })
}

/// Tells systemd something (`READY=1`, `STOPPING=1`, …); a no-op outside systemd.
///
/// Never blocks the caller: a notification is a datagram to systemd's socket, and a send to a
/// socket whose queue is full waits until the service manager reads it. The agent serves every
/// connection from one event loop, so the datagrams go out from a thread of their own, in the
/// order they were given.
pub fn notify(state: NotifyState<'_>) {
    if let Some(notifier) = notifier() {
        let _ = notifier.send(Note::State(state.to_string()));
    }
}

/// Pings systemd's watchdog at half its interval when `WATCHDOG_USEC` is set. The ping is
/// given from the event loop (so a stalled loop stops pinging and systemd restarts the
/// service); while one is still waiting to be sent, no other is queued.
pub fn spawn_watchdog() {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            loop {
                if let Some(notifier) = notifier() {
                    if !WATCHDOG_QUEUED.swap(true, Ordering::AcqRel) {
                        let _ = notifier.send(Note::Watchdog);
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
    }
}

/// How long a stopping service waits for its open connections (after its long-lived streams
/// closed), in both binaries.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping service waits for systemd to take its last notifications
/// ([`flush_notifications`]): far longer than a service manager that reads takes. After
/// [`DRAIN_TIMEOUT`], 15 s in all, within the units' `TimeoutStopSec=20s`, so that systemd never
/// has to kill a service that is only waiting for it.
pub const NOTIFY_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until every notification given so far has gone out, at most `within`; `true` when
/// they have (or there is nothing to send: outside systemd). A process that exits drops what
/// its notifier thread has not sent yet, and a socket systemd has not read for a while holds
/// only a few datagrams (`net.unix.max_dgram_qlen`), so `STOPPING=1` given just before exit
/// could be lost behind queued watchdog pings. Called as the last step of a drain; a warning
/// says when the bound passed.
pub fn flush_notifications(within: Duration) -> bool {
    let Some(notifier) = notifier() else {
        return true;
    };
    let (sent, done) = std::sync::mpsc::sync_channel(1);
    if notifier.send(Note::Flush(sent)).is_err() {
        return true;
    }
    let flushed = done.recv_timeout(within).is_ok();
    if !flushed {
        tracing::warn!(
            within_ms = within.as_millis() as u64,
            "systemd did not take the last notifications (STOPPING=1) in time; exiting without them"
        );
    }
    flushed
}

/// One notification for the notifier thread.
#[derive(Debug)]
enum Note {
    State(String),
    Watchdog,
    /// Everything before this has been sent: say so.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Whether a watchdog ping waits in the notifier's queue.
static WATCHDOG_QUEUED: AtomicBool = AtomicBool::new(false);

/// The notifier thread's queue: `None` outside systemd (no `NOTIFY_SOCKET`) or when the thread
/// could not be started (then nothing is sent, as outside systemd).
fn notifier() -> Option<&'static std::sync::mpsc::Sender<Note>> {
    static NOTIFIER: OnceLock<Option<std::sync::mpsc::Sender<Note>>> = OnceLock::new();
    NOTIFIER
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = std::sync::mpsc::channel::<Note>();
            std::thread::Builder::new()
                .name("sd-notify".into())
                .spawn(move || {
                    for note in rx {
                        let sent = match &note {
                            Note::State(line) => {
                                sd_notify::notify(false, &[NotifyState::Custom(line)])
                            }
                            Note::Watchdog => {
                                WATCHDOG_QUEUED.store(false, Ordering::Release);
                                sd_notify::notify(false, &[NotifyState::Watchdog])
                            }
                            Note::Flush(done) => {
                                let _ = done.try_send(());
                                continue;
                            }
                        };
                        if let Err(e) = sent {
                            tracing::debug!(error = %e, ?note, "systemd notification not sent");
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests;
