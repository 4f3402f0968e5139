//! The daemon's issuance registry: every certificate the operator CA issued, with its status.
//!
//! The operator listener accepts an agent certificate only while its serial is listed here as
//! active (or superseded and still inside its grace period). The registry is pure data; the
//! store reads and writes it atomically.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::identity::unix_seconds;
use crate::Serial;

/// Current file format version.
pub const REGISTRY_VERSION: u32 = 1;

/// What a registry entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateKind {
    /// The operator CA.
    Ca,
    /// The operator listener's server certificate.
    Server,
    /// An operator agent client certificate.
    Agent,
}

/// Lifecycle status of an issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Status {
    /// In use.
    Active,
    /// Replaced by `successor`; accepted until `grace_until` (Unix seconds).
    Superseded {
        /// When it was superseded.
        at: u64,
        /// End of the grace period.
        grace_until: u64,
        /// The serial that replaced it.
        successor: Serial,
    },
    /// Revoked at `at`; never accepted again.
    Revoked {
        /// When it was revoked.
        at: u64,
    },
}

/// One issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// Serial.
    pub serial: Serial,
    /// Kind.
    pub kind: CertificateKind,
    /// SPIFFE id or listener names.
    pub subject: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// Status.
    pub status: Status,
    /// When a handshake with this certificate first completed (Unix seconds), if one has. A
    /// superseded serial whose successor never completed one may renew once (the answer to its
    /// renewal was lost); see [`Registry::renewal_decision`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_used: Option<u64>,
    /// When this superseded serial used its one lost-answer renewal (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_answer_renewal: Option<u64>,
}

/// The registry file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registry {
    /// Format version.
    pub version: u32,
    /// Entries in issuance order.
    pub entries: Vec<Entry>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            version: REGISTRY_VERSION,
            entries: Vec::new(),
        }
    }
}

/// Whether a presented serial may be used now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Active.
    Active,
    /// Superseded but inside its grace period.
    Grace,
    /// Refused, with the reason.
    Refused(RefusalReason),
}

/// Why a serial is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The serial was never issued by this daemon.
    Unknown,
    /// Superseded and past its grace period.
    Superseded,
    /// Revoked.
    Revoked,
    /// Not an agent certificate.
    WrongKind,
}

impl RefusalReason {
    /// Stable label for logs, audit events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown-serial",
            Self::Superseded => "superseded-serial",
            Self::Revoked => "revoked-serial",
            Self::WrongKind => "not-an-agent-certificate",
        }
    }
}

/// Retired (superseded or revoked) entries kept at most, newest first, once out of their grace
/// period: enough for clone detection to recognise recently replaced keys, while the file stays
/// bounded (about 400 bytes an entry) however often the agent rotates.
pub const MAX_RETIRED: usize = 256;

/// How a renewal may go ahead (see [`Registry::renewal_decision`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewalGrant {
    /// The presented serial is the newest active agent serial.
    Current,
    /// The presented serial is superseded, inside its grace period, and its successor never
    /// completed a handshake: the answer to the renewal that issued the successor was lost.
    /// Allowed once per serial, and audited.
    LostAnswer {
        /// The successor that was never used.
        successor: Serial,
    },
}

/// Why a renewal is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenewalRefusal {
    /// The serial was never issued by this daemon (or was pruned long after it expired).
    #[error("the serial was never issued by this daemon")]
    Unknown,
    /// Not an agent certificate.
    #[error("not an operator agent certificate")]
    WrongKind,
    /// Revoked.
    #[error("the serial is revoked")]
    Revoked,
    /// Active, but a newer active agent serial exists: only the newest renews.
    #[error("a newer agent certificate ({newer}) is active; only the newest renews")]
    NotNewest {
        /// The newer active serial.
        newer: Serial,
    },
    /// Superseded and past its grace period.
    #[error("the serial is superseded and past its grace period")]
    PastGrace,
    /// Superseded, and its successor has completed a handshake: the agent moved on, so this
    /// key is not the agent's (a possible copy of an old key).
    #[error("the serial is superseded by {successor}, which is in use")]
    SuccessorInUse {
        /// The successor that is in use.
        successor: Serial,
    },
    /// Superseded, and it already used its one lost-answer renewal.
    #[error("the serial already renewed once after it was superseded")]
    LostAnswerUsed,
    /// Superseded, and its successor is no longer the active certificate.
    #[error("the serial is superseded by {successor}, which was itself replaced or revoked")]
    SuccessorReplaced {
        /// The successor.
        successor: Serial,
    },
}

