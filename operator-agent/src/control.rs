//! What the socket serves: the agent's own control API under `/agent/v1/` as an axum
//! [`Router`], and forwarding to the daemon for every other path, under the allow-list of
//! [`crate::routes`]. Forwarding is the hot path and does not go through the router
//! ([`Socket::handle`] dispatches on the path prefix).
//!
//! | route | answer |
//! |---|---|
//! | `GET /agent/v1/status` | [`crate::status`] |
//! | `GET /agent/v1/metrics` | the agent's Prometheus text |
//! | `POST /agent/v1/reload` | the credential manager reloads the operator policy and the credentials (the caller who asked is logged) |
//! | `POST /agent/v1/rotate` | the credential manager renews now (the caller who asked is logged) |
//! | any other `/agent/v1/…` | 404, never forwarded |
//! | anything else | forwarded when [`crate::routes::classify`] allows it, refused otherwise |
//!
//! [`serve`] runs the socket on the shared accept/serve/drain loop ([`netclaw_core::serve`]):
//! each connection's caller is read from `SO_PEERCRED` once, and every request on it carries
//! that [`Peer`] and the drain's [`Shutdown`] (forwarded event streams and upgraded
//! connections end on it).
//!
//! # Security
//!
//! Every request, control routes and forwarded ones alike, is first authorized: the caller of
//! its connection ([`Peer`], from `SO_PEERCRED`) against the operator policy in force
//! ([`authorize`] in the router, [`admit`] before forwarding). The control routes are matched on
//! the raw path, as the allow-list is: another spelling of them is not under the prefix and is
//! refused by the allow-list, never forwarded. The daemon's renewal route is not on the allow-list; only the credential manager
//! renews, over its own client.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::routing::{any, get, post};
use axum::Extension;
use axum::Router;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use netclaw_core::serve::{self, Shutdown};
use tokio::net::UnixListener;
use tower::ServiceExt;

use crate::authz::Caller;
use crate::metrics::metrics;
use crate::proxy::{self, Peer, Refusal};
use crate::renew::RenewError;
use crate::respond::{coded, error, full, json, Body};
use crate::routes;
use crate::status::status;
use crate::{AgentState, HTTP1};

/// Accepts socket connections until `shutdown` fires (then the listener is dropped at once) and
/// serves each on a task the drain tracks.
pub(crate) async fn serve(listener: UnixListener, state: Arc<AgentState>, shutdown: Shutdown) {
    let socket = Arc::new(Socket::new(state));
    let conns = shutdown.clone();
    serve::accept_loop(listener, shutdown, |accepted| match accepted {
        Ok((stream, _)) => Some(connection(stream, socket.clone(), conns.clone())),
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            None
        }
    })
    .await;
}

/// Serves one socket connection: its caller from `SO_PEERCRED`, then HTTP/1.1 (with upgrades)
/// until it ends or the drain closes it.
async fn connection(stream: tokio::net::UnixStream, socket: Arc<Socket>, shutdown: Shutdown) {
    let caller = match Caller::of(&stream).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; closing the connection");
            return;
        }
    };
    // Authorization is decided per request against the policy in force then (see
    // `authorize`), so that a reload applies to open keep-alive connections too.
    let peer = Arc::new(Peer::new(caller));
    // A reload that refuses the caller while it streams an answer closes the connection: a
    // stream whose caller stopped reading is not polled, so its own watch would not see it.
    let cut = peer
        .clone()
        .streaming_when_a_reload_refuses_it(socket.state.credentials().subscribe_policy());
    let streams = shutdown.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let socket = socket.clone();
        let peer = peer.clone();
        let streams = streams.clone();
        async move { Ok::<_, std::convert::Infallible>(socket.handle(&peer, Some(&streams), req).await) }
    });
    serve::serve_http1(stream, service, HTTP1, &shutdown, None, cut).await;
}

/// What the socket serves: the control API's router for `/agent/v1/…`, and forwarding (the hot
/// path, without the router's per-request matching, boxing and extensions) for everything else.
pub(crate) struct Socket {
    state: Arc<AgentState>,
    router: Router,
}

impl Socket {
    pub(crate) fn new(state: Arc<AgentState>) -> Self {
        Self {
            router: router(state.clone()),
            state,
        }
    }

    /// Answers one request of `peer`'s connection. Every request is first authorized against
    /// the policy in force ([`authorize`] for the control API, [`admit`] here); the control
    /// routes are matched on the raw path, as the allow-list is.
    pub(crate) async fn handle<B>(
        &self,
        peer: &Arc<Peer>,
        shutdown: Option<&Shutdown>,
        mut req: hyper::Request<B>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        if req.uri().path().starts_with(CONTROL_PREFIX) {
            req.extensions_mut().insert(peer.clone());
            if let Some(s) = shutdown {
                req.extensions_mut().insert(s.clone());
            }
            return match self.router.clone().oneshot(req.map(Body::new)).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
        }
        if let Some(refused) = admit(&self.state, peer).await {
            return refused;
        }
        forward(&self.state, peer, shutdown, req).await
    }
}

