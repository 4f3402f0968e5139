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
