//! The operator listener over real sockets: the `netclaw-daemon` binary on an install tree, real
//! TLS 1.3 handshakes with certificates issued by the CA on disk (with `now` passed in), and
//! each refusal observed both on the wire and in the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use common::*;
use netclaw_pki::issue::ListenerNames;
use netclaw_pki::{
    AgentCertificate, CertificateLifetime, IssuedCertificate, OperatorCa, PrivateKey, SpiffeId,
};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::{HandshakeKind, ProtocolVersion};
use serde_json::json;

const CALLER: &[(&str, &str)] = &[
    ("Netclaw-Operator-Caller-Uid", "1000"),
    ("Netclaw-Operator-Caller-User", "alice"),
    ("Netclaw-Operator-Caller-Pid", "4242"),
];

fn agent_config(install: &Install) -> std::sync::Arc<rustls::ClientConfig> {
    client_config(
        &install.bundle(),
        Some((&install.agent.cert, &install.agent.key)),
        TLS13,
    )
}

/// A client configuration presenting `presented` (certificate and key) and trusting the install's
/// bundle.
fn presenting(
    install: &Install,
    presented: &netclaw_pki::AgentCertificate,
) -> std::sync::Arc<rustls::ClientConfig> {
    client_config(
        &install.bundle(),
        Some((&presented.cert, &presented.key)),
        TLS13,
    )
}

