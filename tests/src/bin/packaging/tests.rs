#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn writes_a_page_per_program_and_subcommand_and_three_completions() {
    let dir = tempfile::tempdir().unwrap();
    let written = generate(dir.path()).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "netclaw.1",
        "netclaw-daemon.1",
        "netclaw-operator-agent.1",
        "netclaw-daemon-install.1",
        "netclaw-pki-rotate.1",
        "netclaw-pair-join.1",
        "netclaw",
        "_netclaw",
        "netclaw.fish",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    // `netclaw-daemon.1` is the daemon's page, not the `netclaw daemon` group's.
    let daemon = std::fs::read_to_string(dir.path().join("man/netclaw-daemon.1")).unwrap();
    assert!(daemon.contains("\\-\\-config"), "{daemon}");
    assert!(daemon.contains("The netclaw daemon"), "{daemon}");
    assert!(!daemon.contains("SUBCOMMANDS"), "{daemon}");
    let rotate = std::fs::read_to_string(dir.path().join("man/netclaw-pki-rotate.1")).unwrap();
    assert!(rotate.contains("offline"), "{rotate}");
    let bash = std::fs::read_to_string(dir.path().join("completions/netclaw")).unwrap();
    assert!(
        bash.contains("complete") && bash.contains("doctor"),
        "{bash}"
    );
}

#[test]
fn every_command_line_is_consistent() {
    for cmd in commands() {
        cmd.debug_assert();
    }
}
