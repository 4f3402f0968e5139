//! `netclaw devices list|revoke|import` (netclaw's `netclaw daemon devices [revoke NAME]`).

use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;
use hyper::Method;
use netclaw_core::wire::{
    parse_iso8601, ImportDevicesRequest, ImportDevicesResponse, ImportedDevice, MAX_REQUEST_BODY,
};
use serde::Deserialize;

use crate::api;
use crate::context::Context;
use crate::exit::CliError;
use crate::output::{write_json, write_raw, Report};
use crate::transport::{encode_segment, Body};

/// A paired device as either daemon lists it: netclaw-rs's `pairedAt`, or netclaw's
/// `createdAt` and `lastUsedAt` (so this CLI lists the devices of netclaw's own daemon too).
/// Other fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedDevice {
    /// Name.
    pub name: String,
    /// When it paired (netclaw-rs).
    #[serde(default)]
    pub paired_at: Option<String>,
    /// When it paired (netclaw).
    #[serde(default)]
    pub created_at: Option<String>,
    /// When its token was last used (netclaw).
    #[serde(default)]
    pub last_used_at: Option<String>,
}

impl ListedDevice {
    fn paired(&self) -> &str {
        self.paired_at
            .as_deref()
            .or(self.created_at.as_deref())
            .unwrap_or("-")
    }
}

/// The paired devices.
#[derive(Debug)]
pub struct DeviceList {
    /// Parsed.
    pub devices: Vec<ListedDevice>,
    /// As sent.
    pub raw: Bytes,
}

/// `GET /api/pair/devices`.
pub async fn list(ctx: &Context<'_>) -> Result<DeviceList, CliError> {
    let s = ctx.session().await?;
    let (devices, raw) = s.get_json("/api/pair/devices").await?;
    Ok(DeviceList { devices, raw })
}

impl Report for DeviceList {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.devices.is_empty() {
            return writeln!(out, "no paired devices");
        }
        let width = self
            .devices
            .iter()
            .map(|d| d.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let last_used = self.devices.iter().any(|d| d.last_used_at.is_some());
        if last_used {
            writeln!(out, "{:<width$}  {:<25}  LAST USED", "NAME", "PAIRED AT")?;
        } else {
            writeln!(out, "{:<width$}  PAIRED AT", "NAME")?;
        }
        for d in &self.devices {
            let name = api::printable(&d.name);
            let paired = api::printable(d.paired());
            if last_used {
                writeln!(
                    out,
                    "{name:<width$}  {paired:<25}  {}",
                    api::printable(d.last_used_at.as_deref().unwrap_or("-"))
                )?;
            } else {
                writeln!(out, "{name:<width$}  {paired}")?;
            }
        }
        Ok(())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_raw(out, &self.raw)
    }
}

/// A revoked device.
#[derive(Debug)]
pub struct Revoked {
    /// Its name.
    pub name: String,
}

/// `DELETE /api/pair/devices/{name}`.
pub async fn revoke(ctx: &Context<'_>, name: &str) -> Result<Revoked, CliError> {
    let s = ctx.session().await?;
    let path = format!("/api/pair/devices/{}", encode_segment(name));
    s.call(Method::DELETE, &path, None).await?;
    Ok(Revoked {
        name: name.to_owned(),
    })
}

impl Report for Revoked {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "revoked device {:?}; its token no longer works",
            self.name
        )
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(out, &serde_json::json!({ "revoked": self.name }))
    }
}

/// Largest netclaw device store read (netclaw keeps a few hundred bytes per device).
const MAX_STORE: u64 = 1024 * 1024;

/// A record of netclaw's `config/devices.json` (its `PairedDevice`, written by
/// `System.Text.Json` without a naming policy: PascalCase keys). Unknown keys are refused: a
/// newer netclaw may attach meaning to them that an import would drop.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct NetclawDevice {
    name: String,
    #[serde(default)]
    is_bootstrap_device: bool,
    token_hash: String,
    salt: String,
    created_at: String,
    last_used_at: String,
}

/// netclaw's device store, parsed for import.
#[derive(Debug, PartialEq, Eq)]
pub struct NetclawStore {
    /// The devices to import.
    pub devices: Vec<ImportedDevice>,
    /// Bootstrap devices left out: netclaw seeds one for its own CLI on the daemon host (its
    /// token sits in netclaw's `secrets.json`); here the operator agent serves that CLI.
    pub bootstrap: Vec<String>,
}

