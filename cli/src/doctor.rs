//! `netclaw doctor`: one line per check (pass, warn, fail), each failing check with its fix.
//!
//! Checks: the configuration loads; the exposure rules hold (including the tunnel process);
//! the operator PKI files are present and readable; key-file permissions; the modes, owners and
//! links of every file the daemon and the agent trust (the same [`file_policy`] checks that
//! refuse their start-up); the agent
//! certificate's remaining lifetime and next renewal; the clock (no certificate valid only in
//! the future); the host-id in the agent certificate against this host's; the listener
//! certificate's names against `Operator.Host`; the agent socket answers and accepts this user;
//! the agent's own status; the daemon answers through the agent as `LocalOperator` (or, in
//! `local` mode without an agent, over loopback as `LocalProcess`); and no source address is
//! locked out of pairing.
//!
//! [`pki_checks`] is pure (files already read, `now` given); [`run`] does the I/O.

use std::path::Path;
use std::time::SystemTime;

use netclaw_core::config::{Config, ExposureMode};
use netclaw_core::env::process_running;
use netclaw_core::wire::{format_unix, HealthStatus, WhoAmI};
use netclaw_pki::file_policy::{self, Finding};
use netclaw_pki::identity::unix_seconds;
use netclaw_pki::san::{CertificateRole, SubjectAltName};
use netclaw_pki::store::{AgentPaths, DaemonPkiPaths};
use netclaw_pki::{hostid, HostId, SpiffeId};
use serde::Serialize;

use crate::address::Endpoint;
use crate::endpoint::{self, Probe, Resolved, Source, START_AGENT};
use crate::pki_status::{self, CertStatus, PkiStatus, Problem, ProblemKind, Severity};
use crate::transport::Client;

/// Result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Fine.
    Pass,
    /// Works, but worth a look.
    Warn,
    /// Broken; the fix is printed.
    Fail,
    /// Not checked: this user cannot read what it needs (a system install's PKI directories are
    /// 0700, their service users' own); the fix names `sudo netclaw doctor`. Not a failure.
    #[serde(rename = "needs-root")]
    NeedsRoot,
}

/// One check.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Short name.
    pub name: &'static str,
    /// Outcome.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// How to fix it (fail and warn).
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn needs_root(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome: Outcome::NeedsRoot,
            detail: detail.into(),
            fix: Some(NEEDS_ROOT_FIX.to_owned()),
        }
    }
}

/// The fix of every check this user could not run.
pub const NEEDS_ROOT_FIX: &str =
    "run `sudo netclaw doctor` to check it; nothing is known to be wrong";

/// The whole report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Whether no check failed.
    pub ok: bool,
}

impl Report {
    fn new(checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.outcome != Outcome::Fail);
        Self { checks, ok }
    }
}

