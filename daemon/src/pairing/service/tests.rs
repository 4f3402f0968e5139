use std::time::{Duration, SystemTime};

use super::*;
use crate::devices::DeviceStore;

struct Fixture {
    pairing: Service,
    devices: Arc<devices::Service>,
    audit: Arc<Audit>,
    _tmp: tempfile::TempDir,
}

fn fixture_at(registry: &std::path::Path, tmp: tempfile::TempDir) -> Fixture {
    let audit = Arc::new(Audit::new(None).unwrap());
    let store = DeviceStore::load(registry).unwrap();
    let devices = Arc::new(devices::Service::new(store, audit.clone()));
    Fixture {
        pairing: Service::new(devices.clone(), audit.clone()),
        devices,
        audit,
        _tmp: tmp,
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("devices.json");
    fixture_at(&registry, tmp)
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn body(code: &str, name: &str) -> Vec<u8> {
    serde_json::json!({ "code": code, "deviceName": name })
        .to_string()
        .into_bytes()
}

fn client(n: u8) -> IpAddr {
    IpAddr::from([198, 51, 100, n])
}

fn kinds(rx: &mut tokio::sync::broadcast::Receiver<crate::audit::AuditEvent>) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| e.kind)
        .collect()
}

#[test]
fn only_host_authority_mints_and_each_mint_is_audited() {
    let f = fixture();
    let mut events = f.audit.subscribe();
    for (p, want) in [
        (Principal::Anonymous, Denied::Unauthenticated),
        (
            Principal::Device {
                name: "phone".into(),
            },
            Denied::NoHostAuthority,
        ),
    ] {
        match f.pairing.mint(&p, now()) {
            Err(MintError::Denied(d)) => assert_eq!(d, want, "{p:?}"),
            other => panic!("{p:?}: {other:?}"),
        }
    }
    assert!(kinds(&mut events).is_empty());
    let code = f.pairing.mint(&Principal::LocalProcess, now()).unwrap();
    assert_eq!(code.formatted_code.len(), 9);
    assert_eq!(kinds(&mut events), ["pairing-code-minted"]);
    let health = f.pairing.health(now()).unwrap();
    assert_eq!(
        health.code_expires_at.as_deref(),
        Some(code.expires_at.as_str())
    );
}

#[tokio::test]
async fn an_exchange_stores_the_device_and_consumes_the_code() {
    let f = fixture();
    let code = f.pairing.mint(&Principal::LocalProcess, now()).unwrap();
    let mut events = f.audit.subscribe();
    let answer = f
        .pairing
        .exchange(client(1), &body(&code.formatted_code, " laptop "), now())
        .await
        .unwrap();
    assert_eq!(
        f.devices.authenticate(&answer.token).await.as_deref(),
        Some("laptop")
    );
    assert_eq!(kinds(&mut events), ["device-paired"]);
    // Single use.
    let again = f
        .pairing
        .exchange(client(2), &body(&code.formatted_code, "other"), now())
        .await;
    assert!(matches!(again, Err(ExchangeError::NoPending)), "{again:?}");
}

