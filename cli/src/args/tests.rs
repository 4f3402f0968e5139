#![allow(clippy::unwrap_used)]

use clap::error::ErrorKind;
use clap::Parser;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("netclaw").chain(args.iter().copied()))
}

#[test]
fn the_command_line_is_consistent() {
    command().debug_assert();
    assert_eq!(command().get_name(), "netclaw");
}

#[test]
fn json_is_one_global_flag_before_or_after_the_command() {
    for args in [
        &["--json", "status"][..],
        &["status", "--json"],
        &["devices", "list", "--json"],
        &["pki", "rotate", "--offline", "--json"],
        &[
            "pair",
            "join",
            "https://d.example",
            "--code",
            "X",
            "--name",
            "n",
            "--json",
        ],
        &["events", "--json", "--follow"],
    ] {
        assert!(parse(args).unwrap().json, "{args:?}");
    }
    assert!(!parse(&["status"]).unwrap().json);
}

#[test]
fn revoke_takes_a_serial_or_agent_but_not_both_nor_neither() {
    let Command::Pki(PkiCommand::Revoke(a)) = parse(&["pki", "revoke", "0A:bc"]).unwrap().command
    else {
        panic!("not pki revoke");
    };
    assert_eq!(a.serial.unwrap().as_str(), "0abc");
    assert!(!a.agent);
    let cli = parse(&["pki", "revoke", "--agent", "--json"]).unwrap();
    let Command::Pki(PkiCommand::Revoke(a)) = cli.command else {
        panic!("not pki revoke");
    };
    assert!(a.agent && cli.json && a.serial.is_none());

    let e = parse(&["pki", "revoke"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
    let e = parse(&["pki", "revoke", "01", "--agent"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
    let e = parse(&["pki", "revoke", "xyz"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    assert!(e.to_string().contains("netclaw pki status"), "{e}");
    let e = parse(&["pki", "revoke", "abc"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueValidation);
    // Every clap error exits 2, the documented code for a bad command line.
    assert_eq!(e.exit_code(), i32::from(ExitCode::Usage.code()));
}

#[test]
fn rotate_offline_is_a_flag_of_rotate() {
    let Command::Pki(PkiCommand::Rotate(a)) =
        parse(&["pki", "rotate", "--offline"]).unwrap().command
    else {
        panic!("not pki rotate");
    };
    assert!(a.offline);
    let Command::Pki(PkiCommand::Rotate(a)) = parse(&["pki", "rotate"]).unwrap().command else {
        panic!("not pki rotate");
    };
    assert!(!a.offline);
    let e = parse(&["pki", "rotate", "--offline", "extra"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownArgument);
}

/// The global `--endpoint` never fills `pair`'s ENDPOINT (netclaw's form): `netclaw --endpoint
/// URL pair` mints; `netclaw pair URL` joins; `pair join URL` is the subcommand.
#[test]
fn pair_forms_are_told_apart() {
    let pair = |args: &[&str]| match parse(args).unwrap().command {
        Command::Pair(p) => p,
        other => panic!("{other:?}"),
    };
    let p = pair(&["--endpoint", "https://d.example", "pair"]);
    assert!(p.endpoint.is_none() && p.command.is_none());
    let p = pair(&["pair", "--endpoint", "https://d.example"]);
    assert!(p.endpoint.is_none() && p.command.is_none());
    let p = pair(&["pair", "https://d.example", "--code", "ABCD-EFGH"]);
    assert_eq!(p.endpoint.as_deref(), Some("https://d.example"));
    assert_eq!(p.join.code.as_deref(), Some("ABCD-EFGH"));
    let p = pair(&["pair", "join", "https://d.example"]);
    assert!(matches!(p.command, Some(PairCommand::Join(ref j)) if j.url == "https://d.example"));
    assert!(parse(&["pair", "https://d.example", "--public-url", "https://x"]).is_err());
    // netclaw's names.
    assert!(matches!(
        parse(&["daemon", "devices", "revoke", "phone"])
            .unwrap()
            .command,
        Command::Daemon(DaemonCommand::Devices(DaemonDevicesArgs {
            command: Some(DevicesCommand::Revoke { .. })
        }))
    ));
    assert!(matches!(
        parse(&["daemon", "devices"]).unwrap().command,
        Command::Daemon(DaemonCommand::Devices(DaemonDevicesArgs { command: None }))
    ));
    assert!(matches!(
        parse(&["daemon", "pair"]).unwrap().command,
        Command::Daemon(DaemonCommand::Pair(_))
    ));
}