/// Reads netclaw's `devices.json` from `data`: the verifiers of its devices (never a token,
/// which netclaw does not keep). Times must carry an offset; the daemon checks names, hashes
/// and salts again.
pub fn parse_netclaw_store(data: &[u8]) -> Result<NetclawStore, String> {
    let records: Vec<NetclawDevice> = serde_json::from_slice(data).map_err(|e| {
        format!(
            "not netclaw's device store (a JSON array of {{Name, TokenHash, Salt, CreatedAt, \
             LastUsedAt}}): {e}"
        )
    })?;
    let mut store = NetclawStore {
        devices: Vec::new(),
        bootstrap: Vec::new(),
    };
    for (i, r) in records.into_iter().enumerate() {
        if r.is_bootstrap_device {
            store.bootstrap.push(r.name);
            continue;
        }
        let time = |what: &str, v: &str| {
            parse_iso8601(v).ok_or_else(|| {
                format!(
                    "device {} ({:?}): {what} {:?} is not an ISO 8601 time with an offset",
                    i + 1,
                    api::printable(&r.name),
                    api::printable(v)
                )
            })
        };
        let created_at = time("CreatedAt", &r.created_at)?;
        let last_used_at = time("LastUsedAt", &r.last_used_at)?;
        store.devices.push(ImportedDevice {
            name: r.name,
            token_hash: r.token_hash,
            salt: r.salt,
            created_at,
            last_used_at,
        });
    }
    Ok(store)
}

/// What `devices import` did.
#[derive(Debug)]
pub struct Imported {
    /// Names imported.
    pub imported: Vec<String>,
    /// Bootstrap devices left out.
    pub bootstrap: Vec<String>,
}

/// `POST /api/local-control/v1/devices/import` with the devices of netclaw's store at `path`.
pub async fn import(ctx: &Context<'_>, path: &Path) -> Result<Imported, CliError> {
    use std::io::Read as _;
    let unreadable = |e: io::Error| {
        CliError::Usage(format!(
            "{}: {e}; give the path of netclaw's device store (config/devices.json under its \
             home), readable by you",
            path.display()
        ))
    };
    let mut data = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_STORE + 1)
        .read_to_end(&mut data)
        .map_err(unreadable)?;
    if data.len() as u64 > MAX_STORE {
        return Err(CliError::Usage(format!(
            "{}: larger than {MAX_STORE} bytes; not netclaw's device store",
            path.display()
        )));
    }
    let store = parse_netclaw_store(&data)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    if store.devices.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: no devices to import{}",
            path.display(),
            if store.bootstrap.is_empty() {
                ""
            } else {
                " (only netclaw's bootstrap device, which is never imported)"
            }
        )));
    }
    let body = serde_json::to_vec(&ImportDevicesRequest {
        devices: store.devices,
    })
    .map_err(|e| CliError::Failed(e.to_string()))?;
    if body.len() > MAX_REQUEST_BODY {
        return Err(CliError::Usage(format!(
            "{}: too many devices for one import (the request would be {} bytes, the daemon takes \
             {MAX_REQUEST_BODY}); split the array into several files and import each",
            path.display(),
            body.len()
        )));
    }
    let s = ctx.session().await?;
    let resp = s
        .call(
            Method::POST,
            "/api/local-control/v1/devices/import",
            Some(Body {
                content_type: "application/json",
                bytes: body,
            }),
        )
        .await?;
    let answer: ImportDevicesResponse = api::parse(&resp.body, "the device import")?;
    Ok(Imported {
        imported: answer.imported,
        bootstrap: store.bootstrap,
    })
}

impl Report for Imported {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        for name in &self.imported {
            writeln!(
                out,
                "imported device {:?}; its netclaw token keeps working",
                api::printable(name)
            )?;
        }
        for name in &self.bootstrap {
            writeln!(
                out,
                "left out netclaw's bootstrap device {:?}: on the daemon host the operator agent \
                 serves the CLI",
                api::printable(name)
            )?;
        }
        Ok(())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(
            out,
            &serde_json::json!({ "imported": self.imported, "leftOut": self.bootstrap }),
        )
    }
}

#[cfg(test)]
mod tests;
