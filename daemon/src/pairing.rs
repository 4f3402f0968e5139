//! Pairing codes and the exchange limiter ([`Pairing`], pure: every function takes `now`), and
//! the [`Service`] that mints codes and exchanges them for device tokens.
//!
//! Codes are 8 characters from `23456789ABCDEFGHJKLMNPQRSTUVWXYZ` (no 0/O, 1/I), shown as
//! `XXXX-XXXX`, valid 5 minutes, single use; at most one is pending (minting replaces it).
//!
//! # Security
//!
//! Exchanges are limited per *source* (an IPv4 address, or an IPv6 /64; the forwarded client
//! behind a trusted proxy): [`RATE_LIMIT`] attempts a minute, and a lockout of
//! [`LOCKOUT_DURATION`] after [`LOCKOUT_FAILURES`] wrong codes within [`LOCKOUT_WINDOW`]
//! (malformed requests and attempts while no code is pending only count as attempts). A
//! source that never failed is never refused because of what other sources did, and no
//! failure ever voids the pending code.
//!
//! The global bound is a guess budget per code: once [`CODE_GUESS_BUDGET`] wrong codes were
//! tried against the pending code, a source may still try it only if neither it nor its
//! [`Network`] (an IPv4 address, or an IPv6 /48) has a failure on record, once per network
//! (the failure is recorded atomically with the check). Networks that failed are kept in a
//! table bounded at [`MAX_TRACKED`] and never forgotten while the budget is spent, so a code
//! sees at most `CODE_GUESS_BUDGET + MAX_TRACKED` wrong guesses: with 32^8 = 2^40 ≈ 1.1e12
//! codes, a success probability of at most 5096 / 2^40 ≈ 4.6e-9 per code, however many
//! addresses guess. Only when both tables are full of sources and networks that failed is a new
//! source told to wait ([`Refusal::Busy`]): strangers need [`MAX_TRACKED`] distinct networks
//! failing within a code's life, not the /64s of one /48, to deny pairing to a real device.
//! The arithmetic is in `openspec/changes/local-operator-mtls-agent/design.md`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod service;
pub use service::{ExchangeError, MintError, Poisoned, Service};

/// The code alphabet.
pub const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Code length without the dash.
pub const CODE_LEN: usize = 8;
/// Lifetime of a code.
pub const CODE_TTL: Duration = Duration::from_secs(300);
/// Attempts per window per source.
pub const RATE_LIMIT: usize = 5;
/// Rate window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Failures of one source within [`LOCKOUT_WINDOW`] that lock that source out.
pub const LOCKOUT_FAILURES: usize = 5;
/// Window in which a source's failures count.
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a source stays locked out.
pub const LOCKOUT_DURATION: Duration = Duration::from_secs(15 * 60);
/// Wrong codes from all sources together against one code, after which only sources with no
/// failure on record, in networks with none, may try it (once each).
pub const CODE_GUESS_BUDGET: u32 = 1000;
/// Most sources the limiter tracks (about 300 bytes each), and most networks with a failure on
/// record (about 40 bytes each).
pub const MAX_TRACKED: usize = 4096;

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

/// Where exchange attempts come from, for limiting: an IPv4 address, or the /64 network of an
/// IPv6 address (one host usually holds a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a client address.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(net)))
            }
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// The network of a [`Source`], for judging who may still guess at a code whose budget is
/// spent: an IPv6 /48 (what one customer or one tunnel broker account gets, 65,536 /64s), or an
/// IPv4 address itself. IPv4 is not grouped into /24s: behind carrier-grade NAT a stranger on
/// the same mobile carrier would share a real device's /24.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Network(IpAddr);

impl Network {
    /// The network `source` belongs to.
    pub fn of(source: Source) -> Self {
        match source.0 {
            IpAddr::V6(v6) => {
                let net = u128::from(v6) & !((1u128 << 80) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(net)))
            }
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/48"),
        }
    }
}

