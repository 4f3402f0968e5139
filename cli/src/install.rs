//! `netclaw daemon install`: configuration, the daemon's operator PKI and the agent's
//! credentials, for a system, user or `--root` install.
//!
//! Re-running on an existing install (a configuration with an `Operator` section) refuses
//! unless `--force`. `--force` keeps every owned setting the command line does not give (allowed
//! users and groups, certificate lifetime, trust domain, addresses, the listener certificate's
//! extra DNS names), reports each setting it changes, and re-issues the server and agent
//! certificates (superseding the old agent serial). It keeps the CA unless `--replace-ca`: when
//! the listener moves to an address the CA's name constraints do not permit, a new CA is the
//! way (nothing but this host's agent trusts it); a CA rotation (`netclaw pki rotate --ca`)
//! keeps the names.
//!
//! An existing netclaw `netclaw.json` without an `Operator` section is merged into
//! ([`ConfigDocument`]): the `Operator` section is added, the `Daemon` keys given on the command
//! line (and `StateDirectory`) are set, and every other section and key is kept as written; the
//! file keeps its owner and mode (less group and other write).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use netclaw_core::config::{Config, ConfigDocument, RawConfig, RawDaemon, RawOperator};
use netclaw_core::env::Env;
use netclaw_core::layout::InstallLayout;
use netclaw_pki::bootstrap::{self, BootstrapError, BootstrapRequest};
use netclaw_pki::issue::ListenerNames;
use netclaw_pki::secure_fs::{self, PUBLIC_MODE};
use netclaw_pki::store::{AgentPaths, DaemonPkiPaths};
use rustls_pki_types::DnsName;
use serde::Serialize;

use crate::exit::CliError;

/// System user the daemon runs as.
pub const DAEMON_USER: &str = "netclaw";
/// System user the operator agent runs as.
pub const AGENT_USER: &str = "netclaw-operator-agent";
/// Group whose members may use the agent's socket (the socket unit's `SocketGroup=`); a system
/// install creates it and lists it in `Operator.AllowedGroups` unless `--operator-group` is given.
pub const OPERATORS_GROUP: &str = "netclaw-operators";

/// Where to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/etc/netclaw`, `/var/lib/netclaw`, … (root).
    System,
    /// XDG directories of the current user.
    User,
    /// Everything under a directory.
    Root(PathBuf),
}

/// Options of `netclaw daemon install`.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Where.
    pub target: Target,
    /// `Daemon.ExposureMode`.
    pub exposure: Option<String>,
    /// `Daemon.Host`.
    pub bind: Option<String>,
    /// `Daemon.Port`.
    pub port: Option<u16>,
    /// `Daemon.TrustedProxies`.
    pub trusted_proxies: Vec<String>,
    /// `Operator.Host`.
    pub operator_host: Option<String>,
    /// `Operator.Port`.
    pub operator_port: Option<u16>,
    /// `Operator.AllowedUsers`.
    pub operator_users: Vec<String>,
    /// `Operator.AllowedGroups`.
    pub operator_groups: Vec<String>,
    /// `Operator.AllowedSources`.
    pub allowed_sources: Vec<String>,
    /// `Operator.TrustDomain`.
    pub trust_domain: Option<String>,
    /// `Operator.CertificateLifetime`.
    pub certificate_lifetime: Option<String>,
    /// Extra DNS names for the operator listener's certificate.
    pub operator_dns: Vec<String>,
    /// `Operator.PublicUrl`: the daemon's URL as remote devices reach it.
    pub public_url: Option<String>,
    /// `Daemon.SkipTunnelProcessCheck`.
    pub skip_tunnel_process_check: bool,
    /// Overwrite an existing install (keeps the CA and every setting not given).
    pub force: bool,
    /// With `force`: replace the operator CA (moving the operator listener's address).
    pub replace_ca: bool,
    /// Validate and report what would change; write nothing.
    pub dry_run: bool,
    /// Where the machine-id is read from.
    pub machine_id_path: PathBuf,
}

