//! Player battle sessions: reserved with their placement or added later,
//! accepted, disconnected and removed by the DS, terminated by the backend,
//! completed when their battle session ends.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::limits::{MAX_PLAYER_DATA_BYTES, MAX_TEAM_BYTES};
use respawn_types::*;
use std::collections::BTreeSet;

impl ClusterState {
    /// `AddPlayers`, `PlayerUpdate`, `TerminatePlayerBattleSession`.
    pub(super) fn apply_player(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::AddPlayers {
                title_region_id,
                battle_session_id,
                players,
            } => self.add_players(at, title_region_id, battle_session_id, players, ev),
            Command::PlayerUpdate {
                process_id,
                battle_session_id,
                player_battle_session_id,
                action,
            } => {
                let s = self.session(battle_session_id)?;
                if s.process_id.as_ref() != Some(process_id) {
                    return Err(super::not_hosted_by(battle_session_id, s, process_id));
                }
                if s.status != BattleSessionStatus::Active {
                    return Err(Rejection::invalid_state(format!(
                        "battle session {battle_session_id} is {:?}, not ACTIVE",
                        s.status
                    )));
                }
                self.player_transition(at, battle_session_id, player_battle_session_id, *action, ev)
            }
            Command::TerminatePlayerBattleSession {
                title_region_id,
                battle_session_id,
                player_battle_session_id,
            } => {
                let s = self.session(battle_session_id)?;
                if &s.title_region_id != title_region_id {
                    return Err(Rejection::not_found("battle session", battle_session_id));
                }
                let done = self.player_transition(
                    at,
                    battle_session_id,
                    player_battle_session_id,
                    PlayerAction::Remove,
                    ev,
                )?;
                if done == Applied::Done {
                    ev.push(Event::PlayersTerminated {
                        battle_session_id: battle_session_id.clone(),
                        player_battle_session_ids: vec![player_battle_session_id.clone()],
                    });
                }
                Ok(done)
            }
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request(
                "not a player battle session command",
            )),
        }
    }

    pub(super) fn check_new_players(
        &self,
        players: &[(PlayerBattleSessionId, PlayerSpec)],
        existing: &[PlayerBattleSessionId],
    ) -> Result<(), Rejection> {
        let mut seen_pbs = BTreeSet::new();
        let mut seen_players: BTreeSet<&PlayerId> = existing
            .iter()
            .filter_map(|id| self.player_battle_sessions.get(id).map(|r| &**r))
            .filter(|p| p.status != PlayerBattleSessionStatus::Completed)
            .map(|p| &p.player_id)
            .collect();
        for (pbs, spec) in players {
            if self.player_battle_sessions.contains_key(pbs) || !seen_pbs.insert(pbs) {
                return Err(Rejection::Conflict(format!(
                    "player battle session id {pbs} already exists"
                )));
            }
            if !seen_players.insert(&spec.player_id) {
                return Err(Rejection::Conflict(format!(
                    "player {} is already in this battle session",
                    spec.player_id
                )));
            }
            if spec.player_data.len() > MAX_PLAYER_DATA_BYTES {
                return Err(Rejection::bad_request(format!(
                    "player_data is limited to {MAX_PLAYER_DATA_BYTES} bytes"
                )));
            }
            if spec.team.len() > MAX_TEAM_BYTES {
                return Err(Rejection::bad_request(format!(
                    "team is limited to {MAX_TEAM_BYTES} bytes"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn insert_players(
        &mut self,
        at: UnixMillis,
        tr: &TitleRegionId,
        bs: &BattleSessionId,
        players: &[(PlayerBattleSessionId, PlayerSpec)],
    ) {
        for (id, spec) in players {
            self.player_battle_sessions.insert(
                id.clone(),
                PlayerBattleSession {
                    id: id.clone(),
                    player_id: spec.player_id.clone(),
                    battle_session_id: bs.clone(),
                    title_region_id: tr.clone(),
                    status: PlayerBattleSessionStatus::Reserved,
                    player_data: spec.player_data.clone(),
                    team: spec.team.clone(),
                    created_at: at,
                    updated_at: at,
                }
                .into(),
            );
            self.sessions_by_player
                .entry(spec.player_id.clone())
                .or_default()
                .insert(id.clone());
        }
    }

    fn add_players(
        &mut self,
        at: UnixMillis,
        tr: &TitleRegionId,
        bs_id: &BattleSessionId,
        players: &[(PlayerBattleSessionId, PlayerSpec)],
        ev: &mut Vec<Event>,
    ) -> Response {
        let s = self
            .battle_sessions
            .get(bs_id)
            .filter(|s| &s.title_region_id == tr)
            .ok_or_else(|| {
                Rejection::missing("battle session", bs_id, self.pruned.session(bs_id))
            })?;
        if s.status == BattleSessionStatus::Terminated {
            return Err(Rejection::invalid_state(format!(
                "battle session {bs_id} is TERMINATED"
            )));
        }
        if players.is_empty() {
            return Err(Rejection::bad_request("players must not be empty"));
        }
        let placement_id = s.placement_id.clone();
        let max = s.max_players;
        let existing = self
            .placements
            .get(&placement_id)
            .map(|p| p.player_battle_sessions.clone())
            .unwrap_or_default();
        let current = existing
            .iter()
            .filter_map(|id| self.player_battle_sessions.get(id).map(|r| &**r))
            .filter(|p| p.status != PlayerBattleSessionStatus::Completed)
            .count();
        if current + players.len() > max as usize {
            return Err(Rejection::Conflict(format!(
                "battle session {bs_id} has room for {} more player(s), {} requested",
                (max as usize).saturating_sub(current),
                players.len()
            )));
        }
        self.check_new_players(players, &existing)?;
        self.insert_players(at, tr, bs_id, players);
        if let Some(pl) = self.placements.get_mut(&placement_id) {
            pl.player_battle_sessions
                .extend(players.iter().map(|(id, _)| id.clone()));
        }
        for (id, _) in players {
            ev.push(Event::PlayerChanged {
                player_battle_session_id: id.clone(),
                status: PlayerBattleSessionStatus::Reserved,
            });
        }
        ev.push(Event::PlayersAdded {
            battle_session_id: bs_id.clone(),
        });
        Ok(Applied::Done)
    }

    fn player_transition(
        &mut self,
        at: UnixMillis,
        bs_id: &BattleSessionId,
        pbs_id: &PlayerBattleSessionId,
        action: PlayerAction,
        ev: &mut Vec<Event>,
    ) -> Response {
        use PlayerBattleSessionStatus as S;
        let p = self
            .player_battle_sessions
            .get(pbs_id)
            .filter(|p| &p.battle_session_id == bs_id)
            .ok_or_else(|| {
                let expired = self.pruned.player_battle_session(pbs_id);
                Rejection::missing("player battle session", pbs_id, expired)
            })?;
        let next = match (action, p.status) {
            (PlayerAction::Accept, S::Active)
            | (PlayerAction::Disconnect, S::Disconnected)
            | (PlayerAction::Remove, S::Completed) => return Ok(Applied::Unchanged),
            (PlayerAction::Accept, S::Reserved | S::Disconnected) => S::Active,
            (PlayerAction::Disconnect, S::Active) => S::Disconnected,
            (PlayerAction::Remove, S::Reserved | S::Active | S::Disconnected) => S::Completed,
            (a, s) => {
                return Err(Rejection::invalid_state(format!(
                    "player battle session {pbs_id} is {s:?}; {a:?} is not allowed"
                )))
            }
        };
        if next == S::Completed {
            self.complete_player(at, pbs_id, ev);
        } else if let Some(p) = self.player_battle_sessions.get_mut(pbs_id) {
            p.status = next;
            p.updated_at = at;
            ev.push(Event::PlayerChanged {
                player_battle_session_id: pbs_id.clone(),
                status: next,
            });
        }
        Ok(Applied::Done)
    }

    pub(super) fn complete_player(
        &mut self,
        at: UnixMillis,
        pbs_id: &PlayerBattleSessionId,
        ev: &mut Vec<Event>,
    ) {
        let Some(p) = self.player_battle_sessions.get_mut(pbs_id) else {
            return;
        };
        if p.status == PlayerBattleSessionStatus::Completed {
            return;
        }
        p.status = PlayerBattleSessionStatus::Completed;
        p.updated_at = at;
        let player = p.player_id.clone();
        if let Some(set) = self.sessions_by_player.get_mut(&player) {
            set.remove(pbs_id);
            if set.is_empty() {
                self.sessions_by_player.remove(&player);
            }
        }
        ev.push(Event::PlayerChanged {
            player_battle_session_id: pbs_id.clone(),
            status: PlayerBattleSessionStatus::Completed,
        });
    }
}

#[cfg(test)]
mod tests;
