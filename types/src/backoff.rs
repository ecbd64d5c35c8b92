//! Capped exponential backoff: the one way Respawn spaces out retries,
//! relaunches and reconnections.

use std::time::Duration;

/// `base · 2^attempt`, never more than `max`. Attempt 0 waits `base`.
/// Saturating: no attempt count overflows, however large.
pub fn capped_exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    // 2^31 · any base of a millisecond or more is already past every cap we
    // use; stopping the shift there keeps it in range.
    let factor = 1u32 << attempt.min(31);
    base.saturating_mul(factor).min(max)
}

/// A retry loop's delays: `base`, doubling up to `max`, until [`Backoff::reset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next try; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let d = capped_exponential(self.base, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// How many delays have been handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_base_and_stops_at_the_cap() {
        let got: Vec<_> = (0..6)
            .map(|a| capped_exponential(100 * MS, 1_000 * MS, a))
            .collect();
        assert_eq!(got, [100, 200, 400, 800, 1_000, 1_000].map(|m| m * MS));
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        assert_eq!(capped_exponential(MS, 5_000 * MS, u32::MAX), 5_000 * MS);
        assert_eq!(
            capped_exponential(Duration::MAX, Duration::MAX, 40),
            Duration::MAX
        );
    }

    #[test]
    fn the_loop_form_doubles_and_resets() {
        let mut b = Backoff::new(50 * MS, 120 * MS);
        assert_eq!(b.next_delay(), 50 * MS);
        assert_eq!(b.next_delay(), 100 * MS);
        assert_eq!(b.next_delay(), 120 * MS);
        assert_eq!(b.attempts(), 3);
        b.reset();
        assert_eq!(b.next_delay(), 50 * MS);
    }
}
