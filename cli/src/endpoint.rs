//! Which endpoint a command talks to (DESIGN.md, "Endpoint resolution in the CLI").
//!
//! First hit wins:
//! 1. `--endpoint` / `NETCLAW_ENDPOINT` / netclaw's `NETCLAW_DAEMON_ENDPOINT` (`http://…`,
//!    `https://…` or `unix:/path`; in that order);
//! 2. a saved context (`contexts`) named by `--context` / `NETCLAW_CONTEXT`; else, unless
//!    `--config` / `NETCLAW_CONFIG` names this host's configuration, the current saved context
//!    (`Context::session` in `context` decides, and commands that only the daemon host
//!    runs skip the current context);
//! 3. the operator agent's socket (`Operator.Socket`) when a connection to it opens within
//!    [`PROBE_TIMEOUT`]; that connection carries the command's first request. A missing socket,
//!    a stale one (connection refused) or one this user may not open falls through;
//! 4. in `local` mode only, `http://127.0.0.1:<Daemon.Port>` (a wildcard bind maps to loopback);
//! 5. otherwise an error naming the mode, the socket path and the command that starts the agent.
//!
//! [`plan`] is the pure decision; [`resolve`] adds the connection. Nothing here asks the agent
//! for its status (which itself probes the daemon): only `status` and `doctor` do
//! ([`probe_agent`]).

use std::path::Path;
use std::time::Duration;

use netclaw_core::config::{Config, ExposureMode};
use netclaw_core::wire::AgentStatus;
use tokio::net::UnixStream;

use crate::address::Endpoint;
use crate::exit::CliError;
use crate::transport::{Client, TransportError};

/// Environment variable with an explicit endpoint.
pub const ENDPOINT_ENV: &str = "NETCLAW_ENDPOINT";
/// netclaw's environment variable with an explicit endpoint, honoured after [`ENDPOINT_ENV`].
pub const DAEMON_ENDPOINT_ENV: &str = "NETCLAW_DAEMON_ENDPOINT";
/// How long the agent socket has to answer the probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The agent's status path, used as the probe.
pub const AGENT_STATUS_PATH: &str = "/agent/v1/status";
/// The command that starts the agent, named in every "no endpoint" error.
pub const START_AGENT: &str = "systemctl start netclaw-operator-agent";

/// How an endpoint was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--endpoint`, `NETCLAW_ENDPOINT` or `NETCLAW_DAEMON_ENDPOINT`.
    Explicit,
    /// A saved context (`pair join`), with its device token.
    Context,
    /// The operator agent's socket.
    Agent,
    /// Loopback in `local` mode.
    Loopback,
}

/// The resolved endpoint.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Where requests go.
    pub endpoint: Endpoint,
    /// How it was chosen.
    pub source: Source,
    /// The agent's status, when the command asked for it (`status`, `doctor`): with an
    /// expired agent certificate every failure is reported as that (exit 5).
    pub agent_status: Option<AgentStatus>,
}

impl Resolved {
    /// Human-readable "via …" text.
    pub fn describe(&self) -> String {
        match self.source {
            Source::Explicit => format!("{} (explicit endpoint)", self.endpoint),
            Source::Context => format!("{} (saved context)", self.endpoint),
            Source::Agent => format!("the operator agent at {}", self.endpoint),
            Source::Loopback => format!("{} (loopback, local mode)", self.endpoint),
        }
    }
}

/// What the agent socket probe found.
#[derive(Clone, Debug)]
pub enum Probe {
    /// No socket file.
    Missing,
    /// A socket file nobody listens on (connection refused): stale.
    Stale,
    /// The socket exists but this user may not open it.
    NoPermission,
    /// Connected but no answer within the probe timeout, or not HTTP.
    NoAnswer(String),
    /// A connection to the socket opened (the agent accepts connections).
    Connected,
    /// The agent answered with this HTTP status; `agent` is its status body on 200.
    Answered {
        /// HTTP status of the probe.
        status: u16,
        /// The parsed `/agent/v1/status` body.
        agent: Option<Box<AgentStatus>>,
    },
}

impl Probe {
    /// Why the socket is not usable, for messages.
    pub fn why(&self) -> &'static str {
        match self {
            Probe::Missing => "does not exist",
            Probe::Stale => "exists but nothing listens on it (stale)",
            Probe::NoPermission => "cannot be opened by this user",
            Probe::NoAnswer(_) => "did not answer within 2 s",
            Probe::Connected => "accepted a connection",
            Probe::Answered { .. } => "answered",
        }
    }
}

