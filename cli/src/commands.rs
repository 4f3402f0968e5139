//! The commands that talk to the daemon: `status`, `health`, `whoami`, `pair`, `pair join`,
//! `devices list|revoke`, `events`, `pki rotate` (through the agent), `doctor`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use netclaw_core::config::{Config, ExposureMode};
use netclaw_core::env::Env;
use netclaw_core::layout::resolve_config_path;
use netclaw_core::wire::{
    Device, ExchangeRequest, ExchangeResponse, HealthStatus, PairingCode, PairingHealth,
    RenewResponse, WhoAmI,
};
use serde::Serialize;

use crate::api::{self, Session};
use crate::device_token;
use crate::doctor;
use crate::endpoint::{self, Endpoint, Resolved, Source, START_AGENT};
use crate::events::{self, SseParser};
use crate::exit::{CliError, ExitCode};
use crate::tls;
use crate::transport::{encode_segment, Bearer, Body, Client};

/// Path of the agent's rotation endpoint.
pub const ROTATE_PATH: &str = "/agent/v1/rotate";

/// Options every command shares.
pub struct Context<'a> {
    /// `--config`.
    pub config_flag: Option<PathBuf>,
    /// `--endpoint`.
    pub endpoint_flag: Option<String>,
    /// `--device-token`: a token file to send as bearer to an explicit endpoint.
    pub device_token: Option<PathBuf>,
    /// `--ca-file` for `https` endpoints.
    pub ca_file: Option<PathBuf>,
    /// Environment.
    pub env: &'a dyn Env,
    /// Now.
    pub now: SystemTime,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config_flag", &self.config_flag)
            .field("endpoint_flag", &self.endpoint_flag)
            .field("device_token", &self.device_token)
            .field("ca_file", &self.ca_file)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Context<'_> {
    /// The configuration file in use.
    pub fn config_path(&self) -> PathBuf {
        resolve_config_path(
            self.config_flag.as_deref(),
            self.env,
            nix::unistd::geteuid().is_root(),
        )
    }

    /// Loads and validates the configuration (exit 64 on failure).
    pub fn load_config(&self) -> Result<Config, CliError> {
        Ok(Config::load(&self.config_path(), self.env)?)
    }

    fn explicit(&self) -> Option<String> {
        self.endpoint_flag.clone().or_else(|| {
            self.env
                .var(endpoint::ENDPOINT_ENV)
                .filter(|s| !s.is_empty())
        })
    }

    /// Resolves the endpoint and builds the session (TLS for https, bearer if given).
    pub async fn session(&self) -> Result<Session, CliError> {
        let explicit = self.explicit();
        let config = match explicit {
            Some(_) => None,
            None => Some(self.load_config()?),
        };
        let resolved = endpoint::resolve(explicit.as_deref(), self.env, config.as_ref()).await?;
        self.session_for(resolved, true)
    }

    fn session_for(&self, resolved: Resolved, with_bearer: bool) -> Result<Session, CliError> {
        let tls = match &resolved.endpoint {
            Endpoint::Https(_) => Some(tls::client_config(tls::roots(
                self.ca_file.as_deref(),
                self.env,
            )?)?),
            _ => None,
        };
        let bearer = match self.device_token.as_ref().filter(|_| with_bearer) {
            Some(path) => {
                if let Endpoint::Http(t) = &resolved.endpoint {
                    if !t.is_loopback() {
                        return Err(CliError::Usage("refusing to send a device token over plain HTTP to a non-loopback host; use the daemon's https:// URL".into(),
                        ));
                    }
                }
                let token = device_token::load(path)?;
                Some(Bearer::new(token.to_string()))
            }
            None => None,
        };
        Session::new(resolved, tls, bearer)
    }
}

