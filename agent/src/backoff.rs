//! Delays: relaunching crash-looping processes and retrying reports.

use std::time::Duration;

/// First relaunch delay after a process failed to start.
const LAUNCH_BASE: Duration = Duration::from_millis(200);
/// Longest relaunch delay.
const LAUNCH_MAX: Duration = Duration::from_secs(30);

/// Relaunch backoff. A process that exits before calling ProcessReady (or
/// cannot be spawned at all) is a failed start; consecutive failed starts
/// delay the next launch exponentially, and a process that reaches
/// ProcessReady resets the count. A DS that ends normally after hosting its
/// session is therefore replaced at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchBackoff {
    failures: u32,
}

impl LaunchBackoff {
    /// Records how a process ended: `started` = it had called ProcessReady.
    pub fn on_exit(&mut self, started: bool) {
        if started {
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// Consecutive failed starts.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long to wait before the next launch.
    pub fn delay(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (self.failures - 1).min(16);
        LAUNCH_BASE.saturating_mul(factor).min(LAUNCH_MAX)
    }
}

/// Delay before retry `attempt` (0-based) of a report the link refused:
/// 50 ms doubling up to 2 s.
pub fn report_retry_delay(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    Duration::from_millis(50)
        .saturating_mul(factor)
        .min(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_starts_back_off_exponentially_up_to_the_cap() {
        let mut b = LaunchBackoff::default();
        assert_eq!(b.delay(), Duration::ZERO);
        b.on_exit(false);
        assert_eq!(b.delay(), Duration::from_millis(200));
        b.on_exit(false);
        assert_eq!(b.delay(), Duration::from_millis(400));
        b.on_exit(false);
        assert_eq!(b.delay(), Duration::from_millis(800));
        for _ in 0..100 {
            b.on_exit(false);
        }
        assert_eq!(b.delay(), Duration::from_secs(30));
        assert_eq!(b.failures(), 103);
    }

    #[test]
    fn a_process_that_got_ready_resets_the_backoff() {
        let mut b = LaunchBackoff::default();
        b.on_exit(false);
        b.on_exit(false);
        b.on_exit(true);
        assert_eq!(b.delay(), Duration::ZERO);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn report_retries_grow_and_are_capped() {
        assert_eq!(report_retry_delay(0), Duration::from_millis(50));
        assert_eq!(report_retry_delay(2), Duration::from_millis(200));
        assert_eq!(report_retry_delay(10), Duration::from_secs(2));
        assert_eq!(report_retry_delay(u32::MAX), Duration::from_secs(2));
    }
}
