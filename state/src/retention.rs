//! Retention: terminal records leave the replicated state after a window.
//!
//! What goes:
//! - a battle session TERMINATED for longer than the records window, with
//!   its placement (terminal by then) and its player battle sessions (all
//!   COMPLETED by then), as one group;
//! - a DS process EXITED for longer than the records window that holds no
//!   session;
//! - a battle session id issued by RequestBattleSessionID and not used
//!   within the issued-id window.
//!
//! How: the leader runs [`prune_candidates`] over its applied state and
//! proposes [`crate::Command::Prune`] with at most [`MAX_PRUNE_BATCH`] ids of
//! each kind. `apply` checks every id again against the command's `at` (the
//! leader's clock, stamped once into the log entry) and the windows the
//! command carries, so every node removes the same records at the same log
//! index; no replica reads its own clock. A live record is never removed:
//! the checks are on the record's own terminal status.
//!
//! Expired or unknown: [`PrunedWatermarks`] keeps, per kind, the newest
//! creation time among the removed ids. Ids made by `generate` carry their
//! creation time (UUID v7), so a missing id created no later than the
//! watermark is answered as expired. The memory this takes is five numbers.
//! Its limits: an id the caller chose (a placement id) carries no time and
//! answers plain "not found" once removed; and a well-formed id that never
//! existed but is older than the watermark answers "expired" too, which
//! then reads "not kept (any more)".

use crate::cluster_state::ClusterState;
pub use crate::retention_marks::{IssuedId, PrunedWatermarks};
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Most ids of one kind in one [`crate::Command::Prune`] (keeps one log entry
/// small: 40 bytes an id at most, so ≤ 80 KB a kind); bounds of both
/// retention windows (one second to 30 days).
pub use respawn_types::limits::{MAX_PRUNE_BATCH, RETENTION_RANGE_MS};

/// The windows a prune was decided with, carried in the command so that
/// `apply` checks every record against the same numbers on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionWindows {
    /// Terminal placements, battle sessions, player battle sessions and
    /// exited processes are kept this long after they end.
    pub records_ms: u64,
    /// An issued battle session id not used within this time expires.
    pub issued_ids_ms: u64,
}

/// One batch of removals (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneBatch {
    pub retention: RetentionWindows,
    /// Battle sessions, each removed with its placement and player battle sessions.
    pub sessions: Vec<BattleSessionId>,
    pub processes: Vec<ProcessId>,
    /// Issued ids with their issue time (the key of `issued_by_time`).
    pub issued_ids: Vec<(UnixMillis, BattleSessionId)>,
}

impl PruneBatch {
    pub fn new(retention: RetentionWindows) -> Self {
        PruneBatch {
            retention,
            sessions: Vec::new(),
            processes: Vec::new(),
            issued_ids: Vec::new(),
        }
    }

    /// Ids listed, all kinds together.
    pub fn len(&self) -> usize {
        self.sessions.len() + self.processes.len() + self.issued_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Has any kind reached `max_batch` ids?
    pub fn is_full(&self, max_batch: usize) -> bool {
        self.sessions.len() >= max_batch
            || self.processes.len() >= max_batch
            || self.issued_ids.len() >= max_batch
    }
}

impl ClusterState {
    /// May this battle session (with its placement and player battle
    /// sessions) be removed at `now`? Only when it is TERMINATED, has been
    /// for the records window, its placement is terminal and every player
    /// battle session of it is COMPLETED.
    pub fn session_prunable(
        &self,
        s: &BattleSession,
        now: UnixMillis,
        w: RetentionWindows,
    ) -> bool {
        if s.status != BattleSessionStatus::Terminated
            || s.terminated_at
                .unwrap_or(s.created_at)
                .saturating_add(w.records_ms)
                > now
        {
            return false;
        }
        match self.placements.get(&s.placement_id) {
            Some(pl) => {
                pl.status.is_terminal()
                    && pl.battle_session_id == s.id
                    && pl.player_battle_sessions.iter().all(|id| {
                        self.player_battle_sessions
                            .get(id)
                            .is_none_or(|p| p.status == PlayerBattleSessionStatus::Completed)
                    })
            }
            None => true,
        }
    }

