//! `/hub/session`: the WebSocket hub. Messages are JSON [`HubMessage`]s. `GeneratePairingCode`
//! and `Subscribe` need host authority; other principals get an `Error` message saying so.
//! A device's session lasts only as long as its pairing: revoking the device closes it (1008).

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use netclaw_core::wire::HubMessage;
use netclaw_pki::Serial;
use tokio::sync::watch;

use crate::devices::PairingId;
use crate::error::ApiError;
use crate::limits::ConnectionSlot;
use crate::operator_pki::OperatorPki;
use crate::principal::Principal;
use crate::state::SharedState;

/// Largest accepted WebSocket message.
const MAX_MESSAGE: usize = 16 * 1024;

pub(crate) async fn session(
    State(state): State<SharedState>,
    Extension(p): Extension<Principal>,
    slot: Option<Extension<ConnectionSlot>>,
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
    // A device's session lives only as long as its pairing: the receiver is taken under the
    // same lock as the pairing's identity, so no revocation falls between them.
    let watch = match &p {
        Principal::Device { name } => {
            let devices = state.devices.lock().await;
            match devices.pairing_id(name) {
                Some(id) => Some((id, devices.revocations())),
                None => return ApiError::Unauthorized("invalid bearer token").into_response(),
            }
        }
        _ => None,
    };
    // An operator session lives only as long as its serial is admitted (the upgraded socket has
    // left the listener's connection loop, which would otherwise cut it).
    let operator = match (&p, &state.pki) {
        (Principal::LocalOperator { serial, .. }, Some(pki)) => Some((pki.clone(), serial.clone())),
        _ => None,
    };
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            // The session owns the connection's socket now: it keeps the public listener's
            // slot for it until it ends.
            let _slot = slot;
            run(socket, state, p, watch, operator).await
        })
        .into_response()
}

/// Resolves once `id` is no longer a current pairing (its device was revoked).
pub(crate) async fn revoked(state: &SharedState, id: &PairingId, mut rx: watch::Receiver<u64>) {
    loop {
        if rx.changed().await.is_err() {
            // The registry is gone: the daemon is shutting down, which ends sessions anyway.
            return std::future::pending().await;
        }
        if !state.devices.lock().await.is_current(id) {
            return;
        }
    }
}

async fn run(
    mut socket: WebSocket,
    state: SharedState,
    p: Principal,
    watch: Option<(PairingId, watch::Receiver<u64>)>,
    operator: Option<(std::sync::Arc<OperatorPki>, Serial)>,
) {
    let cut = async {
        match (watch, operator) {
            (Some((id, rx)), _) => {
                revoked(&state, &id, rx).await;
                "device revoked"
            }
            (None, Some((pki, serial))) => {
                let refusal = pki.serial_refused(&serial).await;
                state.audit.refusal(
                    "connection-closed",
                    format!("LocalOperator(serial={serial})"),
                    refusal.reason,
                    refusal.reason.as_str().to_owned(),
                );
                "operator certificate no longer valid"
            }
            (None, None) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = serve(&mut socket, &state, &p) => {}
        reason = cut => {
            let frame = CloseFrame {
                code: close_code::POLICY,
                reason: reason.into(),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }
    }
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
            Ok(HubMessage::GeneratePairingCode) => match crate::api::mint(state, p) {
                Ok(code) => HubMessage::PairingCode {
                    formatted_code: code.formatted_code,
                    expires_at: code.expires_at,
                },
                Err(_) => HubMessage::Error {
                    error: format!(
                        "GeneratePairingCode needs host authority; {} cannot mint pairing codes (run `netclaw pair` on the daemon host)",
                        p.kind()
                    ),
                },
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
