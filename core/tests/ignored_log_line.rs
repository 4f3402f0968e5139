//! `Config::from_json` names what it set aside in one `info` line, and logs nothing when it set
//! nothing aside.
//!
//! One test in a process of its own: a tracing callsite's interest is cached process-wide, so a
//! scoped capture that races other threads' first use of the same callsite can miss the event.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use netclaw_core::config::Config;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn captured(capture: &Capture) -> String {
    String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
}

#[test]
fn set_aside_settings_are_logged_in_one_info_line_and_values_never() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let path = Path::new("/etc/netclaw/netclaw.json");
    let env: BTreeMap<String, String> = [
        ("NETCLAW_Slack__BotToken", "xoxb-not-for-logs"),
        ("NETCLAW_Daemon__Port", "6000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let json = r#"{"Daemon":{},"Slack":{"BotToken":"xoxb-in-the-file"},"Models":{}}"#;
    let c = Config::from_json(path, json, &env).unwrap();
    let out = captured(&capture);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let line = lines[0];
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains(&c.ignored().summary().unwrap()), "{line}");
    assert!(line.contains("/etc/netclaw/netclaw.json"), "{line}");
    assert!(!line.contains("xoxb-"), "a value was logged: {line}");

    // Nothing set aside, nothing logged.
    capture.0.lock().unwrap().clear();
    Config::from_json(path, r#"{"Daemon":{}}"#, &BTreeMap::new()).unwrap();
    assert_eq!(captured(&capture), "");
}
