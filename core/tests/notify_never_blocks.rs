//! A service manager that stops reading its notification socket (a busy or stuck systemd, or
//! a test harness) never stalls the caller of `service::notify`: the agent serves every
//! connection from one event loop, and a blocking send there stalled every caller.
//!
//! Nor does a stopping service exit before its last notification has gone out
//! ([`service::flush_notifications`]), unless the bound passes.
//!
//! A process of its own: `NOTIFY_SOCKET` is read once per process.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use netclaw_core::service;
use sd_notify::NotifyState;

#[test]
fn notifications_to_a_socket_nobody_reads_never_block_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&path).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &path);

    // Far more datagrams than a Unix socket queues (net.unix.max_dgram_qlen, 10 by default)
    // while nobody reads.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        service::notify(NotifyState::Ready);
        for i in 0..500 {
            service::notify(NotifyState::Custom(&format!("STATUS={i}")));
        }
        service::notify(NotifyState::Stopping);
        done.send(()).unwrap();
    });
    // A blocking send never returns while nobody reads: the bound only decides how long the
    // test waits before it calls that a failure.
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("notify blocked on a socket nobody reads");

    // A stopping service waits for its last notifications, within a bound: nobody reads, so
    // they cannot all have gone out.
    assert!(!service::flush_notifications(Duration::from_millis(300)));

    // Reading now: everything arrives, in order, and the flush returns once STOPPING=1 is sent.
    systemd
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut next = || {
            let n = systemd.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert_eq!(next(), "READY=1\n");
        for i in 0..500 {
            assert_eq!(next(), format!("STATUS={i}\n"));
        }
        assert_eq!(next(), "STOPPING=1\n");
        systemd
    });
    assert!(service::flush_notifications(Duration::from_secs(30)));
    let systemd = reader.join().unwrap();
    // Nothing after STOPPING=1: the flush itself sends nothing.
    systemd
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(systemd.recv(&mut [0u8; 64]).is_err());
}
