//! In-process router tests: every principal × route cell of the authority matrix.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, StatusCode};
use netclaw_core::config::Config;
use tower::ServiceExt;

use super::*;
use crate::audit::Audit;
use crate::devices::DeviceStore;
use crate::principal::{ConnInfo, Listener};
use crate::state::AppState;

struct Harness {
    state: SharedState,
    device_token: String,
    _tmp: tempfile::TempDir,
}

fn harness(config_json: &str) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config::from_json(
        Path::new("t.json"),
        config_json,
        &std::collections::BTreeMap::new(),
    )
    .unwrap();
    let mut devices = DeviceStore::load(&tmp.path().join("devices.json")).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let device_token = devices
        .add("phone", &rng, SystemTime::now())
        .unwrap()
        .to_string();
    devices.add("tablet", &rng, SystemTime::now()).unwrap();
    let state = Arc::new(AppState::new(
        config,
        Arc::new(Audit::new(None).unwrap()),
        devices,
        None,
        SocketAddr::from(([127, 0, 0, 1], 5199)),
        None,
    ));
    Harness {
        state,
        device_token,
        _tmp: tmp,
    }
}

const LOCAL: &str = "{}";
const REVERSE_PROXY: &str = r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1"]}}"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    LocalProcess,
    LocalOperator,
    Device,
    Anonymous,
    /// Loopback peer in reverse-proxy mode (a same-host proxy or tunnel).
    LoopbackInProxyMode,
}

const ALL: [Who; 5] = [
    Who::LocalProcess,
    Who::LocalOperator,
    Who::Device,
    Who::Anonymous,
    Who::LoopbackInProxyMode,
];

