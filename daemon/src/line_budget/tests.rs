use std::time::{Duration, SystemTime};

use super::*;

const LINES: u32 = 60;
const WINDOW: Duration = Duration::from_secs(60);

#[test]
fn a_line_budget_counts_what_it_did_not_write_into_the_next_window() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut budget = LineBudget::new(LINES, WINDOW);
    let lines: Vec<_> = (0..LINES + 5)
        .filter_map(|_| budget.detail("refused".into(), start))
        .collect();
    assert_eq!(lines.len(), LINES as usize);
    assert!(lines.iter().all(|l| l == "refused"));
    assert_eq!(
        budget.detail("refused".into(), start + WINDOW - Duration::from_secs(1)),
        None
    );
    assert_eq!(
        budget.detail("refused".into(), start + WINDOW).as_deref(),
        Some("refused; 6 earlier refusals not audited (at most 60 every 60 s)")
    );
    assert_eq!(
        budget.detail("refused".into(), start + WINDOW).as_deref(),
        Some("refused")
    );
    // A clock stepped back starts a new window rather than stopping the lines. (Two lines of
    // this window are written above, so 58 of these are written and 2 are not.)
    for _ in 0..LINES {
        budget.detail("x".into(), start + WINDOW);
    }
    assert_eq!(
        budget.detail("refused".into(), start).as_deref(),
        Some("refused; 2 earlier refusals not audited (at most 60 every 60 s)")
    );
}

/// One line per window, as for warnings: the first event, then the first after the window has
/// passed, with the count of those in between.
#[test]
fn a_budget_of_one_line_warns_once_a_window_with_the_count() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut w = LineBudget::new(1, WINDOW);
    assert_eq!(w.count(start), Some(0));
    for s in [1, 30, 59] {
        assert_eq!(w.count(start + Duration::from_secs(s)), None);
    }
    assert_eq!(w.count(start + WINDOW), Some(3));
    assert_eq!(w.count(start + Duration::from_secs(61)), None);
    assert_eq!(w.count(start + Duration::from_secs(200)), Some(1));
}

/// The adversary: a stranger sending forged identity headers (or a broken forwarded address) on
/// every request. However many requests, one warning a window, which counts them all.
#[test]
fn warnings_anyone_can_cause_come_once_a_window_with_the_count() {
    let warnings = Warnings::default();
    assert_eq!(warnings.due(), Some(1));
    for _ in 0..10_000 {
        assert_eq!(warnings.due(), None);
    }
    let mut w = Warnings::every(Duration::ZERO);
    assert_eq!(w.due(), Some(1));
    assert_eq!(w.due(), Some(1));
    w = Warnings::every(WARN_EVERY);
    assert_eq!(w.due(), Some(1));
}
