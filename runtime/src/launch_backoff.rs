//! The one relaunch policy of supervised children, DS processes and VS
//! instances alike: consecutive failures delay the next launch exponentially
//! (capped, [`respawn_types::backoff::capped_exponential`]); a child that got
//! properly started resets the count.
//!
//! What counts as "properly started" is the supervisor's to say: a DS that
//! called ProcessReady, a VS instance that ran long enough.

use std::time::Duration;

use respawn_types::backoff::capped_exponential;

/// Relaunch backoff: no delay before any failure, then `base` doubling up to
/// `max` with each consecutive failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchBackoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl LaunchBackoff {
    /// A backoff with no failure yet.
    pub const fn new(base: Duration, max: Duration) -> Self {
        LaunchBackoff {
            base,
            max,
            failures: 0,
        }
    }

    /// Records how a child ended: `started` = it had got properly started
    /// (resets the count), otherwise it is one more failure.
    pub fn on_exit(&mut self, started: bool) {
        if started {
            self.on_started();
        } else {
            self.on_failure();
        }
    }

    /// The child got properly started: the next launch does not wait.
    pub fn on_started(&mut self) {
        self.failures = 0;
    }

    /// A launch failed or a child ended badly: the next launch waits longer.
    pub fn on_failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long to wait before the next launch.
    pub fn delay(&self) -> Duration {
        match self.failures {
            0 => Duration::ZERO,
            n => capped_exponential(self.base, self.max, n - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn failures_double_the_delay_up_to_the_cap_and_a_start_resets_it() {
        let mut b = LaunchBackoff::new(500 * MS, 30_000 * MS);
        assert_eq!(b.delay(), Duration::ZERO);
        b.on_failure();
        assert_eq!(b.delay(), 500 * MS);
        b.on_exit(false);
        assert_eq!(b.delay(), 1_000 * MS);
        for _ in 0..100 {
            b.on_failure();
        }
        assert_eq!(b.delay(), 30_000 * MS);
        assert_eq!(b.failures(), 102);
        b.on_exit(true);
        assert_eq!(b.delay(), Duration::ZERO);
        b.on_failure();
        assert_eq!(b.delay(), 500 * MS);
    }
}