/// The control API's paths: every one is answered by the agent, never forwarded.
const CONTROL_PREFIX: &str = "/agent/v1/";

/// The socket's router for `state` (the control API). Each request must carry its connection's
/// `Arc<Peer>` as an extension; a request without one is refused.
pub(crate) fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route(
            "/agent/v1/status",
            get(get_status).head(use_get).fallback(use_get),
        )
        .route(
            "/agent/v1/metrics",
            get(get_metrics).head(no_such).fallback(no_such),
        )
        .route("/agent/v1/rotate", post(rotate).fallback(use_post))
        // Re-read the operator policy and the credential files now (what SIGHUP does); used by
        // `netclaw pki` after it wrote new files, so that it does not wait for the file poll.
        .route("/agent/v1/reload", post(reload).fallback(use_post))
        .route("/agent/v1/", any(no_such))
        .route("/agent/v1/{*rest}", any(no_such))
        .fallback(no_such)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// `None` when the policy in force admits `peer`; the refusal otherwise.
async fn admit(state: &AgentState, peer: &Peer) -> Option<Response<Body>> {
    let policy = state.policy();
    if peer.allowed(&policy).await {
        return None;
    }
    state.stats.refused_callers.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(uid = peer.caller().uid, pid = ?peer.caller().pid, "refused caller");
    Some(error(StatusCode::FORBIDDEN, policy.refusal(peer.caller())))
}

/// Lets the request through when the policy in force admits its connection's caller.
async fn authorize(
    State(state): State<Arc<AgentState>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    let Some(peer) = req.extensions().get::<Arc<Peer>>().cloned() else {
        tracing::error!("a socket request without its caller; refused");
        return error(StatusCode::FORBIDDEN, "the caller could not be identified");
    };
    if let Some(refused) = admit(&state, &peer).await {
        return refused;
    }
    next.run(req).await
}

async fn get_status(State(state): State<Arc<AgentState>>) -> Response<Body> {
    json(StatusCode::OK, &status(&state).await)
}

async fn get_metrics(State(state): State<Arc<AgentState>>) -> Response<Body> {
    let mut resp = Response::new(full(metrics(&state)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

/// Logs which caller asked for `action` (a rotation or a reload changes what every caller
/// gets, so it is attributed).
fn attribute(peer: &Peer, action: &'static str) {
    let caller = peer.caller();
    tracing::info!(
        uid = caller.uid,
        user = caller.user.as_deref(),
        pid = caller.pid,
        action,
        "a caller asked for a {action}"
    );
}

async fn rotate(
    State(state): State<Arc<AgentState>>,
    Extension(peer): Extension<Arc<Peer>>,
) -> Response<Body> {
    attribute(&peer, "rotation");
    let e = match state.credentials().rotate().await {
        Ok(renewed) => return json(StatusCode::OK, &renewed),
        Err(e) => e,
    };
    let unanswered = matches!(e, RenewError::Transport(_));
    let expired = state.upstream().creds.expired(SystemTime::now());
    let hint = if expired {
        "; the certificate has expired: run `netclaw pki rotate --offline` as root"
    } else if unanswered {
        "; the agent retries on its own within seconds (see `netclaw status`)"
    } else {
        ""
    };
    let message = format!("rotation failed: {e}{hint}");
    match e.refused_certificate() {
        Some(code) => coded(StatusCode::BAD_GATEWAY, code, message),
        None => error(StatusCode::BAD_GATEWAY, message),
    }
}

async fn reload(
    State(state): State<Arc<AgentState>>,
    Extension(peer): Extension<Arc<Peer>>,
) -> Response<Body> {
    attribute(&peer, "reload");
    match state.reload_all().await {
        Ok(r) => json(
            StatusCode::OK,
            &serde_json::json!({
                "changed": r.credentials || r.policy,
                "credentialsChanged": r.credentials,
                "policyChanged": r.policy,
            }),
        ),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reload refused: {e}"),
        ),
    }
}

async fn use_get() -> Response<Body> {
    error(StatusCode::METHOD_NOT_ALLOWED, "use GET")
}

async fn use_post() -> Response<Body> {
    error(StatusCode::METHOD_NOT_ALLOWED, "use POST")
}

async fn no_such() -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "no such agent endpoint (the agent serves /agent/v1/status, metrics, reload and \
         rotate); see `netclaw --help`",
    )
}

/// Forwards what the allow-list allows, refuses the rest.
async fn forward<B>(
    state: &AgentState,
    peer: &Arc<Peer>,
    shutdown: Option<&Shutdown>,
    req: hyper::Request<B>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    if let Err(refused) = routes::classify(req.method(), req.uri()) {
        tracing::warn!(
            uid = peer.caller().uid,
            pid = ?peer.caller().pid,
            method = %req.method(),
            code = %Refusal::NotForwarded(refused).code(),
            "request not forwarded: not a route callers may use"
        );
        return Refusal::NotForwarded(refused).response();
    }
    proxy::forward(state, peer, shutdown, req)
        .await
        .unwrap_or_else(Refusal::response)
}

#[cfg(test)]
mod tests;