impl Harness {
    async fn call(
        &self,
        who: Who,
        method: Method,
        uri: &str,
        body: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let (listener, peer, bearer) = match who {
            Who::LocalProcess => (Listener::Public, "127.0.0.1", false),
            Who::LocalOperator => (
                Listener::Operator {
                    spiffe_id: "spiffe://netclaw.internal/host/0123456789abcdef0123456789abcdef/operator-agent".into(),
                    serial: "0a0b".parse().unwrap(),
                    public_key: std::sync::Arc::from(&b"current key"[..]),
                },
                "192.0.2.10",
                false,
            ),
            Who::Device => (Listener::Public, "203.0.113.5", true),
            Who::Anonymous => (Listener::Public, "203.0.113.5", false),
            Who::LoopbackInProxyMode => (Listener::Public, "127.0.0.1", false),
        };
        let mut req = Request::builder().method(method).uri(uri);
        if bearer {
            req = req.header("authorization", format!("Bearer {}", self.device_token));
        }
        if who == Who::LocalOperator {
            req = req
                .header("netclaw-operator-caller-uid", "1000")
                .header("netclaw-operator-caller-user", "ana")
                .header("netclaw-operator-caller-pid", "4242");
        }
        let mut req = req
            .header("content-type", "application/json")
            .body(
                body.map(|b| Body::from(b.to_owned()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        req.extensions_mut().insert(ConnInfo {
            listener,
            peer: peer.parse::<IpAddr>().unwrap(),
        });
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let streaming = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            // An event stream never ends; its status is what the matrix checks.
            return (status, serde_json::Value::Null);
        }
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }
}

fn harness_for(who: Who) -> Harness {
    harness(if who == Who::LoopbackInProxyMode {
        REVERSE_PROXY
    } else {
        LOCAL
    })
}

#[tokio::test]
async fn whoami_names_each_principal() {
    let expect = [
        (Who::LocalProcess, "LocalProcess", "loopback"),
        (Who::LocalOperator, "LocalOperator", "operator-mtls"),
        (Who::Device, "Device", "bearer"),
        (Who::Anonymous, "Anonymous", "none"),
        (Who::LoopbackInProxyMode, "Anonymous", "none"),
    ];
    for (who, principal, transport) in expect {
        let h = harness_for(who);
        let (status, body) = h.call(who, Method::GET, "/api/whoami", None).await;
        assert_eq!(status, StatusCode::OK, "{who:?}");
        assert_eq!(body["principal"], principal, "{who:?}");
        assert_eq!(body["transport"], transport, "{who:?}");
        if who == Who::LocalOperator {
            assert_eq!(body["caller"]["uid"], 1000);
            assert_eq!(body["caller"]["user"], "ana");
            assert_eq!(body["caller"]["pid"], 4242);
        } else {
            assert!(body["caller"].is_null(), "{who:?}");
        }
    }
}

/// The authority matrix: (route, method, body, expected status per principal in `ALL` order).
#[tokio::test]
async fn authority_matrix() {
    use StatusCode as S;
    let rows: [(&str, Method, Option<&str>, [StatusCode; 5]); 9] = [
        (
            "/api/health/ready",
            Method::GET,
            None,
            [S::OK, S::OK, S::OK, S::OK, S::OK],
        ),
        (
            "/api/health/status",
            Method::GET,
            None,
            [S::OK, S::OK, S::OK, S::UNAUTHORIZED, S::UNAUTHORIZED],
        ),
        (
            "/api/pair/devices",
            Method::GET,
            None,
            [S::OK, S::OK, S::FORBIDDEN, S::UNAUTHORIZED, S::UNAUTHORIZED],
        ),
        (
            "/api/local-control/v1/pairing-code",
            Method::POST,
            None,
            [S::OK, S::OK, S::FORBIDDEN, S::UNAUTHORIZED, S::UNAUTHORIZED],
        ),
        (
            "/api/pair/devices/tablet",
            Method::DELETE,
            None,
            [
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::FORBIDDEN,
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
            ],
        ),
        // A device may revoke itself.
        (
            "/api/pair/devices/phone",
            Method::DELETE,
            None,
            [
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
            ],
        ),
        // netclaw's newer clients send a local-control proof, which is never authority here.
        (
            "/api/local-control/v1/pairing-code",
            Method::POST,
            Some(r#"{"proof":"remote-request"}"#),
            [
                S::OK,
                S::OK,
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
            ],
        ),
        // Import needs host authority; an empty list is refused after that check.
        (
            "/api/local-control/v1/devices/import",
            Method::POST,
            Some(r#"{"devices":[]}"#),
            [
                S::BAD_REQUEST,
                S::BAD_REQUEST,
                S::FORBIDDEN,
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
            ],
        ),
        // Exchange is anonymous; with no pending code every principal gets 404.
        (
            "/api/pair/exchange",
            Method::POST,
            Some(r#"{"code":"ABCD-EFGH","deviceName":"laptop"}"#),
            [
                S::NOT_FOUND,
                S::NOT_FOUND,
                S::NOT_FOUND,
                S::NOT_FOUND,
                S::NOT_FOUND,
            ],
        ),
    ];
    for (uri, method, body, expected) in rows {
        for (who, want) in ALL.into_iter().zip(expected) {
            let h = harness_for(who);
            let (status, resp) = h.call(who, method.clone(), uri, body).await;
            assert_eq!(status, want, "{who:?} {method} {uri}: {resp}");
        }
    }
}

#[tokio::test]
async fn events_and_hub_need_authority() {
    for who in ALL {
        let h = harness_for(who);
        let (status, _) = h.call(who, Method::GET, "/api/events", None).await;
        let want = match who {
            Who::LocalProcess | Who::LocalOperator => StatusCode::OK,
            Who::Device => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        assert_eq!(status, want, "{who:?}");
    }
    // Without an upgrade the hub refuses anonymous callers before anything else.
    let h = harness(LOCAL);
    let (status, _) = h
        .call(Who::Anonymous, Method::GET, "/hub/session", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pairing_flow_and_errors() {
    let h = harness(LOCAL);
    let (_, code) = h
        .call(
            Who::LocalProcess,
            Method::POST,
            "/api/local-control/v1/pairing-code",
            None,
        )
        .await;
    let code = code["formattedCode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 9);

    let body = |c: &str, n: &str| format!(r#"{{"code":"{c}","deviceName":"{n}"}}"#);
    // 400: malformed body, bad name, bad code shape.
    assert_eq!(
        h.call(
            Who::Anonymous,
            Method::POST,
            "/api/pair/exchange",
            Some("{")
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.call(
            Who::Anonymous,
            Method::POST,
            "/api/pair/exchange",
            Some(&body(&code, "a\\u0007b"))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    // 409: name taken (checked after the code).
    assert_eq!(
        h.call(
            Who::Anonymous,
            Method::POST,
            "/api/pair/exchange",
            Some(&body(&code, "phone"))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    // 401: wrong code.
    let wrong = if code.starts_with('2') {
        "3333-3333"
    } else {
        "2222-2222"
    };
    assert_eq!(
        h.call(
            Who::Anonymous,
            Method::POST,
            "/api/pair/exchange",
            Some(&body(wrong, "laptop"))
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    // 200, lower-case accepted.
    let (status, token) = h
        .call(
            Who::Anonymous,
            Method::POST,
            "/api/pair/exchange",
            Some(&body(&code.to_lowercase(), "laptop")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(token["token"].as_str().unwrap().len(), 64);
    // Single use: 404 now; and the limiter (5/min per client) answers 429 with Retry-After.
    let (status, _) = h
        .call(
            Who::Anonymous,
            Method::POST,
            "/api/pair/exchange",
            Some(&body(&code, "other")),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The new token authenticates.
    let authed = h
        .state
        .devices
        .authenticate(token["token"].as_str().unwrap())
        .await;
    assert_eq!(authed.as_deref(), Some("laptop"));
}

#[tokio::test]
async fn exchange_429_carries_retry_after() {
    let h = harness(LOCAL);
    let mut last = None;
    for _ in 0..6 {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/api/pair/exchange")
            .body(Body::from(r#"{"code":"ABCD-EFGH","deviceName":"x"}"#))
            .unwrap();
        req.extensions_mut().insert(ConnInfo {
            listener: Listener::Public,
            peer: "203.0.113.9".parse().unwrap(),
        });
        last = Some(router(h.state.clone()).oneshot(req).await.unwrap());
    }
    let resp = last.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry));
}

/// One exchange through `peer` with `X-Forwarded-For: xff` (when given); no code is pending, so
/// an admitted attempt is a 404 and a throttled one a 429.
async fn exchange_via(h: &Harness, peer: &str, xff: Option<&str>) -> StatusCode {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/pair/exchange");
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    let mut req = req
        .body(Body::from(r#"{"code":"ABCD-EFGH","deviceName":"x"}"#))
        .unwrap();
    req.extensions_mut().insert(ConnInfo {
        listener: Listener::Public,
        peer: peer.parse().unwrap(),
    });
    router(h.state.clone()).oneshot(req).await.unwrap().status()
}

/// The adversary: a stranger behind a reverse proxy that writes the client's address with a
/// port (or brackets). Read strictly, every such entry fell back to the proxy's address, so one
/// stranger used up the budget of every client behind the proxy.
#[tokio::test]
async fn forwarded_addresses_with_ports_key_the_limiter_on_the_client() {
    let h = harness(REVERSE_PROXY);
    let proxy = "192.0.2.1";
    for _ in 0..5 {
        assert_eq!(
            exchange_via(&h, proxy, Some("203.0.113.7:4711")).await,
            StatusCode::NOT_FOUND
        );
    }
    // The same client, whatever port or form it comes with, is out of budget.
    for xff in [
        "203.0.113.7:4712",
        "203.0.113.7",
        "198.51.100.1, 203.0.113.7,",
    ] {
        assert_eq!(
            exchange_via(&h, proxy, Some(xff)).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{xff}"
        );
    }
    // Other clients behind the proxy, and the proxy itself, are not.
    for xff in [
        Some("203.0.113.8:4711"),
        Some("[2001:db8::7]:4711"),
        Some("[2001:db8::8]"),
        None,
    ] {
        assert_eq!(
            exchange_via(&h, proxy, xff).await,
            StatusCode::NOT_FOUND,
            "{xff:?}"
        );
    }
    // An entry that is still no address is keyed on the proxy (and warned about).
    for _ in 0..4 {
        assert_eq!(
            exchange_via(&h, proxy, Some("unknown")).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        exchange_via(&h, proxy, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        exchange_via(&h, proxy, Some("203.0.113.9")).await,
        StatusCode::NOT_FOUND
    );
    // A loopback peer is never the proxy in reverse-proxy mode: its header is ignored.
    for _ in 0..5 {
        assert_eq!(
            exchange_via(&h, "127.0.0.1", Some("203.0.113.10:1")).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        exchange_via(&h, "127.0.0.1", Some("203.0.113.11:1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn bad_bearer_is_401_even_from_loopback_in_local_mode() {
    let h = harness(LOCAL);
    let mut req = Request::builder()
        .uri("/api/whoami")
        .header("authorization", "Bearer 00")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnInfo {
        listener: Listener::Public,
        peer: "127.0.0.1".parse().unwrap(),
    });
    let resp = router(h.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn operator_and_client_cert_headers_on_the_public_listener_change_nothing() {
    for (mode, who, expected) in [
        (LOCAL, Who::Anonymous, "Anonymous"),
        (REVERSE_PROXY, Who::LoopbackInProxyMode, "Anonymous"),
    ] {
        let h = harness(mode);
        let peer = if who == Who::Anonymous {
            "203.0.113.5"
        } else {
            "127.0.0.1"
        };
        let mut req = Request::builder()
            .uri("/api/whoami")
            .header("netclaw-operator-caller-uid", "0")
            .header("netclaw-operator-caller-user", "root")
            .header(
                "x-forwarded-client-cert",
                "Hash=abc;URI=spiffe://netclaw.internal/host/x/operator-agent",
            )
            .header("x-client-cert", "-----BEGIN CERTIFICATE-----")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnInfo {
            listener: Listener::Public,
            peer: peer.parse().unwrap(),
        });
        let resp = router(h.state.clone()).oneshot(req).await.unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap();
        assert_eq!(body["principal"], expected);
        assert!(body["caller"].is_null());
    }
}

#[tokio::test]
async fn forwarded_loopback_from_a_trusted_proxy_is_not_local_process() {
    let h = harness(r#"{"Daemon":{"TrustedProxies":["127.0.0.1"]}}"#);
    let mut req = Request::builder()
        .uri("/api/whoami")
        .header("x-forwarded-for", "203.0.113.50")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnInfo {
        listener: Listener::Public,
        peer: "127.0.0.1".parse().unwrap(),
    });
    let resp = router(h.state.clone()).oneshot(req).await.unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(body["principal"], "Anonymous");
}

#[tokio::test]
async fn device_names_as_phones_give_them() {
    let h = harness(LOCAL);
    let mint = |h: &Harness| {
        let h = h.state.clone();
        async move {
            let p = Principal::LocalProcess;
            h.pairing
                .mint(&p, SystemTime::now())
                .unwrap()
                .formatted_code
        }
    };
    // Each from its own address: the rate limit is not what this test is about.
    let exchange = |h: &Harness, n: u8, body: String| {
        let state = h.state.clone();
        async move {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri("/api/pair/exchange")
                .body(Body::from(body))
                .unwrap();
            req.extensions_mut().insert(ConnInfo {
                listener: Listener::Public,
                peer: IpAddr::from([198, 51, 100, n]),
            });
            let resp = router(state).oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            (status, v)
        }
    };
    let names = [
        "Aaron\u{2019}s iPhone",
        "\u{1F4F1} Pixel \u{1F680}",
        "\u{5C0F}\u{660E}\u{7684} iPad",
    ];
    for (i, name) in names.iter().enumerate() {
        let code = mint(&h).await;
        let body = serde_json::json!({ "code": code, "deviceName": format!("  {name} ") });
        let (status, v) = exchange(&h, i as u8 + 1, body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{name:?}: {v}");
    }
    let listed: Vec<String> = h
        .state
        .devices
        .list(&Principal::LocalProcess)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    for name in names {
        assert!(listed.iter().any(|n| n == name), "{name:?} in {listed:?}");
    }
    let code = mint(&h).await;
    for (i, (name, message)) in [
        (" \t ".to_owned(), "deviceName must not be blank"),
        (
            "a\u{7}b".to_owned(),
            "deviceName must not contain control characters",
        ),
        (
            "a\nb".to_owned(),
            "deviceName must not contain control characters",
        ),
        (
            "\u{202E}enohp".to_owned(),
            "deviceName must not contain control characters",
        ),
        ("x".repeat(65), "deviceName must be at most 64 characters"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = serde_json::json!({ "code": code, "deviceName": name });
        let (status, v) = exchange(&h, 100 + i as u8, body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}");
        assert_eq!(v["error"], message, "{name:?}: {v}");
    }
}

#[tokio::test]
async fn status_shows_addresses_and_the_limiter_only_to_host_authority() {
    let h = harness(LOCAL);
    let (status, device) = h
        .call(Who::Device, Method::GET, "/api/health/status", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for field in ["listeners", "operatorCertificates", "pairing"] {
        assert!(
            device.get(field).is_none(),
            "{field} shown to a device: {device}"
        );
    }
    assert!(device["build"]["version"].is_string(), "{device}");
    for who in [Who::LocalProcess, Who::LocalOperator] {
        let (status, full) = h.call(who, Method::GET, "/api/health/status", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            full["listeners"]["public"], "127.0.0.1:5199",
            "{who:?}: {full}"
        );
        assert_eq!(full["pairing"]["lockedOutSources"], 0, "{who:?}: {full}");
    }
}

/// What netclaw's own clients read: the readiness body and generation header its probes
/// check, and the coded refusals that replace what netclaw would allow.
#[tokio::test]
async fn netclaw_clients_get_their_shapes_and_coded_refusals() {
    let h = harness(LOCAL);
    let req = Request::builder()
        .uri("/api/health/ready")
        .body(Body::empty())
        .unwrap();
    let mut req = req;
    req.extensions_mut().insert(ConnInfo {
        listener: Listener::Public,
        peer: "203.0.113.5".parse::<IpAddr>().unwrap(),
    });
    let resp = router(h.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-netclaw-generation"], "1");
    let body = to_bytes(resp.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"\"healthy\"");

    let (_, status) = h
        .call(Who::LocalProcess, Method::GET, "/api/health/status", None)
        .await;
    for field in ["build", "process", "connectors", "persistence", "telemetry"] {
        assert!(!status[field].is_null(), "{field} missing: {status}");
    }
    assert_eq!(status["overall"], "healthy");
    assert_eq!(status["process"]["pid"], std::process::id());

    let (_, devices) = h
        .call(Who::LocalProcess, Method::GET, "/api/pair/devices", None)
        .await;
    let phone = &devices[0];
    assert_eq!(phone["name"], "phone");
    assert!(
        phone["createdAt"].as_str().unwrap().ends_with("+00:00"),
        "{phone}"
    );
    assert!(phone["lastUsedAt"].is_string(), "{phone}");

    let (status, refused) = h
        .call(Who::Device, Method::GET, "/api/pair/devices", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["code"], "host-authority-required", "{refused}");
    let (status, refused) = h
        .call(
            Who::Device,
            Method::DELETE,
            "/api/pair/devices/tablet",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["code"], "host-authority-required", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("only revoke itself"),
        "{refused}"
    );

    let h = harness(REVERSE_PROXY);
    for who in [Who::Anonymous, Who::LoopbackInProxyMode, Who::Device] {
        let (status, refused) = h
            .call(
                who,
                Method::POST,
                "/api/local-control/v1/pairing-code",
                Some(r#"{"proof":"CfDJ8remote"}"#),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{who:?}");
        assert_eq!(
            refused["code"], "local-control-proof-unsupported",
            "{refused}"
        );
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("netclaw daemon pair"),
            "{refused}"
        );
    }
}
