//! `netclaw pki status`: each certificate's identity, serial, expiry and days left, and the
//! permission checks of each key file.
//!
//! The one judgement of certificate and key health: [`Problem`]s, each with its severity, reason
//! and fix, derived once in [`status`] (pure over what was read, given `now`). `pki status`'s
//! `healthy` is "no failing and no unchecked problem" and its text lists every problem;
//! `netclaw doctor` turns the same problems into its checks, so the two never disagree.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use netclaw_core::config::Config;
use netclaw_core::wire::format_unix;
use netclaw_pki::identity::unix_seconds;
use netclaw_pki::registry::{Registry, Status};
use netclaw_pki::san::CertificateRole;
use netclaw_pki::secure_fs;
use netclaw_pki::store::{AgentPaths, DaemonPkiPaths};
use netclaw_pki::verify::{inspect, parse_bundle_pem};
use serde::Serialize;

/// How bad a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Broken now, or soon for certain: unhealthy, doctor fails.
    Fail,
    /// Works, but act soon: still healthy, doctor warns.
    Warn,
    /// This user cannot read it: not known to be healthy, doctor says it needs root.
    NeedsRoot,
}

/// What is wrong with one certificate or key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Missing or does not parse.
    Unreadable,
    /// Not readable by this user.
    Hidden,
    /// Past its NotAfter.
    Expired,
    /// So little left that its renewal has failed ([`netclaw_pki::schedule::expiring`]).
    Expiring,
    /// Past about 2/3 of its lifetime (the agent's renewal point) and not renewed.
    RenewalOverdue,
    /// NotBefore after this host's clock.
    NotYetValid,
    /// Revoked in the registry.
    Revoked,
    /// Superseded by another serial in the registry (refused after the grace period).
    Superseded,
    /// A key file others may read (or otherwise refused by the owner-only check).
    KeyMode,
}

/// One finding over the PKI files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Which certificate or key.
    pub role: CertificateRole,
    /// Whether it is the key file (else the certificate).
    pub key: bool,
    /// What.
    pub kind: ProblemKind,
    /// How bad.
    pub severity: Severity,
    /// What was found.
    pub reason: String,
    /// What to do.
    pub fix: String,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PkiStatus {
    /// Certificates.
    pub certificates: Vec<CertStatus>,
    /// Key files.
    pub keys: Vec<KeyStatus>,
    /// Whether everything is usable: no problem that fails and none this user could not check
    /// (warnings allowed).
    pub healthy: bool,
    /// Every problem found, failing ones first.
    pub problems: Vec<Problem>,
    /// Operator CA rotation phase: `none`, `prepared` or `activated`.
    pub ca_rotation: String,
}

/// One certificate.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertStatus {
    /// `operator-ca`, `operator-listener`, `operator-agent`, `agent-ca-bundle`.
    pub role: CertificateRole,
    /// File.
    pub path: PathBuf,
    /// Problem reading it, if any.
    pub error: Option<String>,
    /// Subject DN.
    pub subject: Option<String>,
    /// SANs (`URI:…`, `IP:…`, `DNS:…`).
    pub identity: Vec<String>,
    /// Serial.
    pub serial: Option<String>,
    /// NotBefore, Unix seconds.
    pub not_before_unix: Option<u64>,
    /// NotAfter, Unix seconds.
    pub not_after_unix: Option<u64>,
    /// Whole days left (negative when expired).
    pub days_left: Option<i64>,
    /// Registry status of the serial, when the registry is readable (for display).
    pub registry_status: Option<String>,
    /// The same, typed (what the health judgement reads).
    pub registry_state: Option<RegistryState>,
    /// Whether this user could read the file at all (a system install's PKI directories are
    /// 0700): `false` is "needs root to check", not a broken file.
    pub inspectable: bool,
}

impl CertStatus {
    /// The certificate at `path` could not be read or parsed: only `error` is known.
    pub(crate) fn unread(role: CertificateRole, path: PathBuf, error: String) -> Self {
        Self {
            role,
            path,
            error: Some(error),
            subject: None,
            identity: Vec::new(),
            serial: None,
            not_before_unix: None,
            not_after_unix: None,
            days_left: None,
            registry_status: None,
            registry_state: None,
            inspectable: true,
        }
    }
}

