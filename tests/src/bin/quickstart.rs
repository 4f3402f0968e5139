//! Quickstart: builds netclaw, installs a reverse-proxy deployment into a temporary root and
//! shows its operator PKI. Run with `cargo run -p netclaw-tests --bin quickstart`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let bins = netclaw_tests::build_binaries()?;
    let tmp = tempfile::Builder::new()
        .prefix("netclaw-quickstart-")
        .tempdir()?;
    let root = tmp.path();
    let config: PathBuf = root.join("etc/netclaw/netclaw.json");

    say("1. Installing netclaw into a temporary root in reverse-proxy mode, bound to 192.0.2.10 (a documentation address), trusting the proxy at 192.0.2.1.");
    run(Command::new(&bins.netclaw)
        .args(["daemon", "install", "--root"])
        .arg(root)
        .args([
            "--exposure",
            "reverse-proxy",
            "--bind",
            "192.0.2.10",
            "--trusted-proxy",
            "192.0.2.1",
        ]))?;

    say("2. The configuration it wrote (every path points inside the temporary root):");
    println!("{}", std::fs::read_to_string(&config)?);

    say("3. The operator PKI: the operator CA, the operator listener's certificate and the agent's host-scoped client certificate.");
    run(Command::new(&bins.netclaw)
        .arg("--config")
        .arg(&config)
        .args(["pki", "status"]))?;

    say("4. Removing the temporary root.");
    drop(tmp);
    say("Done.");
    Ok(())
}

fn say(s: &str) {
    println!("\n== {s}");
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
