//! `GET /agent/v1/status`: the agent's credentials, its last reload and renewal, its pool, and
//! a readiness probe of the daemon over mTLS (with the daemon's clock offset).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper::Request;
use netclaw_core::wire::{self, AgentStatus, ErrorCode, PoolStatus};
use netclaw_pki::identity::unix_seconds;
use netclaw_pki::verify::CLOCK_SKEW_TOLERANCE;

use crate::respond::{refused_certificate, source_chain};
use crate::upstream::{MAX_IDLE, MAX_IN_FLIGHT};
use crate::AgentState;

/// How long the status endpoint waits for the daemon: well inside the CLI's 2 s probe of this
/// endpoint (`netclaw_cli::endpoint::PROBE_TIMEOUT`), so that a hung daemon is reported as the
/// daemon, not as a missing agent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest clock difference with the daemon that `status` accepts as healthy: what the
/// agent's NotBefore tolerance plus the certificates' backdate absorb. Clocks further apart are
/// reported (ahead) or make certificates fail as not valid yet (behind).
const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(
    CLOCK_SKEW_TOLERANCE.as_secs() + netclaw_pki::NOT_BEFORE_BACKDATE.as_secs(),
);

pub(crate) async fn status(state: &AgentState) -> AgentStatus {
    let now = SystemTime::now();
    let upstream = state.upstream();
    let id = &upstream.creds.identity;
    let crate::manager::CredentialStatus {
        last_reload,
        last_reload_error,
        last_renewal,
        renewal_error,
    } = state.credentials().status();
    let probed = probe(state, &upstream).await;
    let reachable = probed.is_ok();

    let secs_left = unix_seconds(id.not_after) as i64 - unix_seconds(now) as i64;
    let mut problems = Vec::new();
    if secs_left <= 0 {
        problems.push(format!(
            "the agent certificate expired at {}; run `netclaw pki rotate --offline` as root",
            wire::format_unix(unix_seconds(id.not_after))
        ));
    } else if netclaw_pki::schedule::expiring(id.not_before, id.not_after, now) {
        problems.push(format!(
            "the agent certificate expires at {}, long past its renewal; run `netclaw pki rotate`",
            wire::format_unix(unix_seconds(id.not_after))
        ));
    }
    if let Some(e) = &last_reload_error {
        problems.push(format!(
            "the last reload failed ({e}); the agent keeps what it had (certificate or operator \
             policy); fix the file named: a credential file's new content, mode or owner is \
             picked up within 2 s, a changed `netclaw.json` by `systemctl reload \
             netclaw-operator-agent`"
        ));
    }
    if let Some(e) = &renewal_error {
        problems.push(format!(
            "the last certificate renewal failed ({e}); it is retried with backoff, or run \
             `netclaw pki rotate`"
        ));
    }
    match &probed {
        Ok(Some(offset)) if offset.unsigned_abs() > MAX_CLOCK_OFFSET.as_secs() => {
            problems.push(format!(
                "the daemon's clock is {} s {} this host's, more than the {} s the agent \
                 tolerates; certificates may be refused as not valid yet or expired — make the \
                 clocks agree (NTP: `timedatectl`)",
                offset.unsigned_abs(),
                if *offset > 0 { "ahead of" } else { "behind" },
                MAX_CLOCK_OFFSET.as_secs()
            ));
        }
        Ok(_) => {}
        // Already reported above.
        Err(_) if secs_left <= 0 => {}
        Err(e) if e.refused.is_some() => problems.push(format!(
            "the daemon refuses the agent certificate ({e}); re-issue it with `netclaw pki \
             rotate --offline` as root"
        )),
        Err(e) => problems.push(format!(
            "the daemon's operator listener at {} does not answer ({e}); check `systemctl \
             status netclaw-daemon`",
            state.addr
        )),
    }
    AgentStatus {
        healthy: problems.is_empty(),
        problems,
        identity: id.spiffe_id.to_string(),
        serial: id.serial.to_string(),
        not_before: wire::format_unix(unix_seconds(id.not_before)),
        not_after: wire::format_unix(unix_seconds(id.not_after)),
        days_left: secs_left.div_euclid(86_400),
        daemon_endpoint: state.addr.to_string(),
        daemon_reachable: reachable,
        last_reload: wire::format_unix(unix_seconds(last_reload)),
        last_reload_error,
        last_renewal: last_renewal.map(|t| wire::format_unix(unix_seconds(t))),
        last_renewal_error: renewal_error,
        pool: PoolStatus {
            open: state.stats.open.load(Ordering::Relaxed),
            max_idle: MAX_IDLE,
            max_in_flight: MAX_IN_FLIGHT,
            handshakes: state.stats.handshakes.load(Ordering::Relaxed),
            requests: state.stats.requests.load(Ordering::Relaxed),
        },
        daemon_clock_offset_secs: probed.ok().flatten(),
    }
}

/// Why the readiness probe failed: the text for the status, and whether (and how) the daemon
/// refused the agent's certificate.
#[derive(Debug)]
struct ProbeFailure {
    text: String,
    refused: Option<ErrorCode>,
}

impl ProbeFailure {
    fn other(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            refused: None,
        }
    }
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether the daemon answers `/api/health/ready` over mTLS with the current credentials.
/// Probes the daemon's readiness; on an answer, returns how far the daemon's clock (its `Date`
/// header, whole seconds) is ahead of this host's.
async fn probe(
    state: &AgentState,
    upstream: &crate::upstream::Upstream,
) -> Result<Option<i64>, ProbeFailure> {
    if upstream.creds.expired(SystemTime::now()) {
        return Err(ProbeFailure {
            text: "certificate expired".into(),
            refused: Some(ErrorCode::CredentialExpired),
        });
    }
    let uri = format!("http://{}/api/health/ready", state.addr);
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| ProbeFailure::other(e.to_string()))?;
    match tokio::time::timeout(PROBE_TIMEOUT, upstream.probe.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let offset = resp
                .headers()
                .get(header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .map(|daemon| unix_seconds(daemon) as i64 - unix_seconds(SystemTime::now()) as i64);
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(offset)
            } else {
                Err(ProbeFailure::other(format!("answered {status}")))
            }
        }
        Ok(Err(e)) => Err(ProbeFailure {
            text: source_chain(&e),
            refused: refused_certificate(&e),
        }),
        Err(_) => Err(ProbeFailure::other(format!(
            "no answer within {} s",
            PROBE_TIMEOUT.as_secs_f32()
        ))),
    }
}
