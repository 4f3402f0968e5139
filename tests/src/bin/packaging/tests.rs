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

/// `systemd-tmpfiles --create` gives `/run/netclaw` to `netclaw-operator-agent:netclaw-operators`,
/// which fails before `systemd-sysusers` created them: every documented sequence and the
/// maintainer script create the users first, and the directory is setgid so that a socket the
/// agent creates itself belongs to the operators' group.
#[test]
fn the_users_are_created_before_the_run_directory_everywhere() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sequences = 0;
    for file in [
        "docs/operator-guide.md",
        "docs/systemd.md",
        "cli/debian/postinst",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let tmpfiles: Vec<usize> = text
            .match_indices("systemd-tmpfiles --create")
            .map(|(i, _)| i)
            .collect();
        for at in tmpfiles {
            let before = &text[..at];
            // Within the same block: the users are created above, after the last fence.
            let block_start = before.rfind("```").unwrap_or(0);
            assert!(
                before[block_start..].contains("systemd-sysusers"),
                "{file}: `systemd-tmpfiles --create` before `systemd-sysusers`"
            );
            sequences += 1;
        }
    }
    assert!(sequences >= 3, "the sequences were not found ({sequences})");
    let tmpfiles =
        std::fs::read_to_string(root.join("operator-agent/systemd/netclaw.tmpfiles.conf")).unwrap();
    assert!(
        tmpfiles.contains("d /run/netclaw 2750 netclaw-operator-agent netclaw-operators -"),
        "{tmpfiles}"
    );
}
