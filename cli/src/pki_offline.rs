//! `netclaw pki revoke` and `netclaw pki rotate --offline`: changes made directly to the
//! daemon's PKI directory (the issuance registry and, for rotation, the CA key) and to the
//! agent's credential directory, for when the agent cannot (or must no longer) reach the daemon.
//!
//! Both take the registry lock (`registry.lock`, the one the daemon's renewals take) and re-read
//! `registry.json` under it, so a concurrent renewal cannot be lost. Neither process is
//! restarted: the daemon re-reads the registry within about a second (refusing revoked and
//! superseded serials and cutting their open connections), and the agent loads new credential
//! files within 2 s (its file watcher) or on `SIGHUP`.
//!
//! [`plan_revoke`] is pure (registry and `now` given); [`revoke`] and [`rotate_offline`] do the
//! I/O.
//!
//! # Security
//!
//! * Needs read and write access to `Operator.PkiDirectory` — root in a system install. Without
//!   it nothing is changed (exit 5, naming the directory and `sudo`).
//! * The new agent key is generated here and never printed; it is written 0600, atomically, and
//!   the new certificate is verified against the trust bundle (chain, EKU, this host's SPIFFE id)
//!   before anything is written.
//! * Run as root, every file written gets the owner of its directory (the daemon's user for the
//!   registry, the agent's user for its credentials), set on the temporary file before it is
//!   renamed into place, so a service never finds a file it cannot read.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use netclaw_core::config::Config;
use netclaw_core::wire::format_unix;
use netclaw_pki::identity::unix_seconds;
use netclaw_pki::registry::{CertificateKind, Registry, Status};
use netclaw_pki::secure_fs;
use netclaw_pki::store::{self, AgentPaths, DaemonPkiPaths};
use netclaw_pki::verify::{self, ExpectedAgent};
use netclaw_pki::{hostid, HostId, PkiError, Serial, SpiffeId};
use serde::Serialize;

use crate::exit::CliError;

/// The command that restores the agent's access.
pub const ROTATE_OFFLINE: &str = "sudo netclaw pki rotate --offline";

/// What `netclaw pki revoke` revokes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One serial, as `netclaw pki status` shows it.
    Serial(Serial),
    /// Every agent serial the daemon would still accept (active, or superseded and inside the
    /// grace period).
    Agent,
}

/// The serials a revocation changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokePlan {
    /// Serials to mark revoked.
    pub revoke: Vec<Serial>,
    /// Serials that already were.
    pub already_revoked: Vec<Serial>,
}

/// Decides what to revoke (pure). An unknown serial, or one that is not an agent certificate,
/// is an error (exit 1) naming `netclaw pki status`.
pub fn plan_revoke(
    registry: &Registry,
    target: &RevokeTarget,
    now: SystemTime,
) -> Result<RevokePlan, CliError> {
    match target {
        RevokeTarget::Agent => Ok(RevokePlan {
            revoke: registry
                .accepted_agents(now)
                .map(|e| e.serial.clone())
                .collect(),
            already_revoked: Vec::new(),
        }),
        RevokeTarget::Serial(serial) => {
            let Some(entry) = registry.get(serial) else {
                return Err(CliError::Failed(format!(
                        "serial {serial} is not in the issuance registry; `netclaw pki status` shows the serials in use (or `--agent` revokes every agent certificate)"
                    ),
                ));
            };
            if entry.kind != CertificateKind::Agent {
                let what = match entry.kind {
                    CertificateKind::Ca => "the operator CA",
                    _ => "the operator listener's certificate",
                };
                return Err(CliError::Failed(format!(
                        "serial {serial} is {what}, not an agent certificate; only agent certificates can be revoked (`netclaw pki status` shows them; `netclaw daemon install --force` re-issues the listener's)"
                    ),
                ));
            }
            Ok(if matches!(entry.status, Status::Revoked { .. }) {
                RevokePlan {
                    revoke: Vec::new(),
                    already_revoked: vec![serial.clone()],
                }
            } else {
                RevokePlan {
                    revoke: vec![serial.clone()],
                    already_revoked: Vec::new(),
                }
            })
        }
    }
}

/// What `netclaw pki revoke` did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeReport {
    /// Serials now revoked.
    pub revoked: Vec<String>,
    /// Serials that were revoked already.
    pub already_revoked: Vec<String>,
    /// The agent's current certificate serial (from its directory, when readable).
    pub agent_serial: Option<String>,
    /// Whether the agent's current certificate is among the revoked ones: it can no longer
    /// reach the daemon until `netclaw pki rotate --offline`.
    pub agent_cut_off: bool,
    /// The registry file changed.
    pub registry: PathBuf,
    /// What happens next, and what to run.
    pub next: String,
}

