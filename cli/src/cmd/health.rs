//! `netclaw health`: whether the daemon is ready (anonymous).

use std::io::{self, Write};

use bytes::Bytes;
use hyper::Method;

use crate::context::Context;
use crate::exit::CliError;
use crate::output::{write_raw, Report};

/// The daemon's readiness answer.
#[derive(Debug)]
pub struct HealthReport {
    /// How it was reached.
    pub via: String,
    /// The answer's body, as the daemon sent it.
    pub raw: Bytes,
}

/// `GET /api/health/ready`.
pub async fn exec(ctx: &Context<'_>) -> Result<HealthReport, CliError> {
    let s = ctx.session().await?;
    let resp = s.call(Method::GET, "/api/health/ready", None).await?;
    Ok(HealthReport {
        via: s.resolved().describe(),
        raw: resp.body,
    })
}

impl Report for HealthReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "ready ({})", self.via)
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_raw(out, &self.raw)
    }
}
