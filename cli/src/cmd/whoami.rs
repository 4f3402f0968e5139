//! `netclaw whoami`: who the daemon thinks this CLI is. One request, one connection.

use std::io::{self, Write};

use bytes::Bytes;
use netclaw_core::wire::WhoAmI;

use crate::api;
use crate::context::Context;
use crate::exit::CliError;
use crate::output::{write_raw, Report};

/// The daemon's answer.
#[derive(Debug)]
pub struct WhoAmIReport {
    /// Parsed.
    pub whoami: WhoAmI,
    /// As sent.
    pub raw: Bytes,
    /// How it was reached.
    pub via: String,
}

/// `GET /api/whoami`.
pub async fn exec(ctx: &Context<'_>) -> Result<WhoAmIReport, CliError> {
    let s = ctx.session().await?;
    let (whoami, raw) = s.get_json("/api/whoami").await?;
    Ok(WhoAmIReport {
        whoami,
        raw,
        via: s.resolved().describe(),
    })
}

impl Report for WhoAmIReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let w = &self.whoami;
        let mut line = format!("{} via {}", w.principal, w.transport);
        if let Some(n) = &w.name {
            line.push_str(&format!(" ({})", api::printable(n)));
        }
        writeln!(out, "{line}")?;
        if let Some(c) = &w.caller {
            writeln!(
                out,
                "caller:  uid {}{}{}",
                c.uid,
                c.user
                    .as_deref()
                    .map(|u| format!(" ({})", api::printable(u)))
                    .unwrap_or_default(),
                c.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
            )?;
        }
        writeln!(out, "via:     {}", self.via)
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_raw(out, &self.raw)
    }
}
