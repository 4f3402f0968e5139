//! The pairing service: minting codes (for the HTTP route and the hub alike), the exchange of
//! a code for a device token, and the limiter's health. It owns the limiter ([`Pairing`]),
//! stores devices through [`devices::Service`] and audits every step; the HTTP handlers and the
//! hub only translate its answers.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use netclaw_core::wire::{
    format_unix, ExchangeRequest, ExchangeResponse, LockedOutSource, PairingCode, PairingHealth,
};
use netclaw_pki::identity::unix_seconds;
use ring::rand::SystemRandom;

use super::{
    format_code, normalize_code, CodeError, Pairing, Refusal, Source, CODE_GUESS_BUDGET,
    LOCKOUT_DURATION, LOCKOUT_FAILURES, LOCKOUT_WINDOW,
};
use crate::audit::{refusal_budget, Audit};
use crate::devices::{self, device_name, DeviceError, NameError};
use crate::line_budget::LineBudget;
use crate::principal::{Denied, Principal};

/// The pending code, the exchange limiter and the device registry they feed.
#[derive(Debug)]
pub struct Service {
    limiter: Mutex<Pairing>,
    devices: Arc<devices::Service>,
    audit: Arc<Audit>,
    rng: SystemRandom,
    refusals: Mutex<LineBudget>,
}

/// At most [`LINES_PER_WINDOW`](crate::audit::LINES_PER_WINDOW) refused exchanges are audited
/// one by one a minute; the rest are counted into the next line. A refusal costs the stranger
/// one request and the daemon a line in `audit.log` and the journal, so without a bound a flood
/// of exchanges would fill the disk that also holds the device registry and the PKI. Wrong
/// codes, lockouts and a spent budget are bounded by the limiter itself and always audited.
const PAIRING_THROTTLED: &str = "pairing-throttled";

/// Why no code was minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The caller lacks host authority.
    #[error("not authorized: {0:?}")]
    Denied(Denied),
    /// The random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// A thread panicked holding the limiter.
    #[error("pairing lock poisoned")]
    Poisoned,
}