/// What an install did, for the report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallReport {
    /// Configuration file written.
    pub config_path: PathBuf,
    /// Exposure mode.
    pub exposure_mode: String,
    /// Daemon PKI directory.
    pub pki_directory: PathBuf,
    /// Agent credential directory.
    pub agent_directory: PathBuf,
    /// Agent socket.
    pub socket: PathBuf,
    /// Agent SPIFFE id.
    pub agent_identity: String,
    /// Agent certificate serial.
    pub agent_serial: String,
    /// Whether an existing CA was kept.
    pub ca_kept: bool,
    /// Where the host-id came from.
    pub host_id_source: String,
    /// Sections of an existing netclaw configuration kept as they were.
    pub kept_sections: Vec<String>,
    /// On a re-install, each owned setting that changed: `Section.Key: old -> new`.
    pub changes: Vec<String>,
    /// `--dry-run`: nothing was written or issued (the identity, serial and host-id fields are
    /// empty).
    pub dry_run: bool,
    /// What to run next, one line each (`next: …` first).
    pub next_steps: Vec<String>,
}

/// Runs the install at `now`.
pub fn install(
    opts: &InstallOptions,
    env: &dyn Env,
    now: SystemTime,
) -> Result<InstallReport, CliError> {
    let is_root = nix::unistd::geteuid().is_root();
    let layout = match &opts.target {
        Target::System => {
            if !is_root {
                return Err(CliError::Failed("a system install writes /etc/netclaw and /var/lib and needs root; run it with sudo, or use --user or --root DIR".into(),
                ));
            }
            InstallLayout::system()
        }
        Target::User => InstallLayout::user().map_err(CliError::Failed)?,
        Target::Root(dir) => {
            let dir = absolute(dir)?;
            InstallLayout::under(&dir)
        }
    };

    let existing_text = match std::fs::read_to_string(&layout.config_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(CliError::Failed(format!(
                "cannot read {}: {e}",
                layout.config_path.display()
            )))
        }
    };
    let mut document = match &existing_text {
        Some(text) => ConfigDocument::parse(&layout.config_path, text)?,
        None => ConfigDocument::new(),
    };
    // A re-install starts from the settings as written.
    let previous = match &existing_text {
        Some(text) if document.has_section("Operator") => {
            Some(RawConfig::read(&layout.config_path, text)?)
        }
        _ => None,
    };
    if previous.is_some() && !opts.force {
        return Err(CliError::Failed(format!(
            "netclaw is already installed here ({} has an Operator section); re-run with --force to rewrite the configuration and re-issue the listener and agent certificates (the operator CA is kept)",
            layout.config_path.display()
        )));
    }

    // Validate the whole resulting file before anything is written. Overrides apply when the
    // config is loaded, not at install time.
    let _ = env;
    let given = given_config(opts, &layout);
    let merged = merge(previous.as_ref(), &given, &opts.target);
    let changes = previous
        .as_ref()
        .map(|p| changes(p, &merged))
        .unwrap_or_default();
    document.set_owned(
        &layout.config_path,
        &RawConfig {
            config_version: None,
            daemon: given.daemon,
            operator: merged.operator.clone(),
        },
    )?;
    let config_text = document.to_json();
    let config = Config::from_json(
        &layout.config_path,
        &config_text,
        &BTreeMap::<String, String>::new(),
    )?;

    let op = config.operator();
    if op.host().is_unspecified() {
        return Err(CliError::InvalidConfig("Operator.Host is a wildcard address; the operator listener's certificate needs a concrete IP: pass --operator-host IP".into(),
        ));
    }
    let pki = DaemonPkiPaths::new(op.pki_dir());
    // The extra DNS names are not in the configuration: a re-install keeps the current
    // listener certificate's unless new ones are given.
    let extra_dns = if opts.operator_dns.is_empty() && previous.is_some() {
        netclaw_pki::rotation::current_listener_names(&pki)
            .map(|n| n.dns)
            .unwrap_or_default()
    } else {
        opts.operator_dns.clone()
    };
    let names = ListenerNames {
        ips: vec![op.host()],
        dns: listener_dns_names(&extra_dns)?,
    };

    let agent = AgentPaths::new(op.agent_dir());
    if opts.dry_run {
        return Ok(InstallReport {
            next_steps: vec![
                "dry run: nothing was written; run it again without --dry-run to apply".to_owned(),
            ],
            config_path: layout.config_path,
            exposure_mode: config.daemon().exposure().to_string(),
            pki_directory: pki.dir().to_owned(),
            agent_directory: agent.dir().to_owned(),
            socket: op.socket().to_owned(),
            agent_identity: String::new(),
            agent_serial: String::new(),
            ca_kept: pki.ca_cert().exists() && !opts.replace_ca,
            host_id_source: String::new(),
            kept_sections: config.ignored().sections().to_vec(),
            changes,
            dry_run: true,
        });
    }
    secure_fs::ensure_private_dir(config.daemon().state_dir())?;
    let done = bootstrap::bootstrap(
        &BootstrapRequest {
            pki: &pki,
            agent: &agent,
            machine_id: &opts.machine_id_path,
            listener_ip: op.host(),
            names: &names,
            trust_domain: op.trust_domain(),
            agent_lifetime: op.certificate_lifetime(),
            replace_ca: opts.replace_ca,
        },
        now,
    )
    .map_err(|e| match e {
        BootstrapError::Pki(e) => CliError::from(e),
        e => CliError::Credentials(e.to_string()),
    })?;

    // The socket's directory: 0750. In a system install it is
    // netclaw-operator-agent:netclaw-operators (as netclaw.tmpfiles.conf creates it at boot): the
    // agent may create its socket there, only operators can reach the socket at all, and the
    // socket's own 0660 mode and the agent's SO_PEERCRED check come after that.
    // A system install makes it setgid (2750, as tmpfiles.d does): a socket the agent creates
    // itself then belongs to netclaw-operators too.
    if let Some(run_dir) = op.socket().parent() {
        let mode = if opts.target == Target::System {
            0o2750
        } else {
            0o750
        };
        secure_fs::ensure_dir_mode(run_dir, mode)?;
    }

    write_config(&layout.config_path, &config_text)?;

    if opts.target == Target::System {
        assign_system_owners(&config, &pki, &agent)?;
        if let Some(run_dir) = op.socket().parent() {
            let owner = nix::unistd::User::from_name(AGENT_USER)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    CliError::Failed(format!("user {AGENT_USER} missing after install"))
                })?;
            let group = nix::unistd::Group::from_name(OPERATORS_GROUP)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    CliError::Failed(format!("group {OPERATORS_GROUP} missing after install"))
                })?;
            nix::unistd::chown(run_dir, Some(owner.uid), Some(group.gid))
                .map_err(|e| CliError::Failed(format!("chown {}: {e}", run_dir.display())))?;
        }
    }

    // sd_booted(3): whether this host runs systemd, which decides the next step printed.
    let booted = Path::new("/run/systemd/system").is_dir();
    let mut steps = next_steps(&opts.target, &layout.config_path, booted);
    if opts.target == Target::System
        && booted
        && write_tunnel_drop_in(Path::new(SYSTEMD_UNIT_DIR), config.daemon().exposure())?
    {
        // The drop-in changed: systemd reads it on daemon-reload, before the units start.
        if let Some(first) = steps.first_mut() {
            if let Some(rest) = first.strip_prefix("next: ") {
                *first = format!("next: systemctl daemon-reload && {rest}");
            }
        }
    }
    if previous.is_some() && (!changes.is_empty() || !done.ca_kept) {
        // A running daemon and agent read their settings (and, with a new CA, trust) at start.
        steps.push(if opts.target == Target::System && booted {
            "then: systemctl restart netclaw-daemon.service netclaw-operator-agent.service (they read the changed settings at start)".to_owned()
        } else {
            "then: restart netclaw-daemon and netclaw-operator-agent (they read the changed settings at start)".to_owned()
        });
    }
    Ok(InstallReport {
        next_steps: steps,
        config_path: layout.config_path,
        exposure_mode: config.daemon().exposure().to_string(),
        pki_directory: pki.dir().to_owned(),
        agent_directory: agent.dir().to_owned(),
        socket: op.socket().to_owned(),
        agent_identity: done.agent_id.to_string(),
        agent_serial: done.agent_serial.to_string(),
        ca_kept: done.ca_kept,
        host_id_source: done.host_id_source.to_string(),
        kept_sections: config.ignored().sections().to_vec(),
        changes,
        dry_run: false,
    })
}