#[tokio::test]
async fn agent_certificate_is_local_operator_with_the_forwarded_caller() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    let tls = tls_connect(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut conn = HttpConn::new(tls);

    let plain = conn.send(&get("/api/whoami", &[])).await.unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.json(),
        json!({
            "principal": "LocalOperator",
            "name": install.agent_id().to_string(),
            "transport": "operator-mtls",
            "caller": null,
        })
    );

    // Same connection (keep-alive): the caller the agent forwards is reflected.
    let with_caller = conn.send(&get("/api/whoami", CALLER)).await.unwrap();
    assert_eq!(with_caller.status, 200);
    assert_eq!(with_caller.json()["principal"], "LocalOperator");
    assert_eq!(
        with_caller.json()["caller"],
        json!({ "uid": 1000, "user": "alice", "pid": 4242 })
    );

    // Host authority, recorded with the caller.
    let minted = conn
        .send(&request(
            "POST",
            "/api/local-control/v1/pairing-code",
            CALLER,
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(
        minted.status,
        200,
        "{}",
        String::from_utf8_lossy(&minted.body)
    );
    let code = minted.json()["formattedCode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 9, "{code}");
    let serial = install.agent.cert.serial.to_string();
    let event = wait_for_audit(
        &install,
        "pairing-code-minted",
        &[&serial, "uid=1000", "user=alice", "pid=4242"],
    )
    .await;
    assert!(
        !event.to_string().contains(&code.replace('-', "")),
        "the audit log must not hold the code: {event}"
    );

    let status = conn.send(&get("/api/health/status", &[])).await.unwrap();
    assert_eq!(status.status, 200);
    let status = status.json();
    assert_eq!(status["mode"], "local");
    assert_eq!(status["listeners"]["operator"], daemon.operator.to_string());
    assert!(
        status["operatorCertificates"]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["serial"] == serial.as_str()),
        "{status}"
    );
}

/// A certificate for the install's agent identity, issued by a CA the daemon does not trust.
fn from_another_ca(install: &Install, now: SystemTime) -> AgentCertificate {
    let names = ListenerNames {
        ips: vec![LOOPBACK],
        dns: Vec::new(),
    };
    OperatorCa::generate("other", &names, now)
        .unwrap()
        .issue_agent(&install.agent_id(), now, CertificateLifetime::default())
        .unwrap()
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let install = Install::new(Setup::default());
    let now = SystemTime::now();
    // Same identity, same serial bookkeeping, different CA.
    let foreign = from_another_ca(&install, now);
    install.register(&foreign.cert, &install.agent_id().to_string(), now);
    let daemon = start_daemon(&install).await;

    let how = expect_refused(daemon.operator, presenting(&install, &foreign)).await;
    assert!(how.contains("UnknownCA"), "{how}");
    wait_for_audit(&install, "handshake-refused", &["127.0.0.1", "wrong-ca"]).await;
}

/// A certificate for this host's exact SPIFFE id, signed by the real CA, but with the wrong
/// extended key usage.
fn issue_with_eku(
    install: &Install,
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> (IssuedCertificate, PrivateKey) {
    let key = PrivateKey::generate().unwrap();
    let pair = KeyPair::from_pem(&install.ca.key().to_pem()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&install.ca.certificate().der, pair).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "netclaw operator agent");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.subject_alt_names = vec![SanType::URI(
        install.agent_id().to_string().try_into().unwrap(),
    )];
    params.extended_key_usages = ekus;
    params.use_authority_key_identifier_extension = true;
    let leaf = KeyPair::from_pem(&key.to_pem()).unwrap();
    let cert = params.signed_by(&leaf, &issuer).unwrap();
    let cert = IssuedCertificate::from_der(cert.der().clone()).unwrap();
    install.register(&cert, &install.agent_id().to_string(), SystemTime::now());
    (cert, key)
}

#[tokio::test]
async fn server_auth_certificate_is_refused() {
    let install = Install::new(Setup::default());
    let server_only = issue_with_eku(&install, vec![ExtendedKeyUsagePurpose::ServerAuth]);
    let both = issue_with_eku(
        &install,
        vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
    );
    let daemon = start_daemon(&install).await;

    for (cert, key) in [&server_only, &both] {
        let how = expect_refused(
            daemon.operator,
            client_config(&install.bundle(), Some((cert, key)), TLS13),
        )
        .await;
        assert!(how.contains("alert"), "{how}");
    }
    // serverAuth only: webpki finds no clientAuth. Both: the agent profile allows clientAuth only.
    wait_for_audit(&install, "handshake-refused", &["wrong-eku", "RequiredEku"]).await;
    wait_for_audit(
        &install,
        "handshake-refused",
        &["wrong-eku", "clientAuth only"],
    )
    .await;
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let install = Install::new(Setup::default());
    let three_days_ago = SystemTime::now() - Duration::from_secs(3 * 86_400);
    let expired =
        install.issue_registered(&install.agent_id(), three_days_ago, "1d".parse().unwrap());
    assert!(expired.cert.not_after < SystemTime::now());
    let daemon = start_daemon(&install).await;

    let how = expect_refused(daemon.operator, presenting(&install, &expired)).await;
    assert!(how.contains("CertificateExpired"), "{how}");
    wait_for_audit(&install, "handshake-refused", &["expired"]).await;
}

#[tokio::test]
async fn certificate_for_another_host_id_is_refused() {
    let install = Install::new(Setup::default());
    let other = SpiffeId::operator_agent(
        install.trust_domain.clone(),
        other_host_id(&install.host_id),
    );
    let foreign =
        install.issue_registered(&other, SystemTime::now(), CertificateLifetime::default());
    let daemon = start_daemon(&install).await;

    let how = expect_refused(daemon.operator, presenting(&install, &foreign)).await;
    assert!(how.contains("alert"), "{how}");
    wait_for_audit(&install, "handshake-refused", &["wrong-host-id"]).await;
}

#[tokio::test]
async fn missing_client_certificate_is_refused() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    let how = expect_refused(
        daemon.operator,
        client_config(&install.bundle(), None, TLS13),
    )
    .await;
    assert!(how.contains("CertificateRequired"), "{how}");
    wait_for_audit(&install, "handshake-refused", &["no-client-certificate"]).await;
}

