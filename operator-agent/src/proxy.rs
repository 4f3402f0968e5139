//! Forwarding to the daemon: the caller of a socket connection ([`Peer`]), the agent's own
//! refusals ([`Refusal`]), and [`forward`], which only forwards (the control API and the
//! allow-list are applied before it, in `control`).
//!
//! # Security
//!
//! A caller is admitted per request, but an upgraded connection (the WebSocket hub, where a
//! caller mints pairing codes) or a streamed answer (the audit events) outlives its request.
//! Each of these watches the operator policies the credential manager publishes and ends as
//! soon as one refuses its caller ([`Peer::refused`]), so that a reload that removes a caller
//! cuts what it holds open, not only its next request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use netclaw_core::serve::Shutdown;
use netclaw_core::wire::{self, ErrorBody, ErrorCode};
use netclaw_core::{
    CALLER_PID_HEADER, CALLER_UID_HEADER, CALLER_USER_HEADER, OPERATOR_HEADER_PREFIX,
};
use netclaw_pki::identity::unix_seconds;
use tokio::sync::watch;

use crate::authz::{Caller, Policy};
use crate::respond::{coded, json, refused_certificate, source_chain};
use crate::routes::NotForwarded;
use crate::upstream::{
    lock, Pooled, Saturated, Slot, MAX_IN_FLIGHT, MAX_STREAMS, PER_CALLER_IN_FLIGHT,
    PER_CALLER_STREAMS,
};
use crate::AgentState;

pub(crate) use crate::respond::Body;

/// How long a forwarded request may wait for the daemon's response head.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a forwarded request may wait for an upstream slot before it is refused as
/// saturated: inside the CLI's 10 s request timeout, so that the caller sees why.
pub(crate) const SLOT_WAIT: Duration = Duration::from_secs(5);
/// A caller must send its whole request body within this (counted from the end of the head).
/// The body is read before the request takes an upstream slot, so a slow body holds only its
/// own connection.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body forwarded (the daemon's own limit is lower).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Headers that describe one hop and are not forwarded (as `HeaderName`s, so that removing them
/// does not parse a string per request).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// One socket connection's caller: who it is and the identity headers every request it
/// forwards carries (built once per connection). Whether the policy lets it in is decided per
/// request against the policy in force then ([`Peer::allowed`]).
#[derive(Debug)]
pub(crate) struct Peer {
    caller: Caller,
    uid: HeaderValue,
    user: Option<HeaderValue>,
    pid: Option<HeaderValue>,
    /// The last verdict and the policy snapshot it was made under: a group lookup runs once per
    /// connection and policy, not once per request. Only this connection's requests use it.
    verdict: Mutex<Option<(Arc<Policy>, bool)>>,
    /// Watched answers (event streams, other bodies of unknown length) this connection is
    /// streaming now ([`StreamOpen`]).
    streams: AtomicUsize,
}

/// One watched answer streaming on its caller's connection, counted in [`Peer`] while it lasts.
struct StreamOpen(Arc<Peer>);

impl StreamOpen {
    fn new(peer: &Arc<Peer>) -> Self {
        peer.streams.fetch_add(1, Ordering::Relaxed);
        Self(peer.clone())
    }
}

impl Drop for StreamOpen {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Peer {
    pub(crate) fn new(caller: Caller) -> Self {
        Self {
            uid: HeaderValue::from(caller.uid),
            user: caller
                .user
                .as_deref()
                .and_then(|u| HeaderValue::from_str(u).ok()),
            pid: caller.pid.map(HeaderValue::from),
            caller,
            verdict: Mutex::new(None),
            streams: AtomicUsize::new(0),
        }
    }