impl RenewalRefusal {
    /// Stable label for logs, audit events and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown-serial",
            Self::WrongKind => "not-an-agent-certificate",
            Self::Revoked => "revoked-serial",
            Self::NotNewest { .. } => "not-newest-serial",
            Self::PastGrace => "superseded-serial",
            Self::SuccessorInUse { .. } => "superseded-successor-in-use",
            Self::LostAnswerUsed => "lost-answer-renewal-used",
            Self::SuccessorReplaced { .. } => "superseded-successor-replaced",
        }
    }

    /// Whether the refusal suggests that someone other than the agent holds the key: a
    /// superseded key used after the agent moved on to its successor.
    pub fn suggests_clone(&self) -> bool {
        matches!(self, Self::SuccessorInUse { .. } | Self::LostAnswerUsed)
    }
}

impl Registry {
    /// Records a newly issued certificate as active.
    pub fn record(
        &mut self,
        serial: Serial,
        kind: CertificateKind,
        subject: String,
        now: SystemTime,
        not_after: SystemTime,
    ) {
        self.entries.push(Entry {
            serial,
            kind,
            subject,
            issued_at: unix_seconds(now),
            not_after: unix_seconds(not_after),
            status: Status::Active,
            first_used: None,
            lost_answer_renewal: None,
        });
    }

    /// Records `cert` (newly issued, of `kind`) as active and supersedes every other active
    /// certificate of `kind` with `grace`: a replacement. Returns the serials it superseded.
    pub fn replace(
        &mut self,
        cert: &crate::IssuedCertificate,
        kind: CertificateKind,
        subject: String,
        now: SystemTime,
        grace: Duration,
    ) -> Vec<Serial> {
        self.record(cert.serial.clone(), kind, subject, now, cert.not_after);
        let superseded = self.supersede_others(kind, &cert.serial, now, grace);
        self.prune(now, grace);
        superseded
    }

    /// Whether the agent certificate `serial` may renew at `now`. Only the newest active agent
    /// serial renews; a superseded one only inside its grace period, when its successor never
    /// completed a handshake (the answer to the renewal that issued it was lost), and once.
    pub fn renewal_decision(
        &self,
        serial: &Serial,
        now: SystemTime,
    ) -> Result<RenewalGrant, RenewalRefusal> {
        let Some(pos) = self.entries.iter().position(|e| &e.serial == serial) else {
            return Err(RenewalRefusal::Unknown);
        };
        let entry = &self.entries[pos];
        if entry.kind != CertificateKind::Agent {
            return Err(RenewalRefusal::WrongKind);
        }
        match &entry.status {
            Status::Revoked { .. } => Err(RenewalRefusal::Revoked),
            Status::Active => match self.entries[pos + 1..]
                .iter()
                .find(|e| e.kind == CertificateKind::Agent && e.status == Status::Active)
            {
                Some(newer) => Err(RenewalRefusal::NotNewest {
                    newer: newer.serial.clone(),
                }),
                None => Ok(RenewalGrant::Current),
            },
            Status::Superseded {
                grace_until,
                successor,
                ..
            } => {
                if unix_seconds(now) >= *grace_until {
                    return Err(RenewalRefusal::PastGrace);
                }
                let next = self.get(successor);
                if next.is_some_and(|n| n.first_used.is_some()) {
                    return Err(RenewalRefusal::SuccessorInUse {
                        successor: successor.clone(),
                    });
                }
                if entry.lost_answer_renewal.is_some() {
                    return Err(RenewalRefusal::LostAnswerUsed);
                }
                match next {
                    Some(n) if n.status == Status::Active => Ok(RenewalGrant::LostAnswer {
                        successor: successor.clone(),
                    }),
                    _ => Err(RenewalRefusal::SuccessorReplaced {
                        successor: successor.clone(),
                    }),
                }
            }
        }
    }