/// Why an exchange attempt was refused before its code was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than [`RATE_LIMIT`] attempts within [`RATE_WINDOW`] from this source.
    Throttled {
        /// Seconds until the next attempt is admitted.
        retry_after: u64,
    },
    /// This source failed [`LOCKOUT_FAILURES`] times and is locked out.
    LockedOut {
        /// Seconds until the lockout ends.
        retry_after: u64,
    },
    /// The pending code's guess budget is spent and this source, or its [`Network`], has
    /// failed before.
    BudgetSpent {
        /// Seconds until the pending code expires.
        retry_after: u64,
    },
    /// The budget is spent and the limiter cannot track this source: its tables are full of
    /// sources and networks that failed (which takes [`MAX_TRACKED`] networks).
    Busy {
        /// Seconds until the pending code expires.
        retry_after: u64,
    },
}

impl Refusal {
    /// Seconds to wait.
    pub fn retry_after(self) -> u64 {
        match self {
            Self::Throttled { retry_after }
            | Self::LockedOut { retry_after }
            | Self::BudgetSpent { retry_after }
            | Self::Busy { retry_after } => retry_after,
        }
    }

    /// Stable label for audit events.
    pub fn label(self) -> &'static str {
        match self {
            Self::Throttled { .. } => "rate-limited",
            Self::LockedOut { .. } => "locked-out",
            Self::BudgetSpent { .. } => "guess-budget-spent",
            Self::Busy { .. } => "source-table-full",
        }
    }
}

/// Why an exchange was refused by the code check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeError {
    /// No code pending (none minted, expired or used).
    NoPending,
    /// A code is pending but this is not it.
    Wrong,
    /// Refused before the code was compared (see [`Refusal`]).
    Refused(Refusal),
}

/// What a failed attempt changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureEffect {
    /// This failure locked the source out.
    pub locked_out: bool,
    /// This failure spent the pending code's guess budget.
    pub budget_spent: bool,
}

#[derive(Debug)]
struct Pending {
    code: Zeroizing<String>,
    expires: SystemTime,
    wrong_guesses: u32,
}

#[derive(Debug, Default)]
struct Record {
    attempts: VecDeque<SystemTime>,
    failures: VecDeque<SystemTime>,
    locked_until: Option<SystemTime>,
    last_seen: Option<SystemTime>,
}

impl Record {
    fn prune(&mut self, now: SystemTime) {
        while self
            .attempts
            .front()
            .is_some_and(|t| *t + RATE_WINDOW <= now)
        {
            self.attempts.pop_front();
        }
        while self
            .failures
            .front()
            .is_some_and(|t| *t + LOCKOUT_WINDOW <= now)
        {
            self.failures.pop_front();
        }
        if self.locked_until.is_some_and(|t| t <= now) {
            self.locked_until = None;
        }
    }

    fn idle(&self) -> bool {
        self.attempts.is_empty() && self.failures.is_empty() && self.locked_until.is_none()
    }

    /// Whether a failure of this source is on record at `now`.
    fn failed(&self, now: SystemTime) -> bool {
        self.failures.back().is_some_and(|t| on_record(*t, now))
    }
}

/// Whether a failure at `at` is still on record at `now` (for a source and for a network alike).
fn on_record(at: SystemTime, now: SystemTime) -> bool {
    at + LOCKOUT_WINDOW > now
}

/// A locked-out source, for the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockedOut {
    /// The source.
    pub source: Source,
    /// When the lockout ends.
    pub until: SystemTime,
}

/// The limiter's state, for `/api/health/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairingStatus {
    /// When the pending code expires, if one is pending.
    pub code_expires: Option<SystemTime>,
    /// Wrong codes tried against the pending code.
    pub wrong_guesses: u32,
    /// Whether the pending code's guess budget is spent.
    pub budget_spent: bool,
    /// Locked-out sources, the longest lockout first.
    pub locked_out: Vec<LockedOut>,
}

/// The pending code and the exchange limiter, under one lock so that the budget check, the
/// code comparison and the failure record are one step.
#[derive(Debug, Default)]
pub struct Pairing {
    pending: Option<Pending>,
    sources: HashMap<Source, Record>,
    /// Networks with a failure on record, and the time of their latest failure.
    failed_networks: HashMap<Network, SystemTime>,
}

impl Pairing {
    /// Mints a code, replacing any pending one (and starting a fresh guess budget). Returns the
    /// code and its expiry. Source lockouts stay as they are.
    pub fn mint(
        &mut self,
        rng: &dyn SecureRandom,
        now: SystemTime,
    ) -> Option<(Zeroizing<String>, SystemTime)> {
        let code = generate_code(rng)?;
        let expires = now + CODE_TTL;
        self.pending = Some(Pending {
            code: code.clone(),
            expires,
            wrong_guesses: 0,
        });
        Some((code, expires))
    }