    /// Who the caller is.
    pub(crate) fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Whether `policy` (the one in force) lets this caller in. A new verdict (the group
    /// lookups of [`Policy::allows`]) is reached on the blocking pool, so that a slow user
    /// database holds this connection only, never the agent's event loop; a lookup that fails
    /// to finish refuses this request.
    pub(crate) async fn allowed(&self, policy: &Arc<Policy>) -> bool {
        let cached = |verdict: &Option<(Arc<Policy>, bool)>| match verdict {
            Some((judged, allowed)) if Arc::ptr_eq(judged, policy) => Some(*allowed),
            _ => None,
        };
        if let Some(allowed) = cached(&lock(&self.verdict)) {
            return allowed;
        }
        let (judge, caller) = (policy.clone(), self.caller.clone());
        match tokio::task::spawn_blocking(move || judge.allows(&caller)).await {
            Ok(allowed) => {
                *lock(&self.verdict) = Some((policy.clone(), allowed));
                allowed
            }
            // The lookup did not finish (it panicked): refused, and not remembered, so that the
            // next request asks again.
            Err(_) => false,
        }
    }

    /// Resolves once a policy on `policies` refuses this caller, the one in force when it is
    /// first polled included, after logging that the caller's `what` was cut. Pending for as
    /// long as every published policy admits the caller, and after the publisher is gone (the
    /// agent is stopping: the drain ends what is still open). The verdicts are
    /// [`Peer::allowed`]'s, so a policy already judged for this connection costs no lookup and
    /// a new one is judged on the blocking pool.
    pub(crate) async fn refused(
        self: Arc<Self>,
        mut policies: watch::Receiver<Arc<Policy>>,
        what: Streamed,
    ) {
        loop {
            let policy = policies.borrow_and_update().clone();
            if !self.allowed(&policy).await {
                tracing::warn!(
                    uid = self.caller.uid,
                    user = self.caller.user.as_deref(),
                    pid = self.caller.pid,
                    what = what.as_str(),
                    "closed a caller's {}: the reloaded operator policy refuses it",
                    what.as_str()
                );
                return;
            }
            if policies.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Resolves once a policy published from now on refuses this caller while its connection is
    /// streaming a watched answer ([`StreamOpen`]), after logging it: what the connection
    /// watches. A caller that stopped reading leaves its stream's body unpolled, so the body's
    /// own watch never sees the reload; closing the connection reaches it. A connection with
    /// nothing streaming stays: its next request is judged by the new policy (a 403 that names
    /// the fix).
    pub(crate) async fn streaming_when_a_reload_refuses_it(
        self: Arc<Self>,
        mut policies: watch::Receiver<Arc<Policy>>,
    ) {
        // A clone of the manager's receiver may not have seen the policy in force yet.
        policies.borrow_and_update();
        loop {
            if policies.changed().await.is_err() {
                return std::future::pending().await;
            }
            let policy = policies.borrow_and_update().clone();
            if self.streams.load(Ordering::Relaxed) > 0 && !self.allowed(&policy).await {
                tracing::warn!(
                    uid = self.caller.uid,
                    user = self.caller.user.as_deref(),
                    pid = self.caller.pid,
                    what = Streamed::Connection.as_str(),
                    "closed a caller's connection, which was streaming: the reloaded operator \
                     policy refuses it"
                );
                return;
            }
        }
    }
}

/// What a forwarded request holds open after its response head, or the caller's whole
/// connection: what [`Peer::refused`] cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Streamed {
    /// The caller's connection to the socket, whatever it is doing (a caller that stopped
    /// reading leaves its streams' bodies unpolled, so only this reaches them).
    Connection,
    /// A connection switched to another protocol (the WebSocket hub).
    Upgrade,
    /// A server-sent event stream (the audit events).
    Events,
    /// Any other response body of unknown length.
    Body,
}

impl Streamed {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Upgrade => "upgraded connection",
            Self::Events => "event stream",
            Self::Body => "streamed response",
        }
    }
}

/// The agent's own refusals and failures, each with one status and one wire `code` (so that
/// clients and tests tell them apart by type, never by text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The route is not one callers may use.
    NotForwarded(NotForwarded),
    /// The caller's own share of the upstream slots stayed busy.
    Saturated(Saturated),
    /// The caller's share of the agent's open streams, or all of them, are in use.
    Streams(Saturated),
    /// The request body did not arrive in time.
    BodyTimeout,
    /// The request body is larger than the agent forwards.
    BodyTooLarge,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Self::NotForwarded(NotForwarded::TargetForm) => StatusCode::BAD_REQUEST,
            Self::NotForwarded(NotForwarded::Path) => StatusCode::NOT_FOUND,
            Self::NotForwarded(NotForwarded::Method(_)) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Saturated(_) | Self::Streams(Saturated::Agent) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Streams(Saturated::Caller) => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The wire code.
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            Self::NotForwarded(NotForwarded::TargetForm) => ErrorCode::RequestTargetForm,
            Self::NotForwarded(NotForwarded::Path) => ErrorCode::RouteNotForwarded,
            Self::NotForwarded(NotForwarded::Method(_)) => ErrorCode::MethodNotForwarded,
            Self::Saturated(Saturated::Caller) => ErrorCode::CallerSaturated,
            Self::Saturated(Saturated::Agent) => ErrorCode::AgentSaturated,
            Self::Streams(Saturated::Caller) => ErrorCode::CallerStreamLimit,
            Self::Streams(Saturated::Agent) => ErrorCode::AgentStreamLimit,
            Self::BodyTimeout => ErrorCode::BodyTimeout,
            Self::BodyTooLarge => ErrorCode::BodyTooLarge,
        }
    }

    /// The fixed message (only constants are filled in).
    fn message(self) -> String {
        let fixed = match self {
            Self::NotForwarded(NotForwarded::TargetForm) => {
                "the operator agent accepts only origin-form request targets (/path?query)"
            }
            Self::NotForwarded(NotForwarded::Path) => {
                "the operator agent does not forward this route: it forwards only the daemon \
                 routes the netclaw CLI uses, and never the agent's own certificate routes \
                 (rotate with `netclaw pki rotate`); see docs/operator-agent.md"
            }
            Self::NotForwarded(NotForwarded::Method(_)) => {
                "the operator agent forwards this route with another method (see the Allow header)"
            }
            Self::Saturated(Saturated::Caller) => {
                return format!(
                    "the operator agent is saturated by your own requests: your user already has \
                     {PER_CALLER_IN_FLIGHT} requests in flight to the daemon (the per-caller \
                     share of {MAX_IN_FLIGHT}) and none finished within {} s; wait for them, or \
                     stop the stalled ones, then retry",
                    SLOT_WAIT.as_secs()
                )
            }
            Self::Saturated(Saturated::Agent) => {
                "the operator agent is saturated: all its request slots to the daemon are in use \
                 by other callers and none finished in time; retry shortly, and see `netclaw \
                 status` (agent pool) and the daemon's load"
            }
            Self::Streams(Saturated::Caller) => {
                return format!(
                    "your user already has {PER_CALLER_STREAMS} streams open through the operator \
                     agent (event streams and hub sessions; the per-caller share of \
                     {MAX_STREAMS}); close one (e.g. a `netclaw events --follow`), then retry"
                )
            }
            Self::Streams(Saturated::Agent) => {
                return format!(
                    "the operator agent already has {MAX_STREAMS} streams open (event streams and \
                     hub sessions) for other callers; retry when one of them ends"
                )
            }
            Self::BodyTimeout => {
                return format!(
                    "the request body did not arrive within {} s; send the whole body at once",
                    BODY_READ_TIMEOUT.as_secs()
                )
            }
            Self::BodyTooLarge => {
                return format!(
                    "the request body is larger than the operator agent forwards ({} KiB)",
                    MAX_BODY / 1024
                )
            }
        };
        fixed.to_owned()
    }

    pub(crate) fn response(self) -> Response<Body> {
        let mut resp = json(
            self.status(),
            &ErrorBody::with_code(self.message(), self.code()),
        );
        match self {
            Self::NotForwarded(NotForwarded::Method(allow)) => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Saturated(_) | Self::Streams(Saturated::Agent) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Streams(Saturated::Caller) => {}
            Self::BodyTimeout | Self::BodyTooLarge => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::NotForwarded(_) => {}
        }
        resp
    }
}

