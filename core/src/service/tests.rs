#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;

#[test]
fn journal_stream_names_a_device_and_inode() {
    assert!(journal_stream_is("8:12345", 8, 12345));
    assert!(!journal_stream_is("8:12345", 8, 12346));
    assert!(!journal_stream_is("9:12345", 8, 12345));
    assert!(!journal_stream_is("8", 8, 12345));
    assert!(!journal_stream_is("", 0, 0));
    assert!(!journal_stream_is("x:y", 8, 12345));
}

#[test]
fn stderr_is_not_the_journal_when_journal_stream_names_another_file() {
    struct Stream;
    impl Env for Stream {
        fn var(&self, key: &str) -> Option<String> {
            (key == "JOURNAL_STREAM").then(|| "0:1".to_owned())
        }
        fn vars(&self) -> Vec<(String, String)> {
            Vec::new()
        }
    }
    assert_ne!(LogSink::of_stderr(&Stream), LogSink::Journal);
}

#[test]
fn levels_map_to_syslog_priorities() {
    assert_eq!(syslog_priority(tracing::Level::ERROR), 3);
    assert_eq!(syslog_priority(tracing::Level::WARN), 4);
    assert_eq!(syslog_priority(tracing::Level::INFO), 6);
    assert_eq!(syslog_priority(tracing::Level::DEBUG), 7);
    assert_eq!(syslog_priority(tracing::Level::TRACE), 7);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn journal_lines_carry_the_priority_and_neither_time_nor_colour() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .event_format(journal_format())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!("listener failed");
        tracing::warn!("certificate expires soon");
        tracing::info!(port = 5199, "listening");
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("<3>ERROR "), "{text}");
    assert!(lines[0].ends_with("listener failed"), "{text}");
    assert!(lines[1].starts_with("<4> WARN "), "{text}");
    assert!(lines[2].starts_with("<6> INFO "), "{text}");
    assert!(lines[2].ends_with("listening port=5199"), "{text}");
    assert!(!text.contains('\x1b'), "{text}");
}

#[test]
fn bind_failures_that_heal_are_transient_and_the_rest_configuration() {
    use std::io::{Error, ErrorKind};
    for kind in [ErrorKind::AddrInUse, ErrorKind::AddrNotAvailable] {
        assert_eq!(
            StartupClass::of_bind(&Error::from(kind)),
            StartupClass::Transient
        );
    }
    for kind in [ErrorKind::PermissionDenied, ErrorKind::InvalidInput] {
        assert_eq!(
            StartupClass::of_bind(&Error::from(kind)),
            StartupClass::Config
        );
    }
    assert_eq!(StartupClass::Transient.exit_status(), 75);
    assert_eq!(StartupClass::Config.exit_status(), 64);
}

#[test]
fn netclaw_log_takes_a_level_and_per_target_levels_and_falls_back_to_info() {
    use tracing::Level;
    use tracing_subscriber::filter::Targets;
    let enabled = |f: &Targets, target: &str, level: Level| f.would_enable(target, &level);
    for unset in [None, Some(""), Some("  "), Some("not a=filter=spec")] {
        let f = log_filter(unset);
        assert!(enabled(&f, "netclaw_daemon", Level::INFO), "{unset:?}");
        assert!(!enabled(&f, "netclaw_daemon", Level::DEBUG), "{unset:?}");
    }
    let f = log_filter(Some("warn"));
    assert!(!enabled(&f, "netclaw_daemon", Level::INFO));
    assert!(enabled(&f, "netclaw_daemon", Level::WARN));
    let f = log_filter(Some("netclaw_operator_agent=debug,error"));
    assert!(enabled(&f, "netclaw_operator_agent::proxy", Level::DEBUG));
    assert!(!enabled(&f, "hyper", Level::WARN));
    assert!(enabled(&f, "hyper", Level::ERROR));
}

/// systemd kills a service that takes longer than its unit's `TimeoutStopSec=` to stop: the
/// drain and the wait for the last notifications together stay within both units' bound, so a
/// stop that only waits never ends in SIGKILL.
#[test]
fn a_stop_fits_in_both_units_stop_timeout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for unit in [
        "daemon/systemd/netclaw-daemon.service",
        "operator-agent/systemd/netclaw-operator-agent.service",
    ] {
        let text = std::fs::read_to_string(root.join(unit)).unwrap();
        let seconds: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.strip_suffix('s'))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no TimeoutStopSec=<n>s"));
        assert!(
            DRAIN_TIMEOUT + NOTIFY_FLUSH_TIMEOUT < Duration::from_secs(seconds),
            "{unit}: TimeoutStopSec={seconds}s"
        );
    }
}
