//! `netclaw events`: the daemon's audit events as they happen, through the session like every
//! other request; each event is rendered as it arrives ([`crate::events`] parses the stream).

use std::io::{self, Write};
use std::time::Duration;

use http_body_util::BodyExt;

use crate::args::EventsArgs;
use crate::context::Context;
use crate::events::{self, SseEvent, SseParser};
use crate::exit::CliError;
use crate::output::{written_or_quiet, Format};

/// Options of `netclaw events`.
#[derive(Debug, Clone, Copy)]
pub struct EventsOptions {
    /// Stream until interrupted.
    pub follow: bool,
    /// Without `follow`: stop after this long without an event.
    pub idle: Duration,
}

impl TryFrom<&EventsArgs> for EventsOptions {
    type Error = CliError;

    fn try_from(a: &EventsArgs) -> Result<Self, CliError> {
        let idle = Duration::try_from_secs_f64(a.idle)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| CliError::Usage("--idle takes a positive number of seconds".into()))?;
        Ok(Self {
            follow: a.follow,
            idle,
        })
    }
}

/// One event as a line of text or JSON.
pub fn render(ev: &SseEvent, format: Format, out: &mut dyn Write) -> io::Result<()> {
    let line = match format {
        Format::Text => events::text_line(ev),
        Format::Json => events::json_line(ev),
    };
    writeln!(out, "{line}")?;
    out.flush()
}

/// Streams `GET /api/events` onto `out` until idle (or, with `follow`, until interrupted). A
/// closed `out` (`netclaw events --follow | head -1`) ends the command quietly.
pub async fn exec(
    ctx: &Context<'_>,
    o: EventsOptions,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let mut stream = s.stream("/api/events").await?;
    let resolved = s.resolved();
    let note = if o.follow {
        format!(
            "netclaw: streaming events from {} until interrupted",
            resolved.describe()
        )
    } else {
        format!(
            "netclaw: listening for events from {} until {} s pass without one (--follow to keep listening)",
            resolved.describe(),
            o.idle.as_secs_f32()
        )
    };
    let _ = writeln!(io::stderr(), "{note}");
    let mut parser = SseParser::default();
    let mut deadline = tokio::time::Instant::now() + o.idle;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = async {
            if o.follow {
                stream.body.frame().await
            } else {
                tokio::time::timeout_at(deadline, stream.body.frame())
                    .await
                    .ok()
                    .flatten()
            }
        };
        let frame = tokio::select! {
            f = next => f,
            _ = &mut interrupted => return Ok(()),
        };
        let Some(frame) = frame else {
            if o.follow {
                return Err(CliError::Unreachable(format!(
                    "{} closed the event stream",
                    resolved.endpoint
                )));
            }
            return Ok(()); // idle timeout, or the stream ended
        };
        let frame = frame.map_err(|e| {
            CliError::Unreachable(format!(
                "event stream from {} broke: {e}",
                resolved.endpoint
            ))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let evs = parser
            .push(&data)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        if !evs.is_empty() {
            deadline = tokio::time::Instant::now() + o.idle;
        }
        for ev in evs {
            if let Err(e) = render(&ev, format, out) {
                // A closed pipe ends the command quietly; another failure is exit 1.
                return written_or_quiet(Err(e));
            }
        }
    }
}