/// A serial's state in the issuance registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryState {
    /// In use.
    Active,
    /// Replaced; refused after its grace period.
    Superseded,
    /// Refused.
    Revoked,
}

/// One key file.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// `operator-ca`, `operator-listener`, `operator-agent`.
    pub role: CertificateRole,
    /// File.
    pub path: PathBuf,
    /// Mode, when readable.
    pub mode: Option<String>,
    /// `ok`, or the problem and its fix.
    pub check: String,
    /// Whether the check passed.
    pub ok: bool,
    /// Whether this user could inspect the file at all (a system install's keys need root).
    pub inspectable: bool,
}

/// Builds the report for `config` at `now`.
pub fn status(config: &Config, now: SystemTime) -> PkiStatus {
    let pki = DaemonPkiPaths::new(config.operator().pki_dir());
    let agent = AgentPaths::new(config.operator().agent_dir());
    let registry: Option<Registry> = netclaw_pki::store::load_registry(&pki).ok();

    let mut certificates = Vec::new();
    for (role, path) in [
        (CertificateRole::OperatorCa, pki.ca_cert()),
        (CertificateRole::OperatorListener, pki.server_cert()),
        (CertificateRole::OperatorAgent, agent.client_cert()),
        (CertificateRole::AgentCaBundle, agent.ca_bundle()),
    ] {
        certificates.extend(cert_status(role, &path, registry.as_ref(), now));
    }
    let keys: Vec<KeyStatus> = [
        (CertificateRole::OperatorCa, pki.ca_key()),
        (CertificateRole::OperatorListener, pki.server_key()),
        (CertificateRole::OperatorAgent, agent.client_key()),
    ]
    .into_iter()
    .map(|(role, path)| key_status(role, &path))
    .collect();
    let problems = problems(&certificates, &keys, now);
    let healthy = problems.iter().all(|p| p.severity == Severity::Warn);
    let ca_rotation = netclaw_pki::rotation::phase(&pki)
        .map(|p| p.name().to_owned())
        .unwrap_or_else(|e| format!("unreadable ({e})"));
    PkiStatus {
        certificates,
        keys,
        healthy,
        problems,
        ca_rotation,
    }
}

/// The fix for an agent certificate the daemon refuses or will refuse.
const AGENT_REISSUE: &str = crate::api::OFFLINE_FIX;

