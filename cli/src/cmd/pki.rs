//! `netclaw pki status|rotate|revoke`. `rotate` goes through the operator agent's session;
//! `rotate --offline`, `rotate --ca` and `revoke` work on the PKI files ([`crate::pki_offline`],
//! [`crate::ca_rotation`]); `status` reads them ([`crate::pki_status`]).

use std::io::{self, Write};

use hyper::{Method, StatusCode};
use netclaw_core::wire::RenewResponse;

use crate::address::Endpoint;
use crate::api;
use crate::ca_rotation::CaRotationReport;
use crate::context::Context;
use crate::endpoint::START_AGENT;
use crate::exit::{CliError, ExitCode};
use crate::output::{write_json, Report};
use crate::pki_offline::{self, RevokeReport, RotateReport};
use crate::pki_status::{self, PkiStatus};

/// Path of the agent's rotation endpoint.
pub const ROTATE_PATH: &str = "/agent/v1/rotate";

/// The agent's answer to a rotation.
#[derive(Debug)]
pub struct Rotated(pub RenewResponse);

/// `POST /agent/v1/rotate` through the agent's session: immediate rotation.
pub async fn rotate(ctx: &Context<'_>) -> Result<Rotated, CliError> {
    let s = ctx.host_session().await?;
    let resolved = s.resolved();
    if !matches!(resolved.endpoint, Endpoint::Unix(_)) {
        return Err(CliError::Unreachable(format!(
            "pki rotate goes through the operator agent, and it is not answering (resolved {} instead); start it with `{START_AGENT}`, or re-issue its certificate from the CA on disk as root with `netclaw pki rotate --offline`",
            resolved.describe()
        )));
    }
    let resp = s.send(Method::POST, ROTATE_PATH, None).await?;
    if matches!(resp.status.as_u16(), 404 | 405 | 501) {
        return Err(CliError::Failed("certificate rotation is not available in this version of netclaw-operator-agent; as root, `netclaw pki rotate --offline` re-issues the agent certificate from the CA on disk".into()));
    }
    if resp.status == StatusCode::BAD_GATEWAY {
        let (detail, code) = api::error_body(&resp.body);
        if let Some(why) = api::refused_certificate(code) {
            return Err(CliError::Credentials(format!(
                "the daemon refused the operator agent's certificate ({why}), so the agent cannot rotate it: {detail}; {}",
                api::OFFLINE_FIX
            )));
        }
        return Err(CliError::Unreachable(format!(
            "the operator agent could not rotate its certificate: {detail}"
        )));
    }
    let resp = api::check(resp, resolved)?;
    Ok(Rotated(api::parse(&resp.body, "the rotation")?))
}

impl Report for Rotated {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let r = &self.0;
        writeln!(
            out,
            "rotated the operator agent's certificate: serial {} (until {})",
            api::printable(&r.serial),
            api::printable(&r.not_after)
        )?;
        writeln!(
            out,
            "the previous serial {} stays valid for a short grace period, then is refused",
            api::printable(&r.previous_serial)
        )
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(
            out,
            &serde_json::json!({
                "serial": self.0.serial,
                "previousSerial": self.0.previous_serial,
                "notAfter": self.0.not_after,
            }),
        )
    }
}

impl Report for RotateReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(pki_offline::render_rotate(self).as_bytes())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(out, self)
    }
}

impl Report for RevokeReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(pki_offline::render_revoke(self).as_bytes())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(out, self)
    }
}

impl Report for CaRotationReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "CA rotation: phase {}", self.phase)?;
        for n in &self.notes {
            writeln!(out, "note: {n}")?;
        }
        writeln!(out, "{}", self.next)
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(out, &self.json)
    }
}

/// `netclaw pki status`.
pub fn status(ctx: &Context<'_>) -> Result<PkiStatus, CliError> {
    Ok(pki_status::status(&ctx.load_config()?, ctx.now))
}

impl Report for PkiStatus {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(pki_status::render(self).as_bytes())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(out, self)
    }

    fn outcome(&self) -> Result<(), CliError> {
        if self.healthy {
            Ok(())
        } else {
            Err(CliError::ChecksFailed {
                what: "the operator PKI has problems",
                code: ExitCode::Credentials,
            })
        }
    }
}
