//! Draining the host before the agent exits (what `respawn agent` does on
//! SIGTERM): the agent launches no more DS processes and asks the cluster
//! to drain its host (the command of `POST /admin/hosts/{host_id}/drain`),
//! so the host takes no new session, its idle processes get
//! OnProcessTerminate and its busy ones finish their sessions. The drain is
//! over when no process is left (the host is DRAINED). Past the deadline
//! the processes still running are ended: OnProcessTerminate, then killed
//! after the kill grace.
//!
//! A host its own agent drained is undrained when an agent starts again
//! with the same data directory (a marker file, [`crate::drain_marker::MARKER`]); a drain made
//! through the admin API alone is kept across agent restarts.

use crate::agent::Agent;
use crate::drain_marker::MARKER;
use respawn_types::agent::AgentToServer;
use respawn_types::ExitReason;
use std::time::Duration;
use tokio::time::Instant;

/// How long the agent waits, after its last process is gone, for its
/// queued reports (ProcessExited…) to reach the cluster.
const REPORTS_GRACE: Duration = Duration::from_secs(10);

/// Past the kill grace, how long processes get to be reaped after the kill.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every DS process ended before the deadline: the host is DRAINED.
    Drained,
    /// The deadline passed with `ended` processes still running; they were
    /// sent OnProcessTerminate and killed after the kill grace.
    DeadlinePassed { ended: usize },
}

impl Agent {
    /// Drains the host with the configured deadline
    /// ([`crate::AgentConfig::drain_deadline`]) and returns once no DS
    /// process is left. The agent keeps serving its processes meanwhile;
    /// call [`Agent::shutdown`] afterwards.
    pub async fn drain(&self) -> DrainOutcome {
        self.drain_within(self.shared.config.drain_deadline).await
    }

    /// [`Agent::drain`] with another deadline.
    pub async fn drain_within(&self, deadline: Duration) -> DrainOutcome {
        let shared = &self.shared;
        let marker = shared.config.data_dir.join(MARKER);
        if let Err(e) = std::fs::write(&marker, b"drained by its agent\n") {
            tracing::warn!(path = %marker.display(), error = %e, "cannot write the drain marker");
        }
        let live = {
            let mut reg = shared.reg();
            reg.stopping = true;
            reg.procs.len()
        };
        tracing::info!(processes = live, ?deadline, "draining this host");
        shared
            .reporter
            .send(AgentToServer::SetDraining { draining: true });
        let deadline = Instant::now() + deadline;
        let outcome = if self.all_gone_by(deadline).await {
            tracing::info!("host drained: no DS process left");
            DrainOutcome::Drained
        } else {
            let ended = {
                let mut reg = shared.reg();
                let n = reg.procs.len();
                for p in reg.procs.values_mut() {
                    shared.begin_terminate(
                        p,
                        "host drain deadline passed".into(),
                        ExitReason::Killed,
                    );
                }
                n
            };
            tracing::warn!(
                ended,
                "drain deadline passed: ending the sessions still running"
            );
            let reaped = Instant::now() + shared.config.kill_grace + REAP_GRACE;
            if !self.all_gone_by(reaped).await {
                tracing::warn!("some DS processes did not exit after the kill");
            }
            DrainOutcome::DeadlinePassed { ended }
        };
        // Let the cluster hear of the last exits before the link goes.
        let reported = Instant::now() + REPORTS_GRACE;
        while shared.reporter.pending() > 0 && Instant::now() < reported {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        outcome
    }

    /// Waits until no DS process is left; false if `deadline` came first.
    async fn all_gone_by(&self, deadline: Instant) -> bool {
        loop {
            let exited = self.shared.exited.notified();
            if self.shared.reg().procs.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, exited).await.is_err() {
                return self.shared.reg().procs.is_empty();
            }
        }
    }
}
