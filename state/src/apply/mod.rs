//! [`ClusterState::apply`]: the one pure function that changes the state.
//!
//! `apply` hands each command to the module of its life cycle, then turns
//! the resulting events into PGOS events for the outbox and refreshes the
//! placeable index for every process they name. Every module checks before
//! it changes anything, so a rejected command leaves the state untouched;
//! each module's transition tests sit beside it.

mod fleets_hosts;
mod outbox;
mod placements;
mod players;
mod processes;
mod retention;
mod storages;
mod title_regions;
mod virtual_servers;

#[cfg(test)]
mod tests;

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::*;

impl ClusterState {
    /// Applies one committed request. Deterministic: the same state and
    /// request give the same result on every node. A rejected request leaves
    /// the state untouched (checks come before changes in every arm; the
    /// multi-step arms only change state once every check has passed).
    pub fn apply(&mut self, req: &Request) -> (Response, Vec<Event>) {
        let mut events = Vec::new();
        let res = self.dispatch(req.at, &req.command, &mut events);
        if res.is_err() {
            events.clear();
        }
        if res.is_ok() {
            self.drain_idle_after(req.at, &mut events);
            self.emit_pgos_events(req.at, &mut events);
        }
        // Every change to a process emits an event naming it (directly, or
        // through the session it held): refresh the placeable index there.
        for e in &events {
            match e {
                Event::ProcessChanged { process_id, .. }
                | Event::SessionAssigned { process_id, .. }
                | Event::SessionRevoked { process_id, .. }
                | Event::SessionActivated { process_id, .. } => self.refresh_placeable(process_id),
                Event::SessionTerminated { battle_session_id } => {
                    if let Some(p) = self
                        .battle_sessions
                        .get(battle_session_id)
                        .and_then(|s| s.process_id.clone())
                    {
                        self.refresh_placeable(&p);
                    }
                }
                _ => {}
            }
        }
        (res, events)
    }

    fn refresh_placeable(&mut self, id: &ProcessId) {
        let Some(p) = self.processes.get(id) else {
            return;
        };
        let fleet = p.fleet_id.clone();
        if self.is_placeable(p) {
            self.placeable_by_fleet
                .entry(fleet)
                .or_default()
                .insert(id.clone());
        } else if let Some(set) = self.placeable_by_fleet.get_mut(&fleet) {
            set.remove(id);
            if set.is_empty() {
                self.placeable_by_fleet.remove(&fleet);
            }
        }
    }

    /// Hands the command to the module of its life cycle.
    fn dispatch(&mut self, at: UnixMillis, cmd: &Command, ev: &mut Vec<Event>) -> Response {
        use Command as C;
        match cmd {
            C::PutTitleRegion(_) => self.apply_title_region(at, cmd, ev),
            C::PutFleet(_)
            | C::DeleteFleet { .. }
            | C::SetHostDraining { .. }
            | C::RegisterHost { .. }
            | C::HostLinked { .. } => self.apply_fleet_host(at, cmd, ev),
            C::Autoscale { .. } | C::SetFleetDesired { .. } | C::SetScaleInClock { .. } => {
                self.apply_autoscale(cmd, ev)
            }
            C::ProcessStarted { .. }
            | C::ProcessReady { .. }
            | C::ProcessForked { .. }
            | C::ForkingParentReady { .. }
            | C::ProcessEnding { .. }
            | C::ProcessTerminating { .. }
            | C::ProcessExited { .. } => self.apply_process(at, cmd, ev),
            C::IssueBattleSessionId { .. } | C::Prune(_) => self.apply_retention(at, cmd),
            C::StartPlacement(_)
            | C::AssignPlacement { .. }
            | C::ActivateBattleSession { .. }
            | C::ActivationTimedOut { .. }
            | C::PlacementTimedOut { .. }
            | C::CancelPlacement { .. }
            | C::TerminateBattleSession { .. } => self.apply_placement(at, cmd, ev),
            C::AddPlayers { .. }
            | C::PlayerUpdate { .. }
            | C::TerminatePlayerBattleSession { .. } => self.apply_player(at, cmd, ev),
            C::PutVirtualServer { .. }
            | C::SetVirtualServerDesired { .. }
            | C::DeleteVirtualServer { .. }
            | C::ScaleVirtualServer { .. }
            | C::PlaceVsInstance { .. }
            | C::RetireVsInstance { .. }
            | C::ReportVsInstance { .. } => self.apply_virtual_server(at, cmd, ev),
            C::PutStorage { .. } | C::DeleteStorage { .. } => self.apply_storage(at, cmd, ev),
            C::PutEventHandler(_)
            | C::DeleteEventHandler { .. }
            | C::PutTask { .. }
            | C::DeleteTask { .. }
            | C::RecordTrigger { .. } => self.apply_trigger(at, cmd, ev),
        }
    }
}

/// Why `process_id` may not act on `s`: it is another process's (forbidden),
/// or no process's at the moment (invalid state: it is waiting for one, or
/// over).
fn not_hosted_by(bs_id: &BattleSessionId, s: &BattleSession, process_id: &ProcessId) -> Rejection {
    if s.process_id.is_some() {
        Rejection::forbidden(format!(
            "battle session {bs_id} is hosted by another process, not by process {process_id}"
        ))
    } else {
        Rejection::invalid_state(format!(
            "battle session {bs_id} is {:?} and hosted by no process",
            s.status
        ))
    }
}
