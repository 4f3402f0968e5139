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
