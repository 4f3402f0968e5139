//! What every command shares: the global options, the environment, the time, and the
//! [`Session`] that the network commands talk through.

use std::path::PathBuf;
use std::time::SystemTime;

use netclaw_core::config::Config;
use netclaw_core::env::Env;
use netclaw_core::layout::resolve_config_path;

use crate::address::Endpoint;
use crate::api::Session;
use crate::args::Cli;
use crate::device_token;
use crate::endpoint::{self, Resolved};
use crate::exit::CliError;
use crate::tls;
use crate::transport::Bearer;

/// Options every command shares.
pub struct Context<'a> {
    /// `--config`.
    pub config_flag: Option<PathBuf>,
    /// `--endpoint`, else a non-empty `NETCLAW_ENDPOINT` (read once, here).
    pub explicit_endpoint: Option<String>,
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
            .field("device_token", &self.device_token)
            .field("ca_file", &self.ca_file)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    /// The context of one invocation.
    pub fn new(cli: &Cli, env: &'a dyn Env, now: SystemTime) -> Self {
        let explicit_endpoint = cli
            .endpoint
            .clone()
            .or_else(|| env.var(endpoint::ENDPOINT_ENV).filter(|s| !s.is_empty()));
        Self {
            config_flag: cli.config.clone(),
            explicit_endpoint,
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

    /// Resolves the endpoint and builds the session (TLS for https, bearer if given). When the
    /// agent's socket is chosen, the connection opened to choose it carries the first request.
    pub async fn session(&self) -> Result<Session, CliError> {
        let explicit = self.explicit_endpoint.as_deref();
        let config = match explicit {
            Some(_) => None,
            None => Some(self.load_config()?),
        };
        let (resolved, connection) = endpoint::resolve(explicit, config.as_ref()).await?;
        Ok(self
            .session_for(resolved, true)?
            .with_connection(connection))
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