/// Reads the caller's request body in full, within [`BODY_READ_TIMEOUT`] and [`MAX_BODY`].
async fn read_body<B>(body: B) -> Result<Bytes, Refusal>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    // Most forwarded requests are GETs without a body: no timer, no collector.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::BodyTooLarge),
        // The caller went away or sent a malformed body; it gets no useful answer either way.
        Ok(Err(_)) | Err(_) => Err(Refusal::BodyTimeout),
    }
}

/// Forwards one request, whose route [`crate::routes::classify`] allowed, to the daemon with
/// the caller's identity headers: reads the body in full (within limits), takes an upstream
/// slot, sends it over the current credential generation's pool and streams the answer back
/// (upgrades and server-sent events included). When `shutdown` fires, a forwarded event stream
/// ends and an upgraded connection is closed, so that the drain waits only for requests. When a
/// reload publishes a policy that refuses `peer`, its upgraded connection is closed, its event
/// stream ends and any other answer of unknown length still streaming is cut off (an error, so
/// that it is not taken for a whole one); answers of known length are not watched (the hot
/// path does not subscribe to the policy).
pub(crate) async fn forward<B>(
    state: &AgentState,
    peer: &Arc<Peer>,
    shutdown: Option<&Shutdown>,
    mut req: Request<B>,
) -> Result<Response<Body>, Refusal>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let upstream = state.upstream();
    if upstream.creds.expired(SystemTime::now()) {
        return Ok(coded(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::CredentialExpired,
            format!(
                "credential-expired: the operator agent certificate expired at {}; run \
                 `netclaw pki rotate --offline` as root to re-issue it",
                wire::format_unix(unix_seconds(upstream.creds.identity.not_after))
            ),
        ));
    }
    let upgrade = is_upgrade(req.headers());
    let caller_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    // Sent as received (the allow-list admitted only origin-form targets), to the daemon's
    // address as `Host`.
    if parts.uri.path_and_query().is_none() {
        return Err(Refusal::NotForwarded(NotForwarded::TargetForm));
    }
    rewrite_headers(&mut parts.headers, peer, upgrade);
    parts.headers.insert(header::HOST, state.host.clone());
    // The whole body first: a caller that trickles it holds its own connection, never an
    // upstream slot.
    let body = read_body(body).await?;
    let outgoing = Request::from_parts(parts, Full::new(body));

    // At most `MAX_IN_FLIGHT` requests in flight upstream, `PER_CALLER_IN_FLIGHT` of them per
    // caller: a request beyond that waits for one to finish and reuses its pooled connection,
    // instead of dialling a connection the pool would close again when it comes back idle (a
    // full TLS handshake on both sides per request). A request that gets no slot within
    // `SLOT_WAIT` is refused as saturated, naming whose requests hold the slots.
    let slot = match upstream
        .slots
        .acquire(peer.caller.uid, tokio::time::Instant::now() + SLOT_WAIT)
        .await
    {
        Ok(slot) => slot,
        Err(saturated) => {
            tracing::warn!(
                uid = peer.caller.uid,
                code = %Refusal::Saturated(saturated).code(),
                max_in_flight = MAX_IN_FLIGHT,
                per_caller = PER_CALLER_IN_FLIGHT,
                "no upstream slot for a request"
            );
            return Err(Refusal::Saturated(saturated));
        }
    };
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    // The daemon's answer, then the caller's next request, find the loop awake.
    state.busy.touch();
    let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
    let response = tokio::time::timeout_at(deadline, upstream.client.request(outgoing)).await;
    state.busy.touch();
    let mut response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let reason = source_chain(&e);
            tracing::warn!(daemon = %state.addr, error = %reason, "daemon request failed");
            return Ok(coded(
                StatusCode::BAD_GATEWAY,
                refused_certificate(&e).unwrap_or(ErrorCode::DaemonUnreachable),
                format!(
                    "daemon unreachable at {}: {reason}; check that netclaw-daemon is running \
                     (systemctl status netclaw-daemon) and `netclaw doctor`",
                    state.addr
                ),
            ));
        }
        Err(_) => {
            return Ok(coded(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::DaemonTimeout,
                format!("the daemon at {} did not answer in time", state.addr),
            ))
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The connection now belongs to the tunnel, never to the pool.
        response.body_mut().detach();
        if let Some(caller_upgrade) = caller_upgrade {
            // Refused without a free stream slot: dropping the answer closes the daemon's side.
            let stream = stream_slot(state, peer).await?;
            let daemon_upgrade = hyper::upgrade::on(&mut response);
            let ended = ended(shutdown);
            let refused = peer
                .clone()
                .refused(state.credentials().subscribe_policy(), Streamed::Upgrade);
            let tunnel = async move {
                let copied = async {
                    match tokio::try_join!(caller_upgrade, daemon_upgrade) {
                        Ok((a, b)) => {
                            let mut a = hyper_util::rt::TokioIo::new(a);
                            let mut b = hyper_util::rt::TokioIo::new(b);
                            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                };
                // Held for as long as the tunnel lasts.
                let _stream = stream;
                // Whichever ends first drops `copied`, which closes both sides.
                tokio::select! {
                    () = copied => {}
                    () = ended => tracing::debug!("upgraded connection closed by the drain"),
                    () = refused => {}
                }
            };
            match shutdown {
                Some(s) => s.spawn(tunnel),
                None => drop(tokio::spawn(tunnel)),
            }
        }
    }
    let class = usize::from(response.status().as_u16() / 100).min(5);
    state.stats.responses[class].fetch_add(1, Ordering::Relaxed);
    let (mut parts, body) = response.into_parts();
    // A switched or streamed connection never goes back to the pool: it frees its slot now.
    let events = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let switched = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    // An event stream holds a stream slot instead, for as long as it lasts; without one it is
    // refused (dropping its body closes its connection to the daemon).
    let permit = if events {
        Some(stream_slot(state, peer).await?)
    } else {
        (!switched).then_some(slot)
    };
    // Only an answer that may stay open watches the policy: an event stream (which also ends
    // on the drain) or another body of unknown length; one of known length (every ordinary
    // answer) costs nothing more.
    let watched = if events {
        Some(Streamed::Events)
    } else if !switched && hyper::body::Body::size_hint(&body).exact().is_none() {
        Some(Streamed::Body)
    } else {
        None
    };
    let ended = watched.map(|what| {
        let drained = match what {
            Streamed::Events => ended(shutdown),
            Streamed::Upgrade | Streamed::Body | Streamed::Connection => ended(None),
        };
        let refused = peer
            .clone()
            .refused(state.credentials().subscribe_policy(), what);
        // An event stream ends cleanly (its events are whole; the caller sees the stream
        // end, as on the drain); another body is cut off by an error.
        let cut = match what {
            Streamed::Events => Stop::End,
            Streamed::Upgrade | Streamed::Body | Streamed::Connection => Stop::Abort,
        };
        let stop: Pin<Box<dyn Future<Output = Stop> + Send>> = Box::pin(async move {
            tokio::select! {
                () = drained => Stop::End,
                () = refused => cut,
            }
        });
        stop
    });
    if !upgrade {
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
    }
    Ok(Response::from_parts(
        parts,
        Body::new(PermitBody {
            _open: ended.as_ref().map(|_| StreamOpen::new(peer)),
            body,
            permit,
            ended,
            stopped: false,
        }),
    ))
}

/// Resolves when `shutdown` fires (never without one).
fn ended(shutdown: Option<&Shutdown>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    match shutdown {
        Some(s) => Box::pin(s.fired()),
        None => Box::pin(std::future::pending()),
    }
}

/// One of the agent's stream slots for `peer`, at once or not at all: a stream that would wait
/// holds its answer head and its upstream connection, which is what the bound is for
/// ([`MAX_STREAMS`], [`PER_CALLER_STREAMS`] per caller).
async fn stream_slot(state: &AgentState, peer: &Peer) -> Result<Slot, Refusal> {
    state
        .streams
        .acquire(peer.caller.uid, tokio::time::Instant::now())
        .await
        .map_err(|saturated| {
            let refusal = Refusal::Streams(saturated);
            tracing::warn!(
                uid = peer.caller.uid,
                code = %refusal.code(),
                max_streams = MAX_STREAMS,
                per_caller = PER_CALLER_STREAMS,
                "no stream slot for a stream"
            );
            refusal
        })
}

/// How a watched answer stops before the daemon ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The body ends cleanly.
    End,
    /// The body fails ([`PolicyRefused`]): the caller's connection is aborted.
    Abort,
}

