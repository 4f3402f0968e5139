//! The device service: what the HTTP handlers, the identify middleware and the hub do with
//! paired devices — authenticate a bearer token, list, revoke (and audit it), and follow a
//! device's pairing for the life of a hub session. Authorization is decided here, so that
//! every caller gives the same answer.

use std::sync::Arc;
use std::time::SystemTime;

use netclaw_core::wire::ImportedDevice;
use tokio::sync::{watch, Mutex, MutexGuard};

use super::{DeviceError, DeviceInfo, DeviceStore, ImportError, PairingId};
use crate::audit::Audit;
use crate::principal::{Denied, Principal};

/// Paired devices, shared by everything that reads or changes them.
#[derive(Debug)]
pub struct Service {
    /// A tokio mutex: the pairing exchange holds it across check, store and consume, which
    /// serializes exchanges.
    store: Mutex<DeviceStore>,
    audit: Arc<Audit>,
}

/// Why a revocation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The caller may not revoke devices at all.
    #[error("not authorized: {0:?}")]
    Denied(Denied),
    /// A device tried to revoke another device.
    #[error("a device may only revoke itself")]
    OtherDevice,
    /// No device has that name.
    #[error("no device with that name")]
    NotFound,
    /// The registry could not be saved; nothing changed.
    #[error(transparent)]
    Store(DeviceError),
}

/// Why an import was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportRefused {
    /// The caller may not import devices.
    #[error("not authorized: {0:?}")]
    Denied(Denied),
    /// The devices were refused, or could not be saved; nothing changed.
    #[error(transparent)]
    Import(ImportError),
}

/// A device's current pairing, followed by a hub session: [`Session::ended`] resolves when the
/// device is revoked (or paired again under the same name).
#[derive(Debug)]
pub struct Session {
    id: PairingId,
    revocations: watch::Receiver<u64>,
}

impl Service {
    /// The service over `store`, auditing to `audit`.
    pub fn new(store: DeviceStore, audit: Arc<Audit>) -> Self {
        Self {
            store: Mutex::new(store),
            audit,
        }
    }

    /// The registry, locked. For the pairing exchange, which checks the code, stores the device
    /// and consumes the code under this one lock.
    pub(crate) async fn lock(&self) -> MutexGuard<'_, DeviceStore> {
        self.store.lock().await
    }

    /// The device a bearer token belongs to; records its last use (written by
    /// [`Service::flush`], not here).
    pub async fn authenticate(&self, token: &str) -> Option<String> {
        self.store
            .lock()
            .await
            .authenticate_at(token, SystemTime::now())
    }

    /// Paired devices, for host authority.
    pub async fn list(&self, by: &Principal) -> Result<Vec<DeviceInfo>, Denied> {
        by.require_host_authority()?;
        Ok(self.store.lock().await.list())
    }

    /// Writes last-used times changed since the last save. The daemon calls it every
    /// [`super::LAST_USED_FLUSH`] and once more after the drain at shutdown.
    pub async fn flush(&self) -> Result<bool, DeviceError> {
        self.store.lock().await.flush()
    }

    /// Imports devices paired with netclaw (host authority only), persisted first, and audits
    /// it.
    pub async fn import(
        &self,
        by: &Principal,
        devices: &[ImportedDevice],
    ) -> Result<Vec<String>, ImportRefused> {
        by.require_host_authority().map_err(ImportRefused::Denied)?;
        let names = self
            .store
            .lock()
            .await
            .import(devices)
            .map_err(ImportRefused::Import)?;
        self.audit.record(
            "devices-imported",
            by.audit_label(),
            format!("imported from netclaw: {}", names.join(", ")),
        );
        Ok(names)
    }

    /// Unpairs `name` (persisted first) and audits it. Host authority may revoke any device, a
    /// device only itself. Open hub sessions of the device end (see [`Session::ended`]).
    pub async fn revoke(&self, by: &Principal, name: &str) -> Result<(), RevokeError> {
        by.require_authenticated().map_err(RevokeError::Denied)?;
        let own = matches!(by, Principal::Device { name: n } if n == name);
        if !by.has_host_authority() && !own {
            return Err(RevokeError::OtherDevice);
        }
        let removed = self
            .store
            .lock()
            .await
            .remove(name)
            .map_err(RevokeError::Store)?;
        if !removed {
            return Err(RevokeError::NotFound);
        }
        self.audit
            .record("device-revoked", by.audit_label(), format!("device {name}"));
        Ok(())
    }

    /// The current pairing of `name`, to follow for a session; `None` when it is not paired.
    /// The pairing and the revocation receiver are read under one lock, so that no revocation
    /// falls between them.
    pub async fn session(&self, name: &str) -> Option<Session> {
        let store = self.store.lock().await;
        let id = store.pairing_id(name)?;
        Some(Session {
            id,
            revocations: store.revocations(),
        })
    }
}

impl Session {
    /// Resolves once this pairing is no longer current (its device was revoked).
    pub async fn ended(mut self, devices: &Service) {
        loop {
            if self.revocations.changed().await.is_err() {
                // The registry is gone: the daemon is shutting down, which ends sessions anyway.
                return std::future::pending().await;
            }
            if !devices.store.lock().await.is_current(&self.id) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