    fn expire(&mut self, now: SystemTime) {
        if self.pending.as_ref().is_some_and(|p| now >= p.expires) {
            self.pending = None;
        }
    }

    /// The pending code's expiry when its guess budget is spent.
    fn spent_until(&self) -> Option<SystemTime> {
        self.pending
            .as_ref()
            .filter(|p| p.wrong_guesses >= CODE_GUESS_BUDGET)
            .map(|p| p.expires)
    }

    /// Whether `network` has a failure on record at `now`.
    fn network_failed(&self, network: Network, now: SystemTime) -> bool {
        self.failed_networks
            .get(&network)
            .is_some_and(|t| on_record(*t, now))
    }

    /// [`Refusal::BudgetSpent`] when the pending code's budget is spent and `source` or its
    /// network has a failure on record. Needs no record of `source`.
    fn spent_refusal(&self, source: Source, now: SystemTime) -> Option<Refusal> {
        let until = self.spent_until()?;
        let failed = self.sources.get(&source).is_some_and(|r| r.failed(now))
            || self.network_failed(Network::of(source), now);
        failed.then(|| Refusal::BudgetSpent {
            retry_after: secs_until(now, until),
        })
    }

    /// Admits an exchange attempt from `source` at `now` (and counts it), or says why not.
    pub fn admit(&mut self, source: Source, now: SystemTime) -> Result<(), Refusal> {
        self.expire(now);
        if let Some(r) = self.sources.get_mut(&source) {
            r.prune(now);
            if let Some(until) = r.locked_until {
                return Err(Refusal::LockedOut {
                    retry_after: secs_until(now, until),
                });
            }
        }
        if let Some(refusal) = self.spent_refusal(source, now) {
            return Err(refusal);
        }
        if let Some(r) = self.sources.get(&source) {
            if r.attempts.len() >= RATE_LIMIT {
                return Err(Refusal::Throttled {
                    retry_after: secs_until(
                        now,
                        r.attempts[r.attempts.len() - RATE_LIMIT] + RATE_WINDOW,
                    ),
                });
            }
        }
        if self.spent_until().is_some() {
            // A guess from here would need its network recorded (see `check`).
            self.room_for_network(Network::of(source), now)?;
        }
        self.room_for_source(source, now)?;
        let r = self.sources.entry(source).or_default();
        r.attempts.push_back(now);
        r.last_seen = Some(now);
        Ok(())
    }

    /// Makes room for a record of `source`. When the table is full, idle records go first;
    /// then, while the budget is spent, sources refused by their network anyway (evicting them
    /// gives nothing back), the least recently seen first; then the least recently seen source,
    /// except that while the budget is spent a source that has failed (in a network with no
    /// failure on record) is never evicted: it would come back with a clean record.
    fn room_for_source(&mut self, source: Source, now: SystemTime) -> Result<(), Refusal> {
        if self.sources.contains_key(&source) || self.sources.len() < MAX_TRACKED {
            return Ok(());
        }
        self.sources.retain(|_, r| {
            r.prune(now);
            !r.idle()
        });
        if self.sources.len() < MAX_TRACKED {
            return Ok(());
        }
        let spent = self.spent_until();
        let least_recent = |keep: &dyn Fn(&Source, &Record) -> bool| {
            self.sources
                .iter()
                .filter(|(s, r)| keep(s, r))
                .min_by_key(|(_, r)| r.last_seen)
                .map(|(s, _)| *s)
        };
        let victim = match spent {
            None => least_recent(&|_, _| true),
            Some(_) => least_recent(&|s, _| self.network_failed(Network::of(*s), now))
                .or_else(|| least_recent(&|_, r| r.failures.is_empty())),
        };
        match (victim, spent) {
            (Some(v), _) => {
                self.sources.remove(&v);
                Ok(())
            }
            (None, Some(until)) => Err(Refusal::Busy {
                retry_after: secs_until(now, until),
            }),
            (None, None) => Ok(()),
        }
    }