    /// A renewal by `presented` that issued `cert`: checks [`Self::renewal_decision`] again,
    /// then records `cert` active, supersedes the other agent certificates with `grace`, marks
    /// a lost-answer renewal as used, and prunes. Returns the grant and the superseded serials.
    pub fn renew(
        &mut self,
        presented: &Serial,
        cert: &crate::IssuedCertificate,
        subject: String,
        now: SystemTime,
        grace: Duration,
    ) -> Result<(RenewalGrant, Vec<Serial>), RenewalRefusal> {
        let grant = self.renewal_decision(presented, now)?;
        if let RenewalGrant::LostAnswer { .. } = grant {
            if let Some(e) = self.entries.iter_mut().find(|e| &e.serial == presented) {
                e.lost_answer_renewal = Some(unix_seconds(now));
            }
        }
        let superseded = self.replace(cert, CertificateKind::Agent, subject, now, grace);
        Ok((grant, superseded))
    }

    /// Records that a handshake with `serial` completed at `at`, unless one was recorded
    /// before. Returns whether the entry changed.
    pub fn mark_first_use(&mut self, serial: &Serial, at: SystemTime) -> bool {
        match self.entries.iter_mut().find(|e| &e.serial == serial) {
            Some(e) if e.first_used.is_none() => {
                e.first_used = Some(unix_seconds(at));
                true
            }
            _ => false,
        }
    }

    /// Drops what no decision needs any more, so the file stays bounded: retired (superseded or
    /// revoked) entries whose certificate expired more than `grace` ago (an expired certificate
    /// never verifies), and then the oldest retired entries beyond [`MAX_RETIRED`] that are out
    /// of their grace period. Active entries are always kept. Pruning never admits anything: a
    /// serial it drops is refused as unknown. Returns how many entries it dropped.
    pub fn prune(&mut self, now: SystemTime, grace: Duration) -> usize {
        let now = unix_seconds(now);
        let before = self.entries.len();
        let retired = |e: &Entry| e.status != Status::Active;
        self.entries
            .retain(|e| !retired(e) || now < e.not_after.saturating_add(grace.as_secs()));
        let mut excess = self
            .entries
            .iter()
            .filter(|e| retired(e))
            .count()
            .saturating_sub(MAX_RETIRED);
        // Oldest first (issuance order): a kept entry's successor, issued later, is kept too.
        self.entries.retain(|e| {
            let in_grace =
                matches!(e.status, Status::Superseded { grace_until, .. } if now < grace_until);
            if excess > 0 && retired(e) && !in_grace {
                excess -= 1;
                false
            } else {
                true
            }
        });
        before - self.entries.len()
    }

