//! The HTTP API (netclaw's routes) and the middleware that decides each request's principal.

use std::convert::Infallible;
use std::time::SystemTime;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use futures_util::Stream;
use netclaw_core::serve::Shutdown;
use netclaw_core::wire::{
    format_unix, format_unix_offset, AgentCertificate, Build, Device, ErrorCode, ExchangeResponse,
    HealthStatus, ImportDevicesRequest, ImportDevicesResponse, Listeners, OperatorCertificates,
    PairingCode, Persistence, ProcessStatus, RenewRequest, RenewResponse, Telemetry,
};
use netclaw_core::OPERATOR_HEADER_PREFIX;
use netclaw_pki::identity::unix_seconds;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::caller::{identify, ClientIp};
use crate::devices::{ImportError, ImportRefused, RevokeError};
use crate::error::ApiError;
use crate::pairing::{ExchangeError, MintError, Refusal};
use crate::principal::{ConnInfo, Listener, Principal};
use crate::renewal;
use crate::state::SharedState;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = netclaw_core::wire::MAX_REQUEST_BODY;

/// The full router. `ConnInfo` must be attached to every request by the accept loop.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/health/ready", get(ready))
        .route("/api/health/status", get(status))
        .route("/api/whoami", get(whoami))
        .route("/api/pair/exchange", post(exchange))
        .route("/api/pair/devices", get(list_devices))
        .route("/api/pair/devices/{name}", delete(revoke_device))
        .route("/api/local-control/v1/pairing-code", post(mint_code))
        .route("/api/local-control/v1/devices/import", post(import_devices))
        .route("/api/events", get(events))
        .route(
            "/api/local-control/v1/pki/certificate",
            post(renew_certificate),
        )
        .route("/metrics", get(metrics))
        .route("/hub/session", get(crate::hub::session))
        .layer(middleware::from_fn_with_state(state.clone(), identify))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// netclaw's restart generation header on the readiness answer. netclaw counts in-process
/// restarts after a configuration write; this daemon never restarts in-process, so every
/// process reports the first generation.
pub const GENERATION_HEADER: &str = "x-netclaw-generation";

/// netclaw's readiness answer: 200, the JSON string `"healthy"` (its container and smoke probes
/// compare the body), and the restart generation.
async fn ready() -> impl IntoResponse {
    ([(GENERATION_HEADER, "1")], Json("healthy"))
}