/// Runs every check.
pub async fn run(
    config_path: &Path,
    env: &dyn netclaw_core::env::Env,
    machine_id: &Path,
    now: SystemTime,
) -> Report {
    let config = match Config::load(config_path, env) {
        Ok(c) => c,
        Err(e) => {
            return Report::new(vec![Check::fail(
                "configuration",
                e.to_string(),
                format!(
                    "fix {} (or point --config / NETCLAW_CONFIG at the right file)",
                    config_path.display()
                ),
            )])
        }
    };
    let mut checks = vec![Check::pass(
        "configuration",
        format!("{} is valid", config_path.display()),
    )];
    checks.push(exposure_check(&config, Path::new("/proc")));
    checks.push(file_check(&config, config_path));

    let pki = DaemonPkiPaths::new(config.operator().pki_dir());
    let local = config.daemon().exposure() == ExposureMode::Local;
    // `exists()` is false for a file this user may not see; only a real NotFound means no PKI.
    let no_pki = matches!(
        std::fs::symlink_metadata(pki.ca_cert()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    );
    if local && no_pki {
        checks.push(Check::warn(
            "operator-pki",
            format!("no operator PKI in {}", pki.dir().display()),
            "local mode works over loopback without it; `netclaw daemon install` creates it for the operator agent",
        ));
    } else {
        let status = pki_status::status(&config, now);
        let expected = expected_host_id(machine_id, &pki);
        checks.extend(pki_checks(&config, &status, expected.as_ref(), now));
    }

    checks.extend(reachability_checks(&config).await);
    Report::new(checks)
}

/// The uid a service runs as, for judging its files: in a system install the service user
/// (`netclaw`, `netclaw-operator-agent`), elsewhere the owner of the service's directory (the
/// user that installed it).
fn service_uid(dir: &Path, system_dir: &Path, system_user: &str) -> Option<u32> {
    if dir == system_dir {
        if let Ok(Some(u)) = nix::unistd::User::from_name(system_user) {
            return Some(u.uid.as_raw());
        }
    }
    netclaw_pki::secure_fs::FileOwner::of(dir)
        .ok()
        .map(|o| o.uid)
}

/// The modes, owners and links of the configuration, the daemon's PKI and state files and the
/// agent's files: the checks the daemon and the agent refuse to start on.
fn file_check(config: &Config, config_path: &Path) -> Check {
    let system = netclaw_core::layout::InstallLayout::system();
    let pki = DaemonPkiPaths::new(config.operator().pki_dir());
    let agent = AgentPaths::new(config.operator().agent_dir());
    let daemon_uid = service_uid(
        config.daemon().state_dir(),
        &system.state_dir,
        crate::install::DAEMON_USER,
    );
    let agent_uid = service_uid(agent.dir(), &system.agent_dir, crate::install::AGENT_USER);
    let mut findings = Vec::new();
    if let Some(uid) = daemon_uid {
        findings.extend(file_policy::check_all(
            &file_policy::config_files(config_path),
            uid,
        ));
        findings.extend(file_policy::check_all(
            &file_policy::daemon_files(&pki, config.daemon().state_dir()),
            uid,
        ));
    }
    if let Some(uid) = agent_uid {
        findings.extend(file_policy::check_all(
            &file_policy::agent_files(&agent),
            uid,
        ));
    }
    file_findings_check(&findings)
}

/// The `file-permissions` check over findings (pure): any finding but an uninspectable path
/// fails; uninspectable paths alone warn (doctor run as a user who cannot see them).
pub fn file_findings_check(findings: &[Finding]) -> Check {
    const NAME: &str = "file-permissions";
    let (hidden, bad): (Vec<&Finding>, Vec<&Finding>) = findings
        .iter()
        .partition(|f| matches!(f, Finding::Uninspectable { .. }));
    if !bad.is_empty() {
        Check::fail(
            NAME,
            bad.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; "),
            format!(
                "{}; the daemon and the operator agent refuse to start until then",
                bad.iter().map(|f| f.fix()).collect::<Vec<_>>().join("; ")
            ),
        )
    } else if !hidden.is_empty() {
        Check::needs_root(
            NAME,
            format!(
                "cannot inspect {} as this user",
                hidden
                    .iter()
                    .map(|f| f.path().display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        Check::pass(
            NAME,
            "keys are owner-only; trust anchors, state and directories are writable only by their owner; no links",
        )
    }
}

/// The exposure rules beyond what configuration validation already enforced.
fn exposure_check(config: &Config, proc_root: &Path) -> Check {
    let d = config.daemon();
    let o = config.operator();
    let mode = d.exposure();
    let listeners = format!(
        "public listener {}:{}, operator listener {}:{}",
        d.host(),
        d.port(),
        o.host(),
        o.port()
    );
    if let Some(process) = mode.tunnel_process() {
        if !d.skip_tunnel_process_check() && !process_running(proc_root, process) {
            return Check::fail(
                "exposure",
                format!("mode {mode} relies on {process}, which is not running"),
                format!("start {process}, or set Daemon.SkipTunnelProcessCheck to true if it runs outside this host's process namespace"),
            );
        }
    }
    let trust = if mode.grants_loopback_trust() {
        "loopback peers are LocalProcess"
    } else {
        "loopback is not trusted; local operators use the agent"
    };
    let forwarded = if d.forwarding_peers().is_tunnel_loopback() {
        "; pairing limits key on the client address the tunnel forwards over loopback (X-Forwarded-For)"
    } else {
        ""
    };
    Check::pass(
        "exposure",
        format!("mode {mode}: {listeners}; {trust}{forwarded}"),
    )
}

/// The host-id this host's certificates must carry: from the machine-id, else the persisted one.
fn expected_host_id(machine_id: &Path, pki: &DaemonPkiPaths) -> Option<HostId> {
    hostid::resolve(machine_id, pki)
        .ok()
        .flatten()
        .map(|(id, _)| id)
}

/// Checks over the PKI report (pure). The verdicts are [`PkiStatus::problems`], the same ones
/// `netclaw pki status` judges `healthy` by.
pub fn pki_checks(
    config: &Config,
    status: &PkiStatus,
    expected_host_id: Option<&HostId>,
    now: SystemTime,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let now_s = unix_seconds(now);
    let problems = &status.problems;
    let line = |p: &Problem| {
        format!(
            "{}{}: {}",
            p.role,
            if p.key { " key" } else { "" },
            p.reason
        )
    };
    let fixes = |ps: &[&Problem]| {
        let mut f: Vec<&str> = ps.iter().map(|p| p.fix.as_str()).collect();
        f.dedup();
        f.join("; ")
    };
    // One check over a group of problems: failing ones fail, then unchecked ones need root,
    // then warnings warn.
    let judge = |name: &'static str, group: Vec<&Problem>, pass: String| -> Check {
        let of = |sev: Severity| -> Vec<&Problem> {
            group
                .iter()
                .copied()
                .filter(|p| p.severity == sev)
                .collect()
        };
        let (fail, hidden, warn) = (
            of(Severity::Fail),
            of(Severity::NeedsRoot),
            of(Severity::Warn),
        );
        let detail = |ps: &[&Problem]| ps.iter().map(|p| line(p)).collect::<Vec<_>>().join("; ");
        if !fail.is_empty() {
            Check::fail(name, detail(&fail), fixes(&fail))
        } else if !hidden.is_empty() {
            Check::needs_root(name, detail(&hidden))
        } else if !warn.is_empty() {
            Check::warn(name, detail(&warn), fixes(&warn))
        } else {
            Check::pass(name, pass)
        }
    };

    // Files present and readable (a file this user may not read needs root to check).
    checks.push(judge(
        "pki-files",
        problems
            .iter()
            .filter(|p| !p.key && matches!(p.kind, ProblemKind::Unreadable | ProblemKind::Hidden))
            .collect(),
        format!("{} certificates present", status.certificates.len()),
    ));

    // Key permissions.
    checks.push(judge(
        "key-permissions",
        problems.iter().filter(|p| p.key).collect(),
        "every key file is owner-only (0600)".to_owned(),
    ));

    // Agent certificate: expiry, revocation, renewal.
    let agent = status
        .certificates
        .iter()
        .find(|c| c.role == CertificateRole::OperatorAgent && c.not_after_unix.is_some());
    if let Some(a) = agent {
        checks.push(judge(
            "agent-certificate",
            problems
                .iter()
                .filter(|p| {
                    !p.key
                        && p.role == CertificateRole::OperatorAgent
                        && !matches!(
                            p.kind,
                            ProblemKind::Unreadable
                                | ProblemKind::Hidden
                                | ProblemKind::NotYetValid
                        )
                })
                .collect(),
            agent_lifetime(a, now_s),
        ));
    }

    // The CA, the listener certificate and the agent's bundle: expiry, revocation.
    let others: Vec<&Problem> = problems
        .iter()
        .filter(|p| {
            !p.key
                && p.role != CertificateRole::OperatorAgent
                && !matches!(
                    p.kind,
                    ProblemKind::Unreadable | ProblemKind::Hidden | ProblemKind::NotYetValid
                )
        })
        .collect();
    if status
        .certificates
        .iter()
        .any(|c| c.not_after_unix.is_some())
    {
        checks.push(judge(
            "certificates",
            others,
            "the operator CA, the listener certificate and the agent's bundle are valid".to_owned(),
        ));
    }

    // Clock: nothing may be valid only in the future.
    let future: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.kind == ProblemKind::NotYetValid)
        .collect();
    let dated = status
        .certificates
        .iter()
        .any(|c| c.not_before_unix.is_some());
    checks.push(if !future.is_empty() {
        Check::fail(
            "clock",
            format!(
                "this host's clock says {}: {}",
                format_unix(now_s),
                future.iter().map(|p| line(p)).collect::<Vec<_>>().join("; ")
            ),
            "synchronise the clock (`timedatectl set-ntp true`); the daemon and the agent retry by themselves (exit 75)",
        )
    } else if !dated {
        Check::needs_root(
            "clock",
            format!(
                "{} against no certificate: this user can read none",
                format_unix(now_s)
            ),
        )
    } else {
        Check::pass(
            "clock",
            format!("{} is within every certificate's validity start", format_unix(now_s)),
        )
    });

    // Host-id in the agent certificate.
    if let Some(a) = agent {
        checks.push(host_id_check(config, a, expected_host_id));
    }

    // Listener certificate names against Operator.Host.
    if let Some(server) = status
        .certificates
        .iter()
        .find(|c| c.role == CertificateRole::OperatorListener && c.not_after_unix.is_some())
    {
        let want = SubjectAltName::Ip(config.operator().host());
        checks.push(if server.identity.iter().any(|n| SubjectAltName::parse(n) == want) {
            Check::pass(
                "listener-names",
                format!("listener certificate names {}", server.identity.join(", ")),
            )
        } else {
            Check::fail(
                "listener-names",
                format!(
                    "Operator.Host is {} but the listener certificate names only {}",
                    config.operator().host(),
                    server.identity.join(", ")
                ),
                "re-issue the listener certificate with `netclaw daemon install --force` (keeps the CA and the settings; add `--replace-ca` if it refuses the address), then restart netclaw-daemon",
            )
        });
    }
    checks
}

/// The agent certificate's days left and next renewal, for a passing check.
fn agent_lifetime(a: &CertStatus, now_s: u64) -> String {
    let (Some(nb), Some(na), Some(days)) = (a.not_before_unix, a.not_after_unix, a.days_left)
    else {
        return "unreadable".to_owned();
    };
    // The agent renews at about 2/3 of the lifetime.
    let renew_at = nb + na.saturating_sub(nb) * 2 / 3;
    let renewal = if renew_at > now_s {
        format!("renewal due around {}", format_unix(renew_at))
    } else {
        "renewal overdue".to_owned()
    };
    format!("{days} days left (until {}); {renewal}", format_unix(na))
}

fn host_id_check(config: &Config, a: &CertStatus, expected: Option<&HostId>) -> Check {
    let id = a
        .identity
        .iter()
        .find_map(|n| match SubjectAltName::parse(n) {
            SubjectAltName::Uri(u) => u.parse::<SpiffeId>().ok(),
            _ => None,
        });
    let Some(id) = id else {
        return Check::fail(
            "host-id",
            "the agent certificate carries no operator-agent SPIFFE id",
            "re-issue it with `netclaw daemon install --force`",
        );
    };
    if id.trust_domain() != config.operator().trust_domain() {
        return Check::fail(
            "host-id",
            format!(
                "the agent certificate is for trust domain {} but Operator.TrustDomain is {}",
                id.trust_domain(),
                config.operator().trust_domain()
            ),
            "re-issue it with `netclaw daemon install --force`",
        );
    }
    match expected {
        Some(h) if h == id.host_id() => Check::pass("host-id", format!("{id} matches this host")),
        Some(h) => Check::fail(
            "host-id",
            format!(
                "the agent certificate names host-id {} but this host's is {h} (PKI copied from another machine?)",
                id.host_id()
            ),
            "re-issue this host's certificates with `netclaw daemon install --force`",
        ),
        None => Check::warn(
            "host-id",
            format!("cannot determine this host's host-id to compare with {}", id.host_id()),
            "check that /etc/machine-id exists, or run doctor as root",
        ),
    }
}

/// Agent socket, agent status and the daemon through the agent (or loopback in local mode).
async fn reachability_checks(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let socket = config.operator().socket();
    let local = config.daemon().exposure() == ExposureMode::Local;
    let probed = endpoint::probe_agent(socket).await;
    let uid = nix::unistd::getuid();
    match &probed {
        Probe::Answered { status: 200, .. } => checks.push(Check::pass(
            "agent-socket",
            format!("{} answers", socket.display()),
        )),
        Probe::NoPermission => {
            let (detail, fix) = socket_refusal(config, socket);
            checks.push(Check::fail(
                "agent-socket",
                format!("{} cannot be opened by this user (uid {uid}): {detail}", socket.display()),
                fix,
            ))
        }
        Probe::Answered { status: 403, .. } => checks.push(Check::fail(
            "agent-socket",
            format!("{} refuses this user (uid {uid})", socket.display()),
            "ask an administrator to add you to Operator.AllowedUsers or to a group in Operator.AllowedGroups (e.g. `usermod -aG netclaw-operators USER`)",
        )),
        Probe::Answered { status, .. } => checks.push(Check::fail(
            "agent-socket",
            format!("{} answered {status} to {}", socket.display(), endpoint::AGENT_STATUS_PATH),
            "restart the agent (`systemctl restart netclaw-operator-agent`); is the socket owned by another program?",
        )),
        other if local => checks.push(Check::warn(
            "agent-socket",
            format!("{} {}", socket.display(), other.why()),
            format!("optional in local mode (netclaw uses loopback); to use the agent: `{START_AGENT}`"),
        )),
        other => checks.push(Check::fail(
            "agent-socket",
            format!("{} {}", socket.display(), other.why()),
            format!("`{START_AGENT}`; in mode {} the agent is the only local operator path", config.daemon().exposure()),
        )),
    }

    if let Probe::Answered {
        agent: Some(status),
        ..
    } = &probed
    {
        checks.push(if status.healthy {
            Check::pass(
                "agent-status",
                format!("{} serial {}, {} days left", status.identity, status.serial, status.days_left),
            )
        } else {
            Check::fail(
                "agent-status",
                if status.problems.is_empty() {
                    "the agent reports itself unhealthy".to_owned()
                } else {
                    status.problems.join("; ")
                },
                "follow the agent's fix above; `journalctl -u netclaw-operator-agent` has the details",
            )
        });
    }

    let (resolved, expect, name) = match &probed {
        Probe::Answered {
            status: 200, agent, ..
        } => (
            Resolved {
                endpoint: Endpoint::Unix(socket.to_owned()),
                source: Source::Agent,
                agent_status: agent.as_deref().cloned(),
            },
            "LocalOperator",
            "daemon-through-agent",
        ),
        _ if local => (
            Resolved {
                endpoint: Endpoint::loopback(config.daemon().host(), config.daemon().port()),
                source: Source::Loopback,
                agent_status: None,
            },
            "LocalProcess",
            "daemon-over-loopback",
        ),
        _ => return checks,
    };
    let client = Client::new(resolved.endpoint.clone(), None);
    let outcome = match client.get("/api/whoami").await {
        Ok(resp) if resp.status.is_success() => {
            match serde_json::from_slice::<WhoAmI>(&resp.body) {
                Ok(w) if w.principal == expect => Check::pass(
                    name,
                    format!("{} answers; this CLI is {}", resolved.endpoint, w.principal),
                ),
                Ok(w) => Check::fail(
                    name,
                    format!("the daemon sees this CLI as {}, not {expect}", w.principal),
                    "check Daemon.ExposureMode and that nothing else listens on the daemon's port",
                ),
                Err(e) => Check::fail(
                    name,
                    format!("unexpected /api/whoami answer: {e}"),
                    "check that the daemon and the CLI are the same version",
                ),
            }
        }
        Ok(resp) => {
            let (detail, code) = crate::api::error_body(&resp.body);
            Check::fail(
                name,
                format!("/api/whoami answered {}: {detail}", resp.status),
                if code == Some(netclaw_core::wire::ErrorCode::CredentialExpired)
                    || (resp.status.as_u16() == 502
                        && crate::api::refused_certificate(code).is_some())
                {
                    crate::api::OFFLINE_FIX.to_owned()
                } else if resp.status.as_u16() == 502 {
                    "start the daemon (`systemctl start netclaw-daemon`) and check that Operator.Host/Port match its operator listener".to_owned()
                } else {
                    "see the agent's and the daemon's logs (`journalctl -u netclaw-operator-agent -u netclaw-daemon`)".to_owned()
                },
            )
        }
        Err(e) => Check::fail(
            name,
            e.to_string(),
            "start the daemon (`systemctl start netclaw-daemon`)",
        ),
    };
    let answered = outcome.outcome == Outcome::Pass;
    checks.push(outcome);
    if answered {
        checks.push(pairing_check(&client).await);
    }
    checks
}

/// The owner, group and mode of one path on the way to the agent's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathAccess {
    /// The directory or the socket.
    pub path: std::path::PathBuf,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// The permission needed: 0o1 (search) for the directory, 0o2 (write) for the socket.
    pub need: u32,
}

/// Who is asking: uid, the groups of this login session, and a group name lookup with whether
/// `/etc/group` lists the user in a group (membership not yet in this session).
pub struct Caller<'a> {
    /// Effective uid.
    pub uid: u32,
    /// Effective and supplementary gids of this process.
    pub gids: &'a [u32],
    /// The name of a gid.
    pub group_name: &'a dyn Fn(u32) -> String,
    /// Whether `/etc/group` lists the caller in a gid.
    pub listed_in: &'a dyn Fn(u32) -> bool,
}

