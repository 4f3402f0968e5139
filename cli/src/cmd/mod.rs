//! One module per command: `exec` does the work and returns a report, the report renders itself
//! as text or JSON ([`crate::output::Report`]), and [`run`] is the dispatch between the parsed
//! command line and them.

pub mod devices;
pub mod doctor;
pub mod events;
pub mod health;
pub mod install;
pub mod pair;
pub mod pki;
pub mod status;
pub mod whoami;

use std::future::Future;
use std::io::Write;
use std::time::SystemTime;

use netclaw_core::env::Env;

use crate::args::{Cli, Command, DaemonCommand, DevicesCommand, PairCommand, PkiCommand};
use crate::context::Context;
use crate::exit::CliError;
use crate::output::{emit, Format};
use crate::pki_offline::{self, RevokeTarget};

/// Runs the command line at `now`, printing onto `out`; the error carries the exit code.
pub fn run(cli: Cli, env: &dyn Env, now: SystemTime, out: &mut dyn Write) -> Result<(), CliError> {
    let ctx = Context::new(&cli, env, now);
    let format = Format::from_json_flag(cli.json);
    match cli.command {
        Command::Status => emit(&block_on(status::exec(&ctx))?, format, out),
        Command::Health => emit(&block_on(health::exec(&ctx))?, format, out),
        Command::Whoami => emit(&block_on(whoami::exec(&ctx))?, format, out),
        Command::Pair(p) => match p.command {
            None => emit(
                &block_on(pair::mint(&ctx, p.public_url.as_deref()))?,
                format,
                out,
            ),
            Some(PairCommand::Join(a)) => emit(&block_on(pair::join(&ctx, &a))?, format, out),
        },
        Command::Devices(DevicesCommand::List) => {
            emit(&block_on(devices::list(&ctx))?, format, out)
        }
        Command::Devices(DevicesCommand::Revoke { name }) => {
            emit(&block_on(devices::revoke(&ctx, &name))?, format, out)
        }
        Command::Devices(DevicesCommand::Import { path }) => {
            emit(&block_on(devices::import(&ctx, &path))?, format, out)
        }
        Command::Events(a) => {
            let options = events::EventsOptions::try_from(&a)?;
            block_on(events::exec(&ctx, options, format, out))
        }
        Command::Doctor(a) => emit(
            &block_on(async { Ok(doctor::exec(&ctx, &a.machine_id_file).await) })?,
            format,
            out,
        ),
        Command::Daemon(DaemonCommand::Install(a)) => emit(&install::exec(&ctx, *a)?, format, out),
        Command::Pki(PkiCommand::Status) => emit(&pki::status(&ctx)?, format, out),
        Command::Pki(PkiCommand::Rotate(a)) if a.offline => {
            let config = ctx.load_config()?;
            let report = pki_offline::rotate_offline(&config, &a.machine_id_file, now)?;
            emit(&report, format, out)
        }
        Command::Pki(PkiCommand::Rotate(a)) => match a.ca {
            Some(step) => {
                let config = ctx.load_config()?;
                emit(
                    &block_on(crate::ca_rotation::run(&config, step))?,
                    format,
                    out,
                )
            }
            None => emit(&block_on(pki::rotate(&ctx))?, format, out),
        },
        Command::Pki(PkiCommand::Revoke(a)) => {
            let target = match a.serial {
                Some(s) => RevokeTarget::Serial(s),
                None => RevokeTarget::Agent,
            };
            let config = ctx.load_config()?;
            emit(&pki_offline::revoke(&config, &target, now)?, format, out)
        }
    }
}

/// Runs a network command on a single-threaded runtime.
fn block_on<T>(f: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))?
        .block_on(f)
}

#[cfg(test)]
mod tests;