#[tokio::test]
async fn tls12_only_client_is_refused() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    let config = client_config(
        &install.bundle(),
        Some((&install.agent.cert, &install.agent.key)),
        &[&rustls::version::TLS12],
    );
    let err = tls_connect(daemon.operator, config)
        .await
        .expect_err("a TLS 1.2-only handshake must fail");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    wait_for_audit(
        &install,
        "handshake-refused",
        &["127.0.0.1", "incompatible-tls"],
    )
    .await;
}

#[tokio::test]
async fn plain_http_gets_no_http_response() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    let mut conn = http_from(Ipv4Addr::LOCALHOST, daemon.operator).await;
    // The write may already fail when the daemon has closed the connection.
    let _ = conn.write(&get("/api/health/ready", &[])).await;
    let answer = conn.read_until_closed().await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // At most a TLS alert record.
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
    wait_for_audit(&install, "handshake-refused", &["127.0.0.1", "not-tls"]).await;
}

#[tokio::test]
async fn revoked_serial_is_refused_on_new_reconnecting_and_open_connections() {
    let install = Install::new(Setup::default());
    let now = SystemTime::now();
    let second = install.issue_registered(&install.agent_id(), now, CertificateLifetime::default());
    let daemon = start_daemon(&install).await;
    let config = client_config(&install.bundle(), Some((&second.cert, &second.key)), TLS13);

    // Two open connections with the serial. The second reuses the client config, which would
    // resume a TLS session if the daemon issued tickets; it issues none, so every connection
    // presents its certificate to the verifier.
    let mut open = HttpConn::new(tls_connect(daemon.operator, config.clone()).await.unwrap());
    let before = open.send(&get("/api/whoami", &[])).await.unwrap();
    assert_eq!(before.json()["principal"], "LocalOperator");
    let resumed = tls_connect(daemon.operator, config.clone()).await.unwrap();
    assert_eq!(
        resumed.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Full)
    );
    let mut resumed = HttpConn::new(resumed);
    let before = resumed.send(&get("/api/whoami", &[])).await.unwrap();
    assert_eq!(before.json()["principal"], "LocalOperator");

    // Revoke on disk; the daemon picks the registry up by its mtime.
    install.revoke(&second.cert.serial);
    let fresh = || client_config(&install.bundle(), Some((&second.cert, &second.key)), TLS13);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match try_whoami(daemon.operator, fresh()).await {
            Err(_) => break,
            // 401: the registry was reloaded between this handshake and its request.
            Ok(resp) => assert!(matches!(resp.status, 200 | 401), "{}", resp.status),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked serial is still accepted"
        );
        tokio::time::sleep(POLL).await;
    }
    let how = expect_refused(daemon.operator, fresh()).await;
    assert!(how.contains("CertificateRevoked"), "{how}");
    wait_for_audit(
        &install,
        "handshake-refused",
        &["127.0.0.1", "revoked-or-superseded-serial"],
    )
    .await;

    // Reconnecting with the config that holds the earlier session cannot resume past the
    // verifier either.
    let serial = second.cert.serial.to_string();
    let how = expect_refused(daemon.operator, config.clone()).await;
    assert!(how.contains("CertificateRevoked"), "{how}");

    // The connections that were already open are cut by the daemon without another request.
    for conn in [&mut open, &mut resumed] {
        assert!(conn.read_until_closed().await.is_empty());
    }
    // (The probes above that were accepted before the reload may be cut and counted too.)
    let closed = audit_events(&install)
        .into_iter()
        .filter(|e| {
            e["kind"] == "connection-closed"
                && e["principal"].as_str().unwrap().contains(&serial)
                && e["detail"] == "revoked-serial"
        })
        .count();
    assert!(closed >= 2, "{:#?}", audit_events(&install));

    // The first agent certificate is untouched.
    let still = try_whoami(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    assert_eq!(still.json()["principal"], "LocalOperator");
}

