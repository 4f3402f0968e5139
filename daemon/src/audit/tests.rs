use std::time::{Duration, SystemTime};

use super::*;

/// The adversary: anyone who can reach the operator port, connecting from a source it does not
/// allow as fast as they can, to fill the disk with audit lines. Every refusal is counted; at
/// most the bound a minute is written.
#[test]
fn refused_operator_connections_write_a_bounded_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("audit.log");
    let audit = Audit::new(Some(log.clone())).unwrap();
    for i in 0..1000 {
        audit.refusal(
            HANDSHAKE_REFUSED,
            "Anonymous".into(),
            RefusalReason::SourceNotAllowed,
            format!("source-not-allowed: 203.0.113.{}", i % 250),
        );
    }
    let written = std::fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(written, LINES_PER_WINDOW as usize);
    let metrics = audit.metrics.render(&[]);
    assert!(
        metrics.contains(
            "netclaw_daemon_handshakes_total{result=\"refused\",reason=\"source-not-allowed\"} 1000"
        ),
        "{metrics}"
    );
    // Other kinds are not bounded by it.
    for _ in 0..100 {
        audit.record("device-revoked", "LocalOperator".into(), "d".into());
    }
    let written = std::fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(written, LINES_PER_WINDOW as usize + 100);
}

#[test]
fn a_line_budget_counts_what_it_did_not_write_into_the_next_window() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut budget = LineBudget::default();
    let lines: Vec<_> = (0..LINES_PER_WINDOW + 5)
        .filter_map(|_| budget.detail("refused".into(), start))
        .collect();
    assert_eq!(lines.len(), LINES_PER_WINDOW as usize);
    assert!(lines.iter().all(|l| l == "refused"));
    assert_eq!(
        budget.detail("refused".into(), start + WINDOW - Duration::from_secs(1)),
        None
    );
    assert_eq!(
        budget.detail("refused".into(), start + WINDOW).as_deref(),
        Some("refused; 6 earlier refusals not audited (at most 60 a minute)")
    );
    assert_eq!(
        budget.detail("refused".into(), start + WINDOW).as_deref(),
        Some("refused")
    );
    // A clock stepped back starts a new window rather than stopping the audit. (Two lines of
    // this window are written above, so 58 of these are written and 2 are not.)
    for _ in 0..LINES_PER_WINDOW {
        budget.detail("x".into(), start + WINDOW);
    }
    assert_eq!(
        budget.detail("refused".into(), start).as_deref(),
        Some("refused; 2 earlier refusals not audited (at most 60 a minute)")
    );
}