fn print_json(v: &impl Serialize) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Failed(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn print_raw(body: &Bytes) {
    println!("{}", String::from_utf8_lossy(body).trim_end());
}

/// `netclaw status`.
pub async fn status(ctx: &Context<'_>, json: bool) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let (health, _): (HealthStatus, _) = s.get_json("/api/health/status").await?;
    let agent = s.resolved().agent_status.clone();
    if json {
        print_json(&serde_json::json!({
            "endpoint": s.resolved().endpoint.to_string(),
            "via": s.resolved().describe(),
            "daemon": health,
            "agent": agent,
        }))?;
    } else {
        println!(
            "daemon:  netclaw-daemon {}, mode {}, up {}",
            health.version,
            health.mode,
            uptime(health.uptime_seconds)
        );
        if let Some(l) = &health.listeners {
            println!("  public listener:    {}", l.public);
            if let Some(op) = &l.operator {
                println!("  operator listener:  {op}");
            }
        }
        if let Some(c) = &health.operator_certificates {
            println!("  listener cert until {}", c.server_not_after);
            for a in &c.agents {
                println!("  agent cert {} until {}", a.serial, a.not_after);
            }
        }
        if let Some(p) = &health.pairing {
            println!(
                "pairing: {}; {} wrong code(s) of a budget of {}{}",
                match &p.code_expires_at {
                    Some(t) => format!("code pending until {t}"),
                    None => "no code pending".to_owned(),
                },
                p.wrong_guesses,
                p.guess_budget,
                if p.budget_spent {
                    " (spent: only addresses that never failed may try)"
                } else {
                    ""
                }
            );
            for line in lockout_lines(p) {
                println!("  {line}");
            }
        }
        println!("via:     {}", s.resolved().describe());
        if let Some(a) = &agent {
            println!(
                "agent:   {} ({}), serial {}, {} days left (until {})",
                a.identity,
                if a.healthy { "healthy" } else { "UNHEALTHY" },
                a.serial,
                a.days_left,
                a.not_after
            );
            for p in &a.problems {
                println!("  problem: {}", api::printable(p));
            }
        }
    }
    match agent {
        Some(a) if a.days_left < 0 => Err(CliError::Credentials(format!(
                "the operator agent's certificate expired at {}; re-issue it as root with `netclaw pki rotate --offline`",
                a.not_after
            ),
        )),
        _ => Ok(()),
    }
}

/// What to tell the operator about locked-out pairing sources (nothing when there are none).
pub fn lockout_lines(p: &PairingHealth) -> Vec<String> {
    if p.locked_out_sources == 0 {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "{} source address(es) locked out of pairing after repeated failed exchanges:",
        p.locked_out_sources
    )];
    for l in &p.locked_out {
        lines.push(format!(
            "  {} until {}",
            api::printable(&l.source),
            api::printable(&l.until)
        ));
    }
    if p.locked_out_sources > p.locked_out.len() {
        lines.push(format!(
            "  … and {} more",
            p.locked_out_sources - p.locked_out.len()
        ));
    }
    lines.push(
        "a device on a locked-out address must wait until then or pair from another network; many lockouts mean someone is guessing (`netclaw events` shows pairing-locked-out)"
            .to_owned(),
    );
    lines
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else {
        format!("{m}m{s}s")
    }
}

/// `netclaw health`.
pub async fn health(ctx: &Context<'_>, json: bool) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let resp = s.call(Method::GET, "/api/health/ready", None).await?;
    if json {
        print_raw(&resp.body);
    } else {
        println!("ready ({})", s.resolved().describe());
    }
    Ok(())
}

/// `netclaw whoami`.
pub async fn whoami(ctx: &Context<'_>, json: bool) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let (w, raw): (WhoAmI, _) = s.get_json("/api/whoami").await?;
    if json {
        print_raw(&raw);
        return Ok(());
    }
    let mut line = format!("{} via {}", w.principal, w.transport);
    if let Some(n) = &w.name {
        line.push_str(&format!(" ({})", api::printable(n)));
    }
    println!("{line}");
    if let Some(c) = &w.caller {
        println!(
            "caller:  uid {}{}{}",
            c.uid,
            c.user
                .as_deref()
                .map(|u| format!(" ({})", api::printable(u)))
                .unwrap_or_default(),
            c.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
        );
    }
    println!("via:     {}", s.resolved().describe());
    Ok(())
}

/// `netclaw pair`: mint a pairing code.
pub async fn pair(ctx: &Context<'_>, public_url: Option<&str>, json: bool) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let resp = s
        .call(Method::POST, "/api/local-control/v1/pairing-code", None)
        .await?;
    let code: PairingCode = api::parse(&resp.body, "the pairing-code request")?;
    // Locked-out sources are worth a warning: the device about to pair may be on one. The code
    // is minted either way, so a failure here only loses the warning.
    let pairing = match s.get_json::<HealthStatus>("/api/health/status").await {
        Ok((h, _)) => h.pairing,
        Err(_) => None,
    };
    let warnings = pairing.as_ref().map(lockout_lines).unwrap_or_default();
    for line in &warnings {
        eprintln!("warning: {line}");
    }
    let url = match public_url {
        Some(u) => u.to_owned(),
        None => match (&s.resolved().source, &s.resolved().endpoint) {
            (Source::Loopback, e) => e.to_string(),
            _ => match ctx.load_config() {
                Ok(c) if c.daemon().exposure() == ExposureMode::Local => {
                    Endpoint::loopback(c.daemon().host(), c.daemon().port()).to_string()
                }
                _ => "<public-url>".to_owned(),
            },
        },
    };
    let join = format!(
        "netclaw pair join {url} --code {} --name <device>",
        code.formatted_code
    );
    if json {
        print_json(&serde_json::json!({
            "formattedCode": code.formatted_code,
            "expiresAt": code.expires_at,
            "joinCommand": join,
            "lockedOutSources": pairing.as_ref().map_or(0, |p| p.locked_out_sources),
        }))?;
    } else {
        println!("pairing code: {}", code.formatted_code);
        println!("expires:      {} (single use)", code.expires_at);
        println!("on the device to pair, run:");
        println!("  {join}");
    }
    Ok(())
}

