//! JSON bodies exchanged between the daemon, the agent and the CLI.

use serde::{Deserialize, Serialize};

/// `GET /api/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// `LocalProcess`, `LocalOperator`, `Device` or `Anonymous`.
    pub principal: String,
    /// Device name, or the certificate's SPIFFE id for LocalOperator.
    pub name: Option<String>,
    /// `loopback`, `operator-mtls`, `bearer`, `none`.
    pub transport: String,
    /// The local caller the agent forwarded (LocalOperator only).
    pub caller: Option<Caller>,
}

/// The local caller behind a LocalOperator request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// Kernel-reported uid.
    pub uid: u32,
    /// User name for the uid.
    pub user: Option<String>,
    /// Kernel-reported pid.
    pub pid: Option<i32>,
}

/// An error body: a fixed message, never internal detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
}
