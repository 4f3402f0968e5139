//! Calls to the daemon (directly or through the agent) and the mapping of every failure to a
//! documented exit code with a message that names the fix.
//!
//! | answer | exit |
//! |---|---|
//! | 2xx | 0 |
//! | 3xx (never followed) | 1 |
//! | 401 through the agent, the agent's `503 credential-expired`, the agent's 502 when the daemon refused its certificate in the handshake (e.g. revoked), or any failure while the agent reports an expired certificate | 5 |
//! | 401 / 403 otherwise | 4 |
//! | 502 / 504, connect failure, timeout, TLS failure | 3 |
//! | anything else | 1 |

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::LOCATION;
use hyper::{Method, StatusCode};
use netclaw_core::wire::{AgentStatus, ErrorBody, ErrorCode, PairingHealth};
use serde::de::DeserializeOwned;

use crate::endpoint::{Resolved, Source, AGENT_STATUS_PATH, START_AGENT};
use crate::exit::CliError;
use crate::transport::{
    Bearer, Body, Client, Response, Streaming, TransportError, MAX_RESPONSE, REQUEST_TIMEOUT,
};

/// A resolved endpoint with its client and, for explicit `http(s)` endpoints only, a bearer.
#[derive(Debug)]
pub struct Session {
    client: Client,
    resolved: Resolved,
    bearer: Option<Bearer>,
}

impl Session {
    /// A session; `bearer` is accepted only for an explicit `http(s)` endpoint.
    pub fn new(
        resolved: Resolved,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        bearer: Option<Bearer>,
    ) -> Result<Self, CliError> {
        let bearer_ok = matches!(resolved.source, Source::Explicit | Source::Context)
            && resolved.endpoint.is_http();
        if bearer.is_some() && !bearer_ok {
            return Err(CliError::Usage("a device token is sent only to an explicit --endpoint http(s)://… given with it; never to the agent socket or a resolved endpoint".into(),
            ));
        }
        Ok(Self {
            client: Client::new(resolved.endpoint.clone(), tls),
            resolved,
            bearer,
        })
    }

    /// The resolved endpoint.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// Hands the session the connection that resolution opened, for its first request.
    pub fn with_connection(mut self, stream: Option<tokio::net::UnixStream>) -> Self {
        self.client = self.client.with_connection(stream);
        self
    }

    /// Sends a request; a transport failure is mapped to its exit code, the status is not
    /// checked (for callers that read some statuses themselves, then [`check`]).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Response, CliError> {
        self.client
            .send(method, path, body, self.bearer.as_ref())
            .await
            .map_err(|e| transport_failure(e, &self.resolved))
    }

    /// Sends a request and maps any failure, transport or status, to its exit code.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Response, CliError> {
        let resp = self.send(method, path, body).await?;
        check(resp, &self.resolved)
    }

    /// Opens an event stream; a failure, or an answer other than 2xx (its small body read
    /// within the request deadline), is mapped as for [`Session::call`].
    pub async fn stream(&self, path: &str) -> Result<Streaming, CliError> {
        let stream = self
            .client
            .stream(path, self.bearer.as_ref())
            .await
            .map_err(|e| transport_failure(e, &self.resolved))?;
        if stream.status.is_success() {
            return Ok(stream);
        }
        let body = tokio::time::timeout(
            REQUEST_TIMEOUT,
            http_body_util::Limited::new(stream.body, MAX_RESPONSE).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
        let status = stream.status;
        let answer = Response {
            status,
            headers: stream.headers,
            body,
        };
        Err(match check(answer, &self.resolved) {
            Err(e) => e,
            Ok(_) => CliError::Failed(format!("{} answered {status}", self.resolved.endpoint)),
        })
    }

    /// The operator agent's own status (`GET /agent/v1/status`, which also probes the
    /// daemon), when the session goes through the agent and it answers; kept so that any later
    /// failure of this session is reported as an expired agent certificate when it is one.
    /// Only `status` asks for it.
    pub async fn agent_status(&mut self) -> Option<AgentStatus> {
        if self.resolved.source != Source::Agent {
            return None;
        }
        let resp = self.client.get(AGENT_STATUS_PATH).await.ok()?;
        let status: AgentStatus = resp
            .status
            .is_success()
            .then(|| serde_json::from_slice(&resp.body).ok())
            .flatten()?;
        self.resolved.agent_status = Some(status.clone());
        Some(status)
    }

    /// `GET path`, returning the parsed body and the raw bytes.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<(T, Bytes), CliError> {
        let resp = self.call(Method::GET, path, None).await?;
        let value = parse(&resp.body, path)?;
        Ok((value, resp.body))
    }
}

