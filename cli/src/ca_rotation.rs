//! `netclaw pki rotate --ca prepare|activate|retire`: operator CA rotation on the daemon's PKI
//! directory (root), with the agent nudged to reload after each step so that no request fails.

use std::time::{Duration, SystemTime};

use hyper::Method;
use netclaw_core::config::Config;
use netclaw_core::wire::RenewResponse;
use netclaw_pki::rotation::{self, Phase};
use netclaw_pki::store::{self, AgentPaths, DaemonPkiPaths};

use crate::address::Endpoint;
use crate::exit::CliError;
use crate::output::progress;
use crate::transport::Client;

/// Which step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CaStep {
    /// A new CA joins the trust bundles (the old one still signs).
    Prepare,
    /// The new CA signs: new listener certificate, and the agent renews from it.
    Activate,
    /// The old CA leaves the trust bundles.
    Retire,
}

/// How long the daemon needs at most to pick up changed PKI files (it checks every second).
const DAEMON_PICKUP: Duration = Duration::from_millis(2500);

fn pki_error(e: netclaw_pki::PkiError) -> CliError {
    CliError::pki(
        e,
        " (CA rotation needs the daemon's PKI directory: run it as root)",
    )
}

/// Asks the agent to re-read its files now; `Ok(false)` when it does not answer.
async fn nudge_agent(config: &Config) -> bool {
    let client = Client::new(Endpoint::Unix(config.operator().socket().to_owned()), None)
        .with_timeout(Duration::from_secs(5));
    matches!(
        client.send(Method::POST, "/agent/v1/reload", None, None).await,
        Ok(r) if r.status.is_success()
    )
}

/// What one step did.
#[derive(Debug)]
pub struct CaRotationReport {
    /// The phase after the step.
    pub phase: &'static str,
    /// What could not be done now, and what the operator should do about it.
    pub notes: Vec<String>,
    /// The next command (or "done").
    pub next: &'static str,
    /// The JSON form: new serials, phase, next, notes.
    pub json: serde_json::Map<String, serde_json::Value>,
}

/// Runs one step.
pub async fn run(config: &Config, step: CaStep) -> Result<CaRotationReport, CliError> {
    let paths = DaemonPkiPaths::new(config.operator().pki_dir());
    let agent = AgentPaths::new(config.operator().agent_dir());
    let now = SystemTime::now();
    let mut notes = Vec::new();
    let mut report = serde_json::Map::new();
    {
        let _lock = store::lock_registry(&paths).map_err(pki_error)?;
        match step {
            CaStep::Prepare => {
                progress("generating a new operator CA and adding it to both trust bundles (the old CA still signs)");
                let label =
                    netclaw_core::wire::format_unix(netclaw_pki::identity::unix_seconds(now));
                let serial = rotation::prepare(&paths, &agent.ca_bundle(), &label[..10], now)
                    .map_err(pki_error)?;
                report.insert("newCa".into(), serial.to_string().into());
            }
            CaStep::Activate => {
                if let Phase::Prepared { at, .. } = rotation::phase(&paths).map_err(pki_error)? {
                    // Give the daemon and the agent time to trust the new CA before anything
                    // is signed by it.
                    let since = netclaw_pki::identity::unix_seconds(now).saturating_sub(at);
                    if since < 3 {
                        progress(&format!(
                            "waiting {} s so that the daemon and the agent trust the new CA before it signs",
                            3 - since
                        ));
                        tokio::time::sleep(Duration::from_secs(3 - since)).await;
                    }
                }
                progress(
                    "issuing the listener certificate from the new CA, which signs from now on",
                );
                let serial = rotation::activate(&paths, &agent.ca_bundle(), SystemTime::now())
                    .map_err(pki_error)?;
                report.insert("listenerCertificate".into(), serial.to_string().into());
            }
            CaStep::Retire => {
                progress("checking that the listener and agent certificates chain to the new CA, then removing the old CA from both trust bundles");
                rotation::retire(
                    &paths,
                    &agent.ca_bundle(),
                    &agent.client_cert(),
                    SystemTime::now(),
                )
                .map_err(pki_error)?;
            }
        }
    }
    progress("asking the operator agent to reload its trust bundle");
    let agent_up = nudge_agent(config).await;
    if !agent_up {
        notes.push(
            "the operator agent did not answer; it picks the new trust bundle up within 2 s of \
             starting or on `systemctl reload netclaw-operator-agent`"
                .to_owned(),
        );
    }
    progress(&format!(
        "waiting {:.1} s for the daemon to pick up the new files",
        DAEMON_PICKUP.as_secs_f32()
    ));
    tokio::time::sleep(DAEMON_PICKUP).await;

    if step == CaStep::Activate {
        // The agent renews now, so its certificate comes from the new CA.
        progress("asking the agent to renew its certificate from the new CA");
        let client = Client::new(Endpoint::Unix(config.operator().socket().to_owned()), None)
            .with_timeout(Duration::from_secs(30));
        match client
            .send(Method::POST, "/agent/v1/rotate", None, None)
            .await
        {
            Ok(r) if r.status.is_success() => {
                if let Ok(renewed) = serde_json::from_slice::<RenewResponse>(&r.body) {
                    report.insert("agentSerial".into(), renewed.serial.into());
                }
            }
            _ => notes.push(
                "the agent could not renew through the daemon; run `netclaw pki rotate --offline` \
                 before `netclaw pki rotate --ca retire`"
                    .to_owned(),
            ),
        }
    }
    let phase = rotation::phase(&paths).map_err(pki_error)?;
    report.insert("phase".into(), phase.name().into());
    let next = match phase {
        Phase::None => "done: the old CA is no longer trusted anywhere",
        Phase::Prepared { .. } => "next: `netclaw pki rotate --ca activate`",
        Phase::Activated { .. } => "next: `netclaw pki rotate --ca retire`",
    };
    report.insert("next".into(), next.into());
    report.insert("notes".into(), notes.clone().into());
    Ok(CaRotationReport {
        phase: phase.name(),
        notes,
        next,
        json: report,
    })
}