    /// May this DS process be removed at `now`? Only when it has EXITED for
    /// the records window and holds no session.
    pub fn process_prunable(&self, p: &DsProcess, now: UnixMillis, w: RetentionWindows) -> bool {
        p.status == ProcessStatus::Exited
            && p.exited_at
                .unwrap_or(p.launched_at)
                .saturating_add(w.records_ms)
                <= now
            && !self.sessions_by_process.contains_key(&p.id)
    }
}

/// Where the leader's scan of the state stands between calls of
/// [`prune_candidates`]: one pass walks every battle session and process
/// once, in bounded chunks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneCursor {
    session: Option<BattleSessionId>,
    process: Option<ProcessId>,
    sessions_done: bool,
    processes_done: bool,
    issued_done: bool,
}

impl PruneCursor {
    /// Starts the next pass (after one that completed).
    pub fn new_pass(&mut self) {
        self.sessions_done = false;
        self.processes_done = false;
        self.issued_done = false;
    }
}

/// Adds to `batch` the records prunable at `now` under `w`, at most
/// `max_batch` (≤ [`MAX_PRUNE_BATCH`]) of each kind, looking at no more
/// than `max_scan` battle sessions and `max_scan` processes from where
/// `cursor` stands. Returns true when the pass is complete (every record
/// looked at once since [`PruneCursor::new_pass`]). Pure: reads `state`
/// only; the caller proposes the batch.
pub fn prune_candidates(
    state: &ClusterState,
    now: UnixMillis,
    w: RetentionWindows,
    max_batch: usize,
    max_scan: usize,
    cursor: &mut PruneCursor,
    batch: &mut PruneBatch,
) -> bool {
    let max_batch = max_batch.min(MAX_PRUNE_BATCH);
    if !cursor.issued_done {
        let room = max_batch.saturating_sub(batch.issued_ids.len());
        batch.issued_ids.extend(
            state
                .issued_by_time
                .iter()
                .take_while(|(t, _)| t.saturating_add(w.issued_ids_ms) <= now)
                .take(room)
                .cloned(),
        );
        cursor.issued_done = true;
    }
    if !cursor.sessions_done {
        cursor.sessions_done = scan(
            &state.battle_sessions,
            &mut cursor.session,
            max_scan,
            max_batch,
            &mut batch.sessions,
            |s| state.session_prunable(s, now, w),
        );
    }
    if !cursor.processes_done {
        cursor.processes_done = scan(
            &state.processes,
            &mut cursor.process,
            max_scan,
            max_batch,
            &mut batch.processes,
            |p| state.process_prunable(p, now, w),
        );
    }
    cursor.sessions_done && cursor.processes_done
}

/// Walks `map` after `from`, at most `max_scan` entries, collecting keys
/// whose value passes `keep` until `out` holds `max_take`. Returns true
/// when it reached the end (and resets `from` for the next pass).
fn scan<K: Ord + Clone, V>(
    map: &BTreeMap<K, V>,
    from: &mut Option<K>,
    max_scan: usize,
    max_take: usize,
    out: &mut Vec<K>,
    keep: impl Fn(&V) -> bool,
) -> bool {
    let lower = match from.as_ref() {
        Some(k) => Bound::Excluded(k),
        None => Bound::Unbounded,
    };
    for (seen, (k, v)) in map.range::<K, _>((lower, Bound::Unbounded)).enumerate() {
        if seen >= max_scan.max(1) || out.len() >= max_take {
            return false;
        }
        *from = Some(k.clone());
        if keep(v) {
            out.push(k.clone());
        }
    }
    *from = None;
    true
}