#[tokio::test]
async fn a_revoked_serials_hub_session_is_closed_without_a_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let install = Install::new(Setup::default());
    let now = SystemTime::now();
    let second = install.issue_registered(&install.agent_id(), now, CertificateLifetime::default());
    let daemon = start_daemon(&install).await;
    let config = client_config(&install.bundle(), Some((&second.cert, &second.key)), TLS13);

    // The holder of the key subscribes to audit events over an upgraded hub session, which
    // leaves the connection's serve loop.
    let mut tls = tls_connect(daemon.operator, config).await.unwrap();
    tls.write_all(
        b"GET /hub/session HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(within(tls.read(&mut byte)).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    // Revoked on disk: the session ends with a policy close, without the client sending anything.
    install.revoke(&second.cert.serial);
    let mut frame = [0u8; 4];
    within(tls.read_exact(&mut frame)).await.unwrap();
    assert_eq!(frame[0] & 0x0f, 0x8, "a close frame");
    assert_eq!(
        u16::from_be_bytes([frame[2], frame[3]]),
        1008,
        "policy violation"
    );
    wait_for_audit(
        &install,
        "connection-closed",
        &[&second.cert.serial.to_string(), "revoked-serial"],
    )
    .await;
}

#[tokio::test]
async fn source_outside_allowed_sources_is_dropped() {
    let install = Install::new(Setup {
        allowed_sources: Some(vec!["127.0.0.2"]),
        ..Setup::default()
    });
    let daemon = start_daemon(&install).await;

    let how = expect_refused(daemon.operator, agent_config(&install)).await;
    assert!(!how.is_empty());
    wait_for_audit(
        &install,
        "handshake-refused",
        &["source-not-allowed: 127.0.0.1"],
    )
    .await;

    let tls = tls_connect_from(
        Ipv4Addr::new(127, 0, 0, 2),
        daemon.operator,
        agent_config(&install),
    )
    .await
    .unwrap();
    let who = HttpConn::new(tls)
        .send(&get("/api/whoami", &[]))
        .await
        .unwrap();
    assert_eq!(who.json()["principal"], "LocalOperator");
}

fn presented_serial(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    netclaw_pki::verify::inspect(&der)
        .unwrap()
        .serial
        .to_string()
}