async fn status(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<HealthStatus>, ApiError> {
    p.require_authenticated()?;
    // Addresses, serials and the limiter's view are for host authority: a device needs none.
    let host = p.has_host_authority();
    let operator_certificates =
        state
            .pki
            .as_ref()
            .filter(|_| host)
            .map(|pki| OperatorCertificates {
                server_not_after: format_unix(unix_seconds(pki.server().cert.not_after)),
                agents: pki
                    .active_agents()
                    .into_iter()
                    .map(|(serial, na)| AgentCertificate {
                        serial,
                        not_after: format_unix(na),
                    })
                    .collect(),
            });
    let pairing = if host {
        let health = state.pairing.health(SystemTime::now());
        Some(health.map_err(|e| ApiError::Internal(e.to_string()))?)
    } else {
        None
    };
    let uptime = state.started.elapsed();
    let started_at = SystemTime::now()
        .checked_sub(uptime)
        .map(unix_seconds)
        .unwrap_or_default();
    Ok(Json(HealthStatus {
        // No connectors to degrade: a daemon that answers is healthy.
        overall: "healthy".to_owned(),
        build: Build {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit_hash: option_env!("NETCLAW_COMMIT")
                .unwrap_or("unknown")
                .to_owned(),
            build_timestamp: option_env!("NETCLAW_BUILD_TIMESTAMP")
                .unwrap_or("unknown")
                .to_owned(),
        },
        process: ProcessStatus {
            pid: std::process::id(),
            started_at_utc: format_unix_offset(started_at),
            uptime_seconds: uptime.as_secs(),
        },
        connectors: Vec::new(),
        persistence: Persistence {
            provider: "files".to_owned(),
        },
        telemetry: Telemetry {
            enabled: false,
            otlp_endpoint: None,
        },
        mode: state.config.daemon().exposure().to_string(),
        listeners: host.then(|| Listeners {
            public: state.public_addr.to_string(),
            operator: state.operator_addr.map(|a| a.to_string()),
        }),
        operator_certificates,
        pairing,
    }))
}

async fn whoami(Extension(p): Extension<Principal>) -> impl IntoResponse {
    Json(p.whoami())
}

async fn exchange(
    State(state): State<SharedState>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    body: axum::body::Bytes,
) -> Result<Json<ExchangeResponse>, ApiError> {
    let exchanged = state
        .pairing
        .exchange(client, &body, SystemTime::now())
        .await;
    exchanged.map(Json).map_err(|e| match e {
        ExchangeError::Refused(refusal) => too_many(refusal),
        ExchangeError::Malformed => {
            ApiError::BadRequest("body must be {\"code\": \"XXXX-XXXX\", \"deviceName\": \"…\"}")
        }
        ExchangeError::Name(e) => ApiError::BadRequest(e.message()),
        ExchangeError::CodeFormat => ApiError::BadRequest("code must be 8 characters, XXXX-XXXX"),
        ExchangeError::NoPending => ApiError::NotFound(
            "no pairing code is pending; mint one with `netclaw pair` on the daemon host",
        ),
        ExchangeError::Wrong => ApiError::Unauthorized("wrong pairing code"),
        ExchangeError::NameTaken => ApiError::Conflict("a device with that name is already paired"),
        e @ ExchangeError::Store(_) => ApiError::Storage(e.to_string()),
        e @ ExchangeError::Internal(_) => ApiError::Internal(e.to_string()),
    })
}

/// The 429 for a refused exchange attempt.
fn too_many(refusal: Refusal) -> ApiError {
    let message = match refusal {
        Refusal::Throttled { .. } => "too many pairing attempts; wait and try again",
        Refusal::LockedOut { .. } => {
            "too many failed pairing attempts from this address; it is locked out for a while"
        }
        Refusal::BudgetSpent { .. } => {
            "this address or its network already failed against the pending code; ask the operator for a new one"
        }
        Refusal::Busy { .. } => "pairing is busy; try again later",
    };
    ApiError::TooMany {
        message,
        retry_after: refusal.retry_after(),
    }
}

async fn list_devices(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let devices = state.devices.list(&p).await.map_err(|d| match d {
        // netclaw lets any paired device list every device; here a device learns nothing of the
        // others, and the answer says what it may do instead.
        crate::principal::Denied::NoHostAuthority => ApiError::Coded(
            StatusCode::FORBIDDEN,
            "listing devices needs host authority: run `netclaw devices list` on the daemon \
             host (through the operator agent); a paired device may only revoke itself \
             (DELETE /api/pair/devices/<its name>)",
            ErrorCode::HostAuthorityRequired,
        ),
        d => d.into(),
    })?;
    Ok(Json(
        devices
            .into_iter()
            .map(|d| Device {
                name: d.name,
                created_at: format_unix_offset(d.paired_at),
                last_used_at: format_unix_offset(d.last_used_at),
            })
            .collect(),
    ))
}

/// Imports devices paired with netclaw (`netclaw devices import`), host authority only.
async fn import_devices(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    body: Result<Json<ImportDevicesRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ImportDevicesResponse>, ApiError> {
    p.require_host_authority()?;
    let Json(req) = body.map_err(|_| {
        ApiError::BadRequest(
            "expected {\"devices\": [{\"name\", \"tokenHash\", \"salt\", \"createdAt\", \"lastUsedAt\"}]}",
        )
    })?;
    match state.devices.import(&p, &req.devices).await {
        Ok(imported) => Ok(Json(ImportDevicesResponse { imported })),
        Err(ImportRefused::Denied(d)) => Err(d.into()),
        Err(ImportRefused::Import(e)) => Err(match e {
            ImportError::Name => ApiError::BadRequest(
                "a device name is blank, has control characters, is over 64 characters or is \
                 not trimmed; nothing was imported",
            ),
            ImportError::Verifier => ApiError::BadRequest(
                "a device's tokenHash is not 64 hex characters or its salt not 32; nothing was \
                 imported",
            ),
            ImportError::Empty => ApiError::BadRequest("no devices to import"),
            ImportError::Exists => ApiError::Conflict(
                "a device with one of those names (compared without case) is already paired; \
                 revoke it or rename the entry, nothing was imported",
            ),
            e @ ImportError::Store(_) => ApiError::Storage(e.to_string()),
        }),
    }
}

async fn revoke_device(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.devices.revoke(&p, &name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(RevokeError::Denied(d)) => Err(d.into()),
        // netclaw lets any paired device revoke any device; here a stolen token cannot unpair
        // the owner's other devices.
        Err(RevokeError::OtherDevice) => Err(ApiError::Coded(
            StatusCode::FORBIDDEN,
            "a device may only revoke itself; to revoke another device run `netclaw devices \
             revoke NAME` on the daemon host (through the operator agent)",
            ErrorCode::HostAuthorityRequired,
        )),
        Err(RevokeError::NotFound) => Err(ApiError::NotFound("no device with that name")),
        Err(e @ RevokeError::Store(_)) => Err(ApiError::Storage(e.to_string())),
    }
}

/// The HTTP answer to a refused or failed mint.
fn mint_error(e: MintError) -> ApiError {
    match e {
        MintError::Denied(d) => d.into(),
        e @ (MintError::Random | MintError::Poisoned) => ApiError::Internal(e.to_string()),
    }
}

/// Whether `body` is netclaw's local-control request, `{"proof": "…"}`.
fn carries_proof(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|m| m.contains_key("proof"))
}

/// Mints a pairing code for host authority. The body is not read for authority: netclaw's
/// newer clients send a local-control proof (ASP.NET Data Protection, bound to netclaw's key
/// ring), which this daemon does not verify. From host authority (the agent, or loopback in
/// `local` mode) the proof is ignored; from anyone else it is refused with a code that names
/// the supported way.
async fn mint_code(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<PairingCode>, ApiError> {
    if !p.has_host_authority() && carries_proof(&body) {
        return Err(ApiError::Coded(
            StatusCode::UNAUTHORIZED,
            "netclaw-rs does not accept netclaw's local-control proof: on the daemon host run \
             `netclaw daemon pair`, which mints the code through the operator agent",
            ErrorCode::LocalControlProofUnsupported,
        ));
    }
    state
        .pairing
        .mint(&p, SystemTime::now())
        .map(Json)
        .map_err(mint_error)
}

/// The audit event stream (`netclaw events --follow`). It ends when the daemon shuts down, so
/// that the drain does not wait for it.
async fn events(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    shutdown: Option<Extension<Shutdown>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    p.require_host_authority()?;
    let stream = BroadcastStream::new(state.audit.subscribe()).filter_map(|e| {
        let e = e.ok()?;
        let data = serde_json::to_string(&e).ok()?;
        Some(Ok(Event::default().event(e.kind.clone()).data(data)))
    });
    let ended = async move {
        match shutdown {
            Some(Extension(s)) => s.fired().await,
            None => std::future::pending().await,
        }
    };
    let stream = futures_util::StreamExt::take_until(stream, ended);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Renews the calling agent's certificate from its CSR: [`crate::renewal::Service::renew`]
/// decides (and audits); this only parses the request and translates the answer.
async fn renew_certificate(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    conn: Option<Extension<ConnInfo>>,
    headers: HeaderMap,
    body: Result<Json<RenewRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RenewResponse>, ApiError> {
    let forwarded = headers
        .keys()
        .any(|k| k.as_str().starts_with(OPERATOR_HEADER_PREFIX));
    // Who may renew is decided before the body is read.
    let body = match (&p, forwarded) {
        (Principal::LocalOperator { .. }, false) => Some(
            body.map_err(|_| ApiError::BadRequest("expected {\"csr\": \"<PEM>\"}"))?
                .0
                .csr,
        ),
        _ => None,
    };
    let presented_key = match conn.as_ref().map(|c| &c.0) {
        Some(ConnInfo {
            listener: Listener::Operator { public_key, .. },
            ..
        }) => Some(&**public_key),
        _ => None,
    };
    let request = renewal::Request {
        by: &p,
        presented_key,
        forwarded,
        csr_pem: body.unwrap_or_default(),
    };
    state
        .renewal
        .renew(request, SystemTime::now())
        .await
        .map(Json)
        .map_err(renew_error)
}

fn renew_error(e: renewal::RenewError) -> ApiError {
    use renewal::RenewError as E;
    match e {
        E::Unauthenticated => ApiError::Unauthorized("authentication required"),
        E::NotTheAgent => ApiError::Forbidden("only the operator agent can renew its certificate"),
        E::Forwarded => {
            ApiError::Forbidden("only the operator agent's own request can renew its certificate")
        }
        E::BadCsr => ApiError::BadRequest("certificate signing request rejected"),
        E::KeyReused => ApiError::BadRequest(
            "the certificate signing request reuses the current key; renew with a new key",
        ),
        E::NoPki => ApiError::Forbidden("no operator PKI"),
        E::Refused(_) => ApiError::Forbidden(
            "this certificate may not renew: only the agent's newest certificate renews; \
             if the agent is locked out, run `netclaw pki rotate --offline`",
        ),
        E::Failed(detail) => ApiError::Internal(detail),
    }
}

/// Prometheus text metrics: on the operator listener only (LocalOperator).
async fn metrics(State(state): State<SharedState>, Extension(p): Extension<Principal>) -> Response {
    if !matches!(p, Principal::LocalOperator { .. }) {
        return ApiError::NotFound("no such route").into_response();
    }
    let mut certs = Vec::new();
    if let Some(pki) = &state.pki {
        let server = pki.server();
        certs.push((
            "server",
            server.cert.serial.to_string(),
            unix_seconds(server.cert.not_after),
        ));
        for (serial, not_after) in pki.active_agents() {
            certs.push(("agent", serial, not_after));
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.audit.metrics.render(&certs),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
