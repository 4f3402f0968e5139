//! `netclaw pki status`: each certificate's identity, serial, expiry and days left, and the
//! permission checks of each key file.

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

/// Days left below which a certificate is reported as expiring.
pub const WARN_DAYS: i64 = 1;

/// The whole report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PkiStatus {
    /// Certificates.
    pub certificates: Vec<CertStatus>,
    /// Key files.
    pub keys: Vec<KeyStatus>,
    /// Whether everything is usable.
    pub healthy: bool,
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
    /// Registry status of the serial, when the registry is readable.
    pub registry_status: Option<String>,
    /// Whether this user could read the file at all (a system install's PKI directories are
    /// 0700): `false` is "needs root to check", not a broken file.
    pub inspectable: bool,
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
    let healthy = certificates
        .iter()
        .all(|c| c.error.is_none() && c.days_left.is_some_and(|d| d >= WARN_DAYS))
        && keys.iter().all(|k| k.ok);
    let ca_rotation = netclaw_pki::rotation::phase(&pki)
        .map(|p| p.name().to_owned())
        .unwrap_or_else(|e| format!("unreadable ({e})"));
    PkiStatus {
        certificates,
        keys,
        healthy,
        ca_rotation,
    }
}

fn cert_status(
    role: CertificateRole,
    path: &Path,
    registry: Option<&Registry>,
    now: SystemTime,
) -> Vec<CertStatus> {
    let empty = |error: String| CertStatus {
        role,
        path: path.to_owned(),
        error: Some(error),
        subject: None,
        identity: Vec::new(),
        serial: None,
        not_before_unix: None,
        not_after_unix: None,
        days_left: None,
        registry_status: None,
        inspectable: true,
    };
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
                let registry_status = registry.and_then(|r| r.get(&info.serial)).map(|e| match &e
                    .status
                {
                    Status::Active => "active".to_owned(),
                    Status::Superseded { successor, .. } => format!("superseded by {successor}"),
                    Status::Revoked { .. } => "revoked".to_owned(),
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
    out.push_str(if s.healthy {
        "status: healthy\n"
    } else {
        "status: UNHEALTHY\n"
    });
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
            ca_rotation: "prepared".into(),
        };
        assert!(render(&s).contains("UNHEALTHY"));
        assert!(
            render(&s).contains("CA rotation: prepared (next: `netclaw pki rotate --ca activate`)")
        );
    }
}
