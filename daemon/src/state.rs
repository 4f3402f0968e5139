//! Shared daemon state.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use netclaw_core::config::Config;
use ring::rand::SystemRandom;

use crate::audit::Audit;
use crate::devices::DeviceStore;
use crate::operator_pki::OperatorPki;
use crate::pairing::Pairing;

/// Everything handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Validated configuration.
    pub config: Config,
    /// Audit sink.
    pub audit: Arc<Audit>,
    /// Paired devices. A tokio mutex: the exchange holds it across check, store and consume,
    /// which serializes exchanges.
    pub devices: tokio::sync::Mutex<DeviceStore>,
    /// The pending pairing code and the exchange limiter.
    pub pairing: Mutex<Pairing>,
    /// Operator PKI (absent in `local` mode without an install).
    pub pki: Option<Arc<OperatorPki>>,
    /// Start time.
    pub started: Instant,
    /// RNG.
    pub rng: SystemRandom,
    /// Bound public listener address.
    pub public_addr: SocketAddr,
    /// Bound operator listener address.
    pub operator_addr: Option<SocketAddr>,
}

impl AppState {
    /// The state of a daemon started now with no pending pairing code: the one constructor, used
    /// by the daemon's start-up, the router tests and the fuzz targets alike.
    pub fn new(
        config: Config,
        audit: Arc<Audit>,
        devices: DeviceStore,
        pki: Option<Arc<OperatorPki>>,
        public_addr: SocketAddr,
        operator_addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            config,
            audit,
            devices: tokio::sync::Mutex::new(devices),
            pairing: Mutex::new(Pairing::default()),
            pki,
            started: Instant::now(),
            rng: SystemRandom::new(),
            public_addr,
            operator_addr,
        }
    }
}

/// Shared handle.
pub type SharedState = Arc<AppState>;
