use std::sync::atomic::{AtomicUsize, Ordering};

use netclaw_pki::store::next_path;

use super::*;
use crate::testing::{Fixture, TestClock};

/// No daemon answers here: the manager's renewals go to the in-process stand-in.
fn nowhere() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

/// Counts the credential generations published from now on.
fn count_publications(handle: &Handle) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let mut rx = handle.subscribe();
    rx.mark_unchanged();
    let counter = count.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    count
}

fn serial(handle: &Handle) -> Serial {
    handle.upstream().creds.identity.serial.clone()
}

/// When the schedule renews the current certificate (the test clock's draw is 0.5: no jitter).
fn due(handle: &Handle) -> SystemTime {
    let up = handle.upstream();
    refresh_at(
        up.creds.identity.not_before,
        up.creds.identity.not_after,
        0.5,
    )
}

/// The pair on disk is the one published, and nothing is left staged.
fn assert_files_are_published(fixture: &Fixture, handle: &Handle, clock: &TestClock) {
    assert!(!next_path(&fixture.paths.client_cert()).exists());
    assert!(!next_path(&fixture.paths.client_key()).exists());
    let on_disk = Credentials::load(
        &fixture.paths,
        fixture.config.operator().trust_domain(),
        clock.now(),
    )
    .unwrap();
    assert_eq!(on_disk.cert_der, handle.upstream().creds.cert_der);
}