#[tokio::test]
async fn refused_inputs_are_typed_and_only_a_wrong_code_is_a_guess() {
    let f = fixture();
    let code = f.pairing.mint(&Principal::LocalProcess, now()).unwrap();
    let mut events = f.audit.subscribe();
    let exchange = |n: u8, b: Vec<u8>| {
        let pairing = &f.pairing;
        async move { pairing.exchange(client(n), &b, now()).await }
    };
    assert!(matches!(
        exchange(1, b"{".to_vec()).await,
        Err(ExchangeError::Malformed)
    ));
    assert!(matches!(
        exchange(2, body(&code.formatted_code, "a\nb")).await,
        Err(ExchangeError::Name(NameError::Control))
    ));
    assert!(matches!(
        exchange(3, body("ABC", "laptop")).await,
        Err(ExchangeError::CodeFormat)
    ));
    assert!(kinds(&mut events).is_empty(), "none of these is a guess");
    assert_eq!(f.pairing.health(now()).unwrap().wrong_guesses, 0);
    let wrong = if code.formatted_code == "2222-2222" {
        "3333-3333"
    } else {
        "2222-2222"
    };
    assert!(matches!(
        exchange(4, body(wrong, "laptop")).await,
        Err(ExchangeError::Wrong)
    ));
    assert_eq!(kinds(&mut events), ["pairing-failed"]);
    assert_eq!(f.pairing.health(now()).unwrap().wrong_guesses, 1);
    // The pending code still pairs.
    exchange(5, body(&code.formatted_code, "laptop"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_taken_name_or_a_failed_save_keeps_the_code_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    let f = fixture_at(&dir.join("devices.json"), tmp);
    f.devices
        .lock()
        .await
        .add("phone", &ring::rand::SystemRandom::new(), now())
        .unwrap();
    let code = f.pairing.mint(&Principal::LocalProcess, now()).unwrap();
    let taken = f
        .pairing
        .exchange(client(1), &body(&code.formatted_code, "phone"), now())
        .await;
    assert!(matches!(taken, Err(ExchangeError::NameTaken)), "{taken:?}");
    // The registry cannot be written: nothing is stored, the code stays pending.
    std::fs::remove_dir_all(&dir).unwrap();
    let failed = f
        .pairing
        .exchange(client(2), &body(&code.formatted_code, "laptop"), now())
        .await;
    assert!(matches!(failed, Err(ExchangeError::Store(_))), "{failed:?}");
    assert!(f.pairing.health(now()).unwrap().code_expires_at.is_some());
    std::fs::create_dir(&dir).unwrap();
    f.pairing
        .exchange(client(3), &body(&code.formatted_code, "laptop"), now())
        .await
        .unwrap();
}

#[tokio::test]
async fn refusals_before_the_code_are_audited_as_throttled() {
    let f = fixture();
    f.pairing.mint(&Principal::LocalProcess, now()).unwrap();
    let mut events = f.audit.subscribe();
    let mut last = None;
    for _ in 0..=crate::pairing::RATE_LIMIT {
        last = Some(f.pairing.exchange(client(9), b"{", now()).await);
    }
    assert!(
        matches!(
            last,
            Some(Err(ExchangeError::Refused(Refusal::Throttled { .. })))
        ),
        "{last:?}"
    );
    assert_eq!(kinds(&mut events), ["pairing-throttled"]);
}

/// The adversary: strangers sending refused exchanges as fast as the proxy passes them, to fill
/// the disk with audit lines. Each source's first refusals are still audited, but no more than
/// the bound a minute; the next line counts the rest.
#[tokio::test]
async fn a_flood_of_refused_exchanges_writes_a_bounded_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("audit.log");
    let audit = Arc::new(Audit::new(Some(log.clone())).unwrap());
    let store = DeviceStore::load(&tmp.path().join("devices.json")).unwrap();
    let devices = Arc::new(devices::Service::new(store, audit.clone()));
    let pairing = Service::new(devices, audit);
    pairing.mint(&Principal::LocalProcess, now()).unwrap();
    let lines = |kind: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["kind"] == kind)
            .collect()
    };
    let flood = 50u64;
    for n in 1..=200u8 {
        // Every request past the rate limit is refused before the body is read.
        for _ in 0..crate::pairing::RATE_LIMIT as u64 + flood {
            let _ = pairing.exchange(client(n), b"{", now()).await;
        }
    }
    let refused = 200 * flood;
    assert_eq!(
        lines("pairing-throttled").len(),
        crate::audit::LINES_PER_WINDOW as usize
    );
    // A minute later the next refusal is audited, with the count of those that were not.
    let later = now() + crate::audit::WINDOW;
    let mut r = None;
    for _ in 0..=crate::pairing::RATE_LIMIT {
        r = Some(pairing.exchange(client(1), b"{", later).await);
    }
    assert!(matches!(r, Some(Err(ExchangeError::Refused(_)))), "{r:?}");
    let all = lines("pairing-throttled");
    let last = all.last().unwrap()["detail"].as_str().unwrap().to_owned();
    let unaudited = refused - u64::from(crate::audit::LINES_PER_WINDOW);
    assert!(
        last.starts_with("client 198.51.100.1:")
            && last.contains(&format!("; {unaudited} earlier refusals not audited")),
        "{last}"
    );
}
