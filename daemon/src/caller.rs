//! Who is calling: the public and operator listeners' requests become a [`Principal`] here.
//!
//! On the operator listener the principal comes from the certificate the handshake accepted
//! (re-admitted per request, so a revocation reaches open connections) and the caller the
//! agent names in its headers. On the public listener identity headers and client-certificate
//! claims are stripped, a bearer token makes a `Device`, loopback makes a `LocalProcess` only
//! in `local` mode, and anything else is `Anonymous`. Forwarded addresses are taken from
//! trusted proxies only (`DaemonConfig::forwarding_peers`: the listed `TrustedProxies`, or in a
//! tunnel mode without them the loopback tunnel), one hop, and never grant identity.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use netclaw_core::wire::Caller;
use netclaw_core::{
    CALLER_PID_HEADER, CALLER_UID_HEADER, CALLER_USER_HEADER, OPERATOR_HEADER_PREFIX,
};

use crate::error::ApiError;
use crate::forwarded::{forwarded_for, ForwardedFor};
use crate::line_budget::Warnings;
use crate::principal::{ConnInfo, Listener, Principal};
use crate::state::SharedState;

/// Headers that carry client-certificate claims from proxies. The public listener strips them,
/// with every header starting with [`CLIENT_CERT_PREFIX`].
const CLIENT_CERT_HEADERS: &[&str] = &[
    // RFC 9440.
    "client-cert",
    "client-cert-chain",
    "x-forwarded-client-cert",
    "x-client-cert",
    "x-client-certificate",
    "ssl-client-cert",
    "x-arr-clientcert",
];

/// Every `X-SSL-Client-*` header (nginx and Apache conventions: `-Cert`, `-S-DN`, `-Verify`,
/// `-Serial`, …).
const CLIENT_CERT_PREFIX: &str = "x-ssl-client-";

/// The client address for rate limiting: the trusted proxy's forwarded address (last
/// `X-Forwarded-For` entry, one hop) when the direct peer is a trusted proxy, else the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

pub(crate) async fn identify(
    State(state): State<SharedState>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    let Some(conn) = req.extensions().get::<ConnInfo>().cloned() else {
        return ApiError::Internal("request without connection info".into()).into_response();
    };
    let daemon = state.config.daemon();
    let (principal, client_ip) = match &conn.listener {
        Listener::Operator {
            spiffe_id, serial, ..
        } => {
            // Revocation reaches open connections through the listener, which cuts a connection
            // as soon as a published PKI snapshot no longer admits its serial.
            let caller = caller_from_headers(req.headers());
            (
                Principal::LocalOperator {
                    spiffe_id: spiffe_id.clone(),
                    serial: serial.clone(),
                    caller,
                },
                conn.peer,
            )
        }
        Listener::Public => {
            strip_identity_headers(req.headers_mut(), conn.peer, &state.stripped_headers);
            let trusted = daemon.is_trusted_proxy(conn.peer);
            let client_ip = if trusted {
                match forwarded_for(req.headers()) {
                    ForwardedFor::Client(ip) => ip,
                    ForwardedFor::Absent => conn.peer,
                    ForwardedFor::Unparseable(entry) => {
                        state.unparseable_forwarded.seen(conn.peer, entry);
                        conn.peer
                    }
                }
            } else {
                conn.peer
            };
            let principal = match req.headers().get(AUTHORIZATION) {
                Some(value) => {
                    let token = value
                        .to_str()
                        .ok()
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(str::trim);
                    let name = match token {
                        Some(t) => state.devices.authenticate(t).await,
                        None => None,
                    };
                    match name {
                        Some(name) => Principal::Device { name },
                        // A bad bearer is refused even from loopback: no fall-through.
                        None => {
                            return ApiError::Unauthorized("invalid bearer token").into_response()
                        }
                    }
                }
                None => {
                    let via_proxy = trusted && req.headers().contains_key("x-forwarded-for");
                    if daemon.exposure().grants_loopback_trust()
                        && conn.peer.is_loopback()
                        && !via_proxy
                    {
                        Principal::LocalProcess
                    } else {
                        Principal::Anonymous
                    }
                }
            };
            (principal, client_ip)
        }
    };
    let kind = principal.kind();
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(ClientIp(client_ip));
    let resp = next.run(req).await;
    state.audit.metrics.request(kind, resp.status().as_u16());
    resp
}

/// Removes operator and client-certificate headers a client sent to the public listener, and
/// warns about it through `warnings` (anyone can send them on every request: a line per request
/// would fill the journal and push the daemon's other lines out of its rate limit).
fn strip_identity_headers(headers: &mut HeaderMap, peer: IpAddr, warnings: &Warnings) {
    let names: Vec<_> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with(OPERATOR_HEADER_PREFIX)
                || k.starts_with(CLIENT_CERT_PREFIX)
                || CLIENT_CERT_HEADERS.contains(&k)
        })
        .cloned()
        .collect();
    if names.is_empty() {
        return;
    }
    for name in &names {
        headers.remove(name);
    }
    if let Some(requests) = warnings.due() {
        let names: Vec<_> = names.iter().map(HeaderName::as_str).collect();
        tracing::warn!(
            headers = ?names,
            %peer,
            requests,
            "stripped identity headers sent to the public listener"
        );
    }
}

/// The caller the agent forwarded. Malformed values are ignored (the agent always sends valid ones).
fn caller_from_headers(headers: &HeaderMap) -> Option<Caller> {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let uid = get(CALLER_UID_HEADER)?.parse().ok()?;
    let user = get(CALLER_USER_HEADER)
        .filter(|u| !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let pid = get(CALLER_PID_HEADER).and_then(|p| p.parse().ok());
    Some(Caller { uid, user, pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adversary: a client behind the proxy presenting a certificate (or operator
    /// identity) the way some proxy forwards one. Every such header the specification names is
    /// gone before any handler sees the request; others stay.
    #[test]
    fn every_identity_header_is_stripped_from_the_public_listener() {
        let mut h = HeaderMap::new();
        for name in [
            "Netclaw-Operator-Caller-Uid",
            "netclaw-operator-anything",
            "Client-Cert",
            "Client-Cert-Chain",
            "X-Forwarded-Client-Cert",
            "X-Client-Cert",
            "X-Client-Certificate",
            "X-SSL-Client-Cert",
            "X-SSL-Client-S-DN",
            "X-SSL-Client-DN",
            "X-SSL-Client-Serial",
            "X-SSL-Client-Verify",
            "SSL-Client-Cert",
            "X-ARR-ClientCert",
        ] {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "forged".parse().unwrap(),
            );
        }
        h.insert("x-request-id", "kept".parse().unwrap());
        h.insert("x-ssl-clientele", "kept".parse().unwrap());
        strip_identity_headers(
            &mut h,
            "198.51.100.7".parse().unwrap(),
            &Warnings::default(),
        );
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-request-id", "x-ssl-clientele"]);
    }

    #[test]
    fn caller_headers_parse_strictly() {
        let mut h = HeaderMap::new();
        assert!(caller_from_headers(&h).is_none());
        h.insert(CALLER_UID_HEADER, "x".parse().unwrap());
        assert!(caller_from_headers(&h).is_none());
        h.insert(CALLER_UID_HEADER, "1000".parse().unwrap());
        h.insert(CALLER_USER_HEADER, "a b".parse().unwrap());
        let c = caller_from_headers(&h).unwrap();
        assert_eq!(c.uid, 1000);
        assert_eq!(c.user, None);
    }
}