#[tokio::test(start_paused = true)]
async fn a_due_renewal_renews_once() {
    let fixture = Fixture::new();
    let clock = TestClock::new();
    let daemon = fixture.daemon(&clock);
    let (manager, handle, stats) = fixture.manager(nowhere(), daemon.clone(), clock.clone());
    let (_stop, stop) = watch::channel(false);
    let published = count_publications(&handle);
    let before = serial(&handle);
    tokio::spawn(manager.run(stop));

    // Not due yet: an hour passes without a renewal.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(daemon.calls().is_empty());

    // The host wakes up five seconds before the renewal is due.
    clock.set(due(&handle) - Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(daemon.calls().is_empty());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(daemon.calls().len(), 1);
    assert_ne!(serial(&handle), before);
    assert_eq!(published.load(Ordering::SeqCst), 1);
    assert_files_are_published(&fixture, &handle, &clock);
    let status = handle.status();
    assert!(status.last_renewal.is_some());
    assert_eq!(status.renewal_error, None);
    assert_eq!(stats.renewals_ok.load(Ordering::SeqCst), 1);

    // The new certificate's renewal is weeks away: a day passes with no other request.
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(daemon.calls().len(), 1);
    assert_eq!(published.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_renewal_is_retried_on_schedule() {
    let fixture = Fixture::new();
    let clock = TestClock::new();
    let daemon = fixture.daemon(&clock);
    let (manager, handle, stats) = fixture.manager(nowhere(), daemon.clone(), clock.clone());
    let (_stop, stop) = watch::channel(false);
    let before = serial(&handle);
    tokio::spawn(manager.run(stop));

    daemon.lose_answers(2);
    clock.set(due(&handle));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let calls = daemon.calls();
    assert_eq!(calls.len(), 3, "two lost answers, then a renewal");
    // Retried after UNANSWERED_RETRY with jitter (3 s at the test's draw), at the next tick.
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(3) && gap <= Duration::from_secs(4),
            "{gap:?}"
        );
    }
    assert_ne!(serial(&handle), before);
    assert_eq!(handle.status().renewal_error, None);
    assert_eq!(stats.renewals_failed.load(Ordering::SeqCst), 2);
    assert_eq!(stats.renewals_ok.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_rotation_is_retried_by_the_manager() {
    let fixture = Fixture::new();
    let clock = TestClock::new();
    let daemon = fixture.daemon(&clock);
    let (manager, handle, _) = fixture.manager(nowhere(), daemon.clone(), clock.clone());
    let (_stop, stop) = watch::channel(false);
    let before = serial(&handle);
    tokio::spawn(manager.run(stop));

    daemon.lose_answers(1);
    let failed = handle.rotate().await;
    assert!(
        matches!(failed, Err(RenewError::Transport(_))),
        "{failed:?}"
    );
    assert!(handle.status().renewal_error.is_some());
    // The daemon may hold the current certificate superseded already: the manager renews
    // again within seconds on its own, although the schedule is weeks away.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(daemon.calls().len(), 2);
    assert_ne!(serial(&handle), before);
    assert_eq!(handle.status().renewal_error, None);
}

#[tokio::test(start_paused = true)]
async fn a_changed_file_or_a_reload_publishes_one_new_upstream() {
    let fixture = Fixture::new();
    let clock = TestClock::new();
    let (manager, handle, _) = fixture.manager(nowhere(), fixture.daemon(&clock), clock.clone());
    let (_stop, stop) = watch::channel(false);
    let published = count_publications(&handle);
    tokio::spawn(manager.run(stop));

    // Another process (an offline rotation) replaces the pair: the poll publishes it.
    let offline = fixture.write_new_pair();
    tokio::time::sleep(FILE_POLL + Duration::from_millis(100)).await;
    assert_eq!(serial(&handle), offline);
    assert_eq!(published.load(Ordering::SeqCst), 1);
    // A reload finds nothing new and publishes nothing.
    assert_eq!(
        handle.reload().await.unwrap(),
        Reloaded {
            credentials: false,
            policy: false
        }
    );
    tokio::time::sleep(FILE_POLL * 3).await;
    assert_eq!(published.load(Ordering::SeqCst), 1);

    // A reload command right after a write publishes at once; the poll then finds nothing new.
    let next = fixture.write_new_pair();
    let reloaded = handle.reload().await.unwrap();
    assert!(reloaded.credentials && !reloaded.policy);
    assert_eq!(serial(&handle), next);
    tokio::time::sleep(FILE_POLL * 3).await;
    assert_eq!(published.load(Ordering::SeqCst), 2);
    assert_files_are_published(&fixture, &handle, &clock);
    assert_eq!(handle.status().last_reload_error, None);
}

#[tokio::test(start_paused = true)]
async fn a_refused_reload_keeps_the_upstream_and_says_why() {
    let fixture = Fixture::new();
    let clock = TestClock::new();
    let (manager, handle, _) = fixture.manager(nowhere(), fixture.daemon(&clock), clock.clone());
    let (_stop, stop) = watch::channel(false);
    let published = count_publications(&handle);
    let current = handle.upstream();
    tokio::spawn(manager.run(stop));

    // A certificate from another CA, with its own key: the pair matches, the chain does not.
    let names = netclaw_pki::issue::ListenerNames {
        ips: vec!["127.0.0.1".parse().unwrap()],
        dns: vec![],
    };
    let foreign = netclaw_pki::issue::OperatorCa::generate("other", &names, SystemTime::now())
        .unwrap()
        .issue_agent(
            &fixture.id,
            SystemTime::now(),
            netclaw_pki::issue::CertificateLifetime::default(),
        )
        .unwrap();
    netclaw_pki::store::save_agent_pair(
        &fixture.paths,
        &foreign.key,
        &foreign.cert.pem,
        &fixture.ca.certificate().pem,
    )
    .unwrap();
    let refused = handle.reload().await;
    assert!(
        matches!(
            refused,
            Err(ReloadError::Credentials(CredentialError::Invalid { .. }))
        ),
        "{refused:?}"
    );
    assert!(Arc::ptr_eq(&handle.upstream(), &current));
    assert!(handle.status().last_reload_error.is_some());

    // The file poll refuses it too, once, and keeps the current generation.
    tokio::time::sleep(FILE_POLL * 3).await;
    assert!(Arc::ptr_eq(&handle.upstream(), &current));
    assert_eq!(published.load(Ordering::SeqCst), 0);

    // A key that does not match its certificate: refused by type as well.
    let good = fixture.write_new_pair();
    let key = netclaw_pki::PrivateKey::generate().unwrap();
    netclaw_pki::secure_fs::write_atomic(
        &fixture.paths.client_key(),
        key.to_pem().as_bytes(),
        0o600,
    )
    .unwrap();
    let refused = handle.reload().await;
    assert!(
        matches!(
            refused,
            Err(ReloadError::Credentials(CredentialError::Pki(_)))
        ),
        "{refused:?}"
    );
    assert!(Arc::ptr_eq(&handle.upstream(), &current));
    assert_ne!(serial(&handle), good);
    assert_eq!(published.load(Ordering::SeqCst), 0);
    assert!(handle.status().last_reload_error.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_rotation_waits_for_the_renewal_under_way() {
    let fixture = Fixture::new();
    let clock = TestClock::new();
    let daemon = fixture.daemon(&clock);
    daemon.set_delay(Duration::from_secs(5));
    let (manager, handle, _) = fixture.manager(nowhere(), daemon.clone(), clock.clone());
    let (_stop, stop) = watch::channel(false);
    let published = count_publications(&handle);
    tokio::spawn(manager.run(stop));

    // The scheduled renewal starts and is under way for 5 s ...
    clock.set(due(&handle));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(daemon.calls().len(), 1);
    // ... when another caller reloads: answered at once, without waiting for the daemon ...
    let asked = tokio::time::Instant::now();
    handle.reload().await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(published.load(Ordering::SeqCst), 0);
    // ... and `netclaw pki rotate` asks for another, twice: each waits for the one before.
    let (first, second) = tokio::join!(handle.rotate(), handle.rotate());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(daemon.calls().len(), 3);
    assert_eq!(daemon.max_in_flight(), 1, "two renewals at once");
    for pair in daemon.calls().windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(5));
    }
    // Each rotation renewed the certificate the renewal before it had just installed.
    assert_eq!(published.load(Ordering::SeqCst), 3);
    assert_eq!(second.previous_serial, first.serial);
    assert_eq!(serial(&handle).to_string(), second.serial);
    assert_files_are_published(&fixture, &handle, &clock);
}

#[tokio::test(start_paused = true)]
async fn new_credentials_are_confirmed_with_the_daemon_at_once() {
    let fixture = Fixture::new();
    let clock = TestClock::new();
    let daemon = fixture.daemon(&clock);
    let (manager, handle, _) = fixture.manager(nowhere(), daemon.clone(), clock.clone());
    let (_stop, stop) = watch::channel(false);
    tokio::spawn(manager.run(stop));

    // `netclaw pki rotate`: by the time it is answered, the new certificate has completed a
    // handshake (the daemon no longer lets the old serial renew), without any caller's request.
    let rotated = handle.rotate().await.unwrap();
    assert_eq!(serial(&handle).to_string(), rotated.serial);
    assert_eq!(daemon.confirmed(), [serial(&handle)]);

    // A scheduled renewal is confirmed as well, right after the swap.
    clock.set(due(&handle));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(serial(&handle).to_string(), rotated.serial);
    assert_eq!(daemon.confirmed().len(), 2);
    assert_eq!(daemon.confirmed()[1], serial(&handle));

    // A failed confirmation is only logged: the new credentials stay, and nothing is retried.
    daemon.fail_confirmations(1);
    let before = serial(&handle);
    let rotated = handle.rotate().await.unwrap();
    assert_ne!(serial(&handle), before);
    assert_eq!(serial(&handle).to_string(), rotated.serial);
    assert_eq!(handle.status().renewal_error, None);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(daemon.confirmed().len(), 2);
    assert_files_are_published(&fixture, &handle, &clock);
    assert_eq!(
        daemon.calls().len(),
        3,
        "three renewals, each confirmed once"
    );
}

#[test]
fn an_unanswered_renewal_is_retried_within_the_default_grace_period() {
    let lost = RenewError::Transport("connection closed before message completed".into());
    let mut total = Duration::ZERO;
    for attempt in 0..UNANSWERED_RETRIES {
        let wait = retry_delay(&lost, attempt, 1.0);
        assert!(wait <= UNANSWERED_RETRY, "{wait:?}");
        total += wait;
    }
    // Ten tries inside the first 60 s (`Operator.RotationGrace` by default) at the latest.
    assert!(total <= Duration::from_secs(40), "{total:?}");
    // Then the usual backoff; a refusal backs off from the start.
    assert_eq!(
        retry_delay(&lost, UNANSWERED_RETRIES, 1.0),
        backoff(UNANSWERED_RETRIES, 1.0)
    );
    let refused = RenewError::Refused("403".into());
    assert_eq!(retry_delay(&refused, 0, 1.0), backoff(0, 1.0));
}
