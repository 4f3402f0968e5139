//! `netclaw pair` / `netclaw daemon pair` (mint a pairing code on the daemon host) and
//! `netclaw pair join URL` / netclaw's `netclaw pair ENDPOINT` (exchange it for a device token
//! on the device and save it as the current context).

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use hyper::{Method, StatusCode};
use netclaw_core::config::ExposureMode;
use netclaw_core::wire::{ExchangeRequest, ExchangeResponse, HealthStatus, PairingCode};
use zeroize::Zeroizing;

use crate::address::Endpoint;
use crate::api;
use crate::api::lockout_lines;
use crate::args::JoinOptions;
use crate::context::Context;
use crate::contexts::{self, Contexts, SavedContext};
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
    /// Lines about them (and a missing public URL), for stderr.
    pub lockouts: Vec<String>,
}

/// `POST /api/local-control/v1/pairing-code`, then the pairing health for lockout warnings.
/// Only the daemon host mints, so the current saved context is not used
/// ([`Context::host_session`]).
pub async fn mint(ctx: &Context<'_>, public_url: Option<&str>) -> Result<Minted, CliError> {
    let s = ctx.host_session().await?;
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
    let config = match s.resolved().source {
        Source::Agent | Source::Loopback => ctx.load_config().ok(),
        Source::Explicit | Source::Context => None,
    };
    let configured = config
        .as_ref()
        .and_then(|c| c.operator().public_url().map(str::to_owned));
    let mut lockouts = pairing.as_ref().map(lockout_lines).unwrap_or_default();
    let url = match (public_url, configured) {
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, Some(u)) => u,
        (None, None) => match (&s.resolved().source, &s.resolved().endpoint, &config) {
            (Source::Loopback, e, _) => e.to_string(),
            (_, _, Some(c)) if c.daemon().exposure() == ExposureMode::Local => {
                Endpoint::loopback(c.daemon().host(), c.daemon().port()).to_string()
            }
            (Source::Explicit | Source::Context, e, _) if e.is_http() => e.to_string(),
            _ => {
                lockouts.push(
                    "the daemon's public URL is not configured, so the join command says <public-url>: set it once with \
                     \"Operator\": {\"PublicUrl\": \"https://…\"} in netclaw.json (`netclaw daemon install --public-url URL`), or pass --public-url"
                        .to_owned(),
                );
                "<public-url>".to_owned()
            }
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
        lockouts,
    })
}

impl Report for Minted {
    /// The first two lines are netclaw's (`netclaw daemon pair`), which scripts grep:
    /// `grep 'Pairing code:' | awk '{print $NF}'`.
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "Pairing code:  {}", self.code.formatted_code)?;
        writeln!(out, "Expires at:    {} (single use)", self.code.expires_at)?;
        writeln!(out)?;
        writeln!(out, "On the remote device, run:")?;
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

/// Where a device token was stored.
#[derive(Debug)]
pub enum Stored {
    /// In a saved context, now the current one.
    Context {
        /// Its name.
        name: String,
        /// The contexts file (0600).
        file: PathBuf,
    },
    /// In a token file (`--token-file`), for `--endpoint … --device-token …`.
    TokenFile {
        /// The file (0600).
        path: PathBuf,
        /// The `--ca-file` given, to repeat in the follow-up command.
        ca_file: Option<PathBuf>,
    },
}

/// A stored device token.
#[derive(Debug)]
pub struct Joined {
    /// This device's name.
    pub device: String,
    /// The daemon, as given.
    pub endpoint: String,
    /// Where the token is.
    pub stored: Stored,
}