fn absolute(dir: &Path) -> Result<PathBuf, CliError> {
    if dir.is_absolute() {
        return Ok(dir.to_owned());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(dir))
        .map_err(|e| CliError::Failed(format!("cannot resolve {}: {e}", dir.display())))
}

/// The owned settings the command line gives (the layout's directories and socket always).
fn given_config(opts: &InstallOptions, layout: &InstallLayout) -> RawConfig {
    let opt_list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    RawConfig {
        config_version: None,
        daemon: RawDaemon {
            host: opts.bind.clone(),
            port: opts.port,
            exposure_mode: opts.exposure.clone(),
            trusted_proxies: opt_list(&opts.trusted_proxies),
            skip_tunnel_process_check: opts.skip_tunnel_process_check.then_some(true),
            state_directory: Some(layout.state_dir.clone()),
            ..Default::default()
        },
        operator: RawOperator {
            host: opts.operator_host.clone(),
            port: opts.operator_port,
            socket: Some(layout.socket.clone()),
            allowed_sources: opt_list(&opts.allowed_sources),
            allowed_users: opt_list(&opts.operator_users),
            allowed_groups: opt_list(&opts.operator_groups),
            trust_domain: opts.trust_domain.clone(),
            certificate_lifetime: opts.certificate_lifetime.clone(),
            rotation_grace: None,
            lock_on_suspected_clone: None,
            busy_poll_micros: None,
            pki_directory: Some(layout.pki_dir.clone()),
            agent_directory: Some(layout.agent_dir.clone()),
            public_url: opts.public_url.clone(),
        },
    }
}