/// Why an exchange gave no token.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Refused before the code was looked at (rate, lockout, spent budget, full tables).
    #[error("refused: {}", .0.label())]
    Refused(Refusal),
    /// The body is not `{code, deviceName}`.
    #[error("malformed exchange request")]
    Malformed,
    /// The device name cannot be taken.
    #[error("device name refused: {0:?}")]
    Name(NameError),
    /// The code is not 8 characters of the alphabet.
    #[error("malformed code")]
    CodeFormat,
    /// No code is pending.
    #[error("no pairing code pending")]
    NoPending,
    /// A code is pending, and this is not it.
    #[error("wrong pairing code")]
    Wrong,
    /// A device with this name is already paired.
    #[error("a device with that name is already paired")]
    NameTaken,
    /// The registry could not be saved; nothing changed (the code stays pending).
    #[error(transparent)]
    Store(DeviceError),
    /// A lock was poisoned or the random number generator failed.
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl Service {
    /// The service with no code pending, storing devices in `devices`.
    pub fn new(devices: Arc<devices::Service>, audit: Arc<Audit>) -> Self {
        Self {
            limiter: Mutex::new(Pairing::default()),
            devices,
            audit,
            rng: SystemRandom::new(),
            refusals: Mutex::new(refusal_budget()),
        }
    }

    fn limiter(&self) -> Result<std::sync::MutexGuard<'_, Pairing>, Poisoned> {
        self.limiter.lock().map_err(|_| Poisoned)
    }

    /// Mints a code for `by` (host authority), replacing any pending one, and audits it.
    pub fn mint(&self, by: &Principal, now: SystemTime) -> Result<PairingCode, MintError> {
        by.require_host_authority().map_err(MintError::Denied)?;
        let (code, expires) = self
            .limiter()
            .map_err(|_| MintError::Poisoned)?
            .mint(&self.rng, now)
            .ok_or(MintError::Random)?;
        self.audit.record(
            "pairing-code-minted",
            by.audit_label(),
            format!("expires {}", format_unix(unix_seconds(expires))),
        );
        Ok(PairingCode {
            formatted_code: format_code(&code),
            expires_at: format_unix(unix_seconds(expires)),
        })
    }

    /// Exchanges the code in `body` (an [`ExchangeRequest`]) from `client` for a device token.
    /// The attempt is admitted (and counted) before the body is read, so malformed requests
    /// are rate limited but are not guesses; a refused name is not a guess either. The check,
    /// the store and the consumption of the code happen under the device registry's lock.
    pub async fn exchange(
        &self,
        client: IpAddr,
        body: &[u8],
        now: SystemTime,
    ) -> Result<ExchangeResponse, ExchangeError> {
        let source = Source::of(client);
        let admitted = self.limiter()?.admit(source, now);
        if let Err(refusal) = admitted {
            return Err(self.refused(source, refusal, now));
        }
        let req: ExchangeRequest =
            serde_json::from_slice(body).map_err(|_| ExchangeError::Malformed)?;
        let name = device_name(&req.device_name).map_err(ExchangeError::Name)?;
        let code = normalize_code(&req.code).ok_or(ExchangeError::CodeFormat)?;
        let mut devices = self.devices.lock().await;
        let checked = self.limiter()?.check(source, &code, now);
        if let Err((error, effect)) = checked {
            if effect.locked_out {
                self.audit.record(
                    "pairing-locked-out",
                    "Anonymous".into(),
                    format!(
                        "client {source}: {} failed exchanges within {} minutes; locked out for {} minutes (the pending code stays valid)",
                        LOCKOUT_FAILURES,
                        LOCKOUT_WINDOW.as_secs() / 60,
                        LOCKOUT_DURATION.as_secs() / 60,
                    ),
                );
            }
            if effect.budget_spent {
                self.audit.record(
                    "pairing-budget-spent",
                    "Anonymous".into(),
                    format!(
                        "the pending code drew {CODE_GUESS_BUDGET} wrong codes; until it expires only sources whose address and network (IPv6 /48) have no failure may try it"
                    ),
                );
            }
            return Err(match error {
                CodeError::NoPending => ExchangeError::NoPending,
                CodeError::Wrong => {
                    self.audit.record(
                        "pairing-failed",
                        "Anonymous".into(),
                        format!("wrong code from {source}"),
                    );
                    ExchangeError::Wrong
                }
                CodeError::Refused(refusal) => self.refused(source, refusal, now),
            });
        }
        let token = match devices.add(name, &self.rng, now) {
            Ok(t) => t,
            Err(DeviceError::Exists) => return Err(ExchangeError::NameTaken),
            Err(DeviceError::Random) => return Err(ExchangeError::Internal("random")),
            Err(e @ DeviceError::Save(_)) => return Err(ExchangeError::Store(e)),
        };
        // Consumed only after the device is stored.
        self.limiter()?.consume(source);
        drop(devices);
        self.audit.record(
            "device-paired",
            "Anonymous".into(),
            format!("device {name} from {source}"),
        );
        Ok(ExchangeResponse {
            token: token.to_string(),
        })
    }

    /// The audited refusal of an exchange attempt at `now`, within a [`LineBudget`] (see
    /// [`PAIRING_THROTTLED`]).
    fn refused(&self, source: Source, refusal: Refusal, now: SystemTime) -> ExchangeError {
        let detail = format!("client {source}: {}", refusal.label());
        // A poisoned count still audits: the line matters more than the bound.
        let detail = match self.refusals.lock() {
            Ok(mut budget) => budget.detail(detail, now),
            Err(_) => Some(detail),
        };
        if let Some(detail) = detail {
            self.audit
                .record(PAIRING_THROTTLED, "Anonymous".into(), detail);
        }
        ExchangeError::Refused(refusal)
    }

    /// The limiter's state at `now`, for host authority's status view.
    pub fn health(&self, now: SystemTime) -> Result<PairingHealth, Poisoned> {
        let s = self.limiter()?.status(now);
        Ok(PairingHealth {
            code_expires_at: s.code_expires.map(|t| format_unix(unix_seconds(t))),
            wrong_guesses: s.wrong_guesses,
            guess_budget: CODE_GUESS_BUDGET,
            budget_spent: s.budget_spent,
            locked_out_sources: s.locked_out.len(),
            locked_out: s
                .locked_out
                .iter()
                .take(PairingHealth::LISTED)
                .map(|l| LockedOutSource {
                    source: l.source.to_string(),
                    until: format_unix(unix_seconds(l.until)),
                })
                .collect(),
        })
    }
}

/// A thread panicked holding the pairing limiter.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("pairing lock poisoned")]
pub struct Poisoned;

impl From<Poisoned> for ExchangeError {
    fn from(_: Poisoned) -> Self {
        Self::Internal("pairing lock")
    }
}

#[cfg(test)]
mod tests;
