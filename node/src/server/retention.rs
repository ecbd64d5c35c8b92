//! The leader's side of retention: every `interval_ms` (and at once again
//! while it finds full batches) it scans its applied state with the pure
//! [`prune_candidates`] in bounded chunks, releasing the state's lock
//! between them, and commits what it found as one [`Command::Prune`]. The
//! command carries the windows and the leader's clock, so every node
//! removes the same records at the same log index (`respawn_state::retention`).

use crate::cluster::Cluster;
use respawn_config::RetentionSection;
use respawn_state::retention::{PruneBatch, RetentionWindows};
use respawn_state::{prune_candidates, Applied, Command, PruneCursor};
use std::time::Duration;

/// Records looked at under one hold of the state's read lock.
const SCAN_CHUNK: usize = 4_096;

/// The windows of a `[retention]` section, in milliseconds.
pub fn windows(cfg: &RetentionSection) -> RetentionWindows {
    RetentionWindows {
        records_ms: cfg.records_secs.saturating_mul(1_000),
        issued_ids_ms: cfg.issued_ids_secs.saturating_mul(1_000),
    }
}

/// Runs until `shutdown`; does its work only while this node leads.
pub async fn prune_loop(
    cluster: Cluster,
    cfg: RetentionSection,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let w = windows(&cfg);
    let interval = Duration::from_millis(cfg.interval_ms);
    let mut cursor = PruneCursor::default();
    loop {
        let again = if cluster.consensus.is_leader() {
            prune_once(&cluster, w, cfg.batch, &mut cursor).await
        } else {
            cursor = PruneCursor::default();
            false
        };
        if *shutdown.borrow() {
            return;
        }
        if !again {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One batch: scans until the pass is complete or a kind fills up, then
/// commits it. Returns true when a batch was full (more may be waiting).
async fn prune_once(
    cluster: &Cluster,
    w: RetentionWindows,
    max_batch: usize,
    cursor: &mut PruneCursor,
) -> bool {
    let now = respawn_types::now_millis();
    let mut batch = PruneBatch::new(w);
    loop {
        let complete = cluster
            .consensus
            .read(|s| prune_candidates(s, now, w, max_batch, SCAN_CHUNK, cursor, &mut batch));
        if complete {
            cursor.new_pass();
            break;
        }
        if batch.is_full(max_batch) {
            break;
        }
        tokio::task::yield_now().await;
    }
    if batch.is_empty() {
        return false;
    }
    let full = batch.is_full(max_batch);
    let (sessions, processes, issued) = (
        batch.sessions.len(),
        batch.processes.len(),
        batch.issued_ids.len(),
    );
    match cluster.consensus.propose(Command::Prune(batch)).await {
        Ok(Applied::Done) => {
            metrics::counter!("respawn_pruned_total", "kind" => "battle_session")
                .increment(sessions as u64);
            metrics::counter!("respawn_pruned_total", "kind" => "process")
                .increment(processes as u64);
            metrics::counter!("respawn_pruned_total", "kind" => "issued_id")
                .increment(issued as u64);
            tracing::debug!(sessions, processes, issued, "pruned records past retention");
            full
        }
        Ok(Applied::Unchanged) => false,
        Err(e) => {
            tracing::debug!(error = %e, "prune not committed; the next pass retries");
            false
        }
    }
}
