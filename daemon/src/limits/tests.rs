use std::net::{IpAddr, Ipv4Addr};

use http_body_util::BodyExt;

use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
}

fn gate(soft: u64) -> Arc<PublicGate> {
    let limits = ConnectionLimits::from_descriptors(soft, 24).unwrap();
    PublicGate::new(limits, Arc::new(Audit::new(None).unwrap()))
}

#[test]
fn caps_follow_the_descriptor_limit_and_keep_a_reserve() {
    // systemd's default soft limit for a service without LimitNOFILE.
    let l = ConnectionLimits::from_descriptors(1024, 24).unwrap();
    assert_eq!(l.reserve(), 256);
    assert_eq!(l.total(), 1024 - 24 - 256);
    assert_eq!(l.per_source(), PUBLIC_MAX_PER_SOURCE);
    assert!(l.total() as u64 + l.reserve() + 24 <= 1024);
    // The unit's LimitNOFILE: the total cap is the ceiling and the reserve is a quarter.
    let l = ConnectionLimits::from_descriptors(16384, 24).unwrap();
    assert_eq!(l.total(), PUBLIC_MAX_CONNECTIONS);
    assert_eq!(l.reserve(), (16384 - 24) / 4);
    // Unlimited or huge limits do not overflow.
    let l = ConnectionLimits::from_descriptors(u64::MAX, 24).unwrap();
    assert_eq!(l.total(), PUBLIC_MAX_CONNECTIONS);
    // Small limits: a smaller per-source cap, never more than an eighth of the total.
    let l = ConnectionLimits::from_descriptors(400, 24).unwrap();
    assert_eq!(l.total(), 400 - 24 - 256);
    assert_eq!(l.per_source(), l.total() / 8);
}

#[test]
fn a_limit_too_low_for_the_reserve_refuses_start_up_and_names_the_fix() {
    let e = ConnectionLimits::from_descriptors(256, 24).unwrap_err();
    assert_eq!(
        e.needed,
        24 + DESCRIPTOR_RESERVE_MIN + MIN_PUBLIC_CONNECTIONS as u64
    );
    let text = e.to_string();
    assert!(text.contains("LimitNOFILE="), "{text}");
    assert!(text.contains(&e.needed.to_string()), "{text}");
    // Just enough works.
    ConnectionLimits::from_descriptors(e.needed, 24).unwrap();
}

#[test]
fn one_source_cannot_take_more_than_its_share_and_slots_come_back() {
    let g = gate(1024);
    let per_source = g.limits().per_source();
    let held: Vec<_> = (0..per_source)
        .map(|_| g.admit(ip(20), false).unwrap())
        .collect();
    assert_eq!(g.admit(ip(20), false).unwrap_err(), Refusal::SourceCap);
    // Another source is unaffected.
    let other = g.admit(ip(21), false).unwrap();
    assert_eq!(g.open(), per_source + 1);
    drop(held);
    drop(other);
    assert_eq!(g.open(), 0);
    // The per-source map does not keep sources without connections.
    assert!(g.open.lock().unwrap().by_source.is_empty());
    g.admit(ip(20), false).unwrap();
}

#[test]
fn a_shared_source_is_bounded_by_the_total_cap_only() {
    let g = gate(1024);
    let total = g.limits().total();
    let held: Vec<_> = (0..total).map(|_| g.admit(ip(1), true).unwrap()).collect();
    assert_eq!(g.admit(ip(1), true).unwrap_err(), Refusal::TotalCap);
    assert_eq!(g.admit(ip(30), false).unwrap_err(), Refusal::TotalCap);
    drop(held);
    g.admit(ip(30), false).unwrap();
}

fn config(json: &str) -> netclaw_core::config::Config {
    let env = std::collections::BTreeMap::<String, String>::new();
    netclaw_core::config::Config::from_json(
        std::path::Path::new("/etc/netclaw/netclaw.json"),
        json,
        &env,
    )
    .unwrap()
}

#[test]
fn trusted_proxies_and_tunnel_agents_are_shared_sources() {
    let proxy = config(
        r#"{"Daemon":{"ExposureMode":"reverse-proxy","Host":"192.0.2.10","TrustedProxies":["192.0.2.1"]}}"#,
    );
    assert!(shared_source(proxy.daemon(), "192.0.2.1".parse().unwrap()));
    assert!(shared_source(
        proxy.daemon(),
        "::ffff:192.0.2.1".parse().unwrap()
    ));
    assert!(!shared_source(proxy.daemon(), "192.0.2.2".parse().unwrap()));
    assert!(!shared_source(proxy.daemon(), "127.0.0.1".parse().unwrap()));
    let tunnel = config(r#"{"Daemon":{"ExposureMode":"cloudflare-tunnel"}}"#);
    assert!(shared_source(tunnel.daemon(), "127.0.0.1".parse().unwrap()));
    assert!(!shared_source(
        tunnel.daemon(),
        "192.0.2.2".parse().unwrap()
    ));
    // In local mode loopback peers are local processes, each counted as a source.
    let local = config(r#"{"Daemon":{"ExposureMode":"local"}}"#);
    assert!(!shared_source(local.daemon(), "127.0.0.1".parse().unwrap()));
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;
type Frames = tokio_stream::wrappers::ReceiverStream<Chunk>;

fn body(
    timeout: Duration,
) -> (
    tokio::sync::mpsc::Sender<Chunk>,
    DeadlineBody<http_body_util::StreamBody<Frames>>,
    Arc<AtomicBool>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let expired = Arc::new(AtomicBool::new(false));
    let body = DeadlineBody::new(
        http_body_util::StreamBody::new(Frames::new(rx)),
        timeout,
        expired.clone(),
    );
    (tx, body, expired)
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_fails_and_says_so() {
    let (tx, mut body, expired) = body(BODY_READ_TIMEOUT);
    tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
        .await
        .unwrap();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"{"));
    assert!(!expired.load(Ordering::Relaxed));
    // A byte now and then does not extend the deadline: it is for the whole body.
    tokio::time::sleep(BODY_READ_TIMEOUT / 2).await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"\""))))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(err.downcast_ref::<BodyTimeout>().is_some(), "{err}");
    assert!(expired.load(Ordering::Relaxed));
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_arrives_in_time_is_passed_through() {
    let (tx, body, expired) = body(BODY_READ_TIMEOUT);
    tx.send(Ok(Frame::data(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    drop(tx);
    let all = body.collect().await.unwrap().to_bytes();
    assert_eq!(all, Bytes::from_static(b"{}"));
    assert!(!expired.load(Ordering::Relaxed));
}
