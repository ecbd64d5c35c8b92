//! Placements and battle sessions: issuing a session id, starting a
//! placement, assigning it to a process, activation, timeouts, retries on
//! another process, cancellation and the end of a session.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::limits::{ACTIVATION_TIMEOUT_RANGE, MAX_PLAYERS_LIMIT, PLACEMENT_TIMEOUT_RANGE};
use respawn_types::*;

impl ClusterState {
    /// `StartPlacement`, `AssignPlacement`,
    /// `ActivateBattleSession`, `ActivationTimedOut`, `PlacementTimedOut`,
    /// `CancelPlacement`, `TerminateBattleSession`.
    pub(super) fn apply_placement(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::StartPlacement(sp) => self.start_placement(at, sp, ev),
            Command::AssignPlacement {
                placement_id,
                process_id,
            } => self.assign(at, placement_id, process_id, ev),
            Command::ActivateBattleSession {
                process_id,
                battle_session_id,
            } => self.activate(at, process_id, battle_session_id, ev),
            Command::ActivationTimedOut {
                battle_session_id,
                process_id,
            } => {
                let s = self.session(battle_session_id)?;
                if s.status != BattleSessionStatus::Activating
                    || s.process_id.as_ref() != Some(process_id)
                {
                    // A stale timer: the session moved on meanwhile.
                    return Ok(Applied::Unchanged);
                }
                self.revoke(at, battle_session_id, "activation timed out", ev);
                Ok(Applied::Done)
            }
            Command::PlacementTimedOut { placement_id } => {
                let pl = self
                    .placements
                    .get(placement_id)
                    .ok_or_else(|| Rejection::not_found("placement", placement_id))?;
                if pl.status != PlacementStatus::Pending || at < pl.deadline {
                    return Ok(Applied::Unchanged);
                }
                let bs = pl.battle_session_id.clone();
                if self.session(&bs)?.status == BattleSessionStatus::Activating {
                    // The attempt in flight decides: its activation deadline
                    // is bounded, and its failure will find the deadline passed.
                    return Ok(Applied::Unchanged);
                }
                let why = format!(
                    "no DS process activated the battle session within the placement timeout ({} ms)",
                    pl_timeout(self, placement_id)
                );
                self.finish_placement(at, placement_id, PlacementStatus::TimedOut, Some(why), ev);
                Ok(Applied::Done)
            }
            Command::CancelPlacement {
                title_region_id,
                placement_id,
            } => {
                let pl = self
                    .placements
                    .get(placement_id)
                    .filter(|p| &p.title_region_id == title_region_id)
                    .ok_or_else(|| {
                        Rejection::missing(
                            "placement",
                            placement_id,
                            self.pruned.placement(placement_id),
                        )
                    })?;
                if pl.status.is_terminal() {
                    return Err(Rejection::invalid_state(format!(
                        "placement {placement_id} is already {:?} and cannot be cancelled",
                        pl.status
                    )));
                }
                let bs = pl.battle_session_id.clone();
                if self.session(&bs)?.status == BattleSessionStatus::Activating {
                    self.withdraw_attempt(&bs, "placement cancelled", ev);
                }
                self.finish_placement(
                    at,
                    placement_id,
                    PlacementStatus::Cancelled,
                    Some("cancelled by request".into()),
                    ev,
                );
                Ok(Applied::Done)
            }
            Command::TerminateBattleSession {
                process_id,
                battle_session_id,
            } => {
                let s = self.session(battle_session_id)?;
                if s.process_id.as_ref() != Some(process_id) {
                    return Err(super::not_hosted_by(battle_session_id, s, process_id));
                }
                match s.status {
                    BattleSessionStatus::Terminated => Ok(Applied::Unchanged),
                    BattleSessionStatus::Active => {
                        self.terminate_session(at, battle_session_id, "terminated by the DS", ev);
                        Ok(Applied::Done)
                    }
                    st => Err(Rejection::invalid_state(format!(
                        "battle session {battle_session_id} is {st:?}; only an ACTIVE session can be terminated"
                    ))),
                }
            }
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request(
                "not a placement or battle session command",
            )),
        }
    }

    fn start_placement(
        &mut self,
        at: UnixMillis,
        sp: &StartPlacement,
        ev: &mut Vec<Event>,
    ) -> Response {
        self.title_region(&sp.title_region_id)?;
        let fleet = self
            .fleets
            .get(&sp.fleet_id)
            .filter(|f| f.title_region_id == sp.title_region_id)
            .ok_or_else(|| Rejection::not_found("fleet", &sp.fleet_id))?;
        // A repeated request (its first answer lost, say) names the
        // placement it made: same placement id, same battle session, same
        // parameters. It is answered as done, and changes nothing.
        if let Some(existing) = self.placements.get(&sp.placement_id) {
            if self.repeats_start(existing, sp, fleet.placement_timeout_ms) {
                return Ok(Applied::Unchanged);
            }
            return Err(Rejection::Conflict(format!(
                "placement id {} already exists with another request",
                sp.placement_id
            )));
        }
        if let Some(s) = self.battle_sessions.get(&sp.battle_session_id) {
            return Err(Rejection::Conflict(format!(
                "battle session id {} is already in use by placement {}",
                sp.battle_session_id, s.placement_id
            )));
        }
        match self.issued_session_ids.get(&sp.battle_session_id) {
            Some(i) if i.title_region_id == sp.title_region_id => {}
            _ => {
                let expired = self.pruned.issued_id(&sp.battle_session_id);
                return Err(Rejection::missing(
                    "battle session id",
                    format!(
                        "{} (request one with RequestBattleSessionID first)",
                        sp.battle_session_id
                    ),
                    expired,
                ));
            }
        }
        if sp.max_players == 0 || sp.max_players > MAX_PLAYERS_LIMIT {
            return Err(Rejection::bad_request(format!(
                "max_players must be between 1 and {MAX_PLAYERS_LIMIT}"
            )));
        }
        if sp.players.len() as u64 > u64::from(sp.max_players) {
            return Err(Rejection::bad_request(format!(
                "{} players given but max_players is {}",
                sp.players.len(),
                sp.max_players
            )));
        }
        self.check_new_players(&sp.players, &[])?;
        let timeout = sp.timeout_ms.unwrap_or(fleet.placement_timeout_ms);
        if timeout < PLACEMENT_TIMEOUT_RANGE.0 || timeout > PLACEMENT_TIMEOUT_RANGE.1 {
            return Err(Rejection::bad_request(format!(
                "placement timeout must be between {} and {} ms",
                PLACEMENT_TIMEOUT_RANGE.0, PLACEMENT_TIMEOUT_RANGE.1
            )));
        }

        self.take_issued_id(&sp.battle_session_id);
        let pbs_ids: Vec<PlayerBattleSessionId> =
            sp.players.iter().map(|(id, _)| id.clone()).collect();
        self.battle_sessions.insert(
            sp.battle_session_id.clone(),
            BattleSession {
                id: sp.battle_session_id.clone(),
                title_region_id: sp.title_region_id.clone(),
                fleet_id: sp.fleet_id.clone(),
                placement_id: sp.placement_id.clone(),
                status: BattleSessionStatus::Pending,
                process_id: None,
                ip: None,
                port: None,
                max_players: sp.max_players,
                properties: sp.properties.clone(),
                created_at: at,
                activation_deadline: None,
                attempts: 0,
                terminated_at: None,
                termination_reason: None,
            }
            .into(),
        );
        self.placements.insert(
            sp.placement_id.clone(),
            Placement {
                id: sp.placement_id.clone(),
                title_region_id: sp.title_region_id.clone(),
                fleet_id: sp.fleet_id.clone(),
                battle_session_id: sp.battle_session_id.clone(),
                status: PlacementStatus::Pending,
                created_at: at,
                deadline: at.saturating_add(timeout),
                ended_at: None,
                reason: None,
                player_battle_sessions: pbs_ids,
            }
            .into(),
        );
        self.insert_players(at, &sp.title_region_id, &sp.battle_session_id, &sp.players);
        self.waiting_by_fleet
            .entry(sp.fleet_id.clone())
            .or_default()
            .insert((at, sp.placement_id.clone()));
        ev.push(Event::PlacementCreated {
            placement_id: sp.placement_id.clone(),
            fleet_id: sp.fleet_id.clone(),
        });
        ev.push(Event::PlacementNeedsProcess {
            placement_id: sp.placement_id.clone(),
            fleet_id: sp.fleet_id.clone(),
        });
        Ok(Applied::Done)
    }

    /// Whether `sp` asks again for the placement `existing` made: same
    /// title region, fleet, battle session, players (ids and data, in
    /// order), maximum, properties and timeout. Player battle session ids
    /// are minted per request and not compared. A record pruned since (a
    /// player battle session) makes it a different request.
    fn repeats_start(&self, existing: &Placement, sp: &StartPlacement, fleet_timeout: u64) -> bool {
        let Some(session) = self.battle_sessions.get(&existing.battle_session_id) else {
            return false;
        };
        let players_match =
            existing.player_battle_sessions.len() == sp.players.len()
                && existing.player_battle_sessions.iter().zip(&sp.players).all(
                    |(id, (_, spec))| {
                        self.player_battle_sessions.get(id).is_some_and(|p| {
                            p.player_id == spec.player_id && p.player_data == spec.player_data
                        })
                    },
                );
        existing.title_region_id == sp.title_region_id
            && existing.fleet_id == sp.fleet_id
            && existing.battle_session_id == sp.battle_session_id
            && session.max_players == sp.max_players
            && session.properties == sp.properties
            && existing.deadline.saturating_sub(existing.created_at)
                == sp.timeout_ms.unwrap_or(fleet_timeout)
            && players_match
    }

    fn assign(
        &mut self,
        at: UnixMillis,
        placement_id: &PlacementId,
        process_id: &ProcessId,
        ev: &mut Vec<Event>,
    ) -> Response {
        let pl = self
            .placements
            .get(placement_id)
            .ok_or_else(|| Rejection::not_found("placement", placement_id))?;
        if pl.status != PlacementStatus::Pending {
            return Err(Rejection::invalid_state(format!(
                "placement {placement_id} is {:?}",
                pl.status
            )));
        }
        if at >= pl.deadline {
            return Err(Rejection::invalid_state(format!(
                "placement {placement_id} has passed its deadline"
            )));
        }
        let bs_id = pl.battle_session_id.clone();
        let created = pl.created_at;
        let s = self.session(&bs_id)?;
        if s.status != BattleSessionStatus::Pending {
            return Err(Rejection::Conflict(format!(
                "battle session {bs_id} is already {:?}",
                s.status
            )));
        }
        let p = self
            .processes
            .get(process_id)
            .ok_or_else(|| Rejection::not_found("process", process_id))?;
        if p.fleet_id != pl.fleet_id {
            return Err(Rejection::bad_request(format!(
                "process {process_id} is not in fleet {}",
                pl.fleet_id
            )));
        }
        if !self.is_placeable(p) {
            return Err(Rejection::Conflict(format!(
                "process {process_id} cannot take a battle session ({:?}, {} hosted, {} current)",
                p.status, p.sessions_hosted, p.sessions_current
            )));
        }
        let activation = self
            .fleets
            .get(&pl.fleet_id)
            .map(|f| f.activation_timeout_ms)
            .unwrap_or(ACTIVATION_TIMEOUT_RANGE.1);
        let (ip, port) = (p.ip.clone(), p.port);
        let fleet_id = pl.fleet_id.clone();

        if let Some(p) = self.processes.get_mut(process_id) {
            p.sessions_hosted += 1;
            p.sessions_current += 1;
        }
        self.sessions_by_process
            .entry(process_id.clone())
            .or_default()
            .insert(bs_id.clone());
        if let Some(set) = self.waiting_by_fleet.get_mut(&fleet_id) {
            set.remove(&(created, placement_id.clone()));
        }
        if let Some(s) = self.battle_sessions.get_mut(&bs_id) {
            s.status = BattleSessionStatus::Activating;
            s.process_id = Some(process_id.clone());
            s.ip = Some(ip);
            s.port = port;
            s.activation_deadline = Some(at.saturating_add(activation));
            s.attempts += 1;
        }
        ev.push(Event::SessionAssigned {
            battle_session_id: bs_id,
            process_id: process_id.clone(),
        });
        Ok(Applied::Done)
    }

    fn activate(
        &mut self,
        at: UnixMillis,
        process_id: &ProcessId,
        bs_id: &BattleSessionId,
        ev: &mut Vec<Event>,
    ) -> Response {
        let s = self.session(bs_id)?;
        match &s.process_id {
            Some(p) if p == process_id => {}
            Some(_) => {
                return Err(Rejection::forbidden(format!(
                    "battle session {bs_id} is another process's, not process {process_id}'s"
                )))
            }
            None => {
                return Err(Rejection::invalid_state(format!(
                    "battle session {bs_id} is {:?}, not ACTIVATING on process {process_id}",
                    s.status
                )))
            }
        }
        match s.status {
            BattleSessionStatus::Active => return Ok(Applied::Unchanged),
            BattleSessionStatus::Activating => {}
            st => {
                return Err(Rejection::invalid_state(format!(
                    "battle session {bs_id} is {st:?}, not ACTIVATING"
                )))
            }
        }
        let placement_id = s.placement_id.clone();
        if let Some(s) = self.battle_sessions.get_mut(bs_id) {
            s.status = BattleSessionStatus::Active;
            s.activation_deadline = None;
        }
        ev.push(Event::SessionActivated {
            battle_session_id: bs_id.clone(),
            process_id: process_id.clone(),
        });
        if let Some(pl) = self.placements.get_mut(&placement_id) {
            if pl.status == PlacementStatus::Pending {
                pl.status = PlacementStatus::Fulfilled;
                pl.ended_at = Some(at);
                ev.push(Event::PlacementFinished {
                    placement_id,
                    status: PlacementStatus::Fulfilled,
                });
            }
        }
        Ok(Applied::Done)
    }

    /// Takes an ACTIVATING session off its process without deciding what
    /// its placement does next. In simple mode the process has spent its one
    /// session, so it is asked to terminate.
    fn withdraw_attempt(&mut self, bs_id: &BattleSessionId, reason: &str, ev: &mut Vec<Event>) {
        let Some(s) = self.battle_sessions.get_mut(bs_id) else {
            return;
        };
        let Some(process_id) = s.process_id.take() else {
            return;
        };
        s.status = BattleSessionStatus::Pending;
        s.activation_deadline = None;
        s.ip = None;
        s.port = None;
        self.detach(bs_id, &process_id);
        ev.push(Event::SessionRevoked {
            battle_session_id: bs_id.clone(),
            process_id: process_id.clone(),
        });
        let simple = self
            .processes
            .get(&process_id)
            .and_then(|p| self.fleets.get(&p.fleet_id))
            .is_some_and(|f| matches!(f.mode, ServerMode::Simple | ServerMode::Forking));
        if let Some(p) = self.processes.get_mut(&process_id) {
            if simple && matches!(p.status, ProcessStatus::Ready | ProcessStatus::Launching) {
                p.status = ProcessStatus::Terminating;
                ev.push(Event::ProcessChanged {
                    process_id: process_id.clone(),
                    status: ProcessStatus::Terminating,
                });
                let _ = reason;
            }
        }
    }

    /// The attempt on the session's process failed: withdraw it, then retry
    /// elsewhere, or end the placement if attempts or time ran out.
    pub(super) fn revoke(
        &mut self,
        at: UnixMillis,
        bs_id: &BattleSessionId,
        reason: &str,
        ev: &mut Vec<Event>,
    ) {
        self.withdraw_attempt(bs_id, reason, ev);
        let Some(s) = self.battle_sessions.get(bs_id) else {
            return;
        };
        let attempts = s.attempts;
        let placement_id = s.placement_id.clone();
        let Some(pl) = self.placements.get(&placement_id) else {
            return;
        };
        if pl.status != PlacementStatus::Pending {
            return;
        }
        let max = self
            .fleets
            .get(&pl.fleet_id)
            .map(|f| f.max_placement_attempts)
            .unwrap_or(1);
        if attempts >= max {
            let why = format!("{attempts} attempt(s) failed, the last because {reason}");
            self.finish_placement(at, &placement_id, PlacementStatus::Failed, Some(why), ev);
        } else if at >= pl.deadline {
            let why = format!("placement timed out after an attempt failed because {reason}");
            self.finish_placement(at, &placement_id, PlacementStatus::TimedOut, Some(why), ev);
        } else {
            let key = (pl.created_at, placement_id.clone());
            let fleet_id = pl.fleet_id.clone();
            self.waiting_by_fleet
                .entry(fleet_id.clone())
                .or_default()
                .insert(key);
            ev.push(Event::PlacementNeedsProcess {
                placement_id,
                fleet_id,
            });
        }
    }

    fn detach(&mut self, bs_id: &BattleSessionId, process_id: &ProcessId) {
        if let Some(set) = self.sessions_by_process.get_mut(process_id) {
            set.remove(bs_id);
            if set.is_empty() {
                self.sessions_by_process.remove(process_id);
            }
        }
        if let Some(p) = self.processes.get_mut(process_id) {
            p.sessions_current = p.sessions_current.saturating_sub(1);
        }
    }

    /// Ends a PENDING placement (and its session) in a terminal state.
    fn finish_placement(
        &mut self,
        at: UnixMillis,
        placement_id: &PlacementId,
        status: PlacementStatus,
        reason: Option<String>,
        ev: &mut Vec<Event>,
    ) {
        let Some(pl) = self.placements.get_mut(placement_id) else {
            return;
        };
        if pl.status.is_terminal() {
            return;
        }
        pl.status = status;
        pl.ended_at = Some(at);
        pl.reason = reason.clone();
        let key = (pl.created_at, placement_id.clone());
        let fleet_id = pl.fleet_id.clone();
        let bs = pl.battle_session_id.clone();
        if let Some(set) = self.waiting_by_fleet.get_mut(&fleet_id) {
            set.remove(&key);
        }
        ev.push(Event::PlacementFinished {
            placement_id: placement_id.clone(),
            status,
        });
        let why = reason.unwrap_or_else(|| format!("placement {status:?}"));
        self.terminate_session(at, &bs, &why, ev);
    }

    pub(super) fn terminate_session(
        &mut self,
        at: UnixMillis,
        bs_id: &BattleSessionId,
        reason: &str,
        ev: &mut Vec<Event>,
    ) {
        let Some(s) = self.battle_sessions.get_mut(bs_id) else {
            return;
        };
        if s.status == BattleSessionStatus::Terminated {
            return;
        }
        let held = matches!(
            s.status,
            BattleSessionStatus::Activating | BattleSessionStatus::Active
        );
        s.status = BattleSessionStatus::Terminated;
        s.terminated_at = Some(at);
        s.termination_reason = Some(reason.to_string());
        s.activation_deadline = None;
        let process = s.process_id.clone();
        let placement_id = s.placement_id.clone();
        if let (true, Some(p)) = (held, process) {
            self.detach(bs_id, &p);
        }
        ev.push(Event::SessionTerminated {
            battle_session_id: bs_id.clone(),
        });
        // Release every reservation of the session.
        let players: Vec<PlayerBattleSessionId> = self
            .placements
            .get(&placement_id)
            .map(|p| p.player_battle_sessions.clone())
            .unwrap_or_default();
        for pbs in players {
            self.complete_player(at, &pbs, ev);
        }
    }
}

#[cfg(test)]
mod tests;

/// A placement's timeout, from its creation to its deadline.
fn pl_timeout(state: &ClusterState, placement_id: &PlacementId) -> u64 {
    state
        .placements
        .get(placement_id)
        .map_or(0, |p| p.deadline.saturating_sub(p.created_at))
}