#[tokio::test]
async fn listener_certificate_renews_itself_and_a_corrupt_one_is_not_used() {
    let install = Install::new(Setup::default());
    // A listener certificate issued 300 days ago (1-year lifetime): less than a third is left.
    let names = ListenerNames {
        ips: vec![LOOPBACK],
        dns: Vec::new(),
    };
    let old = install
        .ca
        .issue_server(
            &names,
            SystemTime::now() - Duration::from_secs(300 * 86_400),
        )
        .unwrap();
    netclaw_pki::store::save_server(&install.pki, &old).unwrap();
    let daemon = start_daemon(&install).await;

    wait_for_audit(&install, "cert-renewed", &["operator listener certificate"]).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let renewed = loop {
        let tls = tls_connect(daemon.operator, agent_config(&install))
            .await
            .unwrap();
        let serial = presented_serial(&tls);
        if serial != old.cert.serial.to_string() {
            break serial;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still presenting the old certificate"
        );
        tokio::time::sleep(POLL).await;
    };

    // A corrupt listener certificate on disk is refused; the listener keeps the renewed one.
    std::fs::write(
        install.pki.server_cert(),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !daemon.log().contains("cannot be used") {
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(POLL).await;
    }
    let tls = tls_connect(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    assert_eq!(presented_serial(&tls), renewed);
    let resp = try_whoami(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn metrics_count_handshakes_requests_and_show_expiry_on_the_operator_listener_only() {
    let install = Install::new(Setup::default());
    let now = SystemTime::now();
    let foreign = from_another_ca(&install, now);
    let daemon = start_daemon(&install).await;

    let resp = try_whoami(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    expect_refused(daemon.operator, presenting(&install, &foreign)).await;
    wait_for_audit(&install, "handshake-refused", &["wrong-ca"]).await;

    let tls = tls_connect(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    let mut conn = HttpConn::new(tls);
    let resp = conn.send(&get("/metrics", &[])).await.unwrap();
    assert_eq!(resp.status, 200);
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    for needle in [
        "netclaw_daemon_handshakes_total{result=\"accepted\",reason=\"ok\"}",
        "netclaw_daemon_handshakes_total{result=\"refused\",reason=\"wrong-ca\"} 1",
        "netclaw_daemon_requests_total{principal=\"LocalOperator\",status=\"200\"}",
        &format!(
            "netclaw_daemon_certificate_not_after_seconds{{kind=\"agent\",serial=\"{}\"}} {}",
            install.agent.cert.serial,
            netclaw_pki::identity::unix_seconds(install.agent.cert.not_after)
        ),
        "netclaw_daemon_certificate_not_after_seconds{kind=\"server\"",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }

    // Not on the public listener, not even for a local process.
    let public = send_once(daemon.public, &get("/metrics", &[])).await;
    assert_eq!(public.status, 404);
}

#[tokio::test]
async fn renewal_issues_this_hosts_identity_for_a_new_key_only() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;
    let renew = |csr: String| {
        let body = serde_json::to_vec(&json!({ "csr": csr })).unwrap();
        request(
            "POST",
            "/api/local-control/v1/pki/certificate",
            &[("content-type", "application/json")],
            &body,
        )
    };

    // The key the agent already holds: refused.
    let same = install.agent.key.certificate_signing_request_pem().unwrap();
    let tls = tls_connect(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    let resp = HttpConn::new(tls).send(&renew(same)).await.unwrap();
    assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(&resp.body));

    // A new key: a certificate for this host's identity, the old serial superseded.
    let key = PrivateKey::generate().unwrap();
    let tls = tls_connect(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    let resp = HttpConn::new(tls)
        .send(&renew(key.certificate_signing_request_pem().unwrap()))
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let renewed = resp.json();
    let cert =
        IssuedCertificate::from_pem(renewed["certificate"].as_str().unwrap().as_bytes()).unwrap();
    let info = netclaw_pki::verify::inspect(&cert.der).unwrap();
    assert_eq!(info.sans, vec![format!("URI:{}", install.agent_id())]);
    assert_eq!(
        renewed["previousSerial"],
        install.agent.cert.serial.to_string()
    );
    // The certificate is for the new key (the SPKI ends with the raw public key).
    let bits = netclaw_pki::verify::public_key_bits(&cert.der).unwrap();
    assert!(key.public_key_der().unwrap().ends_with(&bits));
    let registry = netclaw_pki::store::load_registry(&install.pki).unwrap();
    assert!(matches!(
        registry.get(&install.agent.cert.serial).unwrap().status,
        netclaw_pki::registry::Status::Superseded { .. }
    ));

    // Not from the public listener.
    let public = send_once(
        daemon.public,
        &renew(
            PrivateKey::generate()
                .unwrap()
                .certificate_signing_request_pem()
                .unwrap(),
        ),
    )
    .await;
    assert!(matches!(public.status, 401 | 403), "{}", public.status);
}

/// `POST /api/local-control/v1/pki/certificate` for a CSR of `key`, with `headers`.
fn renewal(key: &PrivateKey, headers: &[(&str, &str)]) -> Vec<u8> {
    let csr = key.certificate_signing_request_pem().unwrap();
    let body = serde_json::to_vec(&json!({ "csr": csr })).unwrap();
    request(
        "POST",
        "/api/local-control/v1/pki/certificate",
        headers,
        &body,
    )
}

/// Renews over a new connection presenting `presented`; returns the response.
async fn renew_as(
    daemon: &DaemonProcess,
    install: &Install,
    presented: &netclaw_pki::AgentCertificate,
    key: &PrivateKey,
) -> Response {
    let tls = tls_connect(daemon.operator, presenting(install, presented))
        .await
        .unwrap();
    HttpConn::new(tls).send(&renewal(key, &[])).await.unwrap()
}

/// The agent certificate a successful renewal answered, with the key it was issued for.
fn renewed(resp: &Response, key: PrivateKey) -> netclaw_pki::AgentCertificate {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let pem = resp.json()["certificate"].as_str().unwrap().to_owned();
    netclaw_pki::AgentCertificate {
        key,
        cert: IssuedCertificate::from_pem(pem.as_bytes()).unwrap(),
    }
}

/// Serial and status of every registry entry (first-use records aside).
fn registry_statuses(
    install: &Install,
) -> Vec<(netclaw_pki::Serial, netclaw_pki::registry::Status)> {
    netclaw_pki::store::load_registry(&install.pki)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.serial, e.status))
        .collect()
}

#[tokio::test]
async fn renewal_forwarded_for_a_local_caller_is_refused_and_audited() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;
    let before = registry_statuses(&install);
    let tls = tls_connect(daemon.operator, agent_config(&install))
        .await
        .unwrap();
    let mut conn = HttpConn::new(tls);

    // What the agent's proxy forwards for a caller (here claiming root), and a malformed uid.
    let claims_root: &[(&str, &str)] = &[
        ("Netclaw-Operator-Caller-Uid", "0"),
        ("Netclaw-Operator-Caller-User", "root"),
        ("Netclaw-Operator-Caller-Pid", "1"),
    ];
    for headers in [CALLER, claims_root, &[("Netclaw-Operator-Caller-Uid", "x")]] {
        let key = PrivateKey::generate().unwrap();
        let resp = conn.send(&renewal(&key, headers)).await.unwrap();
        assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
        assert_eq!(
            resp.json(),
            json!({ "error": "only the operator agent's own request can renew its certificate" })
        );
    }
    let serial = install.agent.cert.serial.to_string();
    wait_for_audit(
        &install,
        "renewal-refused",
        &[&serial, "uid=1000", "user=alice", "forwarded-caller"],
    )
    .await;
    wait_for_audit(
        &install,
        "renewal-refused",
        &[&serial, "uid=0", "user=root", "forwarded-caller"],
    )
    .await;
    // Nothing was issued: the registry lists what it did, in the same states.
    assert_eq!(registry_statuses(&install), before);
    assert!(audit_events(&install)
        .iter()
        .all(|e| e["kind"] != "cert-renewed"));

    // The agent's own request (no caller headers) renews.
    let key = PrivateKey::generate().unwrap();
    let resp = conn.send(&renewal(&key, &[])).await.unwrap();
    let new = renewed(&resp, key);
    assert_eq!(registry_statuses(&install).len(), before.len() + 1);
    wait_for_audit(&install, "cert-renewed", &[&new.cert.serial.to_string()]).await;
}

#[tokio::test]
async fn a_superseded_key_cannot_renew_once_the_agent_uses_its_successor() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    // `netclaw pki rotate`: the agent renews, then connects with its new certificate.
    let key = PrivateKey::generate().unwrap();
    let rotated = renewed(
        &renew_as(&daemon, &install, &install.agent, &key).await,
        key,
    );
    let tls = tls_connect(daemon.operator, presenting(&install, &rotated))
        .await
        .unwrap();
    let whoami = HttpConn::new(tls)
        .send(&get("/api/whoami", &[]))
        .await
        .unwrap();
    assert_eq!(whoami.status, 200);

    // The old key (copied before the rotation), inside the grace period: refused and audited
    // as a possible clone; nothing issued, the agent's serial still active.
    let before = registry_statuses(&install);
    let stolen = renew_as(
        &daemon,
        &install,
        &install.agent,
        &PrivateKey::generate().unwrap(),
    )
    .await;
    assert_eq!(
        stolen.status,
        403,
        "{}",
        String::from_utf8_lossy(&stolen.body)
    );
    let old = install.agent.cert.serial.to_string();
    wait_for_audit(
        &install,
        "renewal-refused",
        &[&old, "superseded-successor-in-use"],
    )
    .await;
    wait_for_audit(&install, "possible-key-clone", &[&old]).await;
    assert_eq!(registry_statuses(&install), before);
    let registry = netclaw_pki::store::load_registry(&install.pki).unwrap();
    assert_eq!(
        registry.get(&rotated.cert.serial).unwrap().status,
        netclaw_pki::registry::Status::Active
    );
    // The successor's first handshake is on record (it survives a restart of the daemon).
    assert!(registry
        .get(&rotated.cert.serial)
        .unwrap()
        .first_used
        .is_some());

    // The agent itself still renews.
    let key = PrivateKey::generate().unwrap();
    renewed(&renew_as(&daemon, &install, &rotated, &key).await, key);
}

#[tokio::test]
async fn a_key_replaced_offline_cannot_renew_even_before_its_successor_is_used() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    // `netclaw pki rotate --offline` (or a re-install): the agent's certificate is replaced;
    // the old one stays in its grace period, and the agent has not connected with the new one.
    let replacement = install.replace_agent(SystemTime::now(), Duration::from_secs(60));

    // Someone who copied the old key renews with it inside the grace period: the old serial
    // never asked for a renewal, so no answer was lost. Refused, audited, nothing issued.
    let before = registry_statuses(&install);
    let stolen = renew_as(
        &daemon,
        &install,
        &install.agent,
        &PrivateKey::generate().unwrap(),
    )
    .await;
    assert_eq!(
        stolen.status,
        403,
        "{}",
        String::from_utf8_lossy(&stolen.body)
    );
    let old = install.agent.cert.serial.to_string();
    wait_for_audit(
        &install,
        "renewal-refused",
        &[&old, "superseded-by-replacement"],
    )
    .await;
    assert_eq!(registry_statuses(&install), before);
    let registry = netclaw_pki::store::load_registry(&install.pki).unwrap();
    assert_eq!(
        registry
            .active(netclaw_pki::registry::CertificateKind::Agent)
            .map(|e| e.serial.clone())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&replacement.cert.serial)
    );
    assert_eq!(
        registry
            .get(&install.agent.cert.serial)
            .unwrap()
            .lost_answer_renewal,
        None
    );

    // The agent, with its new certificate, renews (once the daemon has re-read the registry).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while try_whoami(daemon.operator, presenting(&install, &replacement))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replacement is never admitted"
        );
        tokio::time::sleep(POLL).await;
    }
    let key = PrivateKey::generate().unwrap();
    renewed(&renew_as(&daemon, &install, &replacement, &key).await, key);
}

