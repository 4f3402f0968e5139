//! What the daemon's client-certificate check costs per handshake: the verifier
//! (`netclaw_pki::verify::verify_agent_certificate`: webpki chain and validity, EKU, SPIFFE
//! identity) and registry admission (`Registry::admit_agent`), timed in this process on the
//! install's own files, against a whole new mutual-TLS connection to the operator listener.

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use netclaw_pki::store::{self, AgentPaths, DaemonPkiPaths};
use netclaw_pki::verify::{self, ExpectedAgent};
use netclaw_pki::SpiffeId;

use super::client::{self, Target};
use super::host;

/// Per-handshake costs.
#[derive(Clone, Debug)]
pub struct VerifierCost {
    /// Iterations of the verifier.
    pub verify_runs: u32,
    /// Mean wall time of one `verify_agent_certificate`, µs.
    pub verify_us: f64,
    /// Iterations of admission.
    pub admit_runs: u32,
    /// Mean wall time of one `admit_agent`, ns.
    pub admit_ns: f64,
    /// New connections made for the comparison, per kind.
    pub connections: u32,
    /// Mean wall time of a request on a new mutual-TLS connection, µs.
    pub tls_connection_us: f64,
    /// The same on a new plain TCP connection to the public listener, µs.
    pub tcp_connection_us: f64,
    /// The daemon's CPU per new mutual-TLS connection (handshake and one request), µs.
    pub daemon_cpu_per_tls_connection_us: f64,
}

/// Measures on the install whose PKI is in `pki_dir` and agent files in `agent_dir`; `tls` and
/// `tcp` are the operator and public listeners, `daemon` the daemon's pid.
pub fn measure(
    pki_dir: &Path,
    agent_dir: &Path,
    tls: &Target,
    tcp: &Target,
    daemon: u32,
    quick: bool,
) -> Result<VerifierCost> {
    let agent = store::load_agent(&AgentPaths::new(agent_dir)).context("agent credentials")?;
    let registry =
        store::load_registry(&DaemonPkiPaths::new(pki_dir)).context("issuance registry")?;
    let info = verify::inspect(&agent.cert.der)?;
    let id: SpiffeId = info
        .sans
        .iter()
        .find_map(|s| s.strip_prefix("URI:"))
        .context("no SPIFFE URI in the agent certificate")?
        .parse()?;
    let expected = ExpectedAgent {
        trust_domain: id.trust_domain().clone(),
        host_id: id.host_id().clone(),
    };
    let now = SystemTime::now();

    let verify_runs: u32 = if quick { 500 } else { 5_000 };
    let started = Instant::now();
    for _ in 0..verify_runs {
        let identity =
            verify::verify_agent_certificate(&agent.cert.der, &agent.bundle, &expected, now)?;
        std::hint::black_box(identity);
    }
    let verify_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(verify_runs);

    let admit_runs: u32 = if quick { 100_000 } else { 1_000_000 };
    let started = Instant::now();
    for _ in 0..admit_runs {
        std::hint::black_box(registry.admit_agent(std::hint::black_box(&info.serial), now));
    }
    let admit_ns = started.elapsed().as_secs_f64() * 1e9 / f64::from(admit_runs);

    let connections: u32 = if quick { 100 } else { 500 };
    let per_connection = |target: &Target| -> Result<f64> {
        let started = Instant::now();
        for _ in 0..connections {
            let (status, body) = client::fetch(target, "/api/health/ready")?;
            anyhow::ensure!(status == 200, "answered {status}: {body}");
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(connections))
    };
    let tcp_connection_us = per_connection(tcp)?;
    let cpu_before = host::cpu_seconds(&[daemon]);
    let tls_connection_us = per_connection(tls)?;
    let daemon_cpu = host::cpu_seconds(&[daemon]) - cpu_before;
    Ok(VerifierCost {
        verify_runs,
        verify_us,
        admit_runs,
        admit_ns,
        connections,
        tls_connection_us,
        tcp_connection_us,
        daemon_cpu_per_tls_connection_us: daemon_cpu * 1e6 / f64::from(connections),
    })
}
