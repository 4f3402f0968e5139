//! Shared daemon state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use netclaw_core::config::Config;

use crate::audit::Audit;
use crate::devices::{self, DeviceStore};
use crate::operator_pki::OperatorPki;
use crate::pairing;
use crate::renewal;

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Validated configuration.
    pub config: Config,
    /// Audit sink.
    pub audit: Arc<Audit>,
    /// Paired devices.
    pub devices: Arc<devices::Service>,
    /// The pending pairing code, the exchange limiter and the exchange itself.
    pub pairing: pairing::Service,
    /// Agent renewal (through the operator PKI's issuer).
    pub renewal: renewal::Service,
    /// Operator PKI (absent in `local` mode without an install).
    pub pki: Option<Arc<OperatorPki>>,
    /// Start time.
    pub started: Instant,
    /// Bound public listener address.
    pub public_addr: SocketAddr,
    /// Bound operator listener address.
    pub operator_addr: Option<SocketAddr>,
    /// Requests from a trusted proxy with no address in `X-Forwarded-For` (warned about).
    pub(crate) unparseable_forwarded: crate::forwarded::UnparseableForwarded,
    /// Public requests that carried identity headers (warned about at most once a minute).
    pub(crate) stripped_headers: crate::line_budget::Warnings,
}

/// Shared handle.
pub type SharedState = Arc<AppState>;

impl AppState {
    /// The state of a daemon with `config`, the device registry `devices`, no pending code,
    /// started now: the one constructor, used by the daemon's start-up, the router tests and the
    /// fuzz targets alike.
    pub fn new(
        config: Config,
        audit: Arc<Audit>,
        devices: DeviceStore,
        pki: Option<Arc<OperatorPki>>,
        public_addr: SocketAddr,
        operator_addr: Option<SocketAddr>,
    ) -> Self {
        let devices = Arc::new(devices::Service::new(devices, audit.clone()));
        let renewal = renewal::Service::new(
            pki.clone(),
            audit.clone(),
            config.operator().certificate_lifetime(),
            config.operator().rotation_grace(),
        );
        Self {
            pairing: pairing::Service::new(devices.clone(), audit.clone()),
            renewal,
            devices,
            audit,
            config,
            pki,
            started: Instant::now(),
            public_addr,
            operator_addr,
            unparseable_forwarded: Default::default(),
            stripped_headers: Default::default(),
        }
    }
}
