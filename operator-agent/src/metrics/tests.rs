use std::sync::atomic::Ordering;

use super::*;

#[test]
fn names_labels_and_values_are_the_documented_ones() {
    let st = Stats::default();
    st.requests.store(7, Ordering::Relaxed);
    st.responses[2].store(6, Ordering::Relaxed);
    st.responses[5].store(1, Ordering::Relaxed);
    st.handshakes.store(2, Ordering::Relaxed);
    st.open.store(1, Ordering::Relaxed);
    st.refused_callers.store(3, Ordering::Relaxed);
    st.renewals_ok.store(4, Ordering::Relaxed);
    let text = render(&st, 5, "0a0b", 1_700_000_000, 1_800_000_000);
    for line in [
        "netclaw_agent_requests_total 7\n",
        "netclaw_agent_responses_total{class=\"1xx\"} 0\n",
        "netclaw_agent_responses_total{class=\"2xx\"} 6\n",
        "netclaw_agent_responses_total{class=\"5xx\"} 1\n",
        "netclaw_agent_upstream_handshakes_total 2\n",
        "netclaw_agent_upstream_connections 1\n",
        &format!("netclaw_agent_pool_max_idle {MAX_IDLE}\n"),
        &format!("netclaw_agent_pool_max_in_flight {MAX_IN_FLIGHT}\n"),
        "netclaw_agent_refused_callers_total 3\n",
        "netclaw_agent_busy_poll_windows_total 5\n",
        "netclaw_agent_renewals_total{result=\"success\"} 4\n",
        "netclaw_agent_renewals_total{result=\"failure\"} 0\n",
        "netclaw_agent_certificate_not_before_seconds{serial=\"0a0b\"} 1700000000\n",
        "netclaw_agent_certificate_not_after_seconds{serial=\"0a0b\"} 1800000000\n",
        "# TYPE netclaw_agent_requests counter\n",
        "# TYPE netclaw_agent_upstream_connections gauge\n",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}