/// The settings after the install: each given one, else the previous one, else the default
/// (a system install's operators group).
fn merge(previous: Option<&RawConfig>, given: &RawConfig, target: &Target) -> RawConfig {
    let default = RawConfig::default();
    let p = previous.unwrap_or(&default);
    let (pd, gd) = (&p.daemon, &given.daemon);
    let (po, go) = (&p.operator, &given.operator);
    fn pick<T: Clone>(given: &Option<T>, previous: &Option<T>) -> Option<T> {
        given.clone().or_else(|| previous.clone())
    }
    let mut allowed_groups = pick(&go.allowed_groups, &po.allowed_groups);
    if allowed_groups.is_none() && *target == Target::System {
        allowed_groups = Some(vec![OPERATORS_GROUP.to_owned()]);
    }
    RawConfig {
        config_version: p.config_version,
        daemon: RawDaemon {
            host: pick(&gd.host, &pd.host),
            port: pick(&gd.port, &pd.port),
            exposure_mode: pick(&gd.exposure_mode, &pd.exposure_mode),
            trusted_proxies: pick(&gd.trusted_proxies, &pd.trusted_proxies),
            skip_tunnel_process_check: pick(
                &gd.skip_tunnel_process_check,
                &pd.skip_tunnel_process_check,
            ),
            state_directory: pick(&gd.state_directory, &pd.state_directory),
            disable_self_update: pick(&gd.disable_self_update, &pd.disable_self_update),
            update_channel: pick(&gd.update_channel, &pd.update_channel),
            endpoint: pick(&gd.endpoint, &pd.endpoint),
        },
        operator: RawOperator {
            host: pick(&go.host, &po.host),
            port: pick(&go.port, &po.port),
            socket: pick(&go.socket, &po.socket),
            allowed_sources: pick(&go.allowed_sources, &po.allowed_sources),
            allowed_users: pick(&go.allowed_users, &po.allowed_users),
            allowed_groups,
            trust_domain: pick(&go.trust_domain, &po.trust_domain),
            certificate_lifetime: pick(&go.certificate_lifetime, &po.certificate_lifetime),
            rotation_grace: pick(&go.rotation_grace, &po.rotation_grace),
            lock_on_suspected_clone: pick(&go.lock_on_suspected_clone, &po.lock_on_suspected_clone),
            busy_poll_micros: pick(&go.busy_poll_micros, &po.busy_poll_micros),
            pki_directory: pick(&go.pki_directory, &po.pki_directory),
            agent_directory: pick(&go.agent_directory, &po.agent_directory),
            public_url: pick(&go.public_url, &po.public_url),
        },
    }
}

