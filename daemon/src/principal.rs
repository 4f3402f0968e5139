//! Who is calling. Derived per request from the listener that accepted the connection, the direct
//! peer and, on the public listener, a bearer token — never from a header a client controls.

use std::net::IpAddr;

use netclaw_core::wire::{Caller, WhoAmI};
use netclaw_pki::Serial;

/// The principal a request runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A process on this host, over loopback, in `local` mode only.
    LocalProcess,
    /// The operator agent over the operator listener's mTLS, on behalf of a local caller.
    LocalOperator {
        /// SPIFFE id of the certificate.
        spiffe_id: String,
        /// Serial of the certificate.
        serial: Serial,
        /// The local caller the agent reported, if it sent one.
        caller: Option<Caller>,
    },
    /// A paired device with a valid bearer token.
    Device {
        /// Device name.
        name: String,
    },
    /// Anyone else.
    Anonymous,
}

/// Why a principal may not do something: the one authorization answer the HTTP handlers and the
/// hub both give (as 401/403 or as a hub `Error` message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// `Anonymous`: authentication required.
    Unauthenticated,
    /// Authenticated, but without host authority.
    NoHostAuthority,
}

impl Principal {
    /// Anyone but `Anonymous`.
    pub fn require_authenticated(&self) -> Result<(), Denied> {
        match self {
            Self::Anonymous => Err(Denied::Unauthenticated),
            _ => Ok(()),
        }
    }

    /// Host authority (see [`Principal::has_host_authority`]); `Anonymous` is
    /// [`Denied::Unauthenticated`].
    pub fn require_host_authority(&self) -> Result<(), Denied> {
        self.require_authenticated()?;
        if self.has_host_authority() {
            Ok(())
        } else {
            Err(Denied::NoHostAuthority)
        }
    }

    /// Whether this principal may act for the host: mint pairing codes, revoke any device,
    /// manage the PKI, read audit events.
    pub fn has_host_authority(&self) -> bool {
        matches!(self, Self::LocalProcess | Self::LocalOperator { .. })
    }

    /// The principal's kind as the API names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LocalProcess => "LocalProcess",
            Self::LocalOperator { .. } => "LocalOperator",
            Self::Device { .. } => "Device",
            Self::Anonymous => "Anonymous",
        }
    }

    /// Label for audit events: kind plus name and, for LocalOperator, the local caller.
    pub fn audit_label(&self) -> String {
        match self {
            Self::LocalOperator {
                serial,
                caller: Some(c),
                ..
            } => format!(
                "LocalOperator(serial={serial}, uid={}, user={}, pid={})",
                c.uid,
                c.user.as_deref().unwrap_or("?"),
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            ),
            Self::LocalOperator {
                serial,
                caller: None,
                ..
            } => format!("LocalOperator(serial={serial})"),
            Self::Device { name } => format!("Device({name})"),
            other => other.kind().to_owned(),
        }
    }

    /// The `/api/whoami` body.
    pub fn whoami(&self) -> WhoAmI {
        let (name, transport, caller) = match self {
            Self::LocalProcess => (None, "loopback", None),
            Self::LocalOperator {
                spiffe_id, caller, ..
            } => (Some(spiffe_id.clone()), "operator-mtls", caller.clone()),
            Self::Device { name } => (Some(name.clone()), "bearer", None),
            Self::Anonymous => (None, "none", None),
        };
        WhoAmI {
            principal: self.kind().to_owned(),
            name,
            transport: transport.to_owned(),
            caller,
        }
    }
}

/// Which listener accepted a connection, and what it learned about the peer.
#[derive(Clone, Debug)]
pub enum Listener {
    /// The public listener (behind the proxy or tunnel).
    Public,
    /// The operator listener; the handshake's verifier accepted this certificate.
    Operator {
        /// SPIFFE id.
        spiffe_id: String,
        /// Serial.
        serial: Serial,
        /// The presented certificate's raw public key (renewal must bring a new one).
        public_key: std::sync::Arc<[u8]>,
    },
}

/// Per-connection facts, attached to every request by the accept loop (and by tests).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Listener.
    pub listener: Listener,
    /// Direct peer address.
    pub peer: IpAddr,
}
