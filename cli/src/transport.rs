//! HTTP/1.1 over a Unix socket, TCP or TLS: one connection per request, a deadline on every
//! request, bounded response bodies, and never a redirect followed.
//!
//! The client sends exactly the request it is given. Whether a bearer token may be attached is
//! decided by the caller (the `api` module), never here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use zeroize::Zeroizing;

use crate::address::Endpoint;

/// Default deadline of a request (connect, send, headers and body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read into memory.
pub const MAX_RESPONSE: usize = 1024 * 1024;

/// A transport failure: nothing usable came back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be opened.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted or mismatched certificate, protocol).
    #[error("TLS handshake with {endpoint} failed: {reason}")]
    Tls {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        reason: String,
    },
    /// No complete answer before the deadline.
    #[error("{endpoint} did not answer within {} s", .after.as_secs())]
    Timeout {
        /// Endpoint.
        endpoint: String,
        /// Deadline.
        after: Duration,
    },
    /// The peer did not speak HTTP/1.1 properly or closed early.
    #[error("{endpoint}: {reason}")]
    Protocol {
        /// Endpoint.
        endpoint: String,
        /// Cause.
        reason: String,
    },
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (at most [`MAX_RESPONSE`] bytes).
    pub body: Bytes,
}

/// A response whose body is still streaming (SSE).
#[derive(Debug)]
pub struct Streaming {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Incoming,
}

/// A bearer token for one request. Never printed.
pub struct Bearer(Zeroizing<String>);

impl Bearer {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer([secret elided])")
    }
}

/// A client for one endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// A connection to a Unix endpoint opened while resolving it, used by the first request
    /// (so that resolution does not cost a connection of its own).
    opened: Arc<Mutex<Option<UnixStream>>>,
}

/// A body to send.
#[derive(Debug)]
pub struct Body {
    /// Content type.
    pub content_type: &'static str,
    /// Bytes.
    pub bytes: Vec<u8>,
}

impl Client {
    /// A client for `endpoint`; `tls` is required for `https` endpoints.
    pub fn new(endpoint: Endpoint, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self {
            endpoint,
            tls,
            timeout: REQUEST_TIMEOUT,
            opened: Arc::default(),
        }
    }

    /// Hands the client a connection to its Unix endpoint that is already open; the first
    /// request goes over it, later ones open their own.
    pub fn with_connection(self, stream: Option<UnixStream>) -> Self {
        if let Some(s) = stream {
            *self.opened.lock().unwrap_or_else(PoisonError::into_inner) = Some(s);
        }
        self
    }

    /// Replaces the request deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET path` without credentials.
    pub async fn get(&self, path: &str) -> Result<Response, TransportError> {
        self.send(Method::GET, path, None, None).await
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        bearer: Option<&Bearer>,
    ) -> Result<Response, TransportError> {
        let work = async {
            let resp = self.exchange(method, path, body, bearer, false).await?;
            let (parts, incoming) = resp.into_parts();
            let body = Limited::new(incoming, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| self.protocol(format!("reading the response body: {e}")))?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| self.timed_out())?
    }

    /// Sends a `GET` for an event stream; the deadline covers only the response headers.
    pub async fn stream(
        &self,
        path: &str,
        bearer: Option<&Bearer>,
    ) -> Result<Streaming, TransportError> {
        let resp = tokio::time::timeout(
            self.timeout,
            self.exchange(Method::GET, path, None, bearer, true),
        )
        .await
        .map_err(|_| self.timed_out())??;
        let (parts, body) = resp.into_parts();
        Ok(Streaming {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        bearer: Option<&Bearer>,
        event_stream: bool,
    ) -> Result<hyper::Response<Incoming>, TransportError> {
        let (host, full_path) = match &self.endpoint {
            Endpoint::Unix(_) => ("localhost".to_owned(), path.to_owned()),
            Endpoint::Http(t) | Endpoint::Https(t) => {
                (t.authority(), format!("{}{}", t.base_path, path))
            }
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(full_path)
            .header(HOST, host)
            .header(USER_AGENT, concat!("netclaw/", env!("CARGO_PKG_VERSION")));
        if event_stream {
            builder = builder.header(ACCEPT, "text/event-stream");
        } else {
            builder = builder.header(ACCEPT, "application/json");
        }
        if let Some(b) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", b.0.as_str()))
                .map_err(|_| self.protocol("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        let bytes = match body {
            Some(b) => {
                builder = builder.header(CONTENT_TYPE, b.content_type);
                Bytes::from(b.bytes)
            }
            None => Bytes::new(),
        };
        let req = builder
            .body(Full::new(bytes))
            .map_err(|e| self.protocol(format!("building the request: {e}")))?;

        match &self.endpoint {
            Endpoint::Unix(path) => {
                let opened = self
                    .opened
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let io = match opened {
                    Some(io) => io,
                    None => UnixStream::connect(path)
                        .await
                        .map_err(|source| self.connect_err(source))?,
                };
                self.over(io, req).await
            }
            Endpoint::Http(t) => {
                let io = TcpStream::connect((t.host.as_str(), t.port))
                    .await
                    .map_err(|source| self.connect_err(source))?;
                self.over(io, req).await
            }
            Endpoint::Https(t) => {
                let Some(tls) = self.tls.clone() else {
                    return Err(self.tls_err("no TLS configuration".into()));
                };
                let name =
                    rustls_pki_types::ServerName::try_from(t.host.clone()).map_err(|_| {
                        self.tls_err(format!("{:?} is not a valid server name", t.host))
                    })?;
                let tcp = TcpStream::connect((t.host.as_str(), t.port))
                    .await
                    .map_err(|source| self.connect_err(source))?;
                let io = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| self.tls_err(e.to_string()))?;
                self.over(io, req).await
            }
        }
    }

    async fn over<T>(
        &self,
        io: T,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, TransportError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.protocol(e.to_string()))?;
        // The connection task ends when the response body is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(format!("no valid HTTP response ({e})")))
    }

    fn connect_err(&self, source: std::io::Error) -> TransportError {
        TransportError::Connect {
            endpoint: self.endpoint.to_string(),
            source,
        }
    }

    fn tls_err(&self, reason: String) -> TransportError {
        TransportError::Tls {
            endpoint: self.endpoint.to_string(),
            reason,
        }
    }

    fn protocol(&self, reason: String) -> TransportError {
        TransportError::Protocol {
            endpoint: self.endpoint.to_string(),
            reason,
        }
    }

    fn timed_out(&self) -> TransportError {
        TransportError::Timeout {
            endpoint: self.endpoint.to_string(),
            after: self.timeout,
        }
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
/// A segment of only dots is encoded entirely, so that it cannot act as `.` or `..`.
pub fn encode_segment(s: &str) -> String {
    let only_dots = s.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') || (b == b'.' && !only_dots)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_segment("my phone"), "my%20phone");
        assert_eq!(encode_segment("a/b"), "a%2Fb");
        assert_eq!(encode_segment("x_y-z.1~"), "x_y-z.1~");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(encode_segment("a.b"), "a.b");
    }

    #[test]
    fn bearer_debug_elides_the_secret() {
        assert_eq!(
            format!("{:?}", Bearer::new("s3cret".into())),
            "Bearer([secret elided])"
        );
    }
}
