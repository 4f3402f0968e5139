//! One bound for lines that others can cause at will (audit events of refusals, warnings about a
//! flood or a misconfigured proxy): at most so many per window, the rest counted into the next
//! line, so that a flood can fill neither the disk nor the journal and nothing goes uncounted.

use std::time::{Duration, SystemTime};

/// At most `lines_per_window` lines per `window`; the events over the bound are counted and the
/// next line says how many.
#[derive(Debug)]
pub(crate) struct LineBudget {
    lines_per_window: u32,
    window: Duration,
    window_start: Option<SystemTime>,
    lines: u32,
    unwritten: u64,
}

impl LineBudget {
    /// A budget of `lines_per_window` lines per `window`.
    pub(crate) const fn new(lines_per_window: u32, window: Duration) -> Self {
        Self {
            lines_per_window,
            window,
            window_start: None,
            lines: 0,
            unwritten: 0,
        }
    }

    /// Counts one event at `now`: `Some(n)` when it gets a line, `n` being the events before it
    /// that got none; `None` when the window's lines are spent. A clock that went back starts a
    /// new window.
    pub(crate) fn count(&mut self, now: SystemTime) -> Option<u64> {
        let fresh = self.window_start.is_none_or(|start| {
            now.duration_since(start)
                .map_or(true, |elapsed| elapsed >= self.window)
        });
        if fresh {
            self.window_start = Some(now);
            self.lines = 0;
        }
        if self.lines >= self.lines_per_window {
            self.unwritten += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.unwritten))
    }

    /// The audit detail for a refusal at `now` described by `detail` (with how many earlier
    /// refusals were not audited), or `None` when the window's lines are spent.
    pub(crate) fn detail(&mut self, detail: String, now: SystemTime) -> Option<String> {
        Some(match self.count(now)? {
            0 => detail,
            n => format!(
                "{detail}; {n} earlier refusals not audited (at most {} every {} s)",
                self.lines_per_window,
                self.window.as_secs()
            ),
        })
    }
}

/// How often a warning that anyone can cause may come ([`Warnings::default`]).
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(60);

/// A warning that anyone can cause (a flood, a misconfigured proxy): at most one per window,
/// with the count of what it stands for.
#[derive(Debug)]
pub(crate) struct Warnings(std::sync::Mutex<LineBudget>);

impl Default for Warnings {
    /// At most one warning per [`WARN_EVERY`].
    fn default() -> Self {
        Self::every(WARN_EVERY)
    }
}

impl Warnings {
    /// At most one warning per `window`.
    pub(crate) const fn every(window: Duration) -> Self {
        Self(std::sync::Mutex::new(LineBudget::new(1, window)))
    }

    /// Counts one occurrence now: `Some(n)` when a warning is due, `n` being the occurrences it
    /// stands for (this one included). A poisoned count warns nothing more.
    pub(crate) fn due(&self) -> Option<u64> {
        let mut budget = self.0.lock().ok()?;
        budget.count(SystemTime::now()).map(|before| before + 1)
    }
}

#[cfg(test)]
mod tests;
