//! Quickstart: builds netclaw and runs a complete reverse-proxy deployment on this host, inside a
//! network namespace it creates, then tears it down. Run with
//! `cargo run -p netclaw-tests --bin quickstart`.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use netclaw_tests::{build_binaries, probe, wait_for, Install, Namespace, Proc};

/// The daemon host's internal address (a documentation address, inside the namespace only).
const DAEMON_IP: &str = "192.0.2.10";
/// Where the reverse proxy would be.
const PROXY_IP: &str = "192.0.2.1";
/// A remote device (in production it comes through the proxy; here it calls the public
/// listener directly, which in reverse-proxy mode earns it nothing but pairing).
const DEVICE_IP: &str = "198.51.100.20";

fn main() -> Result<()> {
    say(
        "Building netclaw, netclaw-daemon and netclaw-operator-agent (a few minutes the first \
         time, seconds after that).",
    );
    let bins = with_heartbeat(
        "still building",
        Duration::from_secs(15),
        &mut std::io::stderr(),
        build_binaries,
    )?;

    say(&format!(
        "Creating a network namespace for the daemon host and giving it the address {DAEMON_IP} \
         (and {DEVICE_IP} for a simulated remote device). Nothing leaves the namespace."
    ));
    let ns = Namespace::new().context(
        "the quickstart needs a network namespace: run it as root, or enable unprivileged user \
         namespaces (sysctl kernel.unprivileged_userns_clone=1)",
    )?;
    ns.add_address(&format!("{DAEMON_IP}/24"))?;
    ns.add_address(&format!("{DEVICE_IP}/24"))?;

    say(&format!(
        "Installing netclaw into a temporary root: reverse-proxy mode, public listener on \
         {DAEMON_IP}:5199 trusting the proxy at {PROXY_IP}, operator listener on {DAEMON_IP}:5200, \
         an operator CA and a host-scoped client certificate for the agent."
    ));
    let install = Install::new(
        &bins,
        Some(&ns),
        &[
            "--exposure",
            "reverse-proxy",
            "--bind",
            DAEMON_IP,
            "--trusted-proxy",
            PROXY_IP,
        ],
    )?;
    println!("{}", std::fs::read_to_string(&install.config)?);
    let config = install.config.clone();
    let netclaw = |args: &[&str]| -> Command {
        let mut c = ns.command(&bins.netclaw);
        c.arg("--config").arg(&config).args(args);
        c
    };

    say("Starting netclaw-daemon.");
    let mut daemon_cmd = ns.command(&bins.daemon);
    daemon_cmd.arg("--config").arg(&config);
    let mut daemon = Proc::spawn("netclaw-daemon", daemon_cmd, &install.log("daemon"))?;
    wait_for(
        "the daemon's public listener",
        Duration::from_secs(20),
        || {
            probe(
                &ns,
                &bins,
                &["GET", &format!("http://{DAEMON_IP}:5199/api/health/ready")],
            )
            .ok()
            .filter(|(s, _)| *s == 200)
        },
    )
    .with_context(|| format!("daemon log:\n{}", daemon.log()))?;

    say("Starting netclaw-operator-agent (it holds the client certificate and listens on a Unix socket).");
    let mut agent_cmd = ns.command(&bins.agent);
    agent_cmd.arg("--config").arg(&config);
    let mut agent = Proc::spawn("netclaw-operator-agent", agent_cmd, &install.log("agent"))?;
    let socket = install.socket()?;
    wait_for("the agent socket", Duration::from_secs(20), || {
        socket.exists().then_some(())
    })
    .with_context(|| format!("agent log:\n{}", agent.log()))?;

    say("Loopback earns nothing in reverse-proxy mode: the public listener calls a local caller Anonymous.");
    let (_, body) = probe(
        &ns,
        &bins,
        &["GET", &format!("http://{DAEMON_IP}:5199/api/whoami")],
    )?;
    println!("{body}");

    say("`netclaw whoami` on the daemon host goes through the agent and the operator listener (mutual TLS):");
    run(&mut netclaw(&["whoami"]))?;

    say("`netclaw pair` mints a pairing code through the agent:");
    let out = netclaw(&["pair", "--json"]).output()?;
    if !out.status.success() {
        bail!(
            "netclaw pair failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let minted: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let code = minted["formattedCode"]
        .as_str()
        .context("no formattedCode in `netclaw pair --json`")?
        .to_owned();
    println!("code {code}, expires {}", minted["expiresAt"]);

    say(&format!(
        "A remote device at {DEVICE_IP} exchanges the code for a bearer token (in production \
         through the HTTPS reverse proxy, with `netclaw pair join https://… --code {code} --name phone`):"
    ));
    let (status, body) = probe(
        &ns,
        &bins,
        &[
            "--bind",
            DEVICE_IP,
            "--data",
            &format!(r#"{{"code":"{code}","deviceName":"phone"}}"#),
            "POST",
            &format!("http://{DAEMON_IP}:5199/api/pair/exchange"),
        ],
    )?;
    if status != 200 {
        bail!("exchange failed with {status}: {body}");
    }
    let token: serde_json::Value = serde_json::from_str(&body)?;
    let token = token["token"].as_str().context("no token")?.to_owned();
    println!("paired; the device now holds a 32-byte bearer token");

    say("The device's `whoami` with its token:");
    let (_, body) = probe(
        &ns,
        &bins,
        &[
            "--bind",
            DEVICE_IP,
            "-H",
            &format!("Authorization: Bearer {token}"),
            "GET",
            &format!("http://{DAEMON_IP}:5199/api/whoami"),
        ],
    )?;
    println!("{body}");

    say("`netclaw devices list` through the agent:");
    run(&mut netclaw(&["devices", "list"]))?;

    say("`netclaw status` through the agent:");
    run(&mut netclaw(&["status"]))?;

    say("Stopping the agent and the daemon, removing the namespace and the temporary root.");
    agent.stop();
    daemon.stop();
    drop(ns);
    drop(install);
    say("Done.");
    Ok(())
}

/// Runs `work` while saying every `every` on `out` that it is still going (`{what}: N s`), so
/// that a step of minutes (the first build) is not silent. The lines go to stderr in `main`,
/// leaving stdout to the walkthrough.
fn with_heartbeat<T>(
    what: &str,
    every: Duration,
    out: &mut (dyn std::io::Write + Send),
    work: impl FnOnce() -> T,
) -> T {
    let (done, stop) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let start = std::time::Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
                let _ = writeln!(out, "   {what}: {} s", start.elapsed().as_secs());
            }
        });
        let result = work();
        let _ = done.send(());
        result
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_step_says_it_is_still_going_and_stops_when_done() {
        let mut out = Vec::new();
        let value = with_heartbeat(
            "still building",
            Duration::from_millis(50),
            &mut out,
            || {
                std::thread::sleep(Duration::from_millis(275));
                7
            },
        );
        assert_eq!(value, 7);
        let text = String::from_utf8(out).unwrap();
        let lines = text.lines().count();
        assert!((2..=6).contains(&lines), "{text}");
        assert!(
            text.lines().all(|l| l.starts_with("   still building: ")),
            "{text}"
        );
        // Nothing after the work ended.
        let mut quiet = Vec::new();
        with_heartbeat("x", Duration::from_millis(50), &mut quiet, || ());
        assert!(quiet.is_empty());
    }
}