/// Judges every certificate and key (pure): the single source of `healthy` and of doctor's
/// certificate checks. Failing problems come first.
pub fn problems(certificates: &[CertStatus], keys: &[KeyStatus], now: SystemTime) -> Vec<Problem> {
    let now_s = unix_seconds(now);
    let mut out = Vec::new();
    let mut push = |c: &CertStatus, kind, severity, reason: String, fix: &str| {
        out.push(Problem {
            role: c.role,
            key: false,
            kind,
            severity,
            reason,
            fix: fix.to_owned(),
        })
    };
    for c in certificates {
        let reissue = match c.role {
            CertificateRole::OperatorAgent => AGENT_REISSUE,
            CertificateRole::OperatorListener => "re-issue it with `sudo netclaw daemon install --force` (keeps the CA and the settings)",
            _ => "rotate the operator CA: `sudo netclaw pki rotate --ca prepare`, then `activate`, then `retire`",
        };
        let (Some(nb), Some(na)) = (c.not_before_unix, c.not_after_unix) else {
            let reason = c.error.clone().unwrap_or_else(|| "unreadable".to_owned());
            if c.inspectable {
                push(c, ProblemKind::Unreadable, Severity::Fail, reason, "restore the file from a backup, or as root re-issue it with `netclaw daemon install --force` (keeps the CA and the settings)");
            } else {
                push(
                    c,
                    ProblemKind::Hidden,
                    Severity::NeedsRoot,
                    reason,
                    "run it as root (`sudo`)",
                );
            }
            continue;
        };
        if na <= now_s {
            push(
                c,
                ProblemKind::Expired,
                Severity::Fail,
                format!("expired at {}", format_unix(na)),
                reissue,
            );
        } else if nb > now_s {
            push(
                c,
                ProblemKind::NotYetValid,
                Severity::Fail,
                format!("valid only from {}; this host's clock says {}", format_unix(nb), format_unix(now_s)),
                "synchronise the clock (`timedatectl set-ntp true`); the services retry by themselves",
            );
        }
        let shown = c.registry_status.as_deref().unwrap_or_default();
        match c.registry_state {
            Some(RegistryState::Revoked) => push(
                c,
                ProblemKind::Revoked,
                Severity::Fail,
                "revoked in the issuance registry: the daemon refuses it".to_owned(),
                reissue,
            ),
            Some(RegistryState::Superseded) => push(
                c,
                ProblemKind::Superseded,
                Severity::Warn,
                format!("{shown} in the issuance registry: refused once the grace period ends"),
                if c.role == CertificateRole::OperatorAgent {
                    "the agent loads its successor within seconds; if this stays, run `sudo netclaw pki rotate --offline`"
                } else {
                    reissue
                },
            ),
            _ => {}
        }
        let expiring = netclaw_pki::schedule::expiring(
            netclaw_pki::identity::from_unix_seconds(nb),
            netclaw_pki::identity::from_unix_seconds(na),
            now,
        );
        if expiring {
            push(
                c,
                ProblemKind::Expiring,
                Severity::Fail,
                format!(
                    "expires at {}, long past its renewal (unhealthy from {} s before expiry, for the agent too)",
                    format_unix(na),
                    netclaw_pki::schedule::expiring_margin(
                        netclaw_pki::identity::from_unix_seconds(nb),
                        netclaw_pki::identity::from_unix_seconds(na)
                    )
                    .as_secs()
                ),
                if c.role == CertificateRole::OperatorAgent {
                    "check the agent's renewal (`journalctl -u netclaw-operator-agent`), then run `netclaw pki rotate` (or `sudo netclaw pki rotate --offline`)"
                } else {
                    reissue
                },
            );
        } else if na > now_s && c.role == CertificateRole::OperatorAgent {
            // The agent renews at about 2/3 of the lifetime.
            let renew_at = nb + na.saturating_sub(nb) * 2 / 3;
            if renew_at <= now_s {
                push(
                    c,
                    ProblemKind::RenewalOverdue,
                    Severity::Warn,
                    format!("renewal was due at {}", format_unix(renew_at)),
                    "check the agent's renewal (`journalctl -u netclaw-operator-agent`) or run `netclaw pki rotate`",
                );
            }
        }
    }
    for k in keys {
        if k.ok {
            continue;
        }
        out.push(Problem {
            role: k.role,
            key: true,
            kind: if k.inspectable { ProblemKind::KeyMode } else { ProblemKind::Hidden },
            severity: if k.inspectable { Severity::Fail } else { Severity::NeedsRoot },
            reason: k.check.clone(),
            fix: if k.inspectable {
                "each key file must be 0600 and owned by its service user (chmod 600 FILE); re-run `netclaw daemon install --force` if it is missing; the daemon and the agent pick up the fixed mode by themselves".to_owned()
            } else {
                "run it as root (`sudo`)".to_owned()
            },
        });
    }
    out.sort_by_key(|p| match p.severity {
        Severity::Fail => 0,
        Severity::NeedsRoot => 1,
        Severity::Warn => 2,
    });
    out
}

fn cert_status(
    role: CertificateRole,
    path: &Path,
    registry: Option<&Registry>,
    now: SystemTime,
) -> Vec<CertStatus> {
    let empty = |error: String| CertStatus::unread(role, path.to_owned(), error);
    let pem = match std::fs::read(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return vec![CertStatus {
                inspectable: false,
                ..empty(format!(
                    "not readable by this user ({e}); run as root or as the file's owner"
                ))
            }]
        }
        Err(e) => {
            return vec![empty(format!(
                "{e}; run `netclaw daemon install` or `netclaw pki rotate --offline`"
            ))]
        }
    };
    let ders = match parse_bundle_pem(&pem) {
        Ok(d) => d,
        Err(e) => return vec![empty(e.to_string())],
    };
    ders.iter()
        .map(|der| match inspect(der) {
            Ok(info) => {
                let not_after = unix_seconds(info.not_after);
                let days_left = (not_after as i64 - unix_seconds(now) as i64).div_euclid(86_400);
                let entry = registry.and_then(|r| r.get(&info.serial));
                let registry_status = entry.map(|e| match &e.status {
                    Status::Active => "active".to_owned(),
                    Status::Superseded { successor, .. } => format!("superseded by {successor}"),
                    Status::Revoked { .. } => "revoked".to_owned(),
                });
                let registry_state = entry.map(|e| match &e.status {
                    Status::Active => RegistryState::Active,
                    Status::Superseded { .. } => RegistryState::Superseded,
                    Status::Revoked { .. } => RegistryState::Revoked,
                });
                let error = (now > info.not_after)
                    .then(|| "expired; run `netclaw pki rotate --offline` as root".to_owned());
                CertStatus {
                    role,
                    path: path.to_owned(),
                    error,
                    subject: Some(info.subject),
                    identity: info.sans,
                    serial: Some(info.serial.to_string()),
                    not_before_unix: Some(unix_seconds(info.not_before)),
                    not_after_unix: Some(not_after),
                    days_left: Some(days_left),
                    registry_status,
                    registry_state,
                    inspectable: true,
                }
            }
            Err(e) => empty(e.to_string()),
        })
        .collect()
}

