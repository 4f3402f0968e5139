//! `netclaw`: thin binary over `netclaw_cli`. Parses the command line (clap exits 2 on a bad
//! one), runs it, and turns a failure into its message and documented exit code.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Parser;
use netclaw_cli::args::Cli;
use netclaw_core::env::SystemEnv;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    match netclaw_cli::cmd::run(cli, &SystemEnv, SystemTime::now(), &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stderr loses the message, never the exit code.
            let _ = writeln!(std::io::stderr(), "netclaw: {e}");
            ExitCode::from(e.exit_code().code())
        }
    }
}
