//! The agent's command line, read without clap.
//!
//! [`crate::Args`] (clap) stays the definition: the man page and the completions are generated
//! from it, and the tests below hold this reader and [`HELP`] to it. The service binary does not
//! link clap's parser: most of the agent's resident memory is its own code pages (issue 16:
//! idle RSS at most 6 MiB), and clap is a quarter of a megabyte of them for one option.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::Args;

/// `--help`, as clap renders it for [`Args`] (a test checks that they agree).
pub const HELP: &str = "The netclaw operator agent.

Usage: netclaw-operator-agent [OPTIONS]

Options:
      --config <PATH>  Configuration file (default: $NETCLAW_CONFIG, then the install location)
  -h, --help           Print help
  -V, --version        Print version
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the agent.
    Run(Args),
    /// Print [`HELP`].
    Help,
    /// Print the version.
    Version,
}

/// A command line the agent does not take; its `Display` is the message (exit status 2, as
/// clap's).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// An argument that is not an option of the agent.
    #[error("unexpected argument '{0}'; see --help")]
    Unexpected(String),
    /// `--config` without its path.
    #[error("a value is required for '--config <PATH>' but none was supplied")]
    MissingValue,
    /// `--config` given twice.
    #[error("the argument '--config <PATH>' cannot be used multiple times")]
    Repeated,
}

/// Reads the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let mut config: Option<PathBuf> = None;
    let mut set = |value: OsString| match config.replace(value.into()) {
        Some(_) => Err(UsageError::Repeated),
        None => Ok(()),
    };
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            // As clap: a value that looks like an option is not taken as the path.
            "--config" => match args.next() {
                Some(value) if !value.as_encoded_bytes().starts_with(b"-") => set(value)?,
                _ => return Err(UsageError::MissingValue),
            },
            _ => match arg.as_encoded_bytes().strip_prefix(b"--config=") {
                Some(value) if !value.is_empty() => set(OsStr::from_bytes(value).to_owned())?,
                Some(_) => return Err(UsageError::MissingValue),
                None => return Err(UsageError::Unexpected(text.into_owned())),
            },
        }
    }
    Ok(Command::Run(Args { config }))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn help_is_what_clap_renders() {
        assert_eq!(HELP, Args::command().render_help().to_string());
    }

    #[test]
    fn accepted_command_lines_read_as_clap_reads_them() {
        for line in [
            &[][..],
            &["--config", "/etc/netclaw/netclaw.json"],
            &["--config=/etc/netclaw/netclaw.json"],
        ] {
            let ours = parse(argv(line)).unwrap();
            let clap =
                Args::try_parse_from(std::iter::once("agent").chain(line.iter().copied())).unwrap();
            assert_eq!(ours, Command::Run(clap), "{line:?}");
        }
        assert_eq!(parse(argv(&["--help"])).unwrap(), Command::Help);
        assert_eq!(parse(argv(&["-h"])).unwrap(), Command::Help);
        assert_eq!(parse(argv(&["-V"])).unwrap(), Command::Version);
        assert_eq!(parse(argv(&["--version"])).unwrap(), Command::Version);
    }

    #[test]
    fn refused_command_lines_are_refused_by_clap_too() {
        for (line, want) in [
            (&["--config"][..], UsageError::MissingValue),
            (&["--config="], UsageError::MissingValue),
            (&["--config", "--help"], UsageError::MissingValue),
            (&["--config", "a", "--config", "b"], UsageError::Repeated),
            (&["--conf", "a"], UsageError::Unexpected("--conf".into())),
            (&["serve"], UsageError::Unexpected("serve".into())),
        ] {
            assert_eq!(parse(argv(line)), Err(want), "{line:?}");
            assert!(
                Args::try_parse_from(std::iter::once("agent").chain(line.iter().copied())).is_err(),
                "clap takes {line:?}"
            );
        }
    }
}
