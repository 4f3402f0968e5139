//! `netclaw pair` (mint a pairing code on the daemon host) and `netclaw pair join` (exchange it
//! for a device token on the device).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hyper::Method;
use netclaw_core::config::ExposureMode;
use netclaw_core::wire::{ExchangeRequest, ExchangeResponse, HealthStatus, PairingCode};

use crate::address::Endpoint;
use crate::api;
use crate::api::lockout_lines;
use crate::args::JoinArgs;
use crate::context::Context;
use crate::device_token;
use crate::endpoint::{Resolved, Source};
use crate::exit::CliError;
use crate::output::{write_json, Report};
use crate::transport::Body;

/// A minted pairing code.
#[derive(Debug)]
pub struct Minted {
    /// The code and its expiry.
    pub code: PairingCode,
    /// The command to run on the device.
    pub join: String,
    /// How many source addresses are locked out of pairing.
    pub locked_out_sources: usize,
    /// Lines about them, for stderr.
    pub lockouts: Vec<String>,
}

/// `POST /api/local-control/v1/pairing-code`, then the pairing health for lockout warnings.
pub async fn mint(ctx: &Context<'_>, public_url: Option<&str>) -> Result<Minted, CliError> {
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
    Ok(Minted {
        code,
        join,
        locked_out_sources: pairing.as_ref().map_or(0, |p| p.locked_out_sources),
        lockouts: pairing.as_ref().map(lockout_lines).unwrap_or_default(),
    })
}

impl Report for Minted {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "pairing code: {}", self.code.formatted_code)?;
        writeln!(out, "expires:      {} (single use)", self.code.expires_at)?;
        writeln!(out, "on the device to pair, run:")?;
        writeln!(out, "  {}", self.join)
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(
            out,
            &serde_json::json!({
                "formattedCode": self.code.formatted_code,
                "expiresAt": self.code.expires_at,
                "joinCommand": self.join,
                "lockedOutSources": self.locked_out_sources,
            }),
        )
    }

    fn warnings(&self) -> Vec<String> {
        self.lockouts.clone()
    }
}

/// A stored device token.
#[derive(Debug)]
pub struct Joined {
    /// This device's name.
    pub device: String,
    /// The daemon.
    pub endpoint: Endpoint,
    /// Where the token is (0600).
    pub token_file: PathBuf,
}

/// `POST /api/pair/exchange`, then the token stored. Everything is checked before the code is
/// sent (and spent).
pub async fn join(ctx: &Context<'_>, a: &JoinArgs) -> Result<Joined, CliError> {
    let endpoint = device_token::join_endpoint(&a.url)?;
    let target = match &endpoint {
        Endpoint::Http(t) | Endpoint::Https(t) => t.clone(),
        Endpoint::Unix(_) => return Err(CliError::Usage("not an http(s) URL".into())),
    };
    let path = match &a.token_file {
        Some(p) => absolute(p)?,
        None => device_token::default_path(&target)?,
    };
    device_token::check_writable(&path, a.force)?;
    let resolved = Resolved {
        endpoint,
        source: Source::Explicit,
        agent_status: None,
    };
    // Pairing sends the code, never an existing device token.
    let s = ctx.session_for(resolved, false)?;
    let body = serde_json::to_vec(&ExchangeRequest {
        code: a.code.clone(),
        device_name: a.name.clone(),
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
    Ok(Joined {
        device: a.name.clone(),
        endpoint: s.resolved().endpoint.clone(),
        token_file: path,
    })
}

impl Report for Joined {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "paired as {:?} with {}", self.device, self.endpoint)?;
        writeln!(
            out,
            "device token stored in {} (mode 0600)",
            self.token_file.display()
        )?;
        writeln!(
            out,
            "use it with: netclaw --endpoint {} --device-token {} whoami",
            self.endpoint,
            self.token_file.display()
        )
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(
            out,
            &serde_json::json!({
                "device": self.device,
                "endpoint": self.endpoint.to_string(),
                "tokenFile": self.token_file,
            }),
        )
    }
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .map_err(|e| CliError::Failed(format!("{}: {e}", p.display())))
}