/// `netclaw pki revoke`: marks serials revoked in the registry, under the registry lock.
pub fn revoke(
    config: &Config,
    target: &RevokeTarget,
    now: SystemTime,
) -> Result<RevokeReport, CliError> {
    let pki = DaemonPkiPaths::new(config.operator().pki_dir());
    let command = match target {
        RevokeTarget::Agent => "netclaw pki revoke --agent".to_owned(),
        RevokeTarget::Serial(s) => format!("netclaw pki revoke {s}"),
    };
    let _lock = lock(&pki, &command)?;
    let mut registry = store::load_registry(&pki).map_err(|e| access(e, &pki, &command))?;
    let plan = plan_revoke(&registry, target, now)?;
    for serial in &plan.revoke {
        registry.revoke(serial, now);
    }
    if !plan.revoke.is_empty() {
        store::save_registry(&pki, &registry).map_err(|e| access(e, &pki, &command))?;
    }
    let agent_serial = current_agent_serial(&AgentPaths::new(config.operator().agent_dir()));
    let agent_cut_off = agent_serial
        .as_ref()
        .is_some_and(|s| plan.revoke.contains(s) || plan.already_revoked.contains(s));
    let next = if plan.revoke.is_empty() && plan.already_revoked.is_empty() {
        "no agent certificate is in use; nothing was revoked".to_owned()
    } else if agent_cut_off {
        format!(
            "the daemon re-reads its registry within about a second, then refuses the revoked serials and cuts their open connections: the operator agent can no longer reach the daemon. To restore access, issue a new agent certificate with `{ROTATE_OFFLINE}` (no restart needed)"
        )
    } else {
        "the daemon re-reads its registry within about a second, then refuses the revoked serials and cuts their open connections; the operator agent's current certificate is not affected".to_owned()
    };
    Ok(RevokeReport {
        revoked: plan.revoke.iter().map(ToString::to_string).collect(),
        already_revoked: plan
            .already_revoked
            .iter()
            .map(ToString::to_string)
            .collect(),
        agent_serial: agent_serial.map(|s| s.to_string()),
        agent_cut_off,
        registry: pki.registry(),
        next,
    })
}

/// Human-readable rendering of a revocation.
pub fn render_revoke(r: &RevokeReport) -> String {
    let mut out = String::new();
    for s in &r.revoked {
        out.push_str(&format!("revoked agent certificate {s}\n"));
    }
    for s in &r.already_revoked {
        out.push_str(&format!("agent certificate {s} was already revoked\n"));
    }
    out.push_str(&format!("next: {}\n", r.next));
    out
}

/// What `netclaw pki rotate --offline` did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateReport {
    /// The new certificate's serial.
    pub serial: String,
    /// Its SPIFFE id.
    pub identity: String,
    /// Its NotAfter (RFC 3339).
    pub not_after: String,
    /// Agent serials superseded (refused after `Operator.RotationGrace`).
    pub superseded: Vec<String>,
    /// Grace period of the superseded serials, in seconds.
    pub grace_seconds: u64,
    /// Where the agent's credentials were written.
    pub agent_directory: PathBuf,
    /// What happens next.
    pub next: String,
}

/// `netclaw pki rotate --offline`: issues a new agent key and certificate from the CA on disk,
/// records it active (superseding every other agent serial with `Operator.RotationGrace`, as the
/// daemon's renewals do) and writes the agent's files as its own renewal does. `machine_id` is
/// where the host-id is derived from, as the daemon does.
pub fn rotate_offline(
    config: &Config,
    machine_id: &Path,
    now: SystemTime,
) -> Result<RotateReport, CliError> {
    const COMMAND: &str = "netclaw pki rotate --offline";
    let op = config.operator();
    let pki = DaemonPkiPaths::new(op.pki_dir());
    let agent = AgentPaths::new(op.agent_dir());
    // Everything that can be checked before the registry changes is checked first.
    writable_agent_dir(agent.dir())?;
    let _lock = lock(&pki, COMMAND)?;
    let host_id = host_id(machine_id, &pki)?;
    let ca = store::load_ca(&pki).map_err(|e| access(e, &pki, COMMAND))?;
    let bundle_pem = secure_fs::read_public(
        &pki.ca_cert(),
        "operator CA bundle",
        "run `netclaw daemon install`",
    )?;
    let bundle = verify::parse_bundle_pem(&bundle_pem)?;
    let id = SpiffeId::operator_agent(op.trust_domain().clone(), host_id.clone());
    let issued = ca.issue_agent(&id, now, op.certificate_lifetime())?;
    verify::verify_agent_certificate(
        &issued.cert.der,
        &bundle,
        &ExpectedAgent {
            trust_domain: op.trust_domain().clone(),
            host_id,
        },
        now,
    )
    .map_err(|e| {
        CliError::Credentials(format!(
                "the new agent certificate does not verify against {} ({e}); nothing was changed; check `netclaw doctor`",
                pki.ca_cert().display()
            ),
        )
    })?;

    let mut registry = store::load_registry(&pki).map_err(|e| access(e, &pki, COMMAND))?;
    let serial = issued.cert.serial.clone();
    let grace = op.rotation_grace();
    let superseded = registry.replace(
        &issued.cert,
        CertificateKind::Agent,
        id.to_string(),
        now,
        grace,
    );
    // The registry first: the daemon accepts the new serial before the agent offers it.
    store::save_registry(&pki, &registry).map_err(|e| access(e, &pki, COMMAND))?;
    let bundle_text = String::from_utf8_lossy(&bundle_pem);
    store::save_agent_pair(&agent, &issued.key, &issued.cert.pem, &bundle_text)
    .map_err(|e| {
        CliError::Credentials(format!(
                "the registry lists the new agent serial {serial}, but writing the agent's files in {} failed: {e}; run `{COMMAND}` again",
                agent.dir().display()
            ),
        )
    })?;

    Ok(RotateReport {
        serial: serial.to_string(),
        identity: id.to_string(),
        not_after: format_unix(unix_seconds(issued.cert.not_after)),
        superseded: superseded.iter().map(ToString::to_string).collect(),
        grace_seconds: grace.as_secs(),
        agent_directory: agent.dir().to_owned(),
        next: "the daemon accepts the new certificate within about a second and the operator agent loads it within 2 s (or now: `systemctl reload netclaw-operator-agent`); neither needs a restart. Check with `netclaw status`".to_owned(),
    })
}

