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
        self.supersede_others(kind, &cert.serial, now, grace)
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
