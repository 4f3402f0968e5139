//! The published snapshot, its reloader and its issuer, on a per-host CA written by the `pki`
//! crate's install code into a temporary directory. Time-dependent behaviour runs on tokio's
//! paused clock; handshakes run in memory (`tokio::io::duplex`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::refusal::RefusalReason;
use netclaw_pki::bootstrap::{bootstrap, BootstrapRequest};
use netclaw_pki::issue::ListenerNames;
use netclaw_pki::registry::{RefusalReason as SerialRefusal, Status};
use netclaw_pki::store::{self, AgentCredentials, AgentPaths, DaemonPkiPaths};
use netclaw_pki::verify::ExpectedAgent;
use netclaw_pki::{CertificateLifetime, PrivateKey, Serial, TrustDomain};
use rustls::pki_types::ServerName;
use tokio::sync::mpsc;

use super::reloader::{self, POLL};
use super::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Fixture {
    _dir: tempfile::TempDir,
    paths: DaemonPkiPaths,
    agent: AgentCredentials,
    expected: ExpectedAgent,
}

/// A fresh install: CA, listener certificate for 127.0.0.1, one active agent certificate.
fn install() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let paths = DaemonPkiPaths::new(dir.path().join("pki"));
    let agent = AgentPaths::new(dir.path().join("agent"));
    let machine_id = dir.path().join("machine-id");
    std::fs::write(&machine_id, b"4b2f1c0e9d8a7b6c5d4e3f2a1b0c9d8e\n").unwrap();
    let names = ListenerNames {
        ips: vec![LOOPBACK],
        dns: Vec::new(),
    };
    let trust_domain: TrustDomain = TrustDomain::DEFAULT.parse().unwrap();
    let done = bootstrap(
        &BootstrapRequest {
            pki: &paths,
            agent: &agent,
            machine_id: &machine_id,
            listener_ip: LOOPBACK,
            names: &names,
            trust_domain: &trust_domain,
            agent_lifetime: CertificateLifetime::new(Duration::from_secs(86_400)).unwrap(),
            replace_ca: false,
        },
        SystemTime::now(),
    )
    .unwrap();
    Fixture {
        paths,
        agent: store::load_agent(&agent).unwrap(),
        expected: ExpectedAgent {
            trust_domain,
            host_id: done.agent_id.host_id().clone(),
        },
        _dir: dir,
    }
}

fn load(f: &Fixture, lock_on_clone: bool) -> (OperatorPki, mpsc::Receiver<Presented>) {
    OperatorPki::from_local_ca(
        f.paths.clone(),
        f.expected.clone(),
        lock_on_clone,
        SystemTime::now(),
    )
    .unwrap()
}

/// Revokes `serial` on disk, as `netclaw pki revoke` does (under the registry lock).
fn revoke_on_disk(f: &Fixture, serial: &Serial) {
    let _lock = store::lock_registry(&f.paths).unwrap();
    let mut registry = store::load_registry(&f.paths).unwrap();
    assert!(registry.revoke(serial, SystemTime::now()));
    store::save_registry(&f.paths, &registry).unwrap();
}

fn status_of(snapshot: &PkiSnapshot, serial: &Serial) -> Status {
    snapshot
        .trust()
        .registry()
        .get(serial)
        .unwrap()
        .status
        .clone()
}

/// A wall clock that follows tokio's (paused) clock from the real time at the call.
fn paused_wall_clock() -> impl Fn() -> SystemTime {
    let (wall, start) = (SystemTime::now(), tokio::time::Instant::now());
    move || wall + start.elapsed()
}

/// A TLS 1.3 handshake in memory against `server`, presenting the agent's certificate.
/// Returns the listener certificate's serial the client saw, or the server's error.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    f: &Fixture,
    cert: &netclaw_pki::IssuedCertificate,
    key: &PrivateKey,
) -> Result<Serial, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in &f.agent.bundle {
        roots.add(ca.clone()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.der.clone()], key.to_rustls())
        .unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let name = ServerName::IpAddress(LOOPBACK.into());
    let (client, server) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
    let server = server?;
    let client = client?;
    // TLS 1.3: the client learns of a refused certificate only after its handshake "completed";
    // the server side is the one that decides, and it succeeded here.
    drop(server);
    let seen = client.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(netclaw_pki::verify::inspect(&seen).unwrap().serial)
}

