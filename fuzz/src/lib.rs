//! Shared fixtures for netclaw's fuzz targets: a fixed clock, an operator CA generated once per
//! process, and the daemon's router with the state a running daemon would have (no operator PKI,
//! so requests on the operator listener are not refused for an unknown serial).
//!
//! Nothing here touches the network; the router is driven in-process with `oneshot`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use axum::Router;
use http_body_util::BodyExt;
use netclaw_core::config::Config;
use netclaw_daemon::audit::Audit;
use netclaw_daemon::devices::DeviceStore;
use netclaw_daemon::principal::ConnInfo;
use netclaw_daemon::state::{AppState, SharedState};
use netclaw_pki::issue::ListenerNames;
use netclaw_pki::verify::ExpectedAgent;
use netclaw_pki::{CertificateLifetime, HostId, OperatorCa, SpiffeId, TrustDomain};
use tower::ServiceExt;

/// The fixed "now" of every certificate operation (2027-01-15).
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// This host's identity as the daemon would expect it.
pub fn expected() -> ExpectedAgent {
    ExpectedAgent {
        trust_domain: trust_domain(),
        host_id: host_id(),
    }
}

/// The default trust domain.
pub fn trust_domain() -> TrustDomain {
    TrustDomain::DEFAULT.parse().expect("a valid trust domain")
}

/// A fixed host-id.
pub fn host_id() -> HostId {
    "0123456789abcdef0123456789abcdef"
        .parse()
        .expect("a valid host-id")
}

/// The operator agent's SPIFFE id for [`host_id`].
pub fn agent_id() -> SpiffeId {
    SpiffeId::operator_agent(trust_domain(), host_id())
}

/// An operator CA generated once per fuzzing process.
pub static CA: LazyLock<OperatorCa> = LazyLock::new(|| {
    let names = ListenerNames {
        ips: vec![IpAddr::from([192, 0, 2, 10])],
        dns: Vec::new(),
    };
    OperatorCa::generate("fuzz", &names, now()).expect("CA generation")
});

/// The default agent lifetime.
pub fn lifetime() -> CertificateLifetime {
    CertificateLifetime::default()
}

/// The configuration of a reverse-proxy daemon that trusts one IPv4 and one IPv6 proxy.
pub const REVERSE_PROXY: &str = r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1","2001:db8::1"],"StateDirectory":"/nonexistent/netclaw-fuzz"}}"#;
/// The configuration of a `local` daemon that trusts a proxy on loopback.
pub const LOCAL: &str =
    r#"{"Daemon":{"TrustedProxies":["127.0.0.1"],"StateDirectory":"/nonexistent/netclaw-fuzz"}}"#;

/// Daemon state for `config_json`, with no paired devices and a device registry path that
/// cannot be written (a pairing that passed the code check would fail with 503).
pub fn state(config_json: &str) -> SharedState {
    let config = Config::from_json(
        Path::new("/etc/netclaw/netclaw.json"),
        config_json,
        &std::collections::BTreeMap::new(),
    )
    .expect("fixture configuration is valid");
    let devices = DeviceStore::load(Path::new("/nonexistent/netclaw-fuzz/devices.json"))
        .expect("a missing registry is empty");
    Arc::new(AppState::new(
        config,
        Arc::new(Audit::new(None).expect("audit without a file")),
        devices,
        None,
        SocketAddr::from(([192, 0, 2, 10], 5199)),
        None,
    ))
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
}

/// Sends `req` (with `conn` attached, as the accept loop does) through `router` and returns the
/// status and the body.
pub fn send(router: &Router, conn: ConnInfo, mut req: Request<Body>) -> (u16, Vec<u8>) {
    req.extensions_mut().insert(conn);
    let router = router.clone();
    RUNTIME.with(|rt| {
        rt.block_on(async move {
            let resp: Response<Body> = router.oneshot(req).await.expect("infallible");
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            (status, body)
        })
    })
}

/// Splits `Name: value` lines (values as bytes; a line without a colon is skipped) into a
/// header map, dropping what `http` cannot represent, as a server's parser would.
pub fn header_lines(text: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        map.append(name, value);
    }
    map
}

/// The first line of `data` (as text, trimmed) and the rest.
pub fn first_line(data: &[u8]) -> (String, &[u8]) {
    let (line, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    (String::from_utf8_lossy(line).trim().to_owned(), rest)
}
