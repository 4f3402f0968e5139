//! `/hub/session`: the WebSocket hub. Messages are JSON [`HubMessage`]s. `GeneratePairingCode`
//! and `Subscribe` need host authority; other principals get an `Error` message saying so.
//! A device's session lasts only as long as its pairing: revoking the device closes it (1008);
//! an operator's session lasts only as long as its serial is admitted (1008); the daemon's
//! shutdown closes every session (1001) before it drains requests.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use netclaw_core::serve::Shutdown;
use netclaw_core::wire::HubMessage;
use netclaw_pki::Serial;

use crate::devices;
use crate::error::ApiError;
use crate::limits::ConnectionSlot;
use crate::operator_pki::OperatorPki;
use crate::pairing::MintError;
use crate::principal::Principal;
use crate::state::SharedState;

/// Largest accepted WebSocket message.
const MAX_MESSAGE: usize = 16 * 1024;

pub(crate) async fn session(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    slot: Option<Extension<ConnectionSlot>>,
    shutdown: Option<Extension<Shutdown>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Authentication is decided before the upgrade request is even looked at.
    if p == Principal::Anonymous {
        return ApiError::Unauthorized("authentication required").into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // A device's session lives only as long as its pairing.
    let pairing = match &p {
        Principal::Device { name } => match state.devices.session(name).await {
            Some(session) => Some(session),
            None => return ApiError::Unauthorized("invalid bearer token").into_response(),
        },
        _ => None,
    };
    // An operator session lives only as long as its serial is admitted (the upgraded socket has
    // left the listener's connection loop, which would otherwise cut it).
    let operator = match (&p, &state.pki) {
        (Principal::LocalOperator { serial, .. }, Some(pki)) => Some((pki.clone(), serial.clone())),
        _ => None,
    };
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let shutdown = shutdown.map(|Extension(s)| s);
            let fired = shutdown.as_ref().map(Shutdown::fired);
            let session = async move {
                // The session owns the connection's socket now: it keeps the public listener's
                // slot for it until it ends.
                let _slot = slot;
                run(socket, state, p, pairing, operator, fired).await
            };
            // The drain waits for the session, which closes on the shutdown signal.
            async move {
                match shutdown {
                    Some(s) => s.track(session).await,
                    None => session.await,
                }
            }
        })
        .into_response()
}

async fn run(
    mut socket: WebSocket,
    state: SharedState,
    p: Principal,
    pairing: Option<devices::Session>,
    operator: Option<(Arc<OperatorPki>, Serial)>,
    shutdown: Option<impl Future<Output = ()>>,
) {
    let cut = async {
        match (pairing, operator) {
            (Some(session), _) => {
                session.ended(&state.devices).await;
                "device revoked"
            }
            (None, Some((pki, serial))) => {
                pki.until_refused(&serial, &state.audit).await;
                "operator certificate no longer valid"
            }
            (None, None) => std::future::pending().await,
        }
    };
    let stopping = async {
        match shutdown {
            Some(fired) => fired.await,
            None => std::future::pending().await,
        }
    };
    let frame = tokio::select! {
        () = serve(&mut socket, &state, &p) => return,
        reason = cut => CloseFrame {
            code: close_code::POLICY,
            reason: reason.into(),
        },
        () = stopping => CloseFrame {
            code: close_code::AWAY,
            reason: "daemon shutting down".into(),
        },
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn send(socket: &mut WebSocket, msg: &HubMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn serve(socket: &mut WebSocket, state: &SharedState, p: &Principal) {
    let mut events: Option<tokio::sync::broadcast::Receiver<crate::audit::AuditEvent>> = None;
    loop {
        let incoming = match &mut events {
            Some(rx) => tokio::select! {
                m = socket.recv() => Some(m),
                e = rx.recv() => {
                    match e {
                        Ok(event) => {
                            let value = serde_json::to_value(&event).unwrap_or_default();
                            if !send(socket, &HubMessage::Event { event: value }).await {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                    None
                }
            },
            None => Some(socket.recv().await),
        };
        let Some(msg) = incoming else { continue };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        };
        let reply = match serde_json::from_str::<HubMessage>(&text) {
            Ok(HubMessage::GeneratePairingCode) => match state.pairing.mint(p, SystemTime::now()) {
                Ok(code) => HubMessage::PairingCode {
                    formatted_code: code.formatted_code,
                    expires_at: code.expires_at,
                },
                Err(MintError::Denied(_)) => HubMessage::Error {
                    error: format!(
                        "GeneratePairingCode needs host authority; {} cannot mint pairing codes (run `netclaw pair` on the daemon host)",
                        p.kind()
                    ),
                },
                Err(e) => {
                    tracing::error!(error = %e, "minting a pairing code failed");
                    HubMessage::Error {
                        error: "internal error".into(),
                    }
                }
            },
            Ok(HubMessage::Subscribe) if p.has_host_authority() => {
                events = Some(state.audit.subscribe());
                HubMessage::Subscribed
            }
            Ok(HubMessage::Subscribe) => HubMessage::Error {
                error: format!("event subscriptions need host authority; {} cannot subscribe", p.kind()),
            },
            Ok(_) | Err(_) => HubMessage::Error {
                error: "unknown message; send {\"type\":\"GeneratePairingCode\"} or {\"type\":\"Subscribe\"}".into(),
            },
        };
        if !send(socket, &reply).await {
            return;
        }
    }
}