#[tokio::test(start_paused = true)]
async fn a_changed_registry_file_publishes_exactly_one_snapshot() {
    let f = install();
    let (pki, presented) = load(&f, false);
    let pki = Arc::new(pki);
    let mut rx = pki.subscribe();
    let audit = Arc::new(crate::audit::Audit::new(None).unwrap());
    let drain = netclaw_core::serve::Drain::new();
    let task = tokio::spawn(reloader::run(
        pki.clone(),
        presented,
        audit,
        drain.handle().fired(),
    ));

    // Unchanged files publish nothing, however many polls pass.
    tokio::time::sleep(POLL * 5).await;
    assert!(!rx.has_changed().unwrap());
    assert_eq!(pki.current().generation(), 0);

    revoke_on_disk(&f, &f.agent.cert.serial);
    tokio::time::sleep(POLL * 5).await;
    assert!(rx.has_changed().unwrap());
    let snapshot = rx.borrow_and_update().clone();
    assert_eq!(snapshot.generation(), 1, "one change, one snapshot");
    assert!(matches!(
        status_of(&snapshot, &f.agent.cert.serial),
        Status::Revoked { .. }
    ));
    tokio::time::sleep(POLL * 5).await;
    assert!(!rx.has_changed().unwrap());

    drain.drain(Duration::from_secs(1)).await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_bad_listener_certificate_keeps_the_current_snapshot_and_says_why_once() {
    let f = install();
    let (pki, _presented) = load(&f, false);
    let before = pki.current();

    // Unparseable.
    std::fs::write(
        f.paths.server_cert(),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = reloader::reload(&pki).await.unwrap_err();
    assert!(matches!(e, SnapshotError::Pki(_)), "{e:?}");
    assert!(Arc::ptr_eq(&pki.current(), &before));
    // Reported once: the next poll sees the same files.
    assert!(reloader::reload(&pki).await.unwrap().is_none());

    // Well-formed, but from another CA: it does not verify against the bundle.
    let other = netclaw_pki::OperatorCa::generate(
        "otherhost",
        &ListenerNames {
            ips: vec![LOOPBACK],
            dns: Vec::new(),
        },
        SystemTime::now(),
    )
    .unwrap();
    let foreign = other
        .issue_server(
            &ListenerNames {
                ips: vec![LOOPBACK],
                dns: Vec::new(),
            },
            SystemTime::now(),
        )
        .unwrap();
    store::save_server(&f.paths, &foreign).unwrap();
    let e = reloader::reload(&pki).await.unwrap_err();
    assert!(
        matches!(e, SnapshotError::Pki(PkiError::Verify(_))),
        "{e:?}"
    );
    assert!(Arc::ptr_eq(&pki.current(), &before));

    // A good one from this CA is taken up.
    let ca = store::load_ca(&f.paths).unwrap();
    let good = ca
        .issue_server(
            &netclaw_pki::rotation::current_listener_names(&f.paths).unwrap(),
            SystemTime::now(),
        )
        .unwrap();
    store::save_server(&f.paths, &good).unwrap();
    let after = reloader::reload(&pki).await.unwrap().unwrap();
    assert_eq!(after.generation(), 1);
    assert_eq!(after.server().cert.serial, good.cert.serial);
}

#[tokio::test(start_paused = true)]
async fn a_revocation_by_the_issuer_cuts_an_open_connection_without_a_timer() {
    let f = install();
    let (pki, _presented) = load(&f, false);
    let pki = Arc::new(pki);
    let serial = f.agent.cert.serial.clone();
    // The holder of the key has an open connection (its handshake succeeded).
    handshake(pki.current().tls().clone(), &f, &f.agent.cert, &f.agent.key)
        .await
        .unwrap();
    let cut = tokio::spawn({
        let (pki, serial) = (pki.clone(), serial.clone());
        async move { pki.serial_refused(&serial).await }
    });
    tokio::task::yield_now().await;
    assert!(!cut.is_finished());

    let started = tokio::time::Instant::now();
    assert!(pki
        .issuer()
        .revoke(serial.clone(), SystemTime::now())
        .await
        .unwrap());
    let refusal = tokio::time::timeout(POLL * 10, cut)
        .await
        .expect("the open connection was not cut")
        .unwrap();
    assert_eq!(
        refusal.reason,
        RefusalReason::Serial(SerialRefusal::Revoked)
    );
    // No timer was involved: the paused clock did not move.
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(pki.current().generation(), 1);
    // The issuer's write is not published a second time by the reloader.
    assert!(reloader::reload(&pki).await.unwrap().is_none());
    // And the next handshake with that key is refused.
    let e = handshake(pki.current().tls().clone(), &f, &f.agent.cert, &f.agent.key)
        .await
        .unwrap_err();
    assert_eq!(
        crate::tls::handshake_refusal_reason(&e),
        RefusalReason::RevokedOrSupersededSerial
    );
}

#[tokio::test(start_paused = true)]
async fn a_superseded_serial_is_cut_when_its_grace_ends() {
    let f = install();
    let (pki, _presented) = load(&f, false);
    let old = f.agent.cert.serial.clone();
    let key = PrivateKey::generate().unwrap();
    let grace = Duration::from_secs(30);
    let renewed = pki
        .issuer()
        .renew_agent(
            old.clone(),
            key.certificate_signing_request_pem()
                .unwrap()
                .as_bytes()
                .to_vec(),
            CertificateLifetime::new(Duration::from_secs(86_400)).unwrap(),
            grace,
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(renewed.superseded, vec![old.clone()]);
    assert_eq!(pki.current().generation(), 1, "the renewal is published");

    let started = tokio::time::Instant::now();
    let refusal = pki.serial_refused_by(&old, paused_wall_clock()).await;
    assert_eq!(
        refusal.reason,
        RefusalReason::Serial(SerialRefusal::Superseded)
    );
    let waited = started.elapsed();
    // Grace is kept in whole seconds.
    assert!(
        waited > grace - Duration::from_secs(2) && waited <= grace + Duration::from_secs(1),
        "{waited:?}"
    );

    // The successor stays admitted.
    let successor = tokio::spawn({
        let pki = Arc::new(pki);
        let serial = renewed.cert.serial.clone();
        async move { pki.serial_refused(&serial).await }
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!successor.is_finished());
    successor.abort();
}

#[tokio::test]
async fn a_handshake_sees_the_certificate_and_registry_of_one_snapshot() {
    let f = install();
    let (pki, _presented) = load(&f, false);
    let first = pki.current();
    assert_eq!(
        first.certified_key().end_entity_cert().unwrap(),
        &first.server().cert.der
    );

    // A new listener certificate and a revocation are published together, after a handshake
    // took the first snapshot's configuration.
    let ca = store::load_ca(&f.paths).unwrap();
    let names = netclaw_pki::rotation::current_listener_names(&f.paths).unwrap();
    let next_server = ca.issue_server(&names, SystemTime::now()).unwrap();
    {
        let _lock = store::lock_registry(&f.paths).unwrap();
        let mut registry = store::load_registry(&f.paths).unwrap();
        registry.revoke(&f.agent.cert.serial, SystemTime::now());
        store::save_server(&f.paths, &next_server).unwrap();
        store::save_registry(&f.paths, &registry).unwrap();
    }
    let second = reloader::reload(&pki).await.unwrap().unwrap();

    // The first snapshot's handshake: its certificate, its registry (the serial admitted; the
    // open connection is then cut by the second snapshot, see the revocation test).
    let seen = handshake(first.tls().clone(), &f, &f.agent.cert, &f.agent.key)
        .await
        .unwrap();
    assert_eq!(seen, first.server().cert.serial);
    // The second's: its certificate, its registry.
    let e = handshake(second.tls().clone(), &f, &f.agent.cert, &f.agent.key)
        .await
        .unwrap_err();
    assert_eq!(
        crate::tls::handshake_refusal_reason(&e),
        RefusalReason::RevokedOrSupersededSerial
    );
    assert_eq!(
        second.certified_key().end_entity_cert().unwrap(),
        &next_server.cert.der
    );
}

#[tokio::test]
async fn an_issuer_write_is_published_even_when_another_file_is_broken() {
    let f = install();
    let (pki, _presented) = load(&f, false);
    let server = pki.server().cert.serial.clone();
    std::fs::write(f.paths.server_cert(), b"not a certificate").unwrap();
    let revoked = pki.issuer().lock_identity(SystemTime::now()).await.unwrap();
    assert_eq!(revoked, vec![f.agent.cert.serial.clone()]);
    let now = pki.current();
    assert_eq!(now.generation(), 1);
    assert!(matches!(
        status_of(&now, &f.agent.cert.serial),
        Status::Revoked { .. }
    ));
    // The listener keeps its certificate; the broken file is reported by the reloader.
    assert_eq!(now.server().cert.serial, server);
    assert!(reloader::reload(&pki).await.is_err());
}

/// The adversary: the holder of a stolen agent key, whose serial the operator revokes with
/// `netclaw pki revoke` (a write to the registry on disk) while the listener certificate on disk
/// cannot be used (expired after failed renewals, or damaged). The revocation must take effect
/// at the reloader's next poll, and the broken file must still be reported.
#[tokio::test(start_paused = true)]
async fn a_revocation_on_disk_takes_effect_while_the_listener_certificate_is_broken() {
    let f = install();
    let (pki, _presented) = load(&f, false);
    let server = pki.server().cert.serial.clone();
    std::fs::write(f.paths.server_cert(), b"not a certificate").unwrap();
    assert!(reloader::reload(&pki).await.is_err());
    assert_eq!(pki.current().generation(), 0, "nothing changed to publish");

    revoke_on_disk(&f, &f.agent.cert.serial);
    let e = reloader::reload(&pki).await.unwrap_err();
    assert!(matches!(e, SnapshotError::Pki(_)), "{e:?}");
    let now = pki.current();
    assert_eq!(now.generation(), 1);
    assert!(matches!(
        status_of(&now, &f.agent.cert.serial),
        Status::Revoked { .. }
    ));
    assert_eq!(now.server().cert.serial, server);
    // Reported once; the same files publish nothing more.
    assert!(reloader::reload(&pki).await.unwrap().is_none());
    assert_eq!(pki.current().generation(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_superseded_key_used_after_its_successor_settled_locks_the_identity() {
    let f = install();
    let (pki, mut presented) = load(&f, true);
    let pki = Arc::new(pki);
    let old = f.agent.cert.serial.clone();
    let key = PrivateKey::generate().unwrap();
    let renewed = pki
        .issuer()
        .renew_agent(
            old.clone(),
            key.certificate_signing_request_pem()
                .unwrap()
                .as_bytes()
                .to_vec(),
            CertificateLifetime::new(Duration::from_secs(86_400)).unwrap(),
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let t0 = SystemTime::now();
    let observed = pki
        .issuer()
        .handshake_completed(&renewed.cert.serial, t0)
        .await;
    assert!(observed.suspicion.is_none());
    // Inside the settle time, the old key is the agent still switching over.
    let observed = pki
        .issuer()
        .handshake_completed(&old, t0 + Duration::from_secs(1))
        .await;
    assert!(observed.suspicion.is_none());
    assert!(presented.try_recv().is_err());

    // After it: a clone. The lock is published before the call returns.
    let observed = pki
        .issuer()
        .handshake_completed(&old, t0 + CLONE_SETTLE + Duration::from_secs(1))
        .await;
    assert_eq!(
        observed.suspicion,
        Some(CloneSuspicion {
            serial: old.clone(),
            successor: renewed.cert.serial.clone()
        })
    );
    let mut locked = observed.locked.unwrap().unwrap();
    locked.sort_by_key(ToString::to_string);
    let mut expected = vec![old.clone(), renewed.cert.serial.clone()];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(locked, expected);
    let snapshot = pki.current();
    for s in [&old, &renewed.cert.serial] {
        assert!(matches!(status_of(&snapshot, s), Status::Revoked { .. }));
    }
}
