//! Deleting a fleet and draining a host: both take capacity away without
//! ever cutting a live session short unless asked to (`force`). A draining
//! host takes no new session ([`ClusterState::is_placeable`]); each of its
//! processes is asked to terminate as soon as it holds no session.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::*;
use std::collections::BTreeSet;

impl ClusterState {
    /// Live processes of a fleet, optionally only those on one host.
    fn live_of(&self, fleet: &FleetId, host: Option<&HostId>) -> Vec<ProcessId> {
        self.live_processes_by_fleet
            .get(fleet)
            .into_iter()
            .flatten()
            .filter(|id| {
                host.is_none_or(|h| self.processes.get(*id).is_some_and(|p| &p.host_id == h))
            })
            .cloned()
            .collect()
    }

    /// ACTIVATING or ACTIVE sessions on these processes.
    pub fn live_sessions_on<'a>(&'a self, processes: &'a [ProcessId]) -> usize {
        processes
            .iter()
            .filter_map(|p| self.sessions_by_process.get(p))
            .map(BTreeSet::len)
            .sum()
    }

    /// Is the host draining, and how many sessions still run on it?
    /// `None` when the host is not draining.
    pub fn drain_progress(&self, host_id: &HostId) -> Option<usize> {
        if !self.draining_hosts.contains(host_id) {
            return None;
        }
        let fleet = &self.hosts.get(host_id)?.fleet_id;
        Some(self.live_sessions_on(&self.live_of(fleet, Some(host_id))))
    }

    pub(super) fn delete_fleet(
        &mut self,
        at: UnixMillis,
        fleet_id: &FleetId,
        force: bool,
        ev: &mut Vec<Event>,
    ) -> Response {
        if !self.fleets.contains_key(fleet_id) {
            return Err(Rejection::not_found("fleet", fleet_id));
        }
        let live = self.live_of(fleet_id, None);
        let sessions = self.live_sessions_on(&live);
        if sessions > 0 && !force {
            return Err(Rejection::Conflict(format!(
                "fleet {fleet_id} has {sessions} battle session(s) ACTIVATING or ACTIVE; \
                 wait for them to end or delete with force"
            )));
        }
        for id in &live {
            self.ask_to_terminate(at, id, "fleet deleted", ev);
        }
        self.fleets.remove(fleet_id);
        self.scaling.remove(fleet_id);
        ev.push(Event::FleetDeleted {
            fleet_id: fleet_id.clone(),
        });
        Ok(Applied::Done)
    }

    pub(super) fn set_host_draining(
        &mut self,
        host_id: &HostId,
        draining: bool,
        ev: &mut Vec<Event>,
    ) -> Response {
        if !self.hosts.contains_key(host_id) {
            return Err(Rejection::not_found("host", host_id));
        }
        let changed = if draining {
            self.draining_hosts.insert(host_id.clone())
        } else {
            self.draining_hosts.remove(host_id)
        };
        if !changed {
            return Ok(Applied::Unchanged);
        }
        ev.push(Event::HostDraining {
            host_id: host_id.clone(),
            draining,
        });
        // Placeability changes with the drain, for every process of the host.
        let fleet = self.hosts.get(host_id).map(|h| h.fleet_id.clone());
        if let Some(fleet) = fleet {
            for id in self.live_of(&fleet, Some(host_id)) {
                if let Some(p) = self.processes.get(&id) {
                    ev.push(Event::ProcessChanged {
                        process_id: id,
                        status: p.status,
                    });
                }
            }
        }
        Ok(Applied::Done)
    }

    /// After a command: every READY process of a draining host that holds
    /// no session (just drained, just ready, or its last session just ended)
    /// is asked to terminate.
    pub(in crate::apply) fn drain_idle_after(&mut self, at: UnixMillis, ev: &mut Vec<Event>) {
        if self.draining_hosts.is_empty() {
            return;
        }
        let mut candidates: BTreeSet<ProcessId> = BTreeSet::new();
        for e in ev.iter() {
            match e {
                Event::ProcessChanged { process_id, .. }
                | Event::SessionRevoked { process_id, .. } => {
                    candidates.insert(process_id.clone());
                }
                Event::SessionTerminated { battle_session_id } => {
                    if let Some(p) = self
                        .battle_sessions
                        .get(battle_session_id)
                        .and_then(|s| s.process_id.clone())
                    {
                        candidates.insert(p);
                    }
                }
                _ => {}
            }
        }
        for id in candidates {
            let idle = self.processes.get(&id).is_some_and(|p| {
                p.status == ProcessStatus::Ready
                    && p.sessions_current == 0
                    && self.draining_hosts.contains(&p.host_id)
            });
            if idle {
                self.ask_to_terminate(at, &id, "host draining", ev);
            }
        }
    }

    /// The cluster asks the process to terminate (OnProcessTerminate, then
    /// kill after the grace): its sessions are released.
    pub(super) fn ask_to_terminate(
        &mut self,
        at: UnixMillis,
        id: &ProcessId,
        reason: &str,
        ev: &mut Vec<Event>,
    ) {
        let Some(p) = self.processes.get_mut(id) else {
            return;
        };
        if matches!(p.status, ProcessStatus::Terminating | ProcessStatus::Exited) {
            return;
        }
        p.status = ProcessStatus::Terminating;
        ev.push(Event::ProcessChanged {
            process_id: id.clone(),
            status: ProcessStatus::Terminating,
        });
        self.release_process_sessions(at, id, reason, ev);
    }
}
