//! What a command prints: a report rendered as text or JSON onto stdout.
//!
//! Every command's `exec` returns a report; [`emit`] renders it. A closed stdout
//! (`netclaw status | head -0`) ends the output quietly: the command's own outcome still decides
//! the exit code, and nothing panics.

use std::io::{self, Write};

use serde::Serialize;

use crate::exit::CliError;

/// Text for a person or JSON for a program (the global `--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Text.
    Text,
    /// JSON (pretty-printed; one object per line for streams).
    Json,
}

impl Format {
    /// `--json` → [`Format::Json`].
    pub fn from_json_flag(json: bool) -> Self {
        if json {
            Self::Json
        } else {
            Self::Text
        }
    }
}

/// The result of a command, printable both ways.
pub trait Report {
    /// Writes the text form.
    fn text(&self, out: &mut dyn Write) -> io::Result<()>;

    /// Writes the JSON form.
    fn json(&self, out: &mut dyn Write) -> io::Result<()>;

    /// Warnings for stderr, printed before the report in either format.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The failure that follows the report, if any (a failing check, an expired certificate):
    /// the report is printed first, then this decides the exit code.
    fn outcome(&self) -> Result<(), CliError> {
        Ok(())
    }
}

/// Renders `report` onto `out`, then returns its outcome. A closed pipe is not an error.
pub fn emit(report: &dyn Report, format: Format, out: &mut dyn Write) -> Result<(), CliError> {
    for w in report.warnings() {
        // A closed stderr loses the warning, nothing else.
        let _ = writeln!(io::stderr(), "warning: {w}");
    }
    let written = match format {
        Format::Text => report.text(out),
        Format::Json => report.json(out),
    }
    .and_then(|()| out.flush());
    written_or_quiet(written)?;
    report.outcome()
}

/// Says on stderr what a step that takes seconds is doing (`netclaw: …`), so that a long
/// operation is not silent; stdout, and so `--json`, is untouched. A closed stderr loses the
/// line, nothing else.
pub fn progress(what: &str) {
    let _ = writeln!(io::stderr(), "netclaw: {what}");
}

/// `Ok` for a successful write or a closed pipe; any other write failure is exit 1.
pub fn written_or_quiet(r: io::Result<()>) -> Result<(), CliError> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// Pretty JSON and a newline.
pub fn write_json(out: &mut dyn Write, v: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)
}

/// A body as received (JSON from the daemon), trimmed, and a newline.
pub fn write_raw(out: &mut dyn Write, body: &[u8]) -> io::Result<()> {
    writeln!(out, "{}", String::from_utf8_lossy(body).trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;

    impl Report for Two {
        fn text(&self, out: &mut dyn Write) -> io::Result<()> {
            writeln!(out, "one")?;
            writeln!(out, "two")
        }
        fn json(&self, out: &mut dyn Write) -> io::Result<()> {
            write_json(out, &serde_json::json!({ "n": 2 }))
        }
        fn outcome(&self) -> Result<(), CliError> {
            Err(CliError::Refused("after the report".into()))
        }
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_report_renders_both_ways_and_then_gives_its_outcome() {
        let mut text = Vec::new();
        let e = emit(&Two, Format::Text, &mut text).unwrap_err();
        assert_eq!(text, b"one\ntwo\n");
        assert_eq!(e.exit_code(), crate::exit::ExitCode::Refused);
        let mut json = Vec::new();
        let _ = emit(&Two, Format::Json, &mut json);
        assert_eq!(json, b"{\n  \"n\": 2\n}\n");
    }

    #[test]
    fn a_closed_pipe_is_quiet_and_keeps_the_outcome_but_a_full_disk_is_exit_1() {
        let e = emit(&Two, Format::Text, &mut Closed).unwrap_err();
        assert!(matches!(e, CliError::Refused(_)), "{e:?}");
        let e = emit(&Two, Format::Text, &mut Full).unwrap_err();
        assert!(matches!(e, CliError::Output(_)), "{e:?}");
        assert_eq!(e.exit_code(), crate::exit::ExitCode::Failure);
    }
}
