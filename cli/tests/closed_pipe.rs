//! Every command into a closed pipe (`netclaw status | head -0`) ends quietly with its own exit
//! status: no panic (exit 101), nothing on stderr. Real `netclaw` processes against a real
//! daemon and agent, stdout a pipe whose reader is gone before anything is written.

#![allow(clippy::unwrap_used)] // test helpers

mod support;

use support::{stderr, Install, Process};

#[test]
fn every_command_into_a_closed_pipe_ends_quietly() {
    let install = Install::local();
    let _daemon = Process::start(&install);
    let _agent = Process::start_agent(&install);
    let commands: &[&[&str]] = &[
        &["status"],
        &["status", "--json"],
        &["whoami"],
        &["whoami", "--json"],
        &["health"],
        &["pki", "status"],
        &["pki", "status", "--json"],
        &["doctor"],
        &["doctor", "--json"],
        &["devices", "list"],
        &["devices", "list", "--json"],
        &["pair"],
        &["pair", "--json"],
        &["events", "--idle", "1"],
        &["--help"],
        &["pki", "--help"],
        &["--version"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = install.cmd(args).stdout(writer).output().unwrap();
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }

    // `netclaw events --follow | head -0`: the first event's write ends it, quietly.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut follow = install
        .cmd(&["events", "--follow"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    support::ok(&install.run(&["pair"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while follow.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "events --follow kept running after its stdout closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = follow.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
