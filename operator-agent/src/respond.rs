//! The agent's own answers: JSON bodies, typed error bodies, and how a failed upstream request
//! is described (its source chain) and classified (the daemon's TLS alert, by type).

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use netclaw_core::wire::{ErrorBody, ErrorCode};

/// The body of every request and answer on the socket (axum's).
pub(crate) type Body = axum::body::Body;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Body::from(bytes.into())
}

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &ErrorBody::new(message))
}

pub(crate) fn coded(
    status: StatusCode,
    code: ErrorCode,
    message: impl Into<String>,
) -> Response<Body> {
    json(status, &ErrorBody::with_code(message, code))
}

pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Whether the daemon refused the agent's certificate in the TLS handshake, by the alert it
/// sent (found by type in the error's source chain), and the wire code that says how.
pub(crate) fn refused_certificate(e: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
    use rustls::AlertDescription as A;
    let mut cur = Some(e);
    while let Some(err) = cur {
        // An `io::Error` hides the error it wraps from `source()`; look inside it.
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            return match alert {
                A::CertificateRevoked => Some(ErrorCode::CertificateRevoked),
                A::CertificateExpired => Some(ErrorCode::CertificateExpired),
                A::UnknownCA => Some(ErrorCode::CertificateUnknownCa),
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateUnknown
                | A::AccessDenied => Some(ErrorCode::CertificateRefused),
                _ => None,
            };
        }
        cur = err.source();
    }
    None
}