    /// The entry for `serial`.
    pub fn get(&self, serial: &Serial) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.serial == serial)
    }

    /// Active entries of `kind`.
    pub fn active(&self, kind: CertificateKind) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(move |e| e.kind == kind && e.status == Status::Active)
    }

    /// Marks every active certificate of `kind` other than `successor` superseded, with `grace`.
    /// Returns the serials it superseded.
    pub fn supersede_others(
        &mut self,
        kind: CertificateKind,
        successor: &Serial,
        now: SystemTime,
        grace: Duration,
    ) -> Vec<Serial> {
        let at = unix_seconds(now);
        let mut out = Vec::new();
        for e in &mut self.entries {
            if e.kind == kind && &e.serial != successor && e.status == Status::Active {
                e.status = Status::Superseded {
                    at,
                    grace_until: at + grace.as_secs(),
                    successor: successor.clone(),
                };
                out.push(e.serial.clone());
            }
        }
        out
    }

    /// Revokes `serial`. Returns false when it is unknown.
    pub fn revoke(&mut self, serial: &Serial, now: SystemTime) -> bool {
        match self.entries.iter_mut().find(|e| &e.serial == serial) {
            Some(e) => {
                if !matches!(e.status, Status::Revoked { .. }) {
                    e.status = Status::Revoked {
                        at: unix_seconds(now),
                    };
                }
                true
            }
            None => false,
        }
    }

    /// Whether an agent certificate with `serial` may be used at `now`.
    pub fn admit_agent(&self, serial: &Serial, now: SystemTime) -> Admission {
        let Some(entry) = self.get(serial) else {
            return Admission::Refused(RefusalReason::Unknown);
        };
        if entry.kind != CertificateKind::Agent {
            return Admission::Refused(RefusalReason::WrongKind);
        }
        match &entry.status {
            Status::Active => Admission::Active,
            Status::Superseded { grace_until, .. } if unix_seconds(now) < *grace_until => {
                Admission::Grace
            }
            Status::Superseded { .. } => Admission::Refused(RefusalReason::Superseded),
            Status::Revoked { .. } => Admission::Refused(RefusalReason::Revoked),
        }
    }

    /// Every agent certificate the daemon would still accept at `now` (active, or superseded
    /// and inside its grace period), oldest first: what revoking "the agent" must revoke.
    pub fn accepted_agents(&self, now: SystemTime) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(move |e| {
            matches!(
                self.admit_agent(&e.serial, now),
                Admission::Active | Admission::Grace
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn serial(s: &str) -> Serial {
        s.parse().unwrap()
    }

    #[test]
    fn accepted_agents_are_active_or_in_grace_agents_only() {
        let mut r = Registry::default();
        for (s, kind) in [
            ("01", CertificateKind::Agent),
            ("02", CertificateKind::Server),
            ("03", CertificateKind::Agent),
            ("04", CertificateKind::Agent),
        ] {
            r.record(serial(s), kind, "x".into(), t(100), t(10_000));
        }
        r.revoke(&serial("01"), t(150));
        // 03 superseded by 04 with a grace period ending at 300.
        r.supersede_others(
            CertificateKind::Agent,
            &serial("04"),
            t(200),
            Duration::from_secs(100),
        );
        let accepted = |at| {
            r.accepted_agents(t(at))
                .map(|e| e.serial.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(accepted(250), ["03", "04"]);
        assert_eq!(accepted(300), ["04"]);
    }

    #[test]
    fn lifecycle() {
        let mut r = Registry::default();
        r.record(
            serial("01"),
            CertificateKind::Agent,
            "a".into(),
            t(100),
            t(1000),
        );
        r.record(
            serial("02"),
            CertificateKind::Server,
            "s".into(),
            t(100),
            t(1000),
        );
        assert_eq!(r.admit_agent(&serial("01"), t(200)), Admission::Active);
        assert_eq!(
            r.admit_agent(&serial("02"), t(200)),
            Admission::Refused(RefusalReason::WrongKind)
        );
        assert_eq!(
            r.admit_agent(&serial("03"), t(200)),
            Admission::Refused(RefusalReason::Unknown)
        );

        r.record(
            serial("03"),
            CertificateKind::Agent,
            "a".into(),
            t(300),
            t(1300),
        );
        assert_eq!(
            r.supersede_others(
                CertificateKind::Agent,
                &serial("03"),
                t(300),
                Duration::from_secs(60)
            ),
            vec![serial("01")]
        );
        assert_eq!(r.admit_agent(&serial("01"), t(359)), Admission::Grace);
        assert_eq!(
            r.admit_agent(&serial("01"), t(360)),
            Admission::Refused(RefusalReason::Superseded)
        );
        assert_eq!(r.admit_agent(&serial("03"), t(360)), Admission::Active);

        assert!(r.revoke(&serial("03"), t(400)));
        assert!(!r.revoke(&serial("09"), t(400)));
        assert_eq!(
            r.admit_agent(&serial("03"), t(401)),
            Admission::Refused(RefusalReason::Revoked)
        );
    }

    const GRACE: Duration = Duration::from_secs(60);
    const LIFETIME: u64 = 30 * 86_400;

    fn cert(n: u64, at: u64) -> crate::IssuedCertificate {
        crate::IssuedCertificate {
            der: rustls_pki_types::CertificateDer::from(Vec::new()),
            pem: String::new(),
            serial: serial(&format!("{n:08x}")),
            not_before: t(at),
            not_after: t(at + LIFETIME),
        }
    }

    /// `r.renew` of `presented` at `at`, issuing certificate `n` then.
    fn renew(
        r: &mut Registry,
        presented: &str,
        n: u64,
        at: u64,
    ) -> Result<(RenewalGrant, Vec<Serial>), RenewalRefusal> {
        r.renew(&serial(presented), &cert(n, at), "a".into(), t(at), GRACE)
    }

    /// One agent certificate, 01, active since 100.
    fn one_agent() -> Registry {
        let mut r = Registry::default();
        r.record(
            serial("ca"),
            CertificateKind::Ca,
            "ca".into(),
            t(0),
            t(1 << 40),
        );
        r.replace(
            &cert(1, 100),
            CertificateKind::Agent,
            "a".into(),
            t(100),
            GRACE,
        );
        r
    }

    #[test]
    fn only_the_newest_active_serial_renews() {
        let mut r = one_agent();
        assert_eq!(
            r.renewal_decision(&serial("00000001"), t(200)),
            Ok(RenewalGrant::Current)
        );
        assert_eq!(
            r.renewal_decision(&serial("ca"), t(200)),
            Err(RenewalRefusal::WrongKind)
        );
        assert_eq!(
            r.renewal_decision(&serial("99"), t(200)),
            Err(RenewalRefusal::Unknown)
        );
        // A second active agent serial (recorded without superseding): only it renews.
        r.record(
            serial("00000002"),
            CertificateKind::Agent,
            "a".into(),
            t(300),
            t(9999),
        );
        assert_eq!(
            r.renewal_decision(&serial("00000001"), t(300)),
            Err(RenewalRefusal::NotNewest {
                newer: serial("00000002")
            })
        );
        assert!(r.revoke(&serial("00000002"), t(301)));
        assert_eq!(
            r.renewal_decision(&serial("00000002"), t(302)),
            Err(RenewalRefusal::Revoked)
        );
    }

    #[test]
    fn a_superseded_serial_whose_successor_was_used_cannot_renew() {
        // `netclaw pki rotate` at 200: 01 -> 02; the agent uses 02 at 201.
        let mut r = one_agent();
        renew(&mut r, "00000001", 2, 200).unwrap();
        assert!(r.mark_first_use(&serial("00000002"), t(201)));
        assert!(
            !r.mark_first_use(&serial("00000002"), t(202)),
            "first use only"
        );
        let before = r.clone();
        // The stolen old key, inside the grace period: refused, and the registry unchanged.
        let refusal = renew(&mut r, "00000001", 3, 210).unwrap_err();
        assert_eq!(
            refusal,
            RenewalRefusal::SuccessorInUse {
                successor: serial("00000002")
            }
        );
        assert!(refusal.suggests_clone());
        assert_eq!(r, before);
        // Past the grace period.
        assert_eq!(
            r.renewal_decision(&serial("00000001"), t(260)),
            Err(RenewalRefusal::PastGrace)
        );
        // The agent's own serial renews.
        assert_eq!(
            r.renewal_decision(&serial("00000002"), t(210)),
            Ok(RenewalGrant::Current)
        );
    }

    #[test]
    fn a_lost_answer_renews_once() {
        // A renewal at 200 issued 02, but the answer was lost: the agent still holds 01, and
        // 02 never completes a handshake.
        let mut r = one_agent();
        renew(&mut r, "00000001", 2, 200).unwrap();
        let (grant, superseded) = renew(&mut r, "00000001", 3, 210).unwrap();
        assert_eq!(
            grant,
            RenewalGrant::LostAnswer {
                successor: serial("00000002")
            }
        );
        assert_eq!(superseded, vec![serial("00000002")]);
        assert_eq!(
            r.get(&serial("00000001")).unwrap().lost_answer_renewal,
            Some(210)
        );
        // Once: a second attempt is refused (and looks like a copied key).
        let before = r.clone();
        let refusal = renew(&mut r, "00000001", 4, 220).unwrap_err();
        assert_eq!(refusal, RenewalRefusal::LostAnswerUsed);
        assert!(refusal.suggests_clone());
        assert_eq!(r, before);
        // Once 03 is used, neither 01 nor 02 (superseded by 03 before it was ever used) renews.
        r.mark_first_use(&serial("00000003"), t(221));
        assert_eq!(
            r.renewal_decision(&serial("00000002"), t(222)),
            Err(RenewalRefusal::SuccessorInUse {
                successor: serial("00000003")
            })
        );

        // A superseded serial whose successor was itself replaced (an offline rotation) before
        // anyone used it: not the lost-answer case.
        let mut r = one_agent();
        renew(&mut r, "00000001", 2, 200).unwrap();
        r.replace(
            &cert(3, 205),
            CertificateKind::Agent,
            "a".into(),
            t(205),
            GRACE,
        );
        assert_eq!(
            r.renewal_decision(&serial("00000001"), t(210)),
            Err(RenewalRefusal::SuccessorReplaced {
                successor: serial("00000002")
            })
        );
    }

    #[test]
    fn the_registry_stays_bounded_over_many_rotations() {
        // 500 daily rotations with 30-day certificates, the agent using each new serial.
        let mut r = one_agent();
        let mut current = serial("00000001");
        for n in 2..502u64 {
            let at = 100 + (n - 1) * 86_400;
            r.renew(&current, &cert(n, at), "a".into(), t(at), GRACE)
                .unwrap();
            current = cert(n, at).serial;
            r.mark_first_use(&current, t(at + 1));
        }
        // The CA, the active serial, and the superseded ones not yet expired (30 days).
        assert!(r.entries.len() <= 33, "{} entries", r.entries.len());
        let size = serde_json::to_vec(&r).unwrap().len();
        assert!(size < 16 * 1024, "{size} bytes");

        // 500 rotations a minute apart: expiry prunes nothing, the cap bounds the file.
        let mut r = one_agent();
        let mut current = serial("00000001");
        for n in 2..502u64 {
            let at = 100 + (n - 1) * 60;
            r.renew(&current, &cert(n, at), "a".into(), t(at), GRACE)
                .unwrap();
            current = cert(n, at).serial;
            r.mark_first_use(&current, t(at + 1));
        }
        assert_eq!(r.entries.len(), 2 + MAX_RETIRED);
        let last = 100 + 500 * 60;
        // What remains still decides: the last superseded serial is in grace for connections
        // but may not renew (its successor is in use); an older kept one is refused as
        // superseded; a pruned one as unknown. Nothing pruned is admitted.
        let previous = serial(&format!("{:08x}", 500));
        assert_eq!(r.admit_agent(&previous, t(last + 5)), Admission::Grace);
        assert_eq!(
            r.renewal_decision(&previous, t(last + 5)),
            Err(RenewalRefusal::SuccessorInUse {
                successor: current.clone()
            })
        );
        let kept = serial(&format!("{:08x}", 500 - MAX_RETIRED as u64 + 2));
        assert_eq!(
            r.admit_agent(&kept, t(last + 5)),
            Admission::Refused(RefusalReason::Superseded)
        );
        assert_eq!(
            r.admit_agent(&serial("00000002"), t(last + 5)),
            Admission::Refused(RefusalReason::Unknown)
        );
        assert_eq!(r.admit_agent(&current, t(last + 5)), Admission::Active);
        assert_eq!(
            r.renewal_decision(&current, t(last + 5)),
            Ok(RenewalGrant::Current)
        );
    }

    #[test]
    fn pruning_keeps_active_and_in_grace_entries() {
        let mut r = one_agent();
        renew(&mut r, "00000001", 2, 200).unwrap();
        // Long after every certificate expired: the superseded one goes, the active ones stay.
        assert_eq!(r.prune(t(200 + 2 * LIFETIME), GRACE), 1);
        assert!(r.get(&serial("00000001")).is_none());
        assert!(r.get(&serial("00000002")).is_some());
        assert!(r.get(&serial("ca")).is_some());
    }

    #[test]
    fn a_registry_written_before_first_use_was_recorded_still_loads() {
        let json = r#"{"version":1,"entries":[{"serial":"0a","kind":"agent","subject":"a","issuedAt":1,"notAfter":2,"status":{"state":"active"}}]}"#;
        let r: Registry = serde_json::from_str(json).unwrap();
        assert_eq!(r.entries[0].first_used, None);
        // And entries without the new fields are written as before.
        assert_eq!(serde_json::to_string(&r).unwrap(), json);
    }

    #[test]
    fn json_round_trip_and_unknown_fields_rejected() {
        let mut r = Registry::default();
        r.record(serial("0a"), CertificateKind::Agent, "a".into(), t(1), t(2));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Registry>(&json).unwrap(), r);
        let bad = json.replacen("\"version\"", "\"extra\":1,\"version\"", 1);
        assert!(serde_json::from_str::<Registry>(&bad).is_err());
    }
}
