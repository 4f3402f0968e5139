use std::time::{Duration, SystemTime};

use netclaw_pki::Serial;

use super::*;

struct Fixture {
    devices: Service,
    audit: Arc<Audit>,
    phone: String,
    _tmp: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = DeviceStore::load(&tmp.path().join("devices.json")).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let phone = store.add("phone", &rng, SystemTime::now()).unwrap();
    store.add("tablet", &rng, SystemTime::now()).unwrap();
    let audit = Arc::new(Audit::new(None).unwrap());
    Fixture {
        devices: Service::new(store, audit.clone()),
        audit,
        phone: phone.to_string(),
        _tmp: tmp,
    }
}

fn device(name: &str) -> Principal {
    Principal::Device { name: name.into() }
}

fn operator() -> Principal {
    Principal::LocalOperator {
        spiffe_id: "spiffe://netclaw/host/h/operator-agent".into(),
        serial: "01".parse::<Serial>().unwrap(),
        caller: None,
    }
}

#[tokio::test]
async fn listing_needs_host_authority() {
    let f = fixture();
    assert_eq!(
        f.devices.list(&Principal::Anonymous).await.unwrap_err(),
        Denied::Unauthenticated
    );
    assert_eq!(
        f.devices.list(&device("phone")).await.unwrap_err(),
        Denied::NoHostAuthority
    );
    for p in [Principal::LocalProcess, operator()] {
        let names: Vec<_> = f.devices.list(&p).await.unwrap();
        let names: Vec<_> = names.into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["phone", "tablet"], "{p:?}");
    }
}

#[tokio::test]
async fn a_device_revokes_itself_only_and_each_revocation_is_audited() {
    let f = fixture();
    let mut events = f.audit.subscribe();
    assert!(matches!(
        f.devices.revoke(&Principal::Anonymous, "phone").await,
        Err(RevokeError::Denied(Denied::Unauthenticated))
    ));
    assert!(matches!(
        f.devices.revoke(&device("phone"), "tablet").await,
        Err(RevokeError::OtherDevice)
    ));
    // Nothing was refused loudly, nothing changed.
    assert!(events.try_recv().is_err());
    assert_eq!(
        f.devices.authenticate(&f.phone).await.as_deref(),
        Some("phone")
    );

    f.devices.revoke(&device("phone"), "phone").await.unwrap();
    let e = events.try_recv().unwrap();
    assert_eq!(
        (e.kind.as_str(), e.principal.as_str(), e.detail.as_str()),
        ("device-revoked", "Device(phone)", "device phone")
    );
    assert_eq!(f.devices.authenticate(&f.phone).await, None);

    f.devices.revoke(&operator(), "tablet").await.unwrap();
    assert_eq!(events.try_recv().unwrap().detail, "device tablet");
    assert!(matches!(
        f.devices.revoke(&Principal::LocalProcess, "tablet").await,
        Err(RevokeError::NotFound)
    ));
}

#[tokio::test]
async fn a_session_ends_when_its_device_is_revoked_not_when_another_is() {
    let f = fixture();
    assert!(f.devices.session("laptop").await.is_none());
    let session = f.devices.session("phone").await.unwrap();
    let ended = session.ended(&f.devices);
    tokio::pin!(ended);
    f.devices
        .revoke(&Principal::LocalProcess, "tablet")
        .await
        .unwrap();
    // Another device's revocation wakes the session, which re-checks and goes on.
    tokio::select! {
        biased;
        () = &mut ended => panic!("ended by another device's revocation"),
        () = tokio::task::yield_now() => {}
    }
    f.devices
        .revoke(&Principal::LocalProcess, "phone")
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), ended)
        .await
        .expect("the session ends after its device is revoked");
}

#[tokio::test]
async fn pairing_again_under_the_same_name_does_not_revive_an_old_session() {
    let f = fixture();
    let old = f.devices.session("phone").await.unwrap();
    f.devices
        .revoke(&Principal::LocalProcess, "phone")
        .await
        .unwrap();
    f.devices
        .lock()
        .await
        .add("phone", &ring::rand::SystemRandom::new(), SystemTime::now())
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), old.ended(&f.devices))
        .await
        .expect("the old pairing's session ends");
}

/// The flush task writes last-use times every [`super::super::LAST_USED_FLUSH`], not per request,
/// and ends when the daemon stops.
#[tokio::test(start_paused = true)]
async fn last_use_reaches_the_disk_on_the_flush_tick_only() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("devices.json");
    let mut store = DeviceStore::load(&path).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let token = store.add("phone", &rng, SystemTime::now()).unwrap();
    let devices = Arc::new(Service::new(store, Arc::new(Audit::new(None).unwrap())));
    let drain = netclaw_core::serve::Drain::new();
    let task = tokio::spawn(super::super::flush_last_used(
        devices.clone(),
        drain.handle().fired(),
    ));
    let written = || {
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("lastUsedAt")
    };

    assert_eq!(devices.authenticate(&token).await.as_deref(), Some("phone"));
    tokio::time::sleep(super::super::LAST_USED_FLUSH / 2).await;
    assert!(!written(), "written before the tick");
    tokio::time::sleep(super::super::LAST_USED_FLUSH / 2 + Duration::from_secs(1)).await;
    assert!(written(), "not written on the tick");

    drain.drain(Duration::from_secs(1)).await;
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the flush task ends when the daemon stops")
        .unwrap();
}
