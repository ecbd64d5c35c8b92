//! Issued battle session ids (issued with a cap per title region, taken by
//! a placement) and `Prune`: the removal of records past their retention
//! window (see `crate::retention` for the rules and why it is
//! deterministic).

use crate::cluster_state::ClusterState;
use crate::command::*;
use crate::retention::{IssuedId, MAX_PRUNE_BATCH, RETENTION_RANGE_MS};
use respawn_types::*;

impl ClusterState {
    /// `IssueBattleSessionId`, `Prune`.
    pub(super) fn apply_retention(&mut self, at: UnixMillis, cmd: &Command) -> Response {
        match cmd {
            Command::IssueBattleSessionId {
                title_region_id,
                battle_session_id,
                max_outstanding,
            } => self.issue_session_id(at, title_region_id, battle_session_id, *max_outstanding),
            Command::Prune(batch) => self.prune(at, batch),
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request("not a retention command")),
        }
    }

    fn issue_session_id(
        &mut self,
        at: UnixMillis,
        tr: &TitleRegionId,
        id: &BattleSessionId,
        max_outstanding: Option<u32>,
    ) -> Response {
        self.title_region(tr)?;
        // The same command applied again (a forward retried after a leader
        // change, its first attempt committed): the id is the edge's fresh
        // random one, so only a repeat names it for the same title region.
        if self
            .issued_session_ids
            .get(id)
            .is_some_and(|issued| issued.title_region_id == *tr)
        {
            return Ok(Applied::Done);
        }
        if self.battle_sessions.contains_key(id) || self.issued_session_ids.contains_key(id) {
            return Err(Rejection::Conflict(format!(
                "battle session id {id} already exists"
            )));
        }
        let held = self.issued_per_region.get(tr).copied().unwrap_or(0);
        if let Some(cap) = max_outstanding.filter(|cap| held >= *cap) {
            return Err(Rejection::TooMany(format!(
                "title region {tr} holds {held} issued battle session ids not yet used (at most {cap}); \
                 use them in StartBattleSessionPlacement or wait for them to expire"
            )));
        }
        self.issued_session_ids.insert(
            id.clone(),
            IssuedId {
                title_region_id: tr.clone(),
                issued_at: at,
            },
        );
        self.issued_by_time.insert((at, id.clone()));
        *self.issued_per_region.entry(tr.clone()).or_default() += 1;
        Ok(Applied::Done)
    }

    /// Removes an issued id and its index entries (used by a placement, or expired).
    pub(super) fn take_issued_id(&mut self, id: &BattleSessionId) -> Option<IssuedId> {
        let issued = self.issued_session_ids.remove(id)?;
        self.issued_by_time.remove(&(issued.issued_at, id.clone()));
        let tr = &issued.title_region_id;
        if let Some(n) = self.issued_per_region.get_mut(tr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.issued_per_region.remove(tr);
            }
        }
        Some(issued)
    }

    fn prune(&mut self, at: UnixMillis, b: &crate::retention::PruneBatch) -> Response {
        let w = b.retention;
        let in_range = |ms: u64| (RETENTION_RANGE_MS.0..=RETENTION_RANGE_MS.1).contains(&ms);
        if !in_range(w.records_ms) || !in_range(w.issued_ids_ms) {
            return Err(Rejection::bad_request(format!(
                "retention windows must be between {} and {} ms",
                RETENTION_RANGE_MS.0, RETENTION_RANGE_MS.1
            )));
        }
        if b.sessions.len() > MAX_PRUNE_BATCH
            || b.processes.len() > MAX_PRUNE_BATCH
            || b.issued_ids.len() > MAX_PRUNE_BATCH
        {
            return Err(Rejection::bad_request(format!(
                "at most {MAX_PRUNE_BATCH} ids of each kind in one prune"
            )));
        }
        self.rebuild_issued_indexes_if_stale();
        let mut removed = 0usize;
        for id in &b.sessions {
            let prunable = self
                .battle_sessions
                .get(id)
                .is_some_and(|s| self.session_prunable(s, at, w));
            if prunable {
                self.remove_session_group(id);
                removed += 1;
            }
        }
        for id in &b.processes {
            let prunable = self
                .processes
                .get(id)
                .is_some_and(|p| self.process_prunable(p, at, w));
            if prunable {
                self.remove_process(id);
                removed += 1;
            }
        }
        for (t, id) in &b.issued_ids {
            let expired = t.saturating_add(w.issued_ids_ms) <= at
                && self
                    .issued_session_ids
                    .get(id)
                    .is_some_and(|i| i.issued_at == *t);
            if expired {
                self.take_issued_id(id);
                self.pruned.note_issued_id(id);
                removed += 1;
            }
        }
        Ok(if removed == 0 {
            Applied::Unchanged
        } else {
            Applied::Done
        })
    }

    /// A battle session with its placement and player battle sessions. The
    /// session is TERMINATED and they are terminal, so no index holds them;
    /// the removals below only make sure of it.
    fn remove_session_group(&mut self, id: &BattleSessionId) {
        let Some(s) = self.battle_sessions.remove(id) else {
            return;
        };
        self.pruned.note_session(id);
        if let Some(p) = &s.process_id {
            if let Some(set) = self.sessions_by_process.get_mut(p) {
                set.remove(id);
                if set.is_empty() {
                    self.sessions_by_process.remove(p);
                }
            }
        }
        let Some(pl) = self.placements.remove(&s.placement_id) else {
            return;
        };
        self.pruned.note_placement(&pl.id);
        if let Some(set) = self.waiting_by_fleet.get_mut(&pl.fleet_id) {
            set.remove(&(pl.created_at, pl.id.clone()));
            if set.is_empty() {
                self.waiting_by_fleet.remove(&pl.fleet_id);
            }
        }
        for pbs in &pl.player_battle_sessions {
            let Some(p) = self.player_battle_sessions.remove(pbs) else {
                continue;
            };
            self.pruned.note_player_battle_session(pbs);
            if let Some(set) = self.sessions_by_player.get_mut(&p.player_id) {
                set.remove(pbs);
                if set.is_empty() {
                    self.sessions_by_player.remove(&p.player_id);
                }
            }
        }
    }

    fn remove_process(&mut self, id: &ProcessId) {
        let Some(p) = self.processes.remove(id) else {
            return;
        };
        self.pruned.note_process(id);
        for index in [
            &mut self.live_processes_by_fleet,
            &mut self.placeable_by_fleet,
        ] {
            if let Some(set) = index.get_mut(&p.fleet_id) {
                set.remove(id);
                if set.is_empty() {
                    index.remove(&p.fleet_id);
                }
            }
        }
    }

    /// A state read from a snapshot taken before issued ids had an issue
    /// time has them without index entries: index them (as issued at time
    /// 0, so they expire at the first prune).
    fn rebuild_issued_indexes_if_stale(&mut self) {
        if self.issued_by_time.len() == self.issued_session_ids.len() {
            return;
        }
        self.issued_by_time.clear();
        self.issued_per_region.clear();
        for (id, i) in &self.issued_session_ids {
            self.issued_by_time.insert((i.issued_at, id.clone()));
            *self
                .issued_per_region
                .entry(i.title_region_id.clone())
                .or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests;