/// Human-readable rendering of an offline rotation.
pub fn render_rotate(r: &RotateReport) -> String {
    let mut out = format!(
        "issued a new operator agent certificate: serial {} (until {})\n  identity: {}\n  written to {}\n",
        r.serial,
        r.not_after,
        r.identity,
        r.agent_directory.display()
    );
    if !r.superseded.is_empty() {
        out.push_str(&format!(
            "  superseded: {} (refused after {} s)\n",
            r.superseded.join(", "),
            r.grace_seconds
        ));
    }
    out.push_str(&format!("next: {}\n", r.next));
    out
}

/// Takes the registry lock (created with the PKI directory's owner, whoever runs this, so the
/// daemon's user can still open it for its renewals).
fn lock(pki: &DaemonPkiPaths, command: &str) -> Result<nix::fcntl::Flock<std::fs::File>, CliError> {
    match std::fs::metadata(pki.dir()) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::Credentials(format!(
                    "there is no operator PKI at {} (Operator.PkiDirectory); run `netclaw daemon install` first",
                    pki.dir().display()
                ),
            ))
        }
        Err(e) => return Err(access(PkiError::io("inspecting", pki.dir(), e), pki, command)),
    }
    store::lock_registry(pki).map_err(|e| access(e, pki, command))
}

/// A PKI error, with "permission denied" turned into the fix: run as root.
fn access(e: PkiError, pki: &DaemonPkiPaths, command: &str) -> CliError {
    if let PkiError::Io { source, .. } = &e {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            return CliError::Credentials(format!(
                    "this needs the daemon's PKI directory {} (Operator.PkiDirectory), which this user cannot use ({e}); in a system install run it as root: `sudo {command}`",
                pki.dir().display()
            ));
        }
    }
    CliError::from(e)
}

/// The agent's directory must exist and be writable before the registry is changed.
fn writable_agent_dir(dir: &Path) -> Result<(), CliError> {
    use nix::unistd::{access, AccessFlags};
    match access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ENOENT) => Err(CliError::Credentials(format!(
                "the operator agent's directory {} (Operator.AgentDirectory) does not exist; run `netclaw daemon install --force` (keeps the CA)",
                dir.display()
            ),
        )),
        Err(e) => Err(CliError::Credentials(format!(
                "this user cannot write the operator agent's directory {} (Operator.AgentDirectory): {e}; in a system install run it as root: `{ROTATE_OFFLINE}`",
                dir.display()
            ),
        )),
    }
}

/// This host's host-id as the daemon derives it: from the machine-id, else the persisted one.
fn host_id(machine_id: &Path, pki: &DaemonPkiPaths) -> Result<HostId, CliError> {
    match hostid::resolve(machine_id, pki)? {
        Some((id, _)) => Ok(id),
        None => Err(CliError::Credentials(format!(
                "cannot determine this host's host-id: {} is missing or not a machine-id and there is no {}; run `netclaw daemon install --force` to persist one",
                machine_id.display(),
                pki.host_id().display()
            ),
        )),
    }
}

/// The serial of the agent's current certificate, when its file is readable.
fn current_agent_serial(agent: &AgentPaths) -> Option<Serial> {
    let pem = std::fs::read(agent.client_cert()).ok()?;
    netclaw_pki::IssuedCertificate::from_pem(&pem)
        .ok()
        .map(|c| c.serial)
}

#[cfg(test)]
mod tests;