/// The pure decision: explicit endpoint, else the probed agent, else loopback in local mode.
pub fn plan(
    explicit: Option<&str>,
    config: Option<&Config>,
    probe: impl FnOnce(&Path) -> Probe,
) -> Result<Resolved, CliError> {
    if let Some(s) = explicit {
        return Ok(Resolved {
            endpoint: Endpoint::parse(s)?,
            source: Source::Explicit,
            agent_status: None,
        });
    }
    let Some(config) = config else {
        return Err(CliError::InvalidConfig(
            "no configuration and no --endpoint".into(),
        ));
    };
    let socket = config.operator().socket();
    let probed = probe(socket);
    match probed {
        Probe::Connected => {
            return Ok(Resolved {
                endpoint: Endpoint::Unix(socket.to_owned()),
                source: Source::Agent,
                agent_status: None,
            })
        }
        Probe::Answered { agent, .. } => {
            return Ok(Resolved {
                endpoint: Endpoint::Unix(socket.to_owned()),
                source: Source::Agent,
                agent_status: agent.map(|s| *s),
            })
        }
        _ => {}
    }
    let mode = config.daemon().exposure();
    if mode == ExposureMode::Local {
        return Ok(Resolved {
            endpoint: Endpoint::loopback(config.daemon().host(), config.daemon().port()),
            source: Source::Loopback,
            agent_status: None,
        });
    }
    let mut message = format!(
        "no endpoint: Daemon.ExposureMode is {mode}, where loopback is not trusted, so netclaw reaches the daemon only through the operator agent, \
         but its socket {} {}; start the agent with `{START_AGENT}` (or pass --endpoint)",
        socket.display(),
        probed.why()
    );
    if let Probe::NoPermission = probed {
        message.push_str(
            "; to use the socket, join the netclaw-operators group or be listed in Operator.AllowedUsers",
        );
        return Err(CliError::Refused(message));
    }
    Err(CliError::Unreachable(message))
}

/// Resolves the endpoint from an explicit one (`--endpoint`, else `NETCLAW_ENDPOINT`, read once
/// by the caller) or the configuration. The agent's socket is chosen when a connection to it
/// opens; that connection is returned for the command's first request, so resolving costs no
/// request and no connection of its own. A missing socket (`ENOENT`), a stale one
/// (`ECONNREFUSED`) or one this user may not open (`EACCES`) falls through to loopback in
/// `local` mode.
pub async fn resolve(
    explicit: Option<&str>,
    config: Option<&Config>,
) -> Result<(Resolved, Option<UnixStream>), CliError> {
    if explicit.is_some() {
        return Ok((plan(explicit, config, |_| Probe::Missing)?, None));
    }
    let (probed, stream) = match config {
        Some(c) => match connect_agent(c.operator().socket()).await {
            Ok(s) => (Probe::Connected, Some(s)),
            Err(p) => (p, None),
        },
        None => (Probe::Missing, None),
    };
    let resolved = plan(None, config, |_| probed)?;
    let stream = stream.filter(|_| resolved.source == Source::Agent);
    Ok((resolved, stream))
}

/// Opens a connection to the agent's socket within [`PROBE_TIMEOUT`], or says why not.
pub async fn connect_agent(socket: &Path) -> Result<UnixStream, Probe> {
    match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(socket)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(match e.kind() {
            std::io::ErrorKind::NotFound => Probe::Missing,
            std::io::ErrorKind::ConnectionRefused => Probe::Stale,
            std::io::ErrorKind::PermissionDenied => Probe::NoPermission,
            _ => Probe::NoAnswer(e.to_string()),
        }),
        Err(_) => Err(Probe::NoAnswer("no connection within 2 s".to_owned())),
    }
}

/// Probes the agent socket with `GET /agent/v1/status` and a 2 s timeout.
pub async fn probe_agent(socket: &Path) -> Probe {
    match std::fs::symlink_metadata(socket) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::Missing,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Probe::NoPermission,
        _ => {}
    }
    let client = Client::new(Endpoint::Unix(socket.to_owned()), None).with_timeout(PROBE_TIMEOUT);
    match client.get(AGENT_STATUS_PATH).await {
        Ok(resp) => Probe::Answered {
            status: resp.status.as_u16(),
            agent: resp
                .status
                .is_success()
                .then(|| serde_json::from_slice::<AgentStatus>(&resp.body).ok())
                .flatten()
                .map(Box::new),
        },
        Err(TransportError::Connect { source, .. }) => match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => Probe::Stale,
            std::io::ErrorKind::PermissionDenied => Probe::NoPermission,
            _ => Probe::NoAnswer(source.to_string()),
        },
        Err(e) => Probe::NoAnswer(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