impl std::fmt::Debug for Caller<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("uid", &self.uid)
            .field("gids", &self.gids)
            .finish_non_exhaustive()
    }
}

/// Why the socket cannot be opened, and the fix (pure): the first path whose mode denies the
/// caller decides. A member of the group whose bits deny is not told to join it: the socket was
/// made by an agent started without its socket unit. A group listed in `/etc/group` but not in
/// this session needs a new login. Only a group among `allowed_groups` is worth joining.
pub fn socket_access_fix(
    paths: &[PathAccess],
    caller: &Caller<'_>,
    allowed_groups: &[String],
) -> (String, String) {
    const RESTART: &str = "the agent made its socket itself (started without its socket unit): `systemctl restart netclaw-operator-agent.socket netclaw-operator-agent.service` recreates it netclaw-operator-agent:netclaw-operators 0660";
    for p in paths {
        let (class, shift) = if caller.uid == p.uid {
            ("its owner", 6)
        } else if caller.gids.contains(&p.gid) {
            ("its group", 3)
        } else {
            ("others", 0)
        };
        if (p.mode >> shift) & p.need != 0 {
            continue;
        }
        let group = (caller.group_name)(p.gid);
        let detail = format!(
            "{} is mode {:04o}, group {group}, and denies {class}",
            p.path.display(),
            p.mode & 0o7777
        );
        let fix = if class == "its group" || class == "its owner" {
            format!(
                "you are in group {group} but {}: {RESTART}",
                if class == "its owner" {
                    "its owner may not use it"
                } else {
                    "the group bits deny it"
                }
            )
        } else if (caller.listed_in)(p.gid) {
            format!("you are in group {group} in /etc/group but not in this login session: log in again (or run `newgrp {group}`)")
        } else if allowed_groups.contains(&group) {
            format!("ask an administrator to add you to {group} (`usermod -aG {group} USER`), then log in again")
        } else {
            format!(
                "group {group} is not in Operator.AllowedGroups ({}): {RESTART}",
                if allowed_groups.is_empty() {
                    "none".to_owned()
                } else {
                    allowed_groups.join(", ")
                }
            )
        };
        return (detail, fix);
    }
    (
        "the modes allow it".to_owned(),
        "check the socket's ACLs or security labels; `systemctl restart netclaw-operator-agent.socket netclaw-operator-agent.service` recreates it".to_owned(),
    )
}

