//! The health-check counter: pure bookkeeping of the seed's rule "three
//! consecutive unhealthy answers, or three consecutive checks without an
//! answer, and the process is replaced".

/// Consecutive failed checks after which a process is terminated.
pub const UNHEALTHY_THRESHOLD: u32 = 3;

/// What to do at a health-check tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Send `HealthCheck { seq }` to the process.
    Send(u64),
    /// The process failed too many checks: terminate it.
    Terminate,
}

/// What an answer from the process means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy; the failure count is reset.
    Healthy,
    /// Unhealthy, but below the threshold.
    Unhealthy {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Unhealthy for the last time: terminate the process.
    Terminate,
    /// Not the outstanding check (late, duplicate or invented); ignored.
    Stale,
}

/// Health state of one process. A check that is still unanswered at the next
/// tick counts as a failure: the answer timeout is the check interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTracker {
    next_seq: u64,
    outstanding: Option<u64>,
    failures: u32,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTracker {
    /// A tracker for a process that has just become ready.
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            outstanding: None,
            failures: 0,
        }
    }

    /// Consecutive failed checks so far.
    #[cfg(test)]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Health checks sent so far.
    #[cfg(test)]
    pub fn sent(&self) -> u64 {
        self.next_seq - 1
    }

    /// The check interval elapsed.
    pub fn on_tick(&mut self) -> Tick {
        if self.outstanding.take().is_some() {
            self.failures += 1;
            if self.failures >= UNHEALTHY_THRESHOLD {
                return Tick::Terminate;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding = Some(seq);
        Tick::Send(seq)
    }

    /// The process answered check `seq`.
    pub fn on_answer(&mut self, seq: u64, healthy: bool) -> Verdict {
        if self.outstanding != Some(seq) {
            return Verdict::Stale;
        }
        self.outstanding = None;
        if healthy {
            self.failures = 0;
            return Verdict::Healthy;
        }
        self.failures += 1;
        if self.failures >= UNHEALTHY_THRESHOLD {
            Verdict::Terminate
        } else {
            Verdict::Unhealthy {
                failures: self.failures,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_missed_checks_terminate() {
        let mut h = HealthTracker::new();
        assert_eq!(h.on_tick(), Tick::Send(1));
        assert_eq!(h.on_tick(), Tick::Send(2)); // 1 missed
        assert_eq!(h.on_tick(), Tick::Send(3)); // 2 missed
        assert_eq!(h.failures(), 2);
        assert_eq!(h.on_tick(), Tick::Terminate); // 3 missed
    }

    #[test]
    fn three_unhealthy_answers_terminate() {
        let mut h = HealthTracker::new();
        let Tick::Send(s) = h.on_tick() else { panic!() };
        assert_eq!(h.on_answer(s, false), Verdict::Unhealthy { failures: 1 });
        let Tick::Send(s) = h.on_tick() else { panic!() };
        assert_eq!(h.on_answer(s, false), Verdict::Unhealthy { failures: 2 });
        let Tick::Send(s) = h.on_tick() else { panic!() };
        assert_eq!(h.on_answer(s, false), Verdict::Terminate);
    }

    #[test]
    fn a_healthy_answer_resets_the_count_and_misses_mix_with_unhealthy() {
        let mut h = HealthTracker::new();
        let Tick::Send(s) = h.on_tick() else { panic!() };
        assert_eq!(h.on_answer(s, false), Verdict::Unhealthy { failures: 1 });
        assert_eq!(h.on_tick(), Tick::Send(2));
        assert_eq!(h.on_tick(), Tick::Send(3)); // seq 2 missed: 2 failures
        assert_eq!(h.on_answer(3, true), Verdict::Healthy);
        assert_eq!(h.failures(), 0);
        // Two misses then an unhealthy answer: three in a row.
        h.on_tick();
        h.on_tick();
        let Tick::Send(s) = h.on_tick() else { panic!() };
        assert_eq!(h.failures(), 2);
        assert_eq!(h.on_answer(s, false), Verdict::Terminate);
    }

    #[test]
    fn late_duplicate_and_invented_answers_are_stale() {
        let mut h = HealthTracker::new();
        assert_eq!(h.on_answer(1, true), Verdict::Stale); // nothing sent yet
        let Tick::Send(s) = h.on_tick() else { panic!() };
        assert_eq!(h.on_answer(s + 1, true), Verdict::Stale);
        assert_eq!(h.on_answer(s, false), Verdict::Unhealthy { failures: 1 });
        assert_eq!(h.on_answer(s, true), Verdict::Stale); // duplicate
        assert_eq!(h.failures(), 1);
        let Tick::Send(s2) = h.on_tick() else {
            panic!()
        };
        assert_eq!(h.on_answer(s, true), Verdict::Stale); // late answer to the old check
        assert_eq!(h.on_answer(s2, true), Verdict::Healthy);
    }
}
