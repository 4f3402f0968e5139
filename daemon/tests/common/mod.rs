//! The daemon's socket tests run on `netclaw_tests::loopback`; this adds only the path of the
//! daemon binary cargo built for them.

#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::path::Path;

pub(crate) use netclaw_tests::loopback::*;

/// Starts this package's `netclaw-daemon` for `install` (see [`DaemonProcess::start`]).
pub(crate) async fn start_daemon(install: &Install) -> DaemonProcess {
    DaemonProcess::start(Path::new(env!("CARGO_BIN_EXE_netclaw-daemon")), install).await
}
