//! `GET /agent/v1/metrics`: the agent's Prometheus metrics, read at scrape time from the
//! forwarding counters ([`crate::upstream::Stats`]) and the certificate in force, and encoded by
//! `prometheus-client` in the OpenMetrics text format ([`CONTENT_TYPE`]) with a typed label set
//! for each labelled family. Counters carry the `_total` suffix the encoder adds.

use std::sync::atomic::{AtomicU64, Ordering};

use netclaw_pki::identity::unix_seconds;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::upstream::{Stats, MAX_IDLE, MAX_IN_FLIGHT};
use crate::AgentState;

/// The `Content-Type` of [`metrics`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A daemon response's status class, `1xx` to `5xx`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct StatusClass(u8);

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&format!("{}xx", self.0).as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: StatusClass,
}

/// A renewal's outcome.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum RenewalResult {
    Success,
    Failure,
}

impl EncodeLabelValue for RenewalResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let word = match self {
            Self::Success => "success",
            Self::Failure => "failure",
        };
        EncodeLabelValue::encode(&word, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenewalLabels {
    result: RenewalResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SerialLabels {
    serial: String,
}

fn count(a: &AtomicU64) -> ConstCounter {
    ConstCounter::new(a.load(Ordering::Relaxed))
}

fn gauge(n: impl TryInto<i64>) -> ConstGauge {
    ConstGauge::new(n.try_into().unwrap_or(i64::MAX))
}

/// The agent's metrics as OpenMetrics text.
pub(crate) fn metrics(state: &AgentState) -> String {
    let id = state.upstream().creds.identity.clone();
    render(
        &state.stats,
        state.busy.windows(),
        &id.serial.to_string(),
        unix_seconds(id.not_before),
        unix_seconds(id.not_after),
    )
}

/// The exposition of `st`, `busy_windows` busy-poll windows, and the certificate `serial` valid
/// from `not_before` to `not_after` (Unix seconds).
fn render(st: &Stats, busy_windows: u64, serial: &str, not_before: u64, not_after: u64) -> String {
    let mut registry = Registry::default();
    registry.register(
        "netclaw_agent_requests",
        "Requests forwarded to the daemon",
        count(&st.requests),
    );
    let responses = Family::<ClassLabels, Counter>::default();
    for (class, n) in st.responses.iter().enumerate().skip(1) {
        let class = StatusClass(u8::try_from(class).unwrap_or(u8::MAX));
        responses
            .get_or_create(&ClassLabels { class })
            .inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "netclaw_agent_responses",
        "Daemon responses by status class",
        responses,
    );
    registry.register(
        "netclaw_agent_upstream_handshakes",
        "TLS handshakes with the daemon's operator listener",
        count(&st.handshakes),
    );
    registry.register(
        "netclaw_agent_upstream_connections",
        "Open upstream connections (the pool and those in use)",
        gauge(st.open.load(Ordering::Relaxed)),
    );
    registry.register(
        "netclaw_agent_pool_max_idle",
        "Idle pooled connections kept at most",
        gauge(MAX_IDLE),
    );
    registry.register(
        "netclaw_agent_pool_max_in_flight",
        "Forwarded requests in flight at most; more wait for a slot",
        gauge(MAX_IN_FLIGHT),
    );
    registry.register(
        "netclaw_agent_refused_callers",
        "Requests refused by the peer-credential check (against the policy in force)",
        count(&st.refused_callers),
    );
    registry.register(
        "netclaw_agent_busy_poll_windows",
        "Times the event loop began polling without sleeping after a forwarded request \
         (Operator.BusyPollMicros)",
        ConstCounter::new(busy_windows),
    );
    let renewals = Family::<RenewalLabels, Counter>::default();
    for (result, n) in [
        (RenewalResult::Success, &st.renewals_ok),
        (RenewalResult::Failure, &st.renewals_failed),
    ] {
        renewals
            .get_or_create(&RenewalLabels { result })
            .inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "netclaw_agent_renewals",
        "Certificate renewals by result",
        renewals,
    );
    let serial = SerialLabels {
        serial: serial.to_owned(),
    };
    for (name, help, at) in [
        (
            "netclaw_agent_certificate_not_before_seconds",
            "Agent certificate start of validity as a Unix timestamp",
            not_before,
        ),
        (
            "netclaw_agent_certificate_not_after_seconds",
            "Agent certificate expiry as a Unix timestamp",
            not_after,
        ),
    ] {
        let family = Family::<SerialLabels, Gauge>::default();
        family
            .get_or_create(&serial)
            .set(at.try_into().unwrap_or(i64::MAX));
        registry.register(name, help, family);
    }
    let mut out = String::new();
    // Writing into a String cannot fail; the encoder's only errors are the writer's.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests;
