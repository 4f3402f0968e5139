//! `netclaw context list|use|remove`: the saved contexts of this device ([`crate::contexts`]).

use std::io::{self, Write};

use crate::api;
use crate::context::Context;
use crate::contexts::Contexts;
use crate::exit::CliError;
use crate::output::{write_json, Report};

/// One saved context, as listed (never its token).
#[derive(Debug)]
pub struct Listed {
    /// Name.
    pub name: String,
    /// Endpoint.
    pub endpoint: String,
    /// Device name.
    pub device: String,
    /// Whether a CA is saved with it.
    pub ca: bool,
    /// Whether it is the current one.
    pub current: bool,
}

/// The saved contexts.
#[derive(Debug)]
pub struct ContextList(pub Vec<Listed>);

/// Lists the saved contexts.
pub fn list(ctx: &Context<'_>) -> Result<ContextList, CliError> {
    let all = ctx.load_contexts()?;
    let current = all.current().map(|c| c.name.clone());
    Ok(ContextList(
        all.list
            .iter()
            .map(|c| Listed {
                name: c.name.clone(),
                endpoint: c.endpoint.clone(),
                device: c.device.clone(),
                ca: c.ca_pem.is_some(),
                current: current.as_deref() == Some(c.name.as_str()),
            })
            .collect(),
    ))
}

impl Report for ContextList {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.is_empty() {
            return writeln!(
                out,
                "no saved contexts; pair this device with `netclaw pair join https://DAEMON --code CODE --name NAME`"
            );
        }
        let width = |f: fn(&Listed) -> &str, min: usize| {
            self.0
                .iter()
                .map(|c| api::printable(f(c)).chars().count())
                .max()
                .unwrap_or(0)
                .max(min)
        };
        let wn = width(|c| &c.name, 4);
        let we = width(|c| &c.endpoint, 8);
        writeln!(out, "CURRENT  {:<wn$}  {:<we$}  DEVICE", "NAME", "ENDPOINT")?;
        for c in &self.0 {
            writeln!(
                out,
                "{:<7}  {:<wn$}  {:<we$}  {}",
                if c.current { "*" } else { "" },
                api::printable(&c.name),
                api::printable(&c.endpoint),
                api::printable(&c.device)
            )?;
        }
        Ok(())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        let list: Vec<_> = self
            .0
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "endpoint": c.endpoint,
                    "device": c.device,
                    "ca": c.ca,
                    "current": c.current,
                })
            })
            .collect();
        write_json(out, &serde_json::Value::Array(list))
    }
}

/// What `context use` / `context remove` changed.
#[derive(Debug)]
pub enum Changed {
    /// This context is now current.
    Current(String),
    /// No context is current.
    Local,
    /// This context was removed.
    Removed(String),
}

/// Makes `name` current, or none with `None`.
pub fn use_context(ctx: &Context<'_>, name: Option<&str>) -> Result<Changed, CliError> {
    let path = ctx.contexts_path()?;
    let mut all = Contexts::load(&path)?;
    let changed = match name {
        Some(n) => {
            all.named(n)?;
            all.current = Some(n.to_owned());
            Changed::Current(n.to_owned())
        }
        None => {
            all.current = None;
            Changed::Local
        }
    };
    all.store(&path)?;
    Ok(changed)
}

/// Forgets `name` and its token.
pub fn remove(ctx: &Context<'_>, name: &str) -> Result<Changed, CliError> {
    let path = ctx.contexts_path()?;
    let mut all = Contexts::load(&path)?;
    all.remove(name)?;
    all.store(&path)?;
    Ok(Changed::Removed(name.to_owned()))
}

impl Report for Changed {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Self::Current(n) => writeln!(out, "current context: {}", api::printable(n)),
            Self::Local => writeln!(
                out,
                "no current context: commands resolve through this host's configuration"
            ),
            Self::Removed(n) => writeln!(
                out,
                "removed context {:?} and its device token (revoke the device on the daemon with `netclaw devices revoke NAME`)",
                api::printable(n)
            ),
        }
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(
            out,
            &match self {
                Self::Current(n) => serde_json::json!({ "current": n }),
                Self::Local => serde_json::json!({ "current": null }),
                Self::Removed(n) => serde_json::json!({ "removed": n }),
            },
        )
    }
}
