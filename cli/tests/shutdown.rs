//! A daemon or agent stopping while `netclaw events --follow` is connected: the event stream is
//! closed first, so the process exits at once instead of holding its shutdown for the whole
//! 10 s drain (`DRAIN_TIMEOUT`), and the CLI's stream ends. Real processes: the daemon, the
//! agent and the CLI, over loopback and through the agent.

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{Install, Process};

/// Well inside the 10 s drain.
const PROMPT: Duration = Duration::from_secs(3);

/// `netclaw events --follow`, once an event came through it.
fn follow(install: &Install) -> (Child, String) {
    let mut child = install
        .cmd(&["events", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("streaming events"), "{line}");
    // The stream is open once an event comes through it.
    std::thread::sleep(Duration::from_millis(300));
    support::ok(&install.run(&["pair"]));
    let mut event = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut event)
        .unwrap();
    assert!(event.contains("pairing-code-minted"), "{event}");
    (child, line)
}

fn ends(child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    false
}

/// Starts the daemon (and the agent when `through_agent`), follows events on the endpoint the
/// CLI resolves (its first line names it: `names`), then stops the daemon.
fn the_daemon_stops_promptly_with_an_event_stream_open(through_agent: bool, names: &str) {
    let install = Install::local();
    let mut daemon = Process::start(&install);
    let _agent = through_agent.then(|| Process::start_agent(&install));
    let (mut events, line) = follow(&install);
    assert!(line.contains(names), "{line}");
    let took = daemon.terminate(PROMPT);
    assert!(
        took.is_some(),
        "the daemon held its shutdown:\n{}",
        daemon.log()
    );
    assert!(ends(&mut events, PROMPT), "events --follow did not end");
}

#[test]
fn the_daemon_stops_promptly_with_an_event_stream_open_over_loopback() {
    the_daemon_stops_promptly_with_an_event_stream_open(false, "127.0.0.1");
}

#[test]
fn the_daemon_stops_promptly_with_an_event_stream_open_through_the_agent() {
    the_daemon_stops_promptly_with_an_event_stream_open(true, "operator agent");
}

/// The agent's drain used to wait for the proxied event stream (hyper's graceful shutdown waits
/// for a response in progress) until its 10 s timeout.
#[test]
fn the_agent_stops_promptly_with_an_event_stream_open_through_it() {
    let install = Install::local();
    let _daemon = Process::start(&install);
    let mut agent = Process::start_agent(&install);
    let (mut events, _) = follow(&install);
    let took = agent.terminate(PROMPT);
    assert!(
        took.is_some(),
        "the agent held its shutdown:\n{}",
        agent.log()
    );
    assert!(ends(&mut events, PROMPT), "events --follow did not end");
}
