//! Delays: relaunching crash-looping DS processes and retrying reports, both
//! capped exponential backoffs ([`respawn_types::backoff`]).

use respawn_runtime::LaunchBackoff;
use respawn_types::backoff::capped_exponential;
use std::time::Duration;

/// First relaunch delay after a process failed to start.
const LAUNCH_BASE: Duration = Duration::from_millis(200);
/// Longest relaunch delay.
const LAUNCH_MAX: Duration = Duration::from_secs(30);
/// First retry delay of a report the link refused.
const REPORT_RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest retry delay of a report.
const REPORT_RETRY_MAX: Duration = Duration::from_secs(2);

/// The DS relaunch backoff. A process that exits before calling
/// ProcessReady (or cannot be spawned at all) is a failed start; consecutive
/// failed starts delay the next launch exponentially, and a process that
/// reaches ProcessReady resets the count
/// ([`LaunchBackoff::on_exit`]`(started)`). A DS that ends normally after
/// hosting its session is therefore replaced at once.
pub fn ds_launch_backoff() -> LaunchBackoff {
    LaunchBackoff::new(LAUNCH_BASE, LAUNCH_MAX)
}

/// Delay before retry `attempt` (0-based) of a report the link refused:
/// 50 ms doubling up to 2 s.
pub fn report_retry_delay(attempt: u32) -> Duration {
    capped_exponential(REPORT_RETRY_BASE, REPORT_RETRY_MAX, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_starts_back_off_exponentially_up_to_the_cap() {
        let mut b = ds_launch_backoff();
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
        let mut b = ds_launch_backoff();
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
