//! What every command shares: the global options, the environment, the time, and the
//! [`Session`] that the network commands talk through.

use std::path::PathBuf;
use std::time::SystemTime;

use netclaw_core::config::{Config, ConfigError};
use netclaw_core::env::Env;
use netclaw_core::layout::resolve_config_path;
use netclaw_core::layout::CONFIG_ENV;

use crate::address::Endpoint;
use crate::api::Session;
use crate::args::Cli;
use crate::contexts::{self, Contexts, SavedContext};
use crate::device_token;
use crate::endpoint::{self, Resolved, Source};
use crate::exit::CliError;
use crate::tls;
use crate::transport::Bearer;

/// Options every command shares.
pub struct Context<'a> {
    /// `--config`.
    pub config_flag: Option<PathBuf>,
    /// `--endpoint`, else a non-empty `NETCLAW_ENDPOINT`, else a non-empty
    /// `NETCLAW_DAEMON_ENDPOINT` (netclaw's name; read once, here).
    pub explicit_endpoint: Option<String>,
    /// `--context`, else a non-empty `NETCLAW_CONTEXT`: the saved context to use (with
    /// `pair join`, the name to save it under).
    pub context_name: Option<String>,
    /// Whether `--config` or `NETCLAW_CONFIG` names this host's configuration, which then wins
    /// over the current saved context.
    pub config_named: bool,
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
            .field("explicit_endpoint", &self.explicit_endpoint)
            .field("context_name", &self.context_name)
            .field("device_token", &self.device_token)
            .field("ca_file", &self.ca_file)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    /// The context of one invocation.
    pub fn new(cli: &Cli, env: &'a dyn Env, now: SystemTime) -> Self {
        let non_empty = |key: &str| env.var(key).filter(|s| !s.is_empty());
        let explicit_endpoint = cli
            .endpoint
            .clone()
            .or_else(|| non_empty(endpoint::ENDPOINT_ENV))
            .or_else(|| non_empty(endpoint::DAEMON_ENDPOINT_ENV));
        Self {
            config_flag: cli.config.clone(),
            explicit_endpoint,
            context_name: cli
                .context
                .clone()
                .or_else(|| non_empty(contexts::CONTEXT_ENV)),
            config_named: cli.config.is_some() || non_empty(CONFIG_ENV).is_some(),
            device_token: cli.device_token.clone(),
            ca_file: cli.ca_file.clone(),
            env,
            now,
        }
    }

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

    /// This user's saved contexts (`contexts.json` in the configuration directory).
    pub fn contexts_path(&self) -> Result<PathBuf, CliError> {
        contexts::default_path()
    }

    /// Loads the saved contexts (none when the file does not exist).
    pub fn load_contexts(&self) -> Result<Contexts, CliError> {
        Contexts::load(&self.contexts_path()?)
    }

    /// Resolves the endpoint and builds the session (TLS for https, bearer if given). When the
    /// agent's socket is chosen, the connection opened to choose it carries the first request.
    ///
    /// Order: the context named by `--context`/`NETCLAW_CONTEXT` (an explicit endpoint must be
    /// its own); an explicit endpoint, with the token of a saved context for that same endpoint
    /// unless `--device-token`; unless `--config`/`NETCLAW_CONFIG` names a configuration, the
    /// current saved context; this host's configuration (agent socket, then loopback in local
    /// mode).
    pub async fn session(&self) -> Result<Session, CliError> {
        self.session_with(true).await
    }

    /// As [`Context::session`] but never the current saved context, for commands that only the
    /// daemon host runs (minting a pairing code, rotating the agent's certificate): on a host
    /// that is also paired to another daemon they still go to this host's daemon. A context
    /// named by `--context`/`NETCLAW_CONTEXT` is still used.
    pub async fn host_session(&self) -> Result<Session, CliError> {
        self.session_with(false).await
    }

    async fn session_with(&self, use_current: bool) -> Result<Session, CliError> {
        let explicit = self.explicit_endpoint.as_deref();
        if let Some(name) = &self.context_name {
            let all = self.load_contexts()?;
            let saved = all.named(name)?;
            if let Some(e) = explicit {
                if Endpoint::parse(e)? != saved.parsed_endpoint()? {
                    return Err(CliError::Usage(format!(
                        "context {name:?} is for {}, not the explicit endpoint {e}; drop --context/NETCLAW_CONTEXT or the endpoint",
                        saved.endpoint
                    )));
                }
            }
            return self.context_session(saved);
        }
        if let (Some(e), None, true) = (explicit, &self.device_token, use_current) {
            // netclaw's scripts set NETCLAW_DAEMON_ENDPOINT to the paired daemon and expect its
            // token to go with it: a saved context for that very endpoint supplies it (the
            // current one first). A token never goes to any other endpoint.
            let wanted = Endpoint::parse(e)?;
            if let Some(all) = self
                .contexts_path()
                .ok()
                .and_then(|p| Contexts::load(&p).ok())
            {
                let same = |c: &&SavedContext| c.parsed_endpoint().ok().as_ref() == Some(&wanted);
                if let Some(saved) = all
                    .current()
                    .filter(same)
                    .or_else(|| all.list.iter().find(same))
                {
                    return self.context_session(saved);
                }
            }
        }
        if uses_current_context(explicit.is_some(), use_current, self.config_named) {
            // NOTE: without a configuration directory (no HOME) there are no saved contexts.
            if let Ok(path) = self.contexts_path() {
                let all = Contexts::load_own(&path)?;
                if let Some(saved) = all.current() {
                    return self.context_session(saved);
                }
            }
        }
        let config = match explicit {
            Some(_) => None,
            None => Some(self.load_config().map_err(|e| self.not_set_up(e))?),
        };
        let (resolved, connection) = endpoint::resolve(explicit, config.as_ref()).await?;
        Ok(self
            .session_for(resolved, true)?
            .with_connection(connection))
    }

    /// A missing default configuration file, on a host without saved contexts, is most likely
    /// a remote device that has not paired yet: say how to pair, and how to install.
    fn not_set_up(&self, e: CliError) -> CliError {
        match &e {
            CliError::Config(ConfigError::Read { path, source, .. })
                if !self.config_named && source.kind() == std::io::ErrorKind::NotFound =>
            {
                CliError::Unreachable(format!(
                    "no netclaw configuration on this host ({} does not exist) and no saved context: \
                     on a remote device, pair it with `netclaw pair join https://DAEMON --code CODE --name NAME` \
                     (or netclaw's `netclaw pair https://DAEMON`) and commands then use that daemon; \
                     on the daemon host, run `netclaw daemon install`; or pass --endpoint",
                    path.display()
                ))
            }
            _ => e,
        }
    }

    /// The session for a saved context: its endpoint, its CA (unless `--ca-file`), its token
    /// (unless `--device-token`).
    pub fn context_session(&self, saved: &SavedContext) -> Result<Session, CliError> {
        let resolved = Resolved {
            endpoint: saved.parsed_endpoint()?,
            source: Source::Context,
            agent_status: None,
        };
        let tls = match (&resolved.endpoint, &self.ca_file, &saved.ca_pem) {
            (Endpoint::Https(_), Some(file), _) => {
                Some(tls::client_config(tls::roots(Some(file), self.env)?)?)
            }
            (Endpoint::Https(_), None, Some(pem)) => Some(tls::client_config(tls::pem_roots(
                pem.as_bytes(),
                &format!("the CA of saved context {:?}", saved.name),
            )?)?),
            (Endpoint::Https(_), None, None) => {
                Some(tls::client_config(tls::roots(None, self.env)?)?)
            }
            _ => None,
        };
        let token = match &self.device_token {
            Some(path) => device_token::load(path)?,
            None => zeroize::Zeroizing::new(saved.token().to_owned()),
        };
        Session::new(resolved, tls, Some(Bearer::new(token.to_string())))
    }

    /// A session for an endpoint resolved by the caller (`pair join`), with the device token
    /// only when `with_bearer`.
    pub fn session_for(&self, resolved: Resolved, with_bearer: bool) -> Result<Session, CliError> {
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

/// Whether the current saved context decides the endpoint: not when an endpoint is explicit,
/// not for a command only the daemon host runs (`!for_any_host`), and not when `--config` /
/// `NETCLAW_CONFIG` names this host's configuration.
pub fn uses_current_context(explicit: bool, for_any_host: bool, config_named: bool) -> bool {
    !explicit && for_any_host && !config_named
}

#[cfg(test)]
mod tests;