fn key_status(role: CertificateRole, path: &Path) -> KeyStatus {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            let (check, ok) = match secure_fs::check_private_mode(path, mode) {
                Ok(()) => ("ok (owner-only)".to_owned(), true),
                Err(e) => (e.to_string(), false),
            };
            KeyStatus {
                role,
                path: path.to_owned(),
                mode: Some(format!("{mode:04o}")),
                check,
                ok,
                inspectable: true,
            }
        }
        Err(e) => KeyStatus {
            role,
            path: path.to_owned(),
            mode: None,
            inspectable: e.kind() != std::io::ErrorKind::PermissionDenied,
            check: if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!("cannot inspect ({e}); run as root or as the key's owner")
            } else {
                format!("{e}; run `netclaw daemon install`")
            },
            ok: false,
        },
    }
}

/// Human-readable rendering.
pub fn render(s: &PkiStatus) -> String {
    let mut out = String::new();
    let next = match s.ca_rotation.as_str() {
        "prepared" => " (next: `netclaw pki rotate --ca activate`)",
        "activated" => " (next: `netclaw pki rotate --ca retire`)",
        _ => "",
    };
    out.push_str(&format!("CA rotation: {}{next}\n", s.ca_rotation));
    for c in &s.certificates {
        out.push_str(&format!("{} ({})\n", c.role, c.path.display()));
        if let Some(subject) = &c.subject {
            out.push_str(&format!("  subject:    {subject}\n"));
            out.push_str(&format!(
                "  identity:   {}\n",
                if c.identity.is_empty() {
                    "-".into()
                } else {
                    c.identity.join(", ")
                }
            ));
            out.push_str(&format!(
                "  serial:     {}\n",
                c.serial.as_deref().unwrap_or("-")
            ));
            if let (Some(na), Some(days)) = (c.not_after_unix, c.days_left) {
                out.push_str(&format!(
                    "  not after:  {} ({days} days left)\n",
                    format_unix(na)
                ));
            }
            if let Some(r) = &c.registry_status {
                out.push_str(&format!("  registry:   {r}\n"));
            }
        }
        if let Some(e) = &c.error {
            out.push_str(&format!("  PROBLEM:    {e}\n"));
        }
    }
    out.push_str("key files\n");
    for k in &s.keys {
        out.push_str(&format!(
            "  {:<18} {} mode {}: {}\n",
            k.role,
            k.path.display(),
            k.mode.as_deref().unwrap_or("-"),
            k.check
        ));
    }
    let warnings = s
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warn)
        .count();
    out.push_str(&match (s.healthy, warnings) {
        (true, 0) => "status: healthy\n".to_owned(),
        (true, n) => format!("status: healthy, {n} warning(s)\n"),
        (false, _) => "status: UNHEALTHY\n".to_owned(),
    });
    for p in &s.problems {
        let tag = match p.severity {
            Severity::Fail => "problem",
            Severity::Warn => "warning",
            Severity::NeedsRoot => "unchecked",
        };
        out.push_str(&format!(
            "  {tag}: {}{}: {}\n    fix: {}\n",
            p.role,
            if p.key { " key" } else { "" },
            p.reason,
            p.fix
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_problems() {
        let s = PkiStatus {
            certificates: Vec::new(),
            keys: Vec::new(),
            healthy: false,
            problems: Vec::new(),
            ca_rotation: "prepared".into(),
        };
        assert!(render(&s).contains("UNHEALTHY"));
        assert!(
            render(&s).contains("CA rotation: prepared (next: `netclaw pki rotate --ca activate`)")
        );
    }
}