    /// Makes room for a failure of `network`. When the table is full, failures no longer on
    /// record go first; then, before the budget is spent, the least recent failure. While it is
    /// spent every network with a failure is kept (forgetting one would let it guess again), so
    /// a full table refuses.
    fn room_for_network(&mut self, network: Network, now: SystemTime) -> Result<(), Refusal> {
        if self.failed_networks.contains_key(&network) || self.failed_networks.len() < MAX_TRACKED {
            return Ok(());
        }
        self.failed_networks.retain(|_, t| on_record(*t, now));
        if self.failed_networks.len() < MAX_TRACKED {
            return Ok(());
        }
        if let Some(until) = self.spent_until() {
            return Err(Refusal::Busy {
                retry_after: secs_until(now, until),
            });
        }
        let oldest = self
            .failed_networks
            .iter()
            .min_by_key(|(_, t)| **t)
            .map(|(n, _)| *n);
        if let Some(n) = oldest {
            self.failed_networks.remove(&n);
        }
        Ok(())
    }

    /// Checks `code` (canonical) from `source` against the pending one without consuming it.
    /// A wrong code counts against the source and against the code's guess budget, in the same
    /// step as the comparison.
    pub fn check(
        &mut self,
        source: Source,
        code: &str,
        now: SystemTime,
    ) -> Result<(), (CodeError, FailureEffect)> {
        self.expire(now);
        let right = match &self.pending {
            Some(pending) => constant_time_eq(pending.code.as_bytes(), code.as_bytes()),
            // Nothing to guess at: not a failure (the rate limit still applies).
            None => return Err((CodeError::NoPending, FailureEffect::default())),
        };
        let refused = |refusal| (CodeError::Refused(refusal), FailureEffect::default());
        // Re-checked here, in the same step as the comparison: of several attempts admitted
        // together from one clean source or network, only the first may guess at a spent code.
        if let Some(refusal) = self.spent_refusal(source, now) {
            return Err(refused(refusal));
        }
        // Room for both records before the comparison: a wrong guess at a spent code that
        // could not be recorded would be a free one.
        let network = Network::of(source);
        self.room_for_network(network, now).map_err(refused)?;
        self.room_for_source(source, now).map_err(refused)?;
        if right {
            return Ok(());
        }
        self.failed_networks.insert(network, now);
        let locked_out = record_failure(self.sources.entry(source).or_default(), now);
        let mut budget_spent = false;
        if let Some(p) = &mut self.pending {
            p.wrong_guesses = p.wrong_guesses.saturating_add(1);
            budget_spent = p.wrong_guesses == CODE_GUESS_BUDGET;
        }
        Err((
            CodeError::Wrong,
            FailureEffect {
                locked_out,
                budget_spent,
            },
        ))
    }

    /// Consumes the pending code (after the device was stored); the failures of `source` and
    /// of its network are forgiven.
    pub fn consume(&mut self, source: Source) {
        self.pending = None;
        self.failed_networks.remove(&Network::of(source));
        if let Some(r) = self.sources.get_mut(&source) {
            r.failures.clear();
            r.locked_until = None;
        }
    }

    /// The limiter's state at `now`.
    pub fn status(&self, now: SystemTime) -> PairingStatus {
        let pending = self.pending.as_ref().filter(|p| now < p.expires);
        let mut locked_out: Vec<LockedOut> = self
            .sources
            .iter()
            .filter_map(|(s, r)| {
                r.locked_until
                    .filter(|u| *u > now)
                    .map(|until| LockedOut { source: *s, until })
            })
            .collect();
        locked_out.sort_by_key(|l| std::cmp::Reverse(l.until));
        PairingStatus {
            code_expires: pending.map(|p| p.expires),
            wrong_guesses: pending.map_or(0, |p| p.wrong_guesses),
            budget_spent: pending.is_some_and(|p| p.wrong_guesses >= CODE_GUESS_BUDGET),
            locked_out,
        }
    }
}

/// Records a failure; returns true when it starts a lockout.
fn record_failure(r: &mut Record, now: SystemTime) -> bool {
    r.prune(now);
    r.last_seen = Some(now);
    r.failures.push_back(now);
    if r.failures.len() >= LOCKOUT_FAILURES && r.locked_until.is_none() {
        r.locked_until = Some(now + LOCKOUT_DURATION);
        return true;
    }
    false
}

/// Constant-time equality for equal-length secrets (`subtle`); unequal lengths return false at
/// once (the length is public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
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
mod tests;