/// Options of `netclaw pair join`.
#[derive(Debug)]
pub struct JoinOptions {
    /// The daemon's public URL.
    pub url: String,
    /// `XXXX-XXXX`.
    pub code: String,
    /// This device's name.
    pub name: String,
    /// Where to store the token (default: the user's config directory).
    pub token_file: Option<PathBuf>,
    /// Replace an existing token file.
    pub force: bool,
    /// JSON output.
    pub json: bool,
}

/// `netclaw pair join`: exchange a code for a device token and store it.
pub async fn join(ctx: &Context<'_>, o: &JoinOptions) -> Result<(), CliError> {
    // Everything is checked before the code is sent (and spent).
    let endpoint = device_token::join_endpoint(&o.url)?;
    let target = match &endpoint {
        Endpoint::Http(t) | Endpoint::Https(t) => t.clone(),
        Endpoint::Unix(_) => return Err(CliError::Usage("not an http(s) URL".into())),
    };
    let path = match &o.token_file {
        Some(p) => absolute(p)?,
        None => device_token::default_path(&target)?,
    };
    device_token::check_writable(&path, o.force)?;
    let resolved = Resolved {
        endpoint,
        source: Source::Explicit,
        agent_status: None,
    };
    // Pairing sends the code, never an existing device token.
    let s = ctx.session_for(resolved, false)?;
    let body = serde_json::to_vec(&ExchangeRequest {
        code: o.code.clone(),
        device_name: o.name.clone(),
    })
    .map_err(|e| CliError::Failed(e.to_string()))?;
    let resp = s
        .call(
            Method::POST,
            "/api/pair/exchange",
            Some(Body {
                content_type: "application/json",
                bytes: body,
            }),
        )
        .await?;
    let exchanged: ExchangeResponse = api::parse(&resp.body, "the pairing exchange")?;
    let token = zeroize::Zeroizing::new(exchanged.token);
    device_token::store(&path, &token)?;
    if o.json {
        print_json(&serde_json::json!({
            "device": o.name,
            "endpoint": s.resolved().endpoint.to_string(),
            "tokenFile": path,
        }))?;
    } else {
        println!("paired as {:?} with {}", o.name, s.resolved().endpoint);
        println!("device token stored in {} (mode 0600)", path.display());
        println!(
            "use it with: netclaw --endpoint {} --device-token {} whoami",
            s.resolved().endpoint,
            path.display()
        );
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .map_err(|e| CliError::Failed(format!("{}: {e}", p.display())))
}

/// `netclaw devices list`.
pub async fn devices_list(ctx: &Context<'_>, json: bool) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let (devices, raw): (Vec<Device>, _) = s.get_json("/api/pair/devices").await?;
    if json {
        print_raw(&raw);
    } else if devices.is_empty() {
        println!("no paired devices");
    } else {
        let width = devices
            .iter()
            .map(|d| d.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("{:<width$}  PAIRED AT", "NAME");
        for d in &devices {
            println!(
                "{:<width$}  {}",
                api::printable(&d.name),
                api::printable(&d.paired_at)
            );
        }
    }
    Ok(())
}

/// `netclaw devices revoke NAME`.
pub async fn devices_revoke(ctx: &Context<'_>, name: &str, json: bool) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let path = format!("/api/pair/devices/{}", encode_segment(name));
    s.call(Method::DELETE, &path, None).await?;
    if json {
        print_json(&serde_json::json!({ "revoked": name }))?;
    } else {
        println!("revoked device {name:?}; its token no longer works");
    }
    Ok(())
}

/// Options of `netclaw events`.
#[derive(Debug, Clone, Copy)]
pub struct EventsOptions {
    /// Stream until interrupted.
    pub follow: bool,
    /// Without `follow`: stop after this long without an event.
    pub idle: Duration,
    /// One JSON object per line.
    pub json: bool,
}

/// `netclaw events`.
pub async fn events(ctx: &Context<'_>, o: EventsOptions) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let resolved = s.resolved().clone();
    let mut stream = s
        .client()
        .stream("/api/events")
        .await
        .map_err(|e| api::transport_failure(e, &resolved))?;
    if !stream.status.is_success() {
        // Read the (small) error body with a deadline, then map the status.
        let body = tokio::time::timeout(
            crate::transport::REQUEST_TIMEOUT,
            http_body_util::Limited::new(stream.body, crate::transport::MAX_RESPONSE).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
        api::check(
            crate::transport::Response {
                status: stream.status,
                headers: stream.headers,
                body,
            },
            &resolved,
        )?;
        return Ok(());
    }
    if o.follow {
        eprintln!(
            "netclaw: streaming events from {} until interrupted",
            resolved.describe()
        );
    } else {
        eprintln!(
            "netclaw: listening for events from {} until {} s pass without one (--follow to keep listening)",
            resolved.describe(),
            o.idle.as_secs_f32()
        );
    }
    let mut parser = SseParser::default();
    let mut deadline = tokio::time::Instant::now() + o.idle;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = async {
            if o.follow {
                stream.body.frame().await
            } else {
                tokio::time::timeout_at(deadline, stream.body.frame())
                    .await
                    .ok()
                    .flatten()
            }
        };
        let frame = tokio::select! {
            f = next => f,
            _ = &mut interrupted => return Ok(()),
        };
        let Some(frame) = frame else {
            if o.follow {
                return Err(CliError::Unreachable(format!(
                    "{} closed the event stream",
                    resolved.endpoint
                )));
            }
            return Ok(()); // idle timeout, or the stream ended
        };
        let frame = frame.map_err(|e| {
            CliError::Unreachable(format!(
                "event stream from {} broke: {e}",
                resolved.endpoint
            ))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let evs = parser
            .push(&data)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        if !evs.is_empty() {
            deadline = tokio::time::Instant::now() + o.idle;
        }
        let mut out = std::io::stdout().lock();
        for ev in evs {
            let line = if o.json {
                events::json_line(&ev)
            } else {
                events::text_line(&ev)
            };
            // A closed stdout (`netclaw events --follow | head -1`) ends the command quietly.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
    }
}

/// `netclaw pki rotate`: immediate rotation through the agent.
pub async fn pki_rotate(ctx: &Context<'_>, json: bool) -> Result<(), CliError> {
    let s = ctx.session().await?;
    let resolved = s.resolved().clone();
    if !matches!(resolved.endpoint, Endpoint::Unix(_)) {
        return Err(CliError::Unreachable(format!(
                "pki rotate goes through the operator agent, and it is not answering (resolved {} instead); start it with `{START_AGENT}`, or re-issue its certificate from the CA on disk as root with `netclaw pki rotate --offline`",
                resolved.describe()
            ),
        ));
    }
    let resp = Client::new(resolved.endpoint.clone(), None)
        .send(Method::POST, ROTATE_PATH, None, None)
        .await
        .map_err(|e| api::transport_failure(e, &resolved))?;
    if matches!(resp.status.as_u16(), 404 | 405 | 501) {
        return Err(CliError::Failed("certificate rotation is not available in this version of netclaw-operator-agent; as root, `netclaw pki rotate --offline` re-issues the agent certificate from the CA on disk".into(),
        ));
    }
    if resp.status == hyper::StatusCode::BAD_GATEWAY {
        if let Some(e) = api::expired_agent(&resolved) {
            return Err(e);
        }
        let (detail, code) = api::error_body(&resp.body);
        if let Some(why) = api::refused_certificate(code) {
            return Err(CliError::Credentials(format!(
                    "the daemon refused the operator agent's certificate ({why}), so the agent cannot rotate it: {detail}; {}",
                    api::OFFLINE_FIX
                ),
            ));
        }
        return Err(CliError::Unreachable(format!(
            "the operator agent could not rotate its certificate: {detail}"
        )));
    }
    let resp = api::check(resp, &resolved)?;
    let renewed: RenewResponse = api::parse(&resp.body, "the rotation")?;
    if json {
        print_json(&serde_json::json!({
            "serial": renewed.serial,
            "previousSerial": renewed.previous_serial,
            "notAfter": renewed.not_after,
        }))?;
    } else {
        println!(
            "rotated the operator agent's certificate: serial {} (until {})",
            api::printable(&renewed.serial),
            api::printable(&renewed.not_after)
        );
        println!(
            "the previous serial {} stays valid for a short grace period, then is refused",
            api::printable(&renewed.previous_serial)
        );
    }
    Ok(())
}

/// `netclaw doctor`.
pub async fn doctor(ctx: &Context<'_>, machine_id: &Path, json: bool) -> Result<(), CliError> {
    let report = doctor::run(&ctx.config_path(), ctx.env, machine_id, ctx.now).await;
    if json {
        print_json(&report)?;
    } else {
        print!("{}", doctor::render(&report));
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::ChecksFailed {
            what: "doctor found failing checks",
            code: ExitCode::Failure,
        })
    }
}
