//! Saved contexts: on a paired device, which daemon to talk to, the device token to send it and
//! the CA to trust, saved by `netclaw pair join` (or netclaw's `netclaw pair <endpoint>`) and
//! chosen automatically afterwards, as `kubectl` and `tailscale` do. `netclaw context list|use|
//! remove` manage them; `--context NAME` or `NETCLAW_CONTEXT` pick one for one invocation.
//!
//! The file is `contexts.json` in this user's netclaw configuration directory
//! (`~/.config/netclaw/`, [`default_path`]):
//!
//! ```json
//! {"current": "netclaw.example.com",
//!  "contexts": [{"name": "netclaw.example.com", "endpoint": "https://netclaw.example.com",
//!                "device": "laptop", "token": "…", "caPem": "-----BEGIN CERTIFICATE-----…"}]}
//! ```
//!
//! # Security
//!
//! The file holds device tokens: it is written 0600 atomically (temporary file, `fsync`, rename)
//! in a 0700 directory, and a copy others can read, or a symbolic link, is refused when loaded.
//! A context's endpoint is checked like `pair join`'s (https, or plain http to loopback) when it
//! is saved and again when it is used, and its token is sent only to that endpoint. Tokens are
//! never printed: [`SavedContext`]'s `Debug` elides them and `context list` does not show them.

use std::fmt;
use std::path::{Path, PathBuf};

use netclaw_pki::{secure_fs, PkiError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::address::Endpoint;
use crate::device_token;
use crate::exit::CliError;

/// Environment variable naming the context to use instead of the current one.
pub const CONTEXT_ENV: &str = "NETCLAW_CONTEXT";
/// The file's name in the configuration directory.
pub const FILE_NAME: &str = "contexts.json";
/// The longest context name.
const MAX_NAME: usize = 128;

/// One saved context.
pub struct SavedContext {
    /// Its name (by default the endpoint's `host[:port]`).
    pub name: String,
    /// The daemon's public URL, as given to `pair join`.
    pub endpoint: String,
    /// The device name this token was issued to.
    pub device: String,
    token: Zeroizing<String>,
    /// PEM of the CA to trust for an `https` endpoint (from `--ca-file` at `pair join`), or
    /// `None` for the system roots.
    pub ca_pem: Option<String>,
}

impl fmt::Debug for SavedContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedContext")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("device", &self.device)
            .field("token", &"[secret elided]")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "…"))
            .finish()
    }
}

impl SavedContext {
    /// A context; the endpoint must be one `pair join` accepts.
    pub fn new(
        name: String,
        endpoint: String,
        device: String,
        token: Zeroizing<String>,
        ca_pem: Option<String>,
    ) -> Result<Self, CliError> {
        check_name(&name)?;
        device_token::join_endpoint(&endpoint)?;
        Ok(Self {
            name,
            endpoint,
            device,
            token,
            ca_pem,
        })
    }

    /// The device token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The endpoint, checked again as `pair join` checks it (the file may have been edited).
    pub fn parsed_endpoint(&self) -> Result<Endpoint, CliError> {
        device_token::join_endpoint(&self.endpoint).map_err(|e| {
            CliError::InvalidConfig(format!(
                "saved context {:?}: {e}; remove it with `netclaw context remove {}`",
                self.name, self.name
            ))
        })
    }
}

/// The saved contexts and which one is current.
#[derive(Debug, Default)]
pub struct Contexts {
    /// The context used when none is named, if any.
    pub current: Option<String>,
    /// Every saved context, in the order they were first saved.
    pub list: Vec<SavedContext>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileView<'a> {
    current: Option<&'a str>,
    contexts: Vec<ContextView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContextView<'a> {
    name: &'a str,
    endpoint: &'a str,
    device: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_pem: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    #[serde(default)]
    current: Option<String>,
    #[serde(default)]
    contexts: Vec<RawContext>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawContext {
    name: String,
    endpoint: String,
    device: String,
    token: String,
    #[serde(default)]
    ca_pem: Option<String>,
}

/// `<config dir>/contexts.json` (e.g. `~/.config/netclaw/contexts.json`).
pub fn default_path() -> Result<PathBuf, CliError> {
    let dirs = directories::ProjectDirs::from("", "", "netclaw").ok_or_else(|| {
        CliError::Failed(
            "cannot determine this user's configuration directory (is HOME set?)".into(),
        )
    })?;
    Ok(dirs.config_dir().join(FILE_NAME))
}

/// The default name of a context for `endpoint`: its host, with the port when it is not the
/// scheme's default, and the path prefix when there is one.
pub fn default_name(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Http(t) | Endpoint::Https(t) => {
            let default_port = if matches!(endpoint, Endpoint::Https(_)) {
                443
            } else {
                80
            };
            let host = if t.port == default_port {
                t.host.clone()
            } else {
                t.authority()
            };
            format!("{host}{}", t.base_path)
        }
        Endpoint::Unix(p) => p.display().to_string(),
    }
}

