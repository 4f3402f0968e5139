//! `netclaw devices list|revoke`.

use std::io::{self, Write};

use bytes::Bytes;
use hyper::Method;
use netclaw_core::wire::Device;

use crate::api;
use crate::context::Context;
use crate::exit::CliError;
use crate::output::{write_json, write_raw, Report};
use crate::transport::encode_segment;

/// The paired devices.
#[derive(Debug)]
pub struct DeviceList {
    /// Parsed.
    pub devices: Vec<Device>,
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
        writeln!(out, "{:<width$}  PAIRED AT", "NAME")?;
        for d in &self.devices {
            writeln!(
                out,
                "{:<width$}  {}",
                api::printable(&d.name),
                api::printable(&d.paired_at)
            )?;
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