/// Each owned setting that differs, `Section.Key: old -> new` (`unset` for absent), in the raw
/// types' key order.
fn changes(previous: &RawConfig, next: &RawConfig) -> Vec<String> {
    fn section<T: serde::Serialize>(
        name: &str,
        a: &T,
        b: &T,
        keys: &[&str],
        out: &mut Vec<String>,
    ) {
        let (a, b) = (serde_json::to_value(a), serde_json::to_value(b));
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
            return;
        };
        let show = |v: Option<&serde_json::Value>| v.map_or("unset".to_owned(), |v| v.to_string());
        for key in keys {
            let (x, y) = (a.get(*key), b.get(*key));
            if x != y {
                out.push(format!("{name}.{key}: {} -> {}", show(x), show(y)));
            }
        }
    }
    let mut out = Vec::new();
    section(
        "Daemon",
        &previous.daemon,
        &next.daemon,
        netclaw_core::config::raw::field_names::<RawDaemon>(),
        &mut out,
    );
    section(
        "Operator",
        &previous.operator,
        &next.operator,
        netclaw_core::config::raw::field_names::<RawOperator>(),
        &mut out,
    );
    out
}

/// Writes the configuration atomically: a new file 0644 in a 0755 directory; an existing one
/// keeps its owner, its mode (less group and other write) and its directory as they are.
fn write_config(path: &Path, text: &str) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if std::fs::symlink_metadata(path).is_err() {
        secure_fs::ensure_dir_mode(dir, 0o755)?;
    }
    secure_fs::replace_atomic(path, text.as_bytes(), PUBLIC_MODE)?;
    Ok(())
}

/// The host's name (when it is a valid DNS name) plus any extra names.
fn listener_dns_names(extra: &[String]) -> Result<Vec<String>, CliError> {
    let mut names = Vec::new();
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str() {
            if is_dns_name(h) {
                names.push(h.to_ascii_lowercase());
            }
        }
    }
    for n in extra {
        if !is_dns_name(n) {
            return Err(CliError::Usage(format!(
                "--operator-dns {n:?} is not a DNS name"
            )));
        }
        let n = n.to_ascii_lowercase();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    Ok(names)
}

/// A name the listener certificate may carry as a dNSName SAN: rustls's `DnsName` rules (label
/// and name lengths, hyphens, no all-numeric last label so no IPv4 address) narrowed to RFC 1123
/// letter-digit-hyphen labels, without a trailing dot.
fn is_dns_name(s: &str) -> bool {
    DnsName::try_from(s).is_ok() && !s.contains('_') && !s.ends_with('.')
}

