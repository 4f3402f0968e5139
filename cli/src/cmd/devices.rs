//! `netclaw devices list|revoke` (netclaw's `netclaw daemon devices [revoke NAME]`).

use std::io::{self, Write};

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use crate::api;
use crate::context::Context;
use crate::exit::CliError;
use crate::output::{write_json, write_raw, Report};
use crate::transport::encode_segment;

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