/// Parses a JSON body.
pub fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, CliError> {
    serde_json::from_slice(body)
        .map_err(|e| CliError::Failed(format!("unexpected answer to {what}: {e}")))
}

/// Maps a non-2xx response to its exit code; passes 2xx through.
pub fn check(resp: Response, resolved: &Resolved) -> Result<Response, CliError> {
    let status = resp.status;
    if status.is_success() {
        return Ok(resp);
    }
    let endpoint = &resolved.endpoint;
    if status.is_redirection() {
        let to = resp
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(printable)
            .unwrap_or_else(|| "nowhere".into());
        return Err(CliError::Redirect {
            endpoint: endpoint.to_string(),
            status,
            location: to,
        });
    }
    let (detail, error_code) = error_body(&resp.body);
    if let Some(e) = expired_agent(resolved) {
        return Err(e);
    }
    let via_agent = resolved.source == Source::Agent;
    Err(match status {
        // The agent's own refusal to forward with an expired certificate.
        StatusCode::SERVICE_UNAVAILABLE
            if via_agent && error_code == Some(ErrorCode::CredentialExpired) =>
        {
            CliError::Credentials(detail)
        }
        StatusCode::UNAUTHORIZED if via_agent => CliError::Credentials(
            format!(
                "the daemon refused the operator agent's certificate ({detail}); rotate it with `netclaw pki rotate`, or as root with `netclaw pki rotate --offline` if it has expired"
            ),
        ),
        StatusCode::FORBIDDEN if via_agent => CliError::Refused(
            format!(
                "refused ({detail}); if the agent refused your user, ask an administrator to add you to Operator.AllowedUsers or to a group in Operator.AllowedGroups (e.g. netclaw-operators)"
            ),
        ),
        StatusCode::UNAUTHORIZED if resolved.source == Source::Context => CliError::Refused(
            format!(
                "{endpoint} refused this device's token ({status}): {detail}; if the device was revoked, pair it again with a new code from the daemon host (`netclaw pair join {endpoint} --code CODE --name NAME --force`)"
            ),
        ),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Refused(
            format!("{endpoint} refused the request ({status}): {detail}"),
        ),
        StatusCode::BAD_GATEWAY if via_agent && refused_certificate(error_code).is_some() => CliError::Credentials(
            format!(
                "the daemon refused the operator agent's certificate ({}): {detail}; {OFFLINE_FIX}",
                refused_certificate(error_code).unwrap_or_default()
            ),
        ),
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT if via_agent => CliError::Unreachable(
            // The agent's own "daemon unreachable" answer already names the fix.
            if error_code == Some(ErrorCode::DaemonUnreachable) {
                format!("the operator agent could not reach the daemon: {detail}")
            } else {
                format!(
                    "the operator agent could not reach the daemon: {detail}; check that the daemon runs (`systemctl status netclaw-daemon`) and `netclaw doctor`"
                )
            },
        ),
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => CliError::Unreachable(
            format!("{endpoint} answered {status}: {detail}"),
        ),
        _ => CliError::Failed(
            format!("{endpoint} answered {status}: {detail}"),
        ),
    })
}