/// System install: the daemon's user owns its state and PKI, the agent's user its credentials.
/// Missing system users are created with `useradd --system`, the operators group with
/// `groupadd --system`.
fn assign_system_owners(
    config: &Config,
    pki: &DaemonPkiPaths,
    agent: &AgentPaths,
) -> Result<(), CliError> {
    let daemon = ensure_system_user(DAEMON_USER)?;
    let agent_user = ensure_system_user(AGENT_USER)?;
    ensure_system_group(OPERATORS_GROUP)?;
    chown_tree(config.daemon().state_dir(), &daemon)?;
    chown_tree(pki.dir(), &daemon)?;
    chown_tree(agent.dir(), &agent_user)?;
    Ok(())
}

fn ensure_system_user(name: &str) -> Result<nix::unistd::User, CliError> {
    let lookup = || {
        nix::unistd::User::from_name(name)
            .map_err(|e| CliError::Failed(format!("looking up user {name}: {e}")))
    };
    if let Some(u) = lookup()? {
        return Ok(u);
    }
    let status = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .status()
        .map_err(|e| {
            CliError::Failed(format!(
                "running useradd for {name}: {e}; create the system user {name} and re-run"
            ))
        })?;
    if !status.success() {
        return Err(CliError::Failed(format!(
            "useradd {name} failed ({status}); create the system user {name} and re-run"
        )));
    }
    lookup()?.ok_or_else(|| CliError::Failed(format!("user {name} still missing after useradd")))
}

fn ensure_system_group(name: &str) -> Result<(), CliError> {
    let exists = nix::unistd::Group::from_name(name)
        .map_err(|e| CliError::Failed(format!("looking up group {name}: {e}")))?
        .is_some();
    if exists {
        return Ok(());
    }
    let status = std::process::Command::new("groupadd")
        .args(["--system", name])
        .status()
        .map_err(|e| {
            CliError::Failed(format!(
                "running groupadd for {name}: {e}; create the system group {name} and re-run"
            ))
        })?;
    if !status.success() {
        return Err(CliError::Failed(format!(
            "groupadd {name} failed ({status}); create the system group {name} and re-run"
        )));
    }
    Ok(())
}

/// `dir` and everything under it to `user`, never through a symbolic link
/// ([`secure_fs::give_tree_to`]): the service users own these directories and could plant one.
fn chown_tree(dir: &Path, user: &nix::unistd::User) -> Result<(), CliError> {
    let owner = secure_fs::FileOwner {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    };
    Ok(secure_fs::give_tree_to(dir, owner)?)
}

/// Where local unit drop-ins live on a systemd host.
pub const SYSTEMD_UNIT_DIR: &str = "/etc/systemd/system";
/// The daemon's drop-in that orders it after its tunnel's service.
pub const TUNNEL_DROP_IN: &str = "netclaw-daemon.service.d/10-netclaw-tunnel.conf";

/// The drop-in for `mode`: in a tunnel mode the daemon starts after the tunnel's service (and
/// wants it), so that the tunnel process check finds it at boot; `None` otherwise.
pub fn tunnel_drop_in(mode: netclaw_core::config::ExposureMode) -> Option<String> {
    let unit = mode.tunnel_unit()?;
    Some(format!(
        "# Written by `netclaw daemon install` (Daemon.ExposureMode {mode}); removed when the mode\n\
         # changes to one without a tunnel. The daemon refuses to start (exit 75, retried) until\n\
         # {process} runs; this orders it after {unit} at boot.\n\
         [Unit]\n\
         After={unit}\n\
         Wants={unit}\n",
        process = mode.tunnel_process().unwrap_or("the tunnel"),
    ))
}

