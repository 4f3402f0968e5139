//! Deadlines here are short real times: only their expiry is awaited, never measured.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[tokio::test]
async fn one_caller_cannot_take_every_slot() {
    let slots = Slots::new(8, 2);
    let soon = || Instant::now() + Duration::from_millis(200);
    let a1 = slots.acquire(1000, soon()).await.unwrap();
    let _a2 = slots.acquire(1000, soon()).await.unwrap();
    // Uid 1000's share is used up: its next request waits, then is refused as its own.
    assert_eq!(
        slots.acquire(1000, soon()).await.unwrap_err(),
        Saturated::Caller
    );
    // Another caller is served at once.
    let _b = slots.acquire(0, soon()).await.unwrap();
    // A freed slot goes to the caller that waits for it.
    let waiting = tokio::spawn({
        let slots = std::sync::Arc::new(slots);
        let s = slots.clone();
        async move {
            s.acquire(1000, Instant::now() + Duration::from_secs(10))
                .await
        }
    });
    tokio::task::yield_now().await;
    drop(a1);
    assert!(waiting.await.unwrap().is_ok());
}

#[tokio::test]
async fn all_slots_busy_is_reported_as_the_agent() {
    let slots = Slots::new(4, 2);
    let soon = || Instant::now() + Duration::from_millis(200);
    let mut held = Vec::new();
    for uid in [1, 1, 2, 2] {
        held.push(slots.acquire(uid, soon()).await.unwrap());
    }
    assert_eq!(
        slots.acquire(3, soon()).await.unwrap_err(),
        Saturated::Agent
    );
    // The caller's share is back once the refused request is gone.
    held.pop();
    assert!(slots.acquire(3, soon()).await.is_ok());
}

#[tokio::test]
async fn idle_callers_are_forgotten() {
    let slots = Slots::new(4, 2);
    for uid in 0..100 {
        drop(
            slots
                .acquire(uid, Instant::now() + Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    assert!(slots.callers.lock().unwrap().len() <= 1);
}

/// A daemon stand-in on loopback: TLS 1.3 with a certificate from `ca`, HTTP/1.1 keep-alive,
/// answering `ok` to every request; counts the connections it accepts, and after each response
/// on a connection of the first `close_after_one` it closes that connection without saying so
/// (no `Connection: close`), as a daemon closing an idle connection does.
async fn daemon(
    ca: &netclaw_pki::OperatorCa,
    close_after_one: usize,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let acceptor = crate::testing::loopback_acceptor(ca, std::time::SystemTime::now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let answered = Arc::new(tokio::sync::Notify::new());
                let done = answered.clone();
                let service = hyper::service::service_fn(move |_req| {
                    done.notify_one();
                    async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service);
                if n < close_after_one {
                    tokio::select! {
                        _ = conn => {}
                        () = async {
                            answered.notified().await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        } => {}
                    }
                } else {
                    let _ = conn.await;
                }
            });
        }
    });
    (addr, accepted)
}

/// An upstream for `addr` with an agent certificate from `ca`.
fn upstream(ca: &netclaw_pki::OperatorCa, dir: &std::path::Path, addr: SocketAddr) -> Upstream {
    use netclaw_pki::spiffe::{SpiffeId, TrustDomain};
    use netclaw_pki::store::{self, AgentPaths};
    let now = std::time::SystemTime::now();
    let td: TrustDomain = TrustDomain::DEFAULT.parse().unwrap();
    let host = netclaw_pki::hostid::from_machine_id(b"0123456789abcdef0123456789abcdef").unwrap();
    let id = SpiffeId::operator_agent(td.clone(), host);
    let cert = ca
        .issue_agent(&id, now, netclaw_pki::CertificateLifetime::default())
        .unwrap();
    let paths = AgentPaths::new(dir.to_path_buf());
    store::save_agent(&paths, &cert.key, &cert.cert.pem, &ca.certificate().pem).unwrap();
    let creds = Credentials::load(&paths, &td, now).unwrap();
    Upstream::new(
        creds,
        addr,
        crate::creds::server_name(addr.ip()),
        Arc::new(Stats::default()),
    )
}

async fn get(pool: &Pool, addr: SocketAddr) -> Bytes {
    use http_body_util::BodyExt;
    let req = Request::get(format!("http://{addr}/api/health/ready"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = pool.request(req).await.unwrap();
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn operator_ca() -> netclaw_pki::OperatorCa {
    let names = netclaw_pki::issue::ListenerNames {
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        dns: vec![],
    };
    netclaw_pki::OperatorCa::generate(
        "test",
        &names,
        std::time::SystemTime::now() - Duration::from_secs(3600),
    )
    .unwrap()
}

#[tokio::test]
async fn a_connection_whose_response_ended_carries_the_next_request() {
    let ca = operator_ca();
    let (addr, accepted) = daemon(&ca, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(&ca, dir.path(), addr);
    for _ in 0..5 {
        assert_eq!(get(&up.client, addr).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
    assert_eq!(
        up.client
            .shared
            .connector
            .stats
            .handshakes
            .load(Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn an_idle_connection_the_daemon_closed_is_not_used_again() {
    let ca = operator_ca();
    // The daemon closes the first two connections after their first response.
    let (addr, accepted) = daemon(&ca, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(&ca, dir.path(), addr);
    assert_eq!(get(&up.client, addr).await, "ok");
    // The first connection is idle in the pool when the daemon closes it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&up.client, addr).await, "ok");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&up.client, addr).await, "ok");
    assert_eq!(get(&up.client, addr).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}
