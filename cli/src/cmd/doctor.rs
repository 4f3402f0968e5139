//! `netclaw doctor`: every check with its fix ([`crate::doctor`]); exit 1 when one fails.

use std::io::{self, Write};
use std::path::Path;

use crate::context::Context;
use crate::doctor::{self, Report as DoctorReport};
use crate::exit::{CliError, ExitCode};
use crate::output::{write_json, Report};

/// Runs the checks.
pub async fn exec(ctx: &Context<'_>, machine_id: &Path) -> DoctorReport {
    doctor::run(&ctx.config_path(), ctx.env, machine_id, ctx.now).await
}

impl Report for DoctorReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(doctor::render(self).as_bytes())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(out, self)
    }

    fn outcome(&self) -> Result<(), CliError> {
        if self.ok {
            Ok(())
        } else {
            Err(CliError::ChecksFailed {
                what: "doctor found failing checks",
                code: ExitCode::Failure,
            })
        }
    }
}
