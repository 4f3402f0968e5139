//! `netclaw daemon install`: configuration, operator PKI and agent credentials
//! ([`crate::install`]).

use std::io::{self, Write};

use crate::args::InstallArgs;
use crate::context::Context;
use crate::exit::CliError;
use crate::install::{self, InstallOptions, InstallReport, Target};
use crate::output::{write_json, Report};

/// Installs as the flags say.
pub fn exec(ctx: &Context<'_>, a: InstallArgs) -> Result<InstallReport, CliError> {
    let target = match (a.root, a.user) {
        (Some(dir), _) => Target::Root(dir),
        (None, true) => Target::User,
        (None, false) => Target::System,
    };
    let opts = InstallOptions {
        target,
        exposure: a.exposure,
        bind: a.bind,
        port: a.port,
        trusted_proxies: a.trusted_proxies,
        operator_host: a.operator_host,
        operator_port: a.operator_port,
        operator_users: a.operator_users,
        operator_groups: a.operator_groups,
        allowed_sources: a.allowed_sources,
        trust_domain: a.trust_domain,
        certificate_lifetime: a.certificate_lifetime,
        operator_dns: a.operator_dns,
        public_url: a.public_url,
        skip_tunnel_process_check: a.skip_tunnel_process_check,
        force: a.force,
        replace_ca: a.replace_ca,
        dry_run: a.dry_run,
        machine_id_path: a.machine_id.file,
    };
    install::install(&opts, ctx.env, ctx.now)
}

impl Report for InstallReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.dry_run {
            writeln!(
                out,
                "would install netclaw ({} mode) into {}",
                self.exposure_mode,
                self.config_path.display()
            )?;
            if self.changes.is_empty() {
                writeln!(out, "  no setting changes")?;
            }
            for change in &self.changes {
                writeln!(out, "  would change:      {change}")?;
            }
            for line in &self.next_steps {
                writeln!(out, "{line}")?;
            }
            return Ok(());
        }
        writeln!(out, "installed netclaw ({} mode)", self.exposure_mode)?;
        writeln!(out, "  configuration:     {}", self.config_path.display())?;
        writeln!(out, "  daemon PKI:        {}", self.pki_directory.display())?;
        writeln!(
            out,
            "  agent credentials: {}",
            self.agent_directory.display()
        )?;
        writeln!(out, "  agent socket:      {}", self.socket.display())?;
        writeln!(out, "  agent identity:    {}", self.agent_identity)?;
        writeln!(out, "  agent serial:      {}", self.agent_serial)?;
        writeln!(out, "  host-id:           {}", self.host_id_source)?;
        if self.ca_kept {
            writeln!(out, "  operator CA:       kept the existing CA")?;
        }
        for change in &self.changes {
            writeln!(out, "  changed:           {change}")?;
        }
        for line in &self.next_steps {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    fn json(&self, out: &mut dyn Write) -> io::Result<()> {
        write_json(out, self)
    }
}
