//! When to build a snapshot: after so many applied *commands* or so many
//! bytes of log since the last one, whichever comes first.
//!
//! openraft 0.9 counts log *entries* only (`SnapshotPolicy::LogsSinceLast`),
//! and one entry is a batch of up to `max_batch` commands
//! ([`crate::types::Batch`]): under load, 5000 entries can hold millions of
//! commands, so the log on disk and the replay at start-up would grow with
//! the load. A small task per member watches two counters — requests
//! applied by the state machine and encoded bytes appended to the log — and
//! asks openraft for a snapshot (`raft.trigger().snapshot()`) once either
//! passes its threshold since the last snapshot. openraft then purges the
//! log behind the snapshot, keeping `max_in_snapshot_log_to_keep` entries.
//!
//! The decision is the pure [`snapshot_due`]; [`spawn_watcher`] is the
//! shell around it.

use crate::types::Raft;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// Thresholds of the snapshot trigger. `0` turns a threshold off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotTrigger {
    /// Build a snapshot once this many commands were applied since the
    /// last one.
    pub commands: u64,
    /// Build a snapshot once this many bytes of log were appended since
    /// the last one.
    pub log_bytes: u64,
    /// A snapshot asked for that has not appeared after this long is asked
    /// for again (ms).
    pub retry_ms: u64,
}

impl Default for SnapshotTrigger {
    fn default() -> Self {
        SnapshotTrigger {
            commands: 20_000,
            log_bytes: 32 * 1024 * 1024,
            retry_ms: 10_000,
        }
    }
}

/// What happened since the last snapshot (built or installed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinceSnapshot {
    /// Commands applied.
    pub commands: u64,
    /// Log bytes appended.
    pub log_bytes: u64,
}

/// Whether to ask for a snapshot now. `asked_for` is how long ago a
/// snapshot was asked for that has not appeared yet (`None`: none
/// outstanding); openraft ignores a request while it builds one, so a
/// request is repeated only after `retry_ms`.
pub fn snapshot_due(
    trigger: &SnapshotTrigger,
    since: SinceSnapshot,
    asked_for: Option<Duration>,
) -> bool {
    if asked_for.is_some_and(|d| d < Duration::from_millis(trigger.retry_ms)) {
        return false;
    }
    let over = |threshold: u64, value: u64| threshold > 0 && value >= threshold;
    over(trigger.commands, since.commands) || over(trigger.log_bytes, since.log_bytes)
}

/// The counters the watcher reads.
#[derive(Clone)]
pub(crate) struct Counters {
    pub(crate) state: crate::sm::StateHandle,
    pub(crate) log: crate::log_store::LogProbe,
}

impl Counters {
    /// What happened since the latest snapshot, as of `metrics`. Log bytes
    /// are estimated as the entries after the snapshot times the mean
    /// encoded size of an entry appended by this member.
    fn since(&self, metrics: &crate::types::RaftMetrics) -> SinceSnapshot {
        let log = self.log.stats();
        let mean = log.bytes_appended / log.entries_appended.max(1);
        let entries = metrics
            .last_log_index
            .unwrap_or(0)
            .saturating_sub(metrics.snapshot.map_or(0, |s| s.index));
        SinceSnapshot {
            commands: self.state.commands_since_snapshot(),
            log_bytes: entries.saturating_mul(mean),
        }
    }
}

/// Watches the counters on every change of `raft`'s metrics (every apply
/// changes them) and triggers a snapshot when [`snapshot_due`]. Counts
/// start again from the state a snapshot holds (built here or installed
/// from the leader), not from when it appears: work applied while a
/// snapshot was being built still counts. Ends when the Raft node shuts
/// down.
pub(crate) fn spawn_watcher(raft: Raft, counters: Counters, trigger: SnapshotTrigger) {
    if trigger.commands == 0 && trigger.log_bytes == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut last_snapshot = metrics.borrow().snapshot;
        let mut asked_at: Option<Instant> = None;
        loop {
            let (snapshot, since) = {
                let m = metrics.borrow_and_update();
                (m.snapshot, counters.since(&m))
            };
            if snapshot != last_snapshot {
                last_snapshot = snapshot;
                asked_at = None;
            }
            if snapshot_due(&trigger, since, asked_at.map(|t| t.elapsed())) {
                tracing::info!(
                    commands = since.commands,
                    log_bytes = since.log_bytes,
                    "snapshot due"
                );
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
                asked_at = Some(Instant::now());
            }
            // A retry needs a wake-up even when nothing is applied.
            let retry = Duration::from_millis(trigger.retry_ms.max(100));
            if let Ok(Err(_)) = tokio::time::timeout(retry, metrics.changed()).await {
                return; // Raft has shut down.
            }
        }
    });
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod store_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(commands: u64, log_bytes: u64) -> SnapshotTrigger {
        SnapshotTrigger {
            commands,
            log_bytes,
            retry_ms: 1000,
        }
    }

    fn since(commands: u64, log_bytes: u64) -> SinceSnapshot {
        SinceSnapshot {
            commands,
            log_bytes,
        }
    }

    #[test]
    fn due_when_either_threshold_is_reached() {
        let t = trigger(100, 1000);
        assert!(!snapshot_due(&t, since(0, 0), None));
        assert!(!snapshot_due(&t, since(99, 999), None));
        assert!(snapshot_due(&t, since(100, 0), None));
        assert!(snapshot_due(&t, since(0, 1000), None));
        assert!(snapshot_due(&t, since(5000, 5000), None));
    }

    #[test]
    fn a_zero_threshold_is_off() {
        assert!(!snapshot_due(
            &trigger(0, 0),
            since(u64::MAX, u64::MAX),
            None
        ));
        assert!(!snapshot_due(&trigger(0, 10), since(u64::MAX, 9), None));
        assert!(snapshot_due(&trigger(0, 10), since(0, 10), None));
        assert!(!snapshot_due(&trigger(10, 0), since(9, u64::MAX), None));
        assert!(snapshot_due(&trigger(10, 0), since(10, 0), None));
    }

    #[test]
    fn an_outstanding_request_is_repeated_only_after_the_retry_time() {
        let t = trigger(10, 0);
        let due = since(50, 0);
        assert!(!snapshot_due(&t, due, Some(Duration::ZERO)));
        assert!(!snapshot_due(&t, due, Some(Duration::from_millis(999))));
        assert!(snapshot_due(&t, due, Some(Duration::from_millis(1000))));
        // Not due at all: no retry either.
        assert!(!snapshot_due(
            &t,
            since(5, 0),
            Some(Duration::from_secs(60))
        ));
    }
}