/// Writes (or removes) the tunnel drop-in under `unit_dir`; whether anything changed.
pub fn write_tunnel_drop_in(
    unit_dir: &Path,
    mode: netclaw_core::config::ExposureMode,
) -> Result<bool, CliError> {
    let path = unit_dir.join(TUNNEL_DROP_IN);
    let current = std::fs::read_to_string(&path).ok();
    match tunnel_drop_in(mode) {
        Some(text) if current.as_deref() == Some(text.as_str()) => Ok(false),
        Some(text) => {
            if let Some(dir) = path.parent() {
                secure_fs::ensure_dir_mode(dir, 0o755)?;
            }
            secure_fs::replace_atomic(&path, text.as_bytes(), PUBLIC_MODE)?;
            Ok(true)
        }
        None if current.is_some() => {
            std::fs::remove_file(&path)
                .map_err(|e| CliError::Failed(format!("removing {}: {e}", path.display())))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The units a system install runs, in the order `systemctl enable --now` takes them. The agent's
/// service is enabled itself (not only its socket) so that it runs from boot and renews its
/// certificate on a quiet host.
pub const UNITS: [&str; 3] = [
    "netclaw-daemon.service",
    "netclaw-operator-agent.socket",
    "netclaw-operator-agent.service",
];

/// What to run after an install, one line each (`next: …` first). `systemd_booted`: whether this
/// host runs systemd (`/run/systemd/system` exists, as sd_booted(3)).
pub fn next_steps(target: &Target, config_path: &Path, systemd_booted: bool) -> Vec<String> {
    if *target == Target::System && systemd_booted {
        vec![
            format!("next: systemctl enable --now {}", UNITS.join(" ")),
            format!(
                "then: usermod -aG {OPERATORS_GROUP} USER for each operator (they log in again)"
            ),
        ]
    } else {
        vec![format!(
            "next: start netclaw-daemon and netclaw-operator-agent with --config {}",
            config_path.display()
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_name_the_units_on_a_systemd_host_and_the_config_elsewhere() {
        let cfg = Path::new("/etc/netclaw/netclaw.json");
        assert_eq!(
            next_steps(&Target::System, cfg, true),
            [
                "next: systemctl enable --now netclaw-daemon.service netclaw-operator-agent.socket netclaw-operator-agent.service",
                "then: usermod -aG netclaw-operators USER for each operator (they log in again)",
            ]
        );
        let manual = ["next: start netclaw-daemon and netclaw-operator-agent with --config /etc/netclaw/netclaw.json"];
        assert_eq!(next_steps(&Target::System, cfg, false), manual);
        assert_eq!(next_steps(&Target::User, cfg, true), manual);
    }

    #[test]
    fn tunnel_modes_order_the_daemon_after_their_tunnel_service_and_others_remove_it() {
        use netclaw_core::config::ExposureMode;
        let text = tunnel_drop_in(ExposureMode::TailscaleServe).unwrap();
        assert!(
            text.contains("\n[Unit]\nAfter=tailscaled.service\nWants=tailscaled.service\n"),
            "{text}"
        );
        let text = tunnel_drop_in(ExposureMode::CloudflareTunnel).unwrap();
        assert!(text.contains("After=cloudflared.service\n"), "{text}");
        assert_eq!(tunnel_drop_in(ExposureMode::ReverseProxy), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TUNNEL_DROP_IN);
        assert!(write_tunnel_drop_in(dir.path(), ExposureMode::TailscaleFunnel).unwrap());
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("After=tailscaled.service"));
        assert!(!write_tunnel_drop_in(dir.path(), ExposureMode::TailscaleFunnel).unwrap());
        assert!(write_tunnel_drop_in(dir.path(), ExposureMode::Local).unwrap());
        assert!(!path.exists());
        assert!(!write_tunnel_drop_in(dir.path(), ExposureMode::Local).unwrap());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("daemon-host"));
        assert!(is_dns_name("a.b.example"));
        assert!(!is_dns_name("-a"));
        assert!(!is_dns_name("192.0.2.1"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("a_b"));
        assert!(!is_dns_name("a.b."));
        assert!(!is_dns_name("a-.b"));
        assert!(!is_dns_name(""));
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(is_dns_name(&"a".repeat(63)));
    }
}