/// Why a streamed answer was cut off: a reload published a policy that refuses its caller.
#[derive(Debug, thiserror::Error)]
#[error("the reloaded operator policy refuses this caller")]
struct PolicyRefused;

/// A response body from the daemon that holds its in-flight slot until it ends (its connection
/// then returns to the pool) or is dropped. A watched body (see [`forward`]) also stops when
/// `ended` resolves: an event stream ends cleanly when the agent drains or a reload refuses its
/// caller; another body of unknown length fails when a reload refuses its caller.
struct PermitBody {
    /// Declared first, so dropped first: the connection is back in the pool before the slot is
    /// free for the next request.
    body: Pooled,
    permit: Option<crate::upstream::Slot>,
    ended: Option<Pin<Box<dyn Future<Output = Stop> + Send>>>,
    /// `ended` resolved: nothing more is read from `body` (whose connection is then closed).
    stopped: bool,
    /// Counts a watched answer on its caller's connection while it streams.
    _open: Option<StreamOpen>,
}

impl hyper::body::Body for PermitBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::BoxError>>> {
        use std::task::Poll;
        if self.stopped {
            return Poll::Ready(None);
        }
        if let Some(ended) = self.ended.as_mut() {
            if let Poll::Ready(stop) = ended.as_mut().poll(cx) {
                self.ended = None;
                self.stopped = true;
                self.permit = None;
                return Poll::Ready(match stop {
                    Stop::End => None,
                    Stop::Abort => Some(Err(PolicyRefused.into())),
                });
            }
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.permit = None;
        }
        polled.map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.stopped || self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (except those an upgrade needs), the caller's `Authorization` and
/// every `Netclaw-Operator-*` header, then adds the caller identity from the kernel.
fn rewrite_headers(headers: &mut HeaderMap, peer: &Peer, upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && *n == header::UPGRADE))
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    let operator: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(OPERATOR_HEADER_PREFIX))
        .cloned()
        .collect();
    for name in operator {
        headers.remove(name);
    }
    headers.insert(CALLER_UID_HEADER, peer.uid.clone());
    if let Some(user) = &peer.user {
        headers.insert(CALLER_USER_HEADER, user.clone());
    }
    if let Some(pid) = &peer.pid {
        headers.insert(CALLER_PID_HEADER, pid.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_are_replaced_and_credentials_dropped() {
        let mut h = HeaderMap::new();
        h.insert("netclaw-operator-caller-uid", HeaderValue::from_static("0"));
        h.insert("netclaw-operator-anything", HeaderValue::from_static("x"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-drop"));
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        let caller = Caller {
            uid: 1000,
            gid: 1000,
            pid: Some(77),
            user: Some("ana".into()),
        };
        rewrite_headers(&mut h, &Peer::new(caller), false);
        assert_eq!(h.get(CALLER_UID_HEADER).unwrap(), "1000");
        assert_eq!(h.get(CALLER_USER_HEADER).unwrap(), "ana");
        assert_eq!(h.get(CALLER_PID_HEADER).unwrap(), "77");
        assert!(h.get("netclaw-operator-anything").is_none());
        assert!(h.get("authorization").is_none());
        assert!(h.get("x-drop").is_none());
        assert!(h.get("connection").is_none());
        assert_eq!(h.get("accept").unwrap(), "text/event-stream");
    }

    /// An error whose source is another, as hyper's client errors wrap the connection's.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (SendRequest)")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn certificate_refusals_are_found_by_the_alert_type_in_the_source_chain() {
        let wrapped =
            |e: rustls::Error| Wrapped(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        let alert = |a| wrapped(rustls::Error::AlertReceived(a));
        use rustls::AlertDescription as A;
        assert_eq!(
            refused_certificate(&alert(A::CertificateRevoked)),
            Some(ErrorCode::CertificateRevoked)
        );
        assert_eq!(
            refused_certificate(&alert(A::CertificateExpired)),
            Some(ErrorCode::CertificateExpired)
        );
        assert_eq!(
            refused_certificate(&alert(A::UnknownCA)),
            Some(ErrorCode::CertificateUnknownCa)
        );
        assert_eq!(
            refused_certificate(&alert(A::AccessDenied)),
            Some(ErrorCode::CertificateRefused)
        );
        // An alert about something else, or the agent's own refusal of the daemon's
        // certificate, is not the daemon refusing the agent's.
        assert_eq!(refused_certificate(&alert(A::HandshakeFailure)), None);
        assert_eq!(
            refused_certificate(&wrapped(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))),
            None
        );
        // Text that merely names an alert is not an alert.
        let text = std::io::Error::other("received fatal alert: CertificateRevoked");
        assert_eq!(refused_certificate(&Wrapped(text)), None);
    }

    fn ana() -> Arc<Peer> {
        Arc::new(Peer::new(Caller {
            uid: 3_999_999_101,
            gid: 3_999_999_101,
            pid: Some(77),
            user: Some("netclaw-test-ana".into()),
        }))
    }

    fn admitting(users: &[&str]) -> Arc<Policy> {
        let users: Vec<String> = users.iter().map(|u| (*u).to_owned()).collect();
        Arc::new(Policy::new(3_999_999_000, &users, &[]))
    }

    /// Whether `cut` resolves within a short wait (it is polled again by later calls).
    async fn resolves(cut: &mut Pin<Box<impl Future<Output = ()>>>) -> bool {
        tokio::time::timeout(Duration::from_millis(200), cut.as_mut())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_published_policy_that_refuses_the_caller_cuts_what_it_holds_open() {
        let peer = ana();
        let (publish, policies) = watch::channel(admitting(&["netclaw-test-ana"]));
        // The request was admitted under the policy in force (the verdict is cached).
        assert!(peer.allowed(&publish.borrow().clone()).await);
        let mut cut = Box::pin(peer.clone().refused(policies, Streamed::Events));
        assert!(!resolves(&mut cut).await);
        // A new policy that still admits the caller (another snapshot, judged again) does not.
        publish.send_replace(admitting(&["someone-else", "netclaw-test-ana"]));
        assert!(!resolves(&mut cut).await);
        // One that refuses it does.
        publish.send_replace(admitting(&["someone-else"]));
        assert!(resolves(&mut cut).await);
    }

    #[tokio::test]
    async fn a_caller_refused_before_the_watch_starts_is_cut_at_once() {
        let (_publish, policies) = watch::channel(admitting(&[]));
        let mut cut = Box::pin(ana().refused(policies, Streamed::Upgrade));
        assert!(resolves(&mut cut).await);
    }

    #[tokio::test]
    async fn a_stopped_publisher_cuts_nothing() {
        let (publish, policies) = watch::channel(admitting(&["netclaw-test-ana"]));
        let mut cut = Box::pin(ana().refused(policies, Streamed::Body));
        assert!(!resolves(&mut cut).await);
        // The credential manager has stopped (the agent drains): the drain ends the stream.
        drop(publish);
        assert!(!resolves(&mut cut).await);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        let caller = Caller {
            uid: 0,
            gid: 0,
            pid: None,
            user: None,
        };
        rewrite_headers(&mut h, &Peer::new(caller), true);
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert!(h.get(CALLER_PID_HEADER).is_none());
    }
}