/// Maps a transport failure: exit 3 with the likely fix, or 5 if the agent's certificate expired.
pub fn transport_failure(e: TransportError, resolved: &Resolved) -> CliError {
    if let Some(err) = expired_agent(resolved) {
        return err;
    }
    let hint = match (resolved.source, &e) {
        (_, TransportError::Tls { .. }) => {
            "; if the daemon uses a private CA, pass --ca-file with that CA's certificate"
                .to_owned()
        }
        // The connection was open (resolution chose the agent by opening it), so the agent
        // runs but is stuck.
        (Source::Agent, TransportError::Timeout { .. }) => {
            "; the operator agent accepted the connection but did not answer: see `systemctl status netclaw-operator-agent` and `netclaw doctor`".to_owned()
        }
        (Source::Agent, _) => format!("; is the operator agent running? `{START_AGENT}`"),
        (Source::Loopback, _) => {
            "; is netclaw-daemon running? (`systemctl start netclaw-daemon`)".to_owned()
        }
        (Source::Explicit | Source::Context, _) => String::new(),
    };
    CliError::Transport { source: e, hint }
}

/// The fix when the daemon no longer accepts the agent's certificate (expired, revoked, or
/// superseded past its grace period): re-issue it from the CA on disk.
pub const OFFLINE_FIX: &str = "issue a new agent certificate as root with `netclaw pki rotate --offline` (the agent and the daemon pick it up without a restart)";

/// Whether the agent's error code says that the daemon refused its certificate during the TLS
/// handshake (the agent reads the daemon's TLS alert by type), and why. The daemon's verifier
/// sends `CertificateRevoked` for revoked and superseded serials.
pub fn refused_certificate(code: Option<ErrorCode>) -> Option<&'static str> {
    match code? {
        ErrorCode::CertificateRevoked => Some("revoked, superseded or unknown serial"),
        ErrorCode::CertificateExpired => Some("expired"),
        ErrorCode::CertificateUnknownCa => Some("not issued by the daemon's operator CA"),
        ErrorCode::CertificateRefused => Some("not acceptable"),
        _ => None,
    }
}

/// An exit-5 error when the agent reported an expired certificate in the probe.
pub fn expired_agent(resolved: &Resolved) -> Option<CliError> {
    let status = resolved.agent_status.as_ref()?;
    (status.days_left < 0).then(|| {
        CliError::Credentials(format!(
            "the operator agent's certificate expired at {}; {OFFLINE_FIX}",
            status.not_after
        ))
    })
}

/// The `error` of an [`ErrorBody`], else the body as printable text (bounded).
pub fn error_text(body: &[u8]) -> String {
    error_body(body).0
}

/// The `error` and `code` of an [`ErrorBody`], else the body as printable text (bounded) and no
/// code.
pub fn error_body(body: &[u8]) -> (String, Option<ErrorCode>) {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return (printable(&e.error), e.code);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        ("no details".into(), None)
    } else {
        (printable(text), None)
    }
}

/// What to tell the operator about locked-out pairing sources (nothing when there are none).
pub fn lockout_lines(p: &PairingHealth) -> Vec<String> {
    if p.locked_out_sources == 0 {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{} source address(es) locked out of pairing after repeated failed exchanges:",
        p.locked_out_sources
    )];
    for l in &p.locked_out {
        lines.push(format!(
            "  {} until {}",
            printable(&l.source),
            printable(&l.until)
        ));
    }
    if p.locked_out_sources > p.locked_out.len() {
        lines.push(format!(
            "  … and {} more",
            p.locked_out_sources - p.locked_out.len()
        ));
    }
    lines.push(
        "a device on a locked-out address must wait until then or pair from another network; many lockouts mean someone is guessing (`netclaw events` shows pairing-locked-out)"
            .to_owned(),
    );
    lines
}

/// Strips control characters and bounds the length of text that came from the network.
pub fn printable(s: &str) -> String {
    const MAX: usize = 300;
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
