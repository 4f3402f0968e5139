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
    format_unix, AgentCertificate, Device, ExchangeResponse, HealthStatus, Listeners,
    OperatorCertificates, PairingCode, RenewRequest, RenewResponse,
};
use netclaw_core::OPERATOR_HEADER_PREFIX;
use netclaw_pki::identity::unix_seconds;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::caller::{identify, ClientIp};
use crate::devices::RevokeError;
use crate::error::ApiError;
use crate::pairing::{ExchangeError, MintError, Refusal};
use crate::principal::{ConnInfo, Listener, Principal};
use crate::renewal;
use crate::state::SharedState;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 16 * 1024;

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

async fn ready() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ready" }))
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
    Ok(Json(HealthStatus {
        mode: state.config.daemon().exposure().to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: state.started.elapsed().as_secs(),
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
            "this address already failed against the pending code; ask the operator for a new one"
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
    let devices = state.devices.list(&p).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|d| Device {
                name: d.name,
                paired_at: format_unix(d.paired_at),
            })
            .collect(),
    ))
}

async fn revoke_device(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.devices.revoke(&p, &name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(RevokeError::Denied(d)) => Err(d.into()),
        Err(RevokeError::OtherDevice) => Err(ApiError::Forbidden(
            "a device may only revoke itself; other revocations need host authority",
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

async fn mint_code(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<PairingCode>, ApiError> {
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