#[tokio::test]
async fn a_lost_renewal_answer_lets_the_superseded_serial_renew_once() {
    let install = Install::new(Setup::default());
    let daemon = start_daemon(&install).await;

    // A renewal whose answer the agent never got: the successor is never used.
    let lost = renew_as(
        &daemon,
        &install,
        &install.agent,
        &PrivateKey::generate().unwrap(),
    )
    .await;
    assert_eq!(lost.status, 200);
    let lost_serial = lost.json()["serial"].as_str().unwrap().to_owned();

    // The agent retries with its superseded serial: allowed, audited.
    let key = PrivateKey::generate().unwrap();
    let retried = renewed(
        &renew_as(&daemon, &install, &install.agent, &key).await,
        key,
    );
    let old = install.agent.cert.serial.to_string();
    wait_for_audit(&install, "lost-answer-renewal", &[&old, &lost_serial]).await;

    // Only once.
    let before = registry_statuses(&install);
    let again = renew_as(
        &daemon,
        &install,
        &install.agent,
        &PrivateKey::generate().unwrap(),
    )
    .await;
    assert_eq!(
        again.status,
        403,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    wait_for_audit(
        &install,
        "renewal-refused",
        &[&old, "lost-answer-renewal-used"],
    )
    .await;
    assert_eq!(registry_statuses(&install), before);
    assert_eq!(
        netclaw_pki::store::load_registry(&install.pki)
            .unwrap()
            .get(&retried.cert.serial)
            .unwrap()
            .status,
        netclaw_pki::registry::Status::Active
    );
}
