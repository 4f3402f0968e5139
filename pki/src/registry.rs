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
    /// The serial whose own renewal issued this certificate ([`Registry::renew`]); `None` for
    /// one issued otherwise (install, re-install, `netclaw pki rotate --offline`). Only the
    /// serial named here may claim that the answer to its renewal was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_from: Option<Serial>,
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
    /// The presented serial is superseded, inside its grace period, by a successor its own
    /// renewal issued, and that successor never completed a handshake: the answer to the
    /// renewal was lost. Allowed once per serial, and audited.
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
    /// Superseded by a successor that its own renewal did not issue (a re-install or
    /// `netclaw pki rotate --offline`): it never asked for a renewal, so no answer was lost.
    #[error("the serial is superseded by {successor}, which its own renewal did not issue")]
    SupersededByReplacement {
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
            Self::SupersededByReplacement { .. } => "superseded-by-replacement",
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
            renewed_from: None,
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
    /// serial renews; a superseded one only inside its grace period, when its successor was
    /// issued by its own renewal and never completed a handshake (the answer to that renewal
    /// was lost), and once. A serial superseded by a replacement (re-install, offline rotation)
    /// never asked for a renewal, so it has no answer to lose and does not renew.
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
                let Some(next) = next.filter(|n| n.status == Status::Active) else {
                    return Err(RenewalRefusal::SuccessorReplaced {
                        successor: successor.clone(),
                    });
                };
                // NOTE: only the serial whose own renewal issued the successor may claim that
                // the answer was lost; a serial superseded by a replacement holds a key the
                // agent gave up (or a thief kept).
                if next.renewed_from.as_ref() != Some(serial) {
                    return Err(RenewalRefusal::SupersededByReplacement {
                        successor: successor.clone(),
                    });
                }
                Ok(RenewalGrant::LostAnswer {
                    successor: successor.clone(),
                })
            }
        }
    }

    /// A renewal by `presented` that issued `cert`: checks [`Self::renewal_decision`] again,
    /// then records `cert` active and renewed from `presented`, supersedes the other agent
    /// certificates with `grace`, marks a lost-answer renewal as used, and prunes. Returns the
    /// grant and the superseded serials.
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
        if let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.serial == cert.serial)
        {
            e.renewed_from = Some(presented.clone());
        }
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
mod tests;
