//! `netclaw status`: the daemon's status and, through the agent, the agent's own.

use std::io::{self, Write};

use netclaw_core::wire::{AgentStatus, HealthStatus};

use crate::api;
use crate::context::Context;
use crate::exit::CliError;
use crate::output::{write_json, Report};

/// What `status` found.
#[derive(Debug)]
pub struct StatusReport {
    /// The endpoint, as a URL.
    pub endpoint: String,
    /// How it was reached ("the operator agent at unix:…").
    pub via: String,
    /// `GET /api/health/status`.
    pub daemon: HealthStatus,
    /// `GET /agent/v1/status`, through the agent only.
    pub agent: Option<AgentStatus>,
}

/// Asks the agent for its status (through the agent only), then the daemon for its.
pub async fn exec(ctx: &Context<'_>) -> Result<StatusReport, CliError> {
    let mut s = ctx.session().await?;
    let agent = s.agent_status().await;
    let (daemon, _): (HealthStatus, _) = s.get_json("/api/health/status").await?;
    Ok(StatusReport {
        endpoint: s.resolved().endpoint.to_string(),
        via: s.resolved().describe(),
        daemon,
        agent,
    })
}

impl Report for StatusReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let health = &self.daemon;
        writeln!(
            out,
            "daemon:  netclaw-daemon {}, mode {}, up {}",
            health.build.version,
            health.mode,
            uptime(health.process.uptime_seconds)
        )?;
        if let Some(l) = &health.listeners {
            writeln!(out, "  public listener:    {}", l.public)?;
            if let Some(op) = &l.operator {
                writeln!(out, "  operator listener:  {op}")?;
            }
        }
        if let Some(c) = &health.operator_certificates {
            writeln!(out, "  listener cert until {}", c.server_not_after)?;
            for a in &c.agents {
                writeln!(out, "  agent cert {} until {}", a.serial, a.not_after)?;
            }
        }
        if let Some(p) = &health.pairing {
            writeln!(
                out,
                "pairing: {}; {} wrong code(s) of a budget of {}{}",
                match &p.code_expires_at {
                    Some(t) => format!("code pending until {t}"),
                    None => "no code pending".to_owned(),
                },
                p.wrong_guesses,
                p.guess_budget,
                if p.budget_spent {
                    " (spent: only addresses that never failed may try)"
                } else {
                    ""
                }
            )?;
            for line in api::lockout_lines(p) {
                writeln!(out, "  {line}")?;
            }
        }
        writeln!(out, "via:     {}", self.via)?;
        if let Some(a) = &self.agent {
            writeln!(
                out,
                "agent:   {} ({}), serial {}, {} days left (until {})",
                a.identity,
                if a.healthy { "healthy" } else { "UNHEALTHY" },
                a.serial,
                a.days_left,
                a.not_after
            )?;
            for p in &a.problems {
                writeln!(out, "  problem: {}", api::printable(p))?;
            }
        }
        Ok(())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(
            out,
            &serde_json::json!({
                "endpoint": self.endpoint,
                "via": self.via,
                "daemon": self.daemon,
                "agent": self.agent,
            }),
        )
    }

    fn outcome(&self) -> Result<(), CliError> {
        match &self.agent {
            Some(a) if a.days_left < 0 => Err(CliError::Credentials(format!(
                "the operator agent's certificate expired at {}; re-issue it as root with `netclaw pki rotate --offline`",
                a.not_after
            ))),
            _ => Ok(()),
        }
    }
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else {
        format!("{m}m{s}s")
    }
}