/// [`socket_access_fix`] for this process and `socket`.
fn socket_refusal(config: &Config, socket: &Path) -> (String, String) {
    use std::os::unix::fs::MetadataExt as _;
    let mut paths = Vec::new();
    let dir = socket.parent().unwrap_or(Path::new("/"));
    for (path, need) in [(dir, 0o1), (socket, 0o2)] {
        if let Ok(m) = std::fs::metadata(path) {
            paths.push(PathAccess {
                path: path.to_owned(),
                uid: m.uid(),
                gid: m.gid(),
                mode: m.mode(),
                need,
            });
        }
    }
    let mut gids: Vec<u32> = nix::unistd::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    gids.push(nix::unistd::getegid().as_raw());
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    let group_name = |gid: u32| {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map_or_else(|| gid.to_string(), |g| g.name)
    };
    let listed_in = |gid: u32| {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .is_some_and(|g| user.as_ref().is_some_and(|u| g.mem.contains(u)))
    };
    socket_access_fix(
        &paths,
        &Caller {
            uid: nix::unistd::geteuid().as_raw(),
            gids: &gids,
            group_name: &group_name,
            listed_in: &listed_in,
        },
        config.operator().allowed_groups(),
    )
}

/// Whether any source is locked out of pairing (the daemon's `/api/health/status`).
async fn pairing_check(client: &Client) -> Check {
    let health = match client.get("/api/health/status").await {
        Ok(resp) if resp.status.is_success() => {
            serde_json::from_slice::<HealthStatus>(&resp.body).ok()
        }
        _ => None,
    };
    match health.and_then(|h| h.pairing) {
        Some(p) if p.locked_out_sources > 0 => {
            let mut lines = crate::api::lockout_lines(&p).into_iter();
            let fix = lines.next_back().unwrap_or_default();
            let detail = lines
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
                .join("; ");
            Check::warn("pairing-lockouts", detail, fix)
        }
        Some(_) => Check::pass(
            "pairing-lockouts",
            "no source address is locked out of pairing",
        ),
        None => Check::warn(
            "pairing-lockouts",
            "the daemon did not report its pairing limiter",
            "check that the daemon and the CLI are the same version",
        ),
    }
}

/// Human-readable rendering.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let tag = match c.outcome {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
            Outcome::NeedsRoot => "ROOT",
        };
        out.push_str(&format!("{tag}  {:<22} {}\n", c.name, c.detail));
        if let (Some(fix), Outcome::Warn | Outcome::Fail | Outcome::NeedsRoot) = (&c.fix, c.outcome)
        {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    let failed = r
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    let root = r
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::NeedsRoot)
        .count();
    out.push_str(&if failed == 0 {
        "doctor: no failing check".to_owned()
    } else {
        format!("doctor: {failed} failing check(s)")
    });
    if root > 0 {
        out.push_str(&format!(
            "; {root} check(s) need root (`sudo netclaw doctor`)"
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