/// `POST /api/pair/exchange`, then the token stored as a saved context that becomes current
/// (or in `--token-file`). Everything is checked before the code is asked for and sent (and
/// spent). A code or device name not given as a flag is read from `input`, one line each, with
/// a prompt on `prompt`, as netclaw's `netclaw pair ENDPOINT` asks for them.
pub async fn join(
    ctx: &Context<'_>,
    url: &str,
    o: &JoinOptions,
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
) -> Result<Joined, CliError> {
    let endpoint = device_token::join_endpoint(url)?;
    let url = url.trim_end_matches('/').to_owned();
    let store = match &o.token_file {
        Some(p) => {
            let path = absolute(p)?;
            device_token::check_writable(&path, o.force)?;
            Stored::TokenFile {
                path,
                ca_file: ctx.ca_file.as_deref().map(absolute).transpose()?,
            }
        }
        None => {
            let name = ctx
                .context_name
                .clone()
                .unwrap_or_else(|| contexts::default_name(&endpoint));
            let file = ctx.contexts_path()?;
            if let Some(old) = Contexts::load(&file)?.get(&name) {
                if !o.force {
                    return Err(CliError::Failed(format!(
                        "a saved context {name:?} already exists (device {:?} at {}); pass --force to replace it, or --context OTHER-NAME to keep both",
                        old.device, old.endpoint
                    )));
                }
            }
            Stored::Context { name, file }
        }
    };
    let ca_pem = match (&endpoint, &ctx.ca_file, &store) {
        (Endpoint::Https(_), Some(file), Stored::Context { .. }) => {
            Some(std::fs::read_to_string(file).map_err(|e| {
                CliError::Failed(format!("cannot read CA file {}: {e}", file.display()))
            })?)
        }
        _ => None,
    };
    let code = match &o.code {
        Some(c) => c.trim().to_owned(),
        None => ask(input, prompt, "Pairing code (XXXX-XXXX): ")?,
    };
    if code.is_empty() {
        return Err(CliError::Usage(
            "a pairing code is required: pass --code XXXX-XXXX or type it when asked (run `netclaw daemon pair` on the daemon host for one)".into(),
        ));
    }
    let device = match &o.name {
        Some(n) => n.clone(),
        None => {
            let host = this_host();
            let typed = ask(input, prompt, &format!("Device name [{host}]: "))?;
            if typed.is_empty() {
                host
            } else {
                typed
            }
        }
    };
    let resolved = Resolved {
        endpoint,
        source: Source::Explicit,
        agent_status: None,
    };
    // Pairing sends the code, never an existing device token.
    let s = ctx.session_for(resolved, false)?;
    let body = serde_json::to_vec(&ExchangeRequest {
        code,
        device_name: device.clone(),
    })
    .map_err(|e| CliError::Failed(e.to_string()))?;
    let resp = s
        .send(
            Method::POST,
            "/api/pair/exchange",
            Some(Body {
                content_type: "application/json",
                bytes: body,
            }),
        )
        .await?;
    if resp.status == StatusCode::CONFLICT {
        // The daemon keeps the code valid after a name clash: say so, so the user retries.
        return Err(CliError::Failed(format!(
            "a device named {:?} is already paired with {url}; choose another name (--name, or type it when asked) and run again: the same code stays valid until it expires",
            api::printable(&device)
        )));
    }
    let resp = api::check(resp, s.resolved())?;
    let exchanged: ExchangeResponse = api::parse(&resp.body, "the pairing exchange")?;
    let token = Zeroizing::new(exchanged.token);
    match &store {
        Stored::TokenFile { path, .. } => device_token::store(path, &token)?,
        Stored::Context { name, file } => {
            // Read again: another invocation may have saved a context meanwhile.
            let mut all = Contexts::load(file)?;
            all.upsert(SavedContext::new(
                name.clone(),
                url.clone(),
                device.clone(),
                token,
                ca_pem,
            )?);
            all.current = Some(name.clone());
            all.store(file)?;
        }
    }
    Ok(Joined {
        device,
        endpoint: url,
        stored: store,
    })
}

/// Writes `question` to `prompt` and reads one line of `input`, trimmed (empty at end of input).
fn ask(
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
    question: &str,
) -> Result<String, CliError> {
    // A prompt that cannot be written (closed stderr) does not stop a scripted answer.
    let _ = write!(prompt, "{question}");
    let _ = prompt.flush();
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?;
    Ok(line.trim().to_owned())
}

/// This host's name, netclaw's default device name.
fn this_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}

impl Report for Joined {
    /// The first line is netclaw's (`netclaw pair ENDPOINT`).
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "Paired successfully as '{}'.",
            api::printable(&self.device)
        )?;
        match &self.stored {
            Stored::Context { name, file } => {
                writeln!(
                    out,
                    "Token saved in context {:?} ({}, mode 0600), now the current context.",
                    api::printable(name),
                    file.display()
                )?;
                writeln!(
                    out,
                    "You can now use `netclaw whoami`, `netclaw status`, etc. against {} without flags \
                     (`netclaw context list` shows the saved contexts, `netclaw context use` switches).",
                    self.endpoint
                )
            }
            Stored::TokenFile { path, ca_file } => {
                writeln!(
                    out,
                    "Token stored in {} (mode 0600) for {}.",
                    path.display(),
                    self.endpoint
                )?;
                let ca = ca_file
                    .as_ref()
                    .map(|c| format!(" --ca-file {}", c.display()))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "Use it with: netclaw --endpoint {} --device-token {}{ca} whoami",
                    self.endpoint,
                    path.display()
                )
            }
        }
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        let (context, contexts_file, token_file) = match &self.stored {
            Stored::Context { name, file } => (Some(name), Some(file), None),
            Stored::TokenFile { path, .. } => (None, None, Some(path)),
        };
        write_json(
            out,
            &serde_json::json!({
                "device": self.device,
                "endpoint": self.endpoint,
                "context": context,
                "contextsFile": contexts_file,
                "tokenFile": token_file,
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
