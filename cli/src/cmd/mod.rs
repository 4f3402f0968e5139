//! One module per command: `exec` does the work and returns a report, the report renders itself
//! as text or JSON ([`crate::output::Report`]), and [`run`] is the dispatch between the parsed
//! command line and them.

pub mod contexts;
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

use crate::args::{
    Cli, Command, ContextCommand, DaemonCommand, DevicesCommand, JoinOptions, PairCommand,
    PkiCommand,
};
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
        Command::Pair(p) => match (p.command, p.endpoint) {
            (Some(PairCommand::Join(a)), _) => join(&ctx, &a.url, &a.options, format, out),
            (None, Some(endpoint)) => join(&ctx, &endpoint, &p.join, format, out),
            (None, None) => {
                let JoinOptions {
                    code,
                    name,
                    token_file,
                    force,
                } = &p.join;
                if code.is_some() || name.is_some() || token_file.is_some() || *force {
                    return Err(CliError::Usage(
                        "--code, --name, --token-file and --force join a daemon: give its URL (`netclaw pair join URL …` or `netclaw pair URL …`)".into(),
                    ));
                }
                mint(&ctx, p.public_url.as_deref(), format, out)
            }
        },
        Command::Daemon(DaemonCommand::Pair(a)) => mint(&ctx, a.public_url.as_deref(), format, out),
        Command::Devices(d) => devices(&ctx, d, format, out),
        Command::Daemon(DaemonCommand::Devices(d)) => {
            devices(&ctx, d.command.unwrap_or(DevicesCommand::List), format, out)
        }
        Command::Context(ContextCommand::List) => emit(&contexts::list(&ctx)?, format, out),
        Command::Context(ContextCommand::Use { name, .. }) => {
            emit(&contexts::use_context(&ctx, name.as_deref())?, format, out)
        }
        Command::Context(ContextCommand::Remove { name }) => {
            emit(&contexts::remove(&ctx, &name)?, format, out)
        }
        Command::Events(a) => {
            let options = events::EventsOptions::try_from(&a)?;
            block_on(events::exec(&ctx, options, format, out))
        }
        Command::Doctor(a) => emit(
            &block_on(async { Ok(doctor::exec(&ctx, &a.machine_id.file).await) })?,
            format,
            out,
        ),
        Command::Daemon(DaemonCommand::Install(a)) => emit(&install::exec(&ctx, *a)?, format, out),
        Command::Pki(PkiCommand::Status) => emit(&pki::status(&ctx)?, format, out),
        Command::Pki(PkiCommand::Rotate(a)) if a.offline => {
            let config = ctx.load_config()?;
            let report = pki_offline::rotate_offline(&config, &a.machine_id.file, now)?;
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

/// Mints a pairing code (`pair`, `daemon pair`).
fn mint(
    ctx: &Context<'_>,
    public_url: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    emit(&block_on(pair::mint(ctx, public_url))?, format, out)
}

/// Joins a daemon (`pair join URL`, `pair URL`), asking on stderr for what the flags omit.
fn join(
    ctx: &Context<'_>,
    url: &str,
    o: &JoinOptions,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut prompt = std::io::stderr();
    let joined = block_on(pair::join(ctx, url, o, &mut input, &mut prompt))?;
    emit(&joined, format, out)
}

/// `devices …`, `daemon devices …`.
fn devices(
    ctx: &Context<'_>,
    d: DevicesCommand,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match d {
        DevicesCommand::List => emit(&block_on(devices::list(ctx))?, format, out),
        DevicesCommand::Revoke { name } => {
            emit(&block_on(devices::revoke(ctx, &name))?, format, out)
        }
        DevicesCommand::Import { path } => {
            emit(&block_on(devices::import(ctx, &path))?, format, out)
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
