//! Pairing codes and the exchange limiter. Pure: every function takes `now`.
//!
//! Codes are 8 characters from `23456789ABCDEFGHJKLMNPQRSTUVWXYZ` (no 0/O, 1/I), shown as
//! `XXXX-XXXX`, valid 5 minutes, single use; at most one is pending (minting replaces it).
//! The limiter allows 5 exchange attempts per minute per client IP and locks a client out for
//! 15 minutes after 10 failures within 15 minutes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The code alphabet.
pub const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Code length without the dash.
pub const CODE_LEN: usize = 8;
/// Lifetime of a code.
pub const CODE_TTL: Duration = Duration::from_secs(300);
/// Attempts per window per client.
pub const RATE_LIMIT: usize = 5;
/// Rate window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Failures that trigger a lockout.
pub const LOCKOUT_FAILURES: usize = 10;
/// Lockout window and duration.
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most clients the limiter tracks before pruning.
const MAX_TRACKED: usize = 10_000;

/// A freshly generated code.
pub fn generate_code(rng: &dyn SecureRandom) -> Option<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; CODE_LEN]);
    rng.fill(bytes.as_mut()).ok()?;
    // 256 is a multiple of 32, so masking is unbiased.
    Some(Zeroizing::new(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect(),
    ))
}

/// `ABCDEFGH` → `ABCD-EFGH`.
pub fn format_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len().min(4));
    format!("{a}-{b}")
}

