//! Prometheus metrics, served on the operator listener at `GET /metrics` (LocalOperator only):
//! handshakes by result and reason, requests by principal and status, certificate not-after
//! times as absolute Unix timestamps, certificate renewals, and the public listener's open
//! connections, caps, refusals and request-body timeouts.
//!
//! Kept in `prometheus-client` metrics with a typed label set each and encoded in the OpenMetrics
//! text format ([`CONTENT_TYPE`]); counters carry the `_total` suffix the encoder adds.

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::refusal::RefusalReason;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an operator-listener handshake was admitted.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum HandshakeResult {
    Accepted,
    Refused,
}

impl EncodeLabelValue for HandshakeResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let word = match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
        };
        EncodeLabelValue::encode(&word, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    result: HandshakeResult,
    /// `ok` for an admitted handshake, else the [`RefusalReason`]'s stable label.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    principal: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenewalLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BodyTimeoutLabels {
    listener: &'static str,
}

/// The cap a public-connection limit applies to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Scope {
    Total,
    PerSource,
}

impl EncodeLabelValue for Scope {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let word = match self {
            Self::Total => "total",
            Self::PerSource => "per-source",
        };
        EncodeLabelValue::encode(&word, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: Scope,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    kind: &'static str,
    serial: String,
}

/// The daemon's metrics. Label values are fixed words (reasons, principal kinds, status codes),
/// never names, serials or addresses supplied by a client.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    handshakes: Family<HandshakeLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    renewals: Family<RenewalLabels, Counter>,
    public_refused: Family<RefusedLabels, Counter>,
    body_timeouts: Family<BodyTimeoutLabels, Counter>,
    public_open: Gauge,
    public_caps: Family<ScopeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let renewals = Family::<RenewalLabels, Counter>::default();
        let public_refused = Family::<RefusedLabels, Counter>::default();
        let body_timeouts = Family::<BodyTimeoutLabels, Counter>::default();
        let public_open = Gauge::default();
        let public_caps = Family::<ScopeLabels, Gauge>::default();
        let mut registry = Registry::default();
        registry.register(
            "netclaw_daemon_handshakes",
            "Operator listener TLS handshakes by result and reason",
            handshakes.clone(),
        );
        registry.register(
            "netclaw_daemon_requests",
            "HTTP requests by principal and status",
            requests.clone(),
        );
        registry.register(
            "netclaw_daemon_certificate_renewals",
            "Certificate renewals by kind and result",
            renewals.clone(),
        );
        registry.register(
            "netclaw_daemon_public_connections",
            "Public listener connections open now",
            public_open.clone(),
        );
        registry.register(
            "netclaw_daemon_public_connection_limit",
            "Public listener connection caps, derived from the descriptor limit",
            public_caps.clone(),
        );
        registry.register(
            "netclaw_daemon_public_connections_refused",
            "Public connections closed at accept, by reason",
            public_refused.clone(),
        );
        registry.register(
            "netclaw_daemon_request_body_timeouts",
            "Requests whose body did not arrive in time, by listener",
            body_timeouts.clone(),
        );
        Self {
            registry,
            handshakes,
            requests,
            renewals,
            public_refused,
            body_timeouts,
            public_open,
            public_caps,
        }
    }
}

fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    /// An operator-listener handshake that completed and was admitted.
    pub fn handshake_accepted(&self) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                result: HandshakeResult::Accepted,
                reason: "ok",
            })
            .inc();
    }

    /// A refused operator-listener handshake, with its stable reason label.
    pub fn handshake_refused(&self, reason: RefusalReason) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                result: HandshakeResult::Refused,
                reason: reason.as_str(),
            })
            .inc();
    }

    /// A request answered with `status` to a principal of `kind`.
    pub fn request(&self, kind: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                principal: kind,
                status,
            })
            .inc();
    }

    /// A certificate renewal (`agent` or `server`) and its result (`success`, `failure` or
    /// `refused`).
    pub fn renewal(&self, kind: &'static str, result: &'static str) {
        self.renewals
            .get_or_create(&RenewalLabels { kind, result })
            .inc();
    }

    /// A public connection closed at accept: `total-cap`, `source-cap`, or `descriptors` (the
    /// accept itself failed for lack of descriptors).
    pub fn public_refused(&self, reason: &'static str) {
        self.public_refused
            .get_or_create(&RefusedLabels { reason })
            .inc();
    }

    /// A request on `listener` (`public` or `operator`) whose body did not arrive in time.
    pub fn body_timeout(&self, listener: &'static str) {
        self.body_timeouts
            .get_or_create(&BodyTimeoutLabels { listener })
            .inc();
    }

    /// Public connections open now.
    pub fn set_public_open(&self, n: usize) {
        self.public_open.set(gauge_value(n));
    }

    /// The public listener's caps (total, per source).
    pub fn set_public_caps(&self, total: usize, per_source: usize) {
        for (scope, n) in [(Scope::Total, total), (Scope::PerSource, per_source)] {
            self.public_caps
                .get_or_create(&ScopeLabels { scope })
                .set(gauge_value(n));
        }
    }

    /// The text exposition (OpenMetrics, [`CONTENT_TYPE`]). `certificates` are (kind, serial,
    /// not_after Unix seconds), read at scrape time.
    pub fn render(&self, certificates: &[(&'static str, String, u64)]) -> String {
        let not_after = Family::<CertificateLabels, Gauge>::default();
        for (kind, serial, at) in certificates {
            not_after
                .get_or_create(&CertificateLabels {
                    kind,
                    serial: serial.clone(),
                })
                .set(gauge_value(*at));
        }
        let mut scrape = Registry::default();
        scrape.register(
            "netclaw_daemon_certificate_not_after_seconds",
            "Certificate expiry as a Unix timestamp",
            not_after,
        );
        let mut out = String::new();
        // Writing into a String cannot fail; the encoder's only errors are the writer's.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &scrape))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_rendering() {
        let m = Metrics::default();
        m.handshake_accepted();
        m.handshake_refused(RefusalReason::WrongCa);
        m.handshake_refused(RefusalReason::WrongCa);
        m.request("LocalOperator", 200);
        m.renewal("agent", "success");
        m.public_refused("source-cap");
        m.body_timeout("public");
        m.set_public_open(3);
        m.set_public_caps(748, 64);
        let text = m.render(&[("agent", "0a0b".into(), 1_800_000_000)]);
        assert!(text
            .contains("netclaw_daemon_handshakes_total{result=\"refused\",reason=\"wrong-ca\"} 2"));
        assert!(
            text.contains("netclaw_daemon_handshakes_total{result=\"accepted\",reason=\"ok\"} 1")
        );
        assert!(text.contains(
            "netclaw_daemon_requests_total{principal=\"LocalOperator\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "netclaw_daemon_certificate_renewals_total{kind=\"agent\",result=\"success\"} 1"
        ));
        assert!(text
            .contains("netclaw_daemon_public_connections_refused_total{reason=\"source-cap\"} 1"));
        assert!(text.contains("netclaw_daemon_request_body_timeouts_total{listener=\"public\"} 1"));
        assert!(text.contains("netclaw_daemon_public_connections 3\n"));
        assert!(text.contains("netclaw_daemon_public_connection_limit{scope=\"per-source\"} 64"));
        assert!(text.contains("netclaw_daemon_certificate_not_after_seconds{kind=\"agent\",serial=\"0a0b\"} 1800000000"));
        // OpenMetrics: counter families are typed without the `_total` their samples carry,
        // and the exposition ends with its EOF marker.
        assert!(text.contains("# TYPE netclaw_daemon_handshakes counter\n"));
        assert!(text.contains("# TYPE netclaw_daemon_certificate_not_after_seconds gauge\n"));
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
