//! When to renew: a pure function of the certificate's validity, the current time and a random
//! draw, so that it can be tested exhaustively and every agent on a fleet renews at a different
//! moment.
//!
//! The target is two thirds of the lifetime after `not_before`, moved by up to ±10 % of that
//! span. It is never later than 24 h before `not_after`; for lifetimes too short for that margin,
//! never later than one third of the lifetime before `not_after`.

use std::time::{Duration, SystemTime};

/// The latest renewal happens this long before expiry (for long lifetimes).
pub const RENEW_MARGIN: Duration = Duration::from_secs(24 * 3600);
/// First retry delay after a failed renewal.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(600);

/// When to renew a certificate valid from `not_before` to `not_after`; `draw` is uniform in
/// `[0, 1)` (values outside are clamped).
pub fn refresh_at(not_before: SystemTime, not_after: SystemTime, draw: f64) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let draw = draw.clamp(0.0, 1.0);
    let base = lifetime.mul_f64(2.0 / 3.0);
    // ±10 % of the base span.
    let target = not_before + base.mul_f64(0.9 + 0.2 * draw);
    let margin = RENEW_MARGIN.min(lifetime / 3);
    let latest = not_after.checked_sub(margin).unwrap_or(not_before);
    target.min(latest)
}

/// How little validity left means a certificate's renewal has failed: half of the latest
/// renewal margin (12 h for long lifetimes, a sixth of the lifetime for short ones).
pub fn expiring_margin(not_before: SystemTime, not_after: SystemTime) -> Duration {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    RENEW_MARGIN.min(lifetime / 3) / 2
}

/// Whether a certificate still valid at `now` is about to expire because its renewal did not
/// happen: less than [`expiring_margin`] left. The one rule by which the agent's status,
/// `netclaw pki status` and `netclaw doctor` call it unhealthy.
pub fn expiring(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    now < not_after && now + expiring_margin(not_before, not_after) > not_after
}

/// The delay before retry number `attempt` (0 for the first retry) after a failed renewal:
/// exponential from [`BACKOFF_BASE`], capped at [`BACKOFF_CAP`], with "equal jitter" (between
/// half and all of the exponential value). `draw` is uniform in `[0, 1)`.
pub fn backoff(attempt: u32, draw: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(BACKOFF_CAP);
    capped.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn offset(t: SystemTime) -> f64 {
        t.duration_since(at(1_000_000)).unwrap().as_secs_f64()
    }

    #[test]
    fn thirty_days_renews_between_day_18_and_22() {
        let nb = at(1_000_000);
        let na = at(1_000_000 + 30 * DAY);
        let lo = offset(refresh_at(nb, na, 0.0)) / DAY as f64;
        let mid = offset(refresh_at(nb, na, 0.5)) / DAY as f64;
        let hi = offset(refresh_at(nb, na, 0.999_999)) / DAY as f64;
        assert!((lo - 18.0).abs() < 1e-6, "{lo}");
        assert!((mid - 20.0).abs() < 1e-6, "{mid}");
        assert!((hi - 22.0).abs() < 1e-3, "{hi}");
    }

    #[test]
    fn never_later_than_a_day_before_expiry() {
        // 36 h lifetime: 2/3 = 24 h, +10 % = 26.4 h, but the latest is 36 h - 12 h (one third,
        // since 24 h is more than a third).
        let nb = at(1_000_000);
        let na = at(1_000_000 + 36 * 3600);
        assert_eq!(refresh_at(nb, na, 0.999), at(1_000_000 + 24 * 3600));
        // 3 days: latest 48 h; 2/3 = 48 h, so the upper half of the jitter is clamped.
        let na = at(1_000_000 + 3 * DAY);
        assert_eq!(refresh_at(nb, na, 0.9), at(1_000_000 + 2 * DAY));
        assert!(refresh_at(nb, na, 0.0) < at(1_000_000 + 2 * DAY));
    }

    #[test]
    fn short_lifetimes_are_clamped() {
        // 180 s: between 108 s and 120 s.
        let nb = at(1_000_000);
        let na = at(1_000_180);
        for i in 0..100 {
            let t = offset(refresh_at(nb, na, f64::from(i) / 100.0));
            assert!((108.0..=120.0).contains(&t), "{t}");
        }
        // 2 minutes (the test lifetime): 72 s to 80 s.
        let na = at(1_000_120);
        for i in 0..100 {
            let t = offset(refresh_at(nb, na, f64::from(i) / 100.0));
            assert!((72.0..=80.0).contains(&t), "{t}");
        }
    }

    #[test]
    fn degenerate_validity_renews_immediately() {
        let t = at(1_000_000);
        assert_eq!(refresh_at(t, t, 0.5), t);
        // not_before after not_after (a broken certificate): renew at once.
        assert_eq!(refresh_at(at(2_000_000), t, 0.5), t);
    }

    #[test]
    fn expiring_means_the_latest_renewal_is_well_past() {
        let nb = at(0);
        let day = 86_400;
        // 30 days: 12 h.
        let na = at(30 * day);
        assert!(!expiring(nb, na, at(30 * day - 13 * 3600)));
        assert!(expiring(nb, na, at(30 * day - 11 * 3600)));
        assert!(!expiring(nb, na, at(30 * day)), "expired is not expiring");
        // Two minutes: a sixth, 20 s; after the agent's renewal point (80 s ± 8 s) it is not.
        let na = at(120);
        assert!(!expiring(nb, na, at(90)));
        assert!(expiring(nb, na, at(101)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(2500));
        assert_eq!(backoff(0, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(40));
        assert_eq!(backoff(30, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(30, 0.0), BACKOFF_CAP / 2);
        for a in 0..40 {
            assert!(backoff(a, 0.7) <= BACKOFF_CAP);
        }
    }
}
