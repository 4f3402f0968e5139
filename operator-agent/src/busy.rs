//! Busy-polling while callers are active: after the agent forwards a request or receives the
//! daemon's answer, its event loop keeps polling its sockets, without sleeping, for a short
//! window (`Operator.BusyPollMicros`, 50 µs by default), then sleeps as before.
//!
//! Why: on a virtual machine, a thread that sleeps lets its vCPU halt, and waking it costs an
//! interrupt through the hypervisor. At one client the agent sleeps twice per request (waiting
//! for the daemon's answer, then for the caller's next request), and those two wake-ups were
//! most of its added latency (`docs/benchmarks.md`, findings §8). Both events usually arrive
//! within the window, so the loop is awake to serve them. HAProxy's `busy-polling` does the same
//! for the same reason, but for as long as it runs; here every request and every answer restarts
//! the window, and when it passes with nothing new the loop sleeps, so an idle agent costs no
//! CPU, and a caller can keep the agent polling only while it keeps sending requests.
//!
//! How: one task ([`BusyPoll::run`]) sleeps until [`BusyPoll::touch`] wakes it, then yields in a
//! loop until the window passes without a touch. A yielded task makes tokio poll its I/O driver
//! without a timeout (`epoll_wait` with 0) before running the task again, so sockets that
//! became ready are served at once, and every other task runs between two yields.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The busy-poll window of one agent (zero: off).
#[derive(Debug)]
pub(crate) struct BusyPoll {
    window: Duration,
    /// Bumped by every touch.
    touches: AtomicU64,
    /// Whether the polling task sleeps (and a touch must wake it).
    asleep: AtomicBool,
    wake: Notify,
    /// Windows that began (`netclaw_agent_busy_poll_windows_total`).
    windows: AtomicU64,
}

impl BusyPoll {
    /// A window of `window` after each touch; zero turns busy-polling off.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            touches: AtomicU64::new(0),
            asleep: AtomicBool::new(true),
            wake: Notify::new(),
            windows: AtomicU64::new(0),
        }
    }

    /// Windows that began so far.
    pub(crate) fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    /// Something the loop serves happened: (re)start the window.
    pub(crate) fn touch(&self) {
        if self.window.is_zero() {
            return;
        }
        self.touches.fetch_add(1, Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    /// The polling task: runs until dropped (aborted), returns at once when the window is zero.
    pub(crate) async fn run(self: Arc<Self>) {
        if self.window.is_zero() {
            return;
        }
        loop {
            // The touch that cleared `asleep` left a permit if it came first.
            self.wake.notified().await;
            self.windows.fetch_add(1, Ordering::Relaxed);
            let mut seen = self.touches.load(Ordering::SeqCst);
            // The wall clock, not tokio's: a paused test clock must not stretch the window.
            let mut since = Instant::now();
            loop {
                tokio::task::yield_now().await;
                let now = self.touches.load(Ordering::SeqCst);
                if now != seen {
                    seen = now;
                    since = Instant::now();
                    continue;
                }
                if since.elapsed() < self.window {
                    continue;
                }
                self.asleep.store(true, Ordering::SeqCst);
                // A touch between the last look and the store saw the loop awake and did not
                // wake it: look once more.
                if self.touches.load(Ordering::SeqCst) == seen
                    || !self.asleep.swap(false, Ordering::SeqCst)
                {
                    // Nothing new, or a touch already cleared `asleep` and left a permit.
                    break;
                }
                // Awake again: the next look sees the new touch and restarts the window.
            }
        }
    }
}

#[cfg(test)]
mod tests;
