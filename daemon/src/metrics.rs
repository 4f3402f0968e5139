//! Prometheus text metrics, served on the operator listener at `GET /metrics` (LocalOperator
//! only): handshakes by result and reason, requests by principal and status, certificate
//! not-after times as absolute Unix timestamps, certificate renewals, and the public listener's
//! open connections, caps, refusals and request-body timeouts.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::refusal::RefusalReason;

/// Counters. Label values are fixed words (reasons, principal kinds, status codes), never
/// names, serials or addresses supplied by a client.
#[derive(Debug, Default)]
pub struct Metrics {
    handshakes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    renewals: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    public_refused: Mutex<BTreeMap<&'static str, u64>>,
    body_timeouts: Mutex<BTreeMap<&'static str, u64>>,
    public_open: AtomicU64,
    public_caps: Mutex<Option<(u64, u64)>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_insert(0) += 1;
    }
}

impl Metrics {
    /// An operator-listener handshake that completed and was admitted.
    pub fn handshake_accepted(&self) {
        bump(&self.handshakes, ("accepted", "ok"));
    }

    /// A refused operator-listener handshake, with its stable reason label.
    pub fn handshake_refused(&self, reason: RefusalReason) {
        bump(&self.handshakes, ("refused", reason.as_str()));
    }

    /// A request answered with `status` to a principal of `kind`.
    pub fn request(&self, kind: &'static str, status: u16) {
        bump(&self.requests, (kind, status));
    }

    /// A certificate renewal (`agent` or `server`) and its result (`success` or `failure`).
    pub fn renewal(&self, kind: &'static str, result: &'static str) {
        bump(&self.renewals, (kind, result));
    }

    /// A public connection closed at accept: `total-cap`, `source-cap`, or `descriptors` (the
    /// accept itself failed for lack of descriptors).
    pub fn public_refused(&self, reason: &'static str) {
        bump(&self.public_refused, reason);
    }

    /// A request on `listener` (`public` or `operator`) whose body did not arrive in time.
    pub fn body_timeout(&self, listener: &'static str) {
        bump(&self.body_timeouts, listener);
    }

    /// Public connections open now.
    pub fn set_public_open(&self, n: usize) {
        self.public_open.store(n as u64, Ordering::Relaxed);
    }

    /// The public listener's caps (total, per source).
    pub fn set_public_caps(&self, total: usize, per_source: usize) {
        if let Ok(mut c) = self.public_caps.lock() {
            *c = Some((total as u64, per_source as u64));
        }
    }

    /// The text exposition. `certificates` are (kind, serial, not_after Unix seconds).
    pub fn render(&self, certificates: &[(&'static str, String, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP netclaw_daemon_handshakes_total Operator listener TLS handshakes by result and reason.\n");
        out.push_str("# TYPE netclaw_daemon_handshakes_total counter\n");
        if let Ok(m) = self.handshakes.lock() {
            for ((result, reason), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "netclaw_daemon_handshakes_total{{result=\"{result}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP netclaw_daemon_requests_total HTTP requests by principal and status.\n",
        );
        out.push_str("# TYPE netclaw_daemon_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((principal, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "netclaw_daemon_requests_total{{principal=\"{principal}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP netclaw_daemon_certificate_renewals_total Certificate renewals by kind and result.\n");
        out.push_str("# TYPE netclaw_daemon_certificate_renewals_total counter\n");
        if let Ok(m) = self.renewals.lock() {
            for ((kind, result), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "netclaw_daemon_certificate_renewals_total{{kind=\"{kind}\",result=\"{result}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP netclaw_daemon_public_connections Public listener connections open now.\n",
        );
        out.push_str("# TYPE netclaw_daemon_public_connections gauge\n");
        let _ = writeln!(
            out,
            "netclaw_daemon_public_connections {}",
            self.public_open.load(Ordering::Relaxed)
        );
        if let Ok(Some((total, per_source))) = self.public_caps.lock().map(|c| *c) {
            out.push_str("# HELP netclaw_daemon_public_connection_limit Public listener connection caps, derived from the descriptor limit.\n");
            out.push_str("# TYPE netclaw_daemon_public_connection_limit gauge\n");
            let _ = writeln!(
                out,
                "netclaw_daemon_public_connection_limit{{scope=\"total\"}} {total}"
            );
            let _ = writeln!(
                out,
                "netclaw_daemon_public_connection_limit{{scope=\"per-source\"}} {per_source}"
            );
        }
        out.push_str("# HELP netclaw_daemon_public_connections_refused_total Public connections closed at accept, by reason.\n");
        out.push_str("# TYPE netclaw_daemon_public_connections_refused_total counter\n");
        if let Ok(m) = self.public_refused.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "netclaw_daemon_public_connections_refused_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP netclaw_daemon_request_body_timeouts_total Requests whose body did not arrive in time, by listener.\n");
        out.push_str("# TYPE netclaw_daemon_request_body_timeouts_total counter\n");
        if let Ok(m) = self.body_timeouts.lock() {
            for (listener, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "netclaw_daemon_request_body_timeouts_total{{listener=\"{listener}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP netclaw_daemon_certificate_not_after_seconds Certificate expiry as a Unix timestamp.\n");
        out.push_str("# TYPE netclaw_daemon_certificate_not_after_seconds gauge\n");
        for (kind, serial, not_after) in certificates {
            let _ = writeln!(
                out,
                "netclaw_daemon_certificate_not_after_seconds{{kind=\"{kind}\",serial=\"{serial}\"}} {not_after}"
            );
        }
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
    }
}