/// Accepts `abcd-efgh`, `ABCD EFGH`, `abcdefgh`; returns the 8 canonical characters, or `None`
/// for anything else.
pub fn normalize_code(input: &str) -> Option<Zeroizing<String>> {
    if input.len() > 32 {
        return None;
    }
    let code: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    (code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// Why an exchange was refused by the code check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeError {
    /// No code pending (none minted, expired or used).
    NoPending,
    /// A code is pending but this is not it.
    Wrong,
}

/// The pending code.
#[derive(Debug, Default)]
pub struct Pairing {
    pending: Option<(Zeroizing<String>, SystemTime)>,
}

impl Pairing {
    /// Mints a code, replacing any pending one. Returns the code and its expiry.
    pub fn mint(
        &mut self,
        rng: &dyn SecureRandom,
        now: SystemTime,
    ) -> Option<(Zeroizing<String>, SystemTime)> {
        let code = generate_code(rng)?;
        let expires = now + CODE_TTL;
        self.pending = Some((code.clone(), expires));
        Some((code, expires))
    }

    /// Checks `code` against the pending one without consuming it.
    pub fn check(&mut self, code: &str, now: SystemTime) -> Result<(), CodeError> {
        match &self.pending {
            Some((_, expires)) if now >= *expires => {
                self.pending = None;
                Err(CodeError::NoPending)
            }
            Some((pending, _)) if constant_time_eq(pending.as_bytes(), code.as_bytes()) => Ok(()),
            Some(_) => Err(CodeError::Wrong),
            None => Err(CodeError::NoPending),
        }
    }

    /// Consumes the pending code (after the device was stored).
    pub fn consume(&mut self) {
        self.pending = None;
    }
}

/// Constant-time equality for equal-length secrets; unequal lengths return false at once (the
/// length is public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rate limiting for `/api/pair/exchange`: [`RATE_LIMIT`] attempts per client address per
/// minute, and a lockout for everyone once [`LOCKOUT_FAILURES`] attempts failed within
/// [`LOCKOUT_WINDOW`] from any addresses (so that spreading a brute force over many addresses
/// does not help; an operator mints a new code after the lockout).
#[derive(Debug, Default)]
pub struct Limiter {
    attempts: HashMap<IpAddr, VecDeque<SystemTime>>,
    failures: VecDeque<SystemTime>,
}

impl Limiter {
    /// Admits an attempt by `client` at `now`, or returns the seconds to wait.
    /// An admitted attempt is counted.
    pub fn admit(&mut self, client: IpAddr, now: SystemTime) -> Result<(), u64> {
        self.prune(now);
        let f = &self.failures;
        if f.len() >= LOCKOUT_FAILURES {
            let until = f[f.len() - LOCKOUT_FAILURES] + LOCKOUT_WINDOW;
            return Err(secs_until(now, until));
        }
        let a = self.attempts.entry(client).or_default();
        if a.len() >= RATE_LIMIT {
            return Err(secs_until(now, a[a.len() - RATE_LIMIT] + RATE_WINDOW));
        }
        a.push_back(now);
        Ok(())
    }

    /// Records a failed attempt. Returns true when this failure starts a lockout (the caller
    /// voids the pending code).
    pub fn fail(&mut self, now: SystemTime) -> bool {
        self.failures.push_back(now);
        self.failures.len() == LOCKOUT_FAILURES
    }

    fn prune(&mut self, now: SystemTime) {
        fn keep(
            map: &mut HashMap<IpAddr, VecDeque<SystemTime>>,
            now: SystemTime,
            window: Duration,
        ) {
            for q in map.values_mut() {
                while q.front().is_some_and(|t| *t + window <= now) {
                    q.pop_front();
                }
            }
            map.retain(|_, q| !q.is_empty());
        }
        keep(&mut self.attempts, now, RATE_WINDOW);
        while self
            .failures
            .front()
            .is_some_and(|t| *t + LOCKOUT_WINDOW <= now)
        {
            self.failures.pop_front();
        }
        // A flood of distinct addresses must not grow memory without bound: forget attempts
        // beyond the cap (the lockout does not depend on them).
        if self.attempts.len() > MAX_TRACKED {
            self.attempts.clear();
        }
    }
}

fn secs_until(now: SystemTime, until: SystemTime) -> u64 {
    until
        .duration_since(now)
        .map(|d| d.as_secs() + 1)
        .unwrap_or(1)
}

/// The system RNG.
pub fn rng() -> SystemRandom {
    SystemRandom::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    #[test]
    fn codes_use_the_alphabet_and_format() {
        let code = generate_code(&rng()).unwrap();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
        let shown = format_code(&code);
        assert_eq!(shown.len(), 9);
        assert_eq!(&shown[4..5], "-");
        assert_eq!(
            normalize_code(&shown.to_lowercase()).unwrap().as_str(),
            code.as_str()
        );
    }

    #[test]
    fn normalization_rejects_bad_input() {
        for bad in [
            "",
            "ABCD-EFG",
            "ABCD-EFGHJ",
            "ABCD-EF0H",
            "ABCD-EFIH",
            "ABCD_EFGH",
            "ÄBCD-EFGH",
            &"A".repeat(40),
        ] {
            assert!(normalize_code(bad).is_none(), "{bad:?}");
        }
        assert_eq!(normalize_code("abcd efgh").unwrap().as_str(), "ABCDEFGH");
    }

    #[test]
    fn single_use_expiring_and_replaced() {
        let mut p = Pairing::default();
        assert_eq!(p.check("ABCDEFGH", t(0)), Err(CodeError::NoPending));
        let (first, exp) = p.mint(&rng(), t(0)).unwrap();
        assert_eq!(exp, t(300));
        let (second, _) = p.mint(&rng(), t(1)).unwrap();
        if first.as_str() != second.as_str() {
            assert_eq!(p.check(&first, t(2)), Err(CodeError::Wrong));
        }
        assert_eq!(p.check(&second, t(2)), Ok(()));
        p.consume();
        assert_eq!(p.check(&second, t(3)), Err(CodeError::NoPending));
        let (third, _) = p.mint(&rng(), t(10)).unwrap();
        assert_eq!(p.check(&third, t(310)), Err(CodeError::NoPending));
    }

    #[test]
    fn rate_limit_and_lockout() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        let mut l = Limiter::default();
        for i in 0..5 {
            l.admit(ip, t(i)).unwrap();
        }
        let wait = l.admit(ip, t(5)).unwrap_err();
        assert!((55..=61).contains(&wait), "{wait}");
        l.admit(other, t(5)).unwrap();
        l.admit(ip, t(61)).unwrap();

        // Failures from ten different addresses lock everyone out.
        let mut l = Limiter::default();
        for i in 0..10u8 {
            let from: IpAddr = format!("203.0.113.{i}").parse().unwrap();
            l.admit(from, t(u64::from(i) * 13)).unwrap();
            assert_eq!(l.fail(t(u64::from(i) * 13)), i == 9);
        }
        let wait = l.admit(other, t(130)).unwrap_err();
        assert!(wait > 700, "{wait}");
        assert!(l.admit(ip, t(900 + 1)).is_ok());
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
