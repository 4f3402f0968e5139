//! `GET /agent/v1/metrics`: the agent's Prometheus text metrics.

use std::sync::atomic::Ordering;

use netclaw_pki::identity::unix_seconds;

use crate::upstream::{MAX_IDLE, MAX_IN_FLIGHT};
use crate::AgentState;

/// Prometheus text metrics for the agent.
pub(crate) fn metrics(state: &AgentState) -> String {
    use std::fmt::Write;
    let st = &state.stats;
    let id = state.upstream().creds.identity.clone();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    metric(
        "netclaw_agent_requests_total",
        "counter",
        "Requests forwarded to the daemon.",
        &[(String::new(), get(&st.requests))],
    );
    metric(
        "netclaw_agent_responses_total",
        "counter",
        "Daemon responses by status class.",
        &(1..=5)
            .map(|c| (format!("{{class=\"{c}xx\"}}"), get(&st.responses[c])))
            .collect::<Vec<_>>(),
    );
    metric(
        "netclaw_agent_upstream_handshakes_total",
        "counter",
        "TLS handshakes with the daemon's operator listener.",
        &[(String::new(), get(&st.handshakes))],
    );
    metric(
        "netclaw_agent_upstream_connections",
        "gauge",
        "Open upstream connections (the pool and those in use).",
        &[(String::new(), st.open.load(Ordering::Relaxed) as u64)],
    );
    metric(
        "netclaw_agent_pool_max_idle",
        "gauge",
        "Idle pooled connections kept at most.",
        &[(String::new(), MAX_IDLE as u64)],
    );
    metric(
        "netclaw_agent_pool_max_in_flight",
        "gauge",
        "Forwarded requests in flight at most; more wait for a slot.",
        &[(String::new(), MAX_IN_FLIGHT as u64)],
    );
    metric(
        "netclaw_agent_refused_callers_total",
        "counter",
        "Requests refused by the peer-credential check (against the policy in force).",
        &[(String::new(), get(&st.refused_callers))],
    );
    metric(
        "netclaw_agent_renewals_total",
        "counter",
        "Certificate renewals by result.",
        &[
            ("{result=\"success\"}".into(), get(&st.renewals_ok)),
            ("{result=\"failure\"}".into(), get(&st.renewals_failed)),
        ],
    );
    let serial = format!("{{serial=\"{}\"}}", id.serial);
    metric(
        "netclaw_agent_certificate_not_before_seconds",
        "gauge",
        "Agent certificate start of validity as a Unix timestamp.",
        &[(serial.clone(), unix_seconds(id.not_before))],
    );
    metric(
        "netclaw_agent_certificate_not_after_seconds",
        "gauge",
        "Agent certificate expiry as a Unix timestamp.",
        &[(serial, unix_seconds(id.not_after))],
    );
    out
}
