use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::BusyPoll;

/// Yields until `done` holds or `limit` passes (the wall clock: the poller's window is one).
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done()
}

#[tokio::test(flavor = "current_thread")]
async fn a_touch_opens_a_window_that_closes_when_nothing_follows() {
    // Long enough that the hundred touches below fall inside one window even on a busy machine.
    let busy = Arc::new(BusyPoll::new(Duration::from_millis(100)));
    let task = tokio::spawn(busy.clone().run());
    tokio::task::yield_now().await;
    assert!(
        busy.asleep.load(Ordering::Acquire),
        "asleep before any touch"
    );
    assert_eq!(busy.windows(), 0);

    busy.touch();
    assert!(!busy.asleep.load(Ordering::Acquire));
    // The window ends by itself: the poller goes back to sleep without another touch.
    assert!(
        until(Duration::from_secs(5), || busy.windows() == 1
            && busy.asleep.load(Ordering::Acquire))
        .await,
        "the poller kept polling after its window"
    );
    // It stays asleep: no further window begins without a touch.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(busy.windows(), 1);

    // Touches while it polls extend the same window rather than queueing new ones.
    busy.touch();
    for _ in 0..100 {
        busy.touch();
        tokio::task::yield_now().await;
    }
    assert!(
        until(Duration::from_secs(5), || busy
            .asleep
            .load(Ordering::Acquire))
        .await,
        "the poller kept polling after the touches stopped"
    );
    assert_eq!(busy.windows(), 2);
    task.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn other_tasks_run_while_the_loop_polls() {
    let busy = Arc::new(BusyPoll::new(Duration::from_millis(200)));
    let task = tokio::spawn(busy.clone().run());
    busy.touch();
    tokio::task::yield_now().await;
    assert!(!busy.asleep.load(Ordering::Acquire));
    // A timer and a socket are served inside the window.
    let (mut a, mut b) = tokio::net::UnixStream::pair().unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.unwrap();
        b.write_all(&buf).await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    a.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    echo.await.unwrap();
    task.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_zero_window_never_polls() {
    let busy = Arc::new(BusyPoll::new(Duration::ZERO));
    // The task ends at once instead of waiting for touches.
    tokio::time::timeout(Duration::from_secs(5), busy.clone().run())
        .await
        .unwrap();
    busy.touch();
    assert_eq!(busy.windows(), 0);
    assert_eq!(busy.touches.load(Ordering::Relaxed), 0);
}