fn check_name(name: &str) -> Result<(), CliError> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(CliError::Usage(format!(
            "{name:?} is not a context name: use 1 to {MAX_NAME} characters without spaces or control characters"
        )));
    }
    Ok(())
}

impl Contexts {
    /// Reads the file at `path`; a missing file is no contexts. A file others can read, a
    /// symbolic link or one that does not parse is refused (exit 5 and 64).
    pub fn load(path: &Path) -> Result<Self, CliError> {
        Self::parse(path, Self::read(path))
    }

    /// The file's bytes, read once (no symbolic link, mode 0600).
    fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        secure_fs::read_secret(
            path,
            "saved contexts",
            "run `netclaw pair join` on this device",
        )
    }

    /// The contexts in what [`Self::read`] gave (none for a missing file).
    fn parse(path: &Path, read: Result<Zeroizing<Vec<u8>>, PkiError>) -> Result<Self, CliError> {
        let bytes = match read {
            Ok(b) => b,
            Err(PkiError::Missing { .. }) => return Ok(Self::default()),
            Err(e) => return Err(CliError::pki(e, " (the saved contexts hold device tokens)")),
        };
        let raw: RawFile = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::InvalidConfig(format!(
                "{} is not a contexts file: {e}; fix it or remove it and pair again",
                path.display()
            ))
        })?;
        let mut list = Vec::with_capacity(raw.contexts.len());
        for c in raw.contexts {
            let token = Zeroizing::new(c.token);
            if list.iter().any(|s: &SavedContext| s.name == c.name) {
                return Err(CliError::InvalidConfig(format!(
                    "{} names context {:?} twice",
                    path.display(),
                    c.name
                )));
            }
            list.push(SavedContext {
                name: c.name,
                endpoint: c.endpoint,
                device: c.device,
                token,
                ca_pem: c.ca_pem,
            });
        }
        Ok(Self {
            current: raw.current,
            list,
        })
    }

    /// [`Self::load`] for the implicit choice of the current context: a file this user may not
    /// open is someone else's (a `HOME` kept across a change of user, as `su` without `-` or
    /// `setpriv` do), so this user has no saved contexts there and the host's own endpoints
    /// follow. Every other failure is [`Self::load`]'s, a file others can read included.
    pub fn load_own(path: &Path) -> Result<Self, CliError> {
        match Self::read(path) {
            Err(PkiError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Ok(Self::default())
            }
            read => Self::parse(path, read),
        }
    }

    /// Writes the file at `path`, 0600, atomically; a missing parent is created 0700.
    pub fn store(&self, path: &Path) -> Result<(), CliError> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !dir.exists() {
                secure_fs::ensure_private_dir(dir)?;
            }
        }
        // Borrowed views: the tokens are serialized from where they are, not copied.
        let doc = FileView {
            current: self.current.as_deref(),
            contexts: self
                .list
                .iter()
                .map(|c| ContextView {
                    name: &c.name,
                    endpoint: &c.endpoint,
                    device: &c.device,
                    token: &c.token,
                    ca_pem: c.ca_pem.as_deref(),
                })
                .collect(),
        };
        let mut text = Zeroizing::new(
            serde_json::to_vec_pretty(&doc).map_err(|e| CliError::Failed(e.to_string()))?,
        );
        text.push(b'\n');
        secure_fs::write_atomic(path, &text, secure_fs::KEY_MODE)?;
        Ok(())
    }

    /// The context called `name`.
    pub fn get(&self, name: &str) -> Option<&SavedContext> {
        self.list.iter().find(|c| c.name == name)
    }

    /// The context called `name`, or an error listing the saved ones.
    pub fn named(&self, name: &str) -> Result<&SavedContext, CliError> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.list.iter().map(|c| c.name.as_str()).collect();
            CliError::Usage(if known.is_empty() {
                format!("no saved context {name:?}: none are saved; pair this device with `netclaw pair join https://DAEMON --code CODE --name NAME`")
            } else {
                format!(
                    "no saved context {name:?}; saved: {} (`netclaw context list`)",
                    known.join(", ")
                )
            })
        })
    }

    /// The current context, if one is set and still saved.
    pub fn current(&self) -> Option<&SavedContext> {
        self.current.as_deref().and_then(|n| self.get(n))
    }

    /// Saves `ctx`, replacing a context of the same name in place.
    pub fn upsert(&mut self, ctx: SavedContext) {
        match self.list.iter_mut().find(|c| c.name == ctx.name) {
            Some(slot) => *slot = ctx,
            None => self.list.push(ctx),
        }
    }

    /// Removes the context called `name` (and makes none current if it was).
    pub fn remove(&mut self, name: &str) -> Result<SavedContext, CliError> {
        self.named(name)?;
        let i = self
            .list
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| CliError::Failed(format!("no saved context {name:?}")))?;
        if self.current.as_deref() == Some(name) {
            self.current = None;
        }
        Ok(self.list.remove(i))
    }
}

#[cfg(test)]
mod tests;
