//! Which requests the agent forwards: an explicit allow-list of the daemon routes callers may use
//! (what the `netclaw` CLI sends), by method and exact path. Anything else never reaches the
//! daemon.
//!
//! # Security
//!
//! The agent's certificate is LocalOperator's identity. The daemon's renewal route
//! (`POST /api/local-control/v1/pki/certificate`) would issue a certificate for any key whose
//! CSR it receives over that identity, so it is not on the list: only the agent itself renews,
//! over its own upstream client, never through the socket. A deny-list would have to foresee
//! every spelling of that path; an allow-list does not.
//!
//! The path is compared as received, byte for byte, before any decoding: the daemon routes on
//! the same raw path and does not normalise it either, so `%2F`, `%2E%2E`, `//`, `/./`, a
//! trailing `/` or a different case can only miss the list, never reach another route. The
//! request target must be in origin form (`/path?query`); absolute-form (`http://host/path`),
//! authority-form and `*` targets are refused. The query string is forwarded unchanged: the
//! daemon's routing ignores it.

use hyper::{Method, Uri};

/// A route the agent forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/health/ready`.
    Ready,
    /// `GET /api/health/status` (`netclaw status`, `health`).
    Status,
    /// `GET /api/whoami`.
    WhoAmI,
    /// `GET /api/pair/devices` (`netclaw devices list`).
    Devices,
    /// `DELETE /api/pair/devices/{name}` (`netclaw devices revoke`).
    RevokeDevice,
    /// `POST /api/local-control/v1/pairing-code` (`netclaw pair`).
    PairingCode,
    /// `POST /api/local-control/v1/devices/import` (`netclaw devices import`).
    ImportDevices,
    /// `GET /api/events` (`netclaw events`, plain and server-sent events).
    Events,
    /// `GET /metrics` (the daemon's Prometheus metrics).
    Metrics,
    /// `GET /hub/session` (WebSocket hub).
    Hub,
}

/// Why a request is not forwarded. Each maps to one status, one wire code and one fixed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotForwarded {
    /// The request target is not in origin form.
    TargetForm,
    /// The path is not one callers may use (including every spelling of the agent's own
    /// certificate routes).
    Path,
    /// The path is forwarded, but not with this method; the methods it takes.
    Method(&'static str),
}

/// Static paths and the one method each takes.
const STATIC: [(&str, Method, Route); 9] = [
    ("/api/health/ready", Method::GET, Route::Ready),
    ("/api/health/status", Method::GET, Route::Status),
    ("/api/whoami", Method::GET, Route::WhoAmI),
    ("/api/pair/devices", Method::GET, Route::Devices),
    (
        "/api/local-control/v1/pairing-code",
        Method::POST,
        Route::PairingCode,
    ),
    (
        "/api/local-control/v1/devices/import",
        Method::POST,
        Route::ImportDevices,
    ),
    ("/api/events", Method::GET, Route::Events),
    ("/metrics", Method::GET, Route::Metrics),
    ("/hub/session", Method::GET, Route::Hub),
];

/// Prefix of the one parameterised route, `DELETE /api/pair/devices/{name}`.
const DEVICE_PREFIX: &str = "/api/pair/devices/";

/// The route `method` and `uri` (as received from the caller) name, if callers may use it.
pub fn classify(method: &Method, uri: &Uri) -> Result<Route, NotForwarded> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(NotForwarded::TargetForm);
    }
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(NotForwarded::TargetForm);
    }
    if let Some((_, allowed, route)) = STATIC.iter().find(|(p, _, _)| *p == path) {
        return if method == allowed {
            Ok(*route)
        } else {
            Err(NotForwarded::Method(allowed.as_str()))
        };
    }
    if let Some(name) = path.strip_prefix(DEVICE_PREFIX) {
        // One non-empty segment that is not a dot segment (the CLI percent-encodes names made
        // only of dots, and `/` in names, see `netclaw_cli::transport::encode_segment`).
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(NotForwarded::Path);
        }
        return if method == Method::DELETE {
            Ok(Route::RevokeDevice)
        } else {
            Err(NotForwarded::Method("DELETE"))
        };
    }
    Err(NotForwarded::Path)
}

#[cfg(test)]
mod tests;
