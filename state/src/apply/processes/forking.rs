//! Forking (shared-memory) mode: the launched process becomes a forking
//! parent, which holds no battle session; the processes it forks register
//! one by one, up to the fleet's `processes_per_host` on their host.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::*;

impl ClusterState {
    pub(super) fn forking_parent_ready(
        &mut self,
        process_id: &ProcessId,
        log_paths: &[String],
        ev: &mut Vec<Event>,
    ) -> Response {
        let forking = {
            let p = self
                .processes
                .get(process_id)
                .ok_or_else(|| Rejection::not_found("process", process_id))?;
            self.fleets
                .get(&p.fleet_id)
                .is_some_and(|f| f.mode == ServerMode::Forking)
        };
        if !forking {
            return Err(Rejection::invalid_state(format!(
                "process {process_id} is not in a forking fleet"
            )));
        }
        let p = self.process_mut(process_id)?;
        match (&p.role, p.status) {
            (ProcessRole::ForkingParent, ProcessStatus::Ready) => Ok(Applied::Unchanged),
            (ProcessRole::Standalone, ProcessStatus::Launching) => {
                p.role = ProcessRole::ForkingParent;
                p.status = ProcessStatus::Ready;
                p.log_paths = log_paths.to_vec();
                ev.push(Event::ProcessChanged {
                    process_id: process_id.clone(),
                    status: ProcessStatus::Ready,
                });
                Ok(Applied::Done)
            }
            (role, s) => Err(Rejection::invalid_state(format!(
                "process {process_id} is {s:?} ({role:?}); the forking ProcessReady is allowed once, after launch"
            ))),
        }
    }

    pub(super) fn process_forked(
        &mut self,
        at: UnixMillis,
        process_id: &ProcessId,
        host_id: &HostId,
        parent_id: &ProcessId,
        pid: u32,
        ev: &mut Vec<Event>,
    ) -> Response {
        if let Some(p) = self.processes.get(process_id) {
            return match &p.role {
                ProcessRole::Forked { parent } if parent == parent_id => Ok(Applied::Unchanged),
                _ => Err(Rejection::Conflict(format!(
                    "process {process_id} exists and was not forked by {parent_id}"
                ))),
            };
        }
        let host = self
            .hosts
            .get(host_id)
            .ok_or_else(|| Rejection::not_found("host", host_id))?;
        let parent = self
            .processes
            .get(parent_id)
            .ok_or_else(|| Rejection::not_found("process", parent_id))?;
        if parent.role != ProcessRole::ForkingParent || &parent.host_id != host_id {
            return Err(Rejection::invalid_state(format!(
                "process {parent_id} is not a forking parent on host {host_id}"
            )));
        }
        let cap = self
            .fleets
            .get(&host.fleet_id)
            .map_or(0, |f| f.runtime.processes_per_host as usize);
        if self.forked_on_host(&host.fleet_id, host_id) >= cap {
            return Err(Rejection::Conflict(format!(
                "host {host_id} already runs {cap} forked processes (the fleet's processes_per_host)"
            )));
        }
        let p = DsProcess {
            id: process_id.clone(),
            fleet_id: host.fleet_id.clone(),
            host_id: host_id.clone(),
            status: ProcessStatus::Launching,
            ip: host.ip.clone(),
            port: None,
            log_paths: Vec::new(),
            pid: Some(pid),
            sessions_hosted: 0,
            sessions_current: 0,
            launched_at: at,
            ending_since: None,
            exit: None,
            exited_at: None,
            role: ProcessRole::Forked {
                parent: parent_id.clone(),
            },
            // A forked process runs its parent's code: the parent's version.
            fleet_version: parent.fleet_version,
        };
        self.insert_process(p, ev);
        Ok(Applied::Done)
    }

    /// Live forked processes on a host (bounded by the fleet's live processes).
    pub fn forked_on_host(&self, fleet: &FleetId, host: &HostId) -> usize {
        self.live_processes_by_fleet
            .get(fleet)
            .into_iter()
            .flatten()
            .filter_map(|id| self.processes.get(id).map(|r| &**r))
            .filter(|p| &p.host_id == host && matches!(p.role, ProcessRole::Forked { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use crate::test_fixture::*;
    use crate::*;
    use respawn_types::*;

    fn forked(h: &mut H, n: u32) -> Result<Applied, Rejection> {
        h.run(Command::ProcessForked {
            process_id: pid(n),
            host_id: host_id(),
            parent_id: pid(1),
            pid: 200 + n,
        })
        .0
    }

    #[test]
    fn a_forking_parent_is_ready_but_never_placeable_and_its_children_host_one_session_each() {
        let mut h = H::new(ServerMode::Forking);
        h.ok(Command::ProcessStarted {
            process_id: pid(1),
            host_id: host_id(),
            pid: 101,
            fleet_version: 1,
        });
        // A child before its parent is ready: refused.
        assert!(matches!(forked(&mut h, 2), Err(Rejection::InvalidState(_))));
        h.ok(Command::ForkingParentReady {
            process_id: pid(1),
            log_paths: vec!["/l".into()],
        });
        assert_eq!(h.process(1).status, ProcessStatus::Ready);
        assert_eq!(h.process(1).role, ProcessRole::ForkingParent);
        assert!(h.s.placeable_processes(&fleet_id()).next().is_none());
        // The parent cannot call the ordinary ProcessReady.
        assert!(matches!(
            h.refused(Command::ProcessReady {
                process_id: pid(1),
                port: 7000,
                log_paths: vec![]
            }),
            Rejection::InvalidState(_)
        ));
        // A session waits: the parent does not take it.
        h.start(1, vec![(pbs(10), player(10))]);
        assert_eq!(h.session(1).status, BattleSessionStatus::Pending);
        assert!(matches!(
            h.refused(Command::AssignPlacement {
                placement_id: pl(1),
                process_id: pid(1)
            }),
            Rejection::InvalidState(_) | Rejection::Conflict(_)
        ));
        // Two children (processes_per_host = 2), a third is over capacity.
        forked(&mut h, 2).unwrap();
        assert_eq!(forked(&mut h, 2), Ok(Applied::Unchanged));
        forked(&mut h, 3).unwrap();
        assert!(matches!(forked(&mut h, 4), Err(Rejection::Conflict(_))));
        h.ok(Command::ProcessReady {
            process_id: pid(2),
            port: 7002,
            log_paths: vec![],
        });
        let placeable: Vec<_> =
            h.s.placeable_processes(&fleet_id())
                .map(|p| p.id.clone())
                .collect();
        assert_eq!(placeable, vec![pid(2)]);
        h.ok(Command::AssignPlacement {
            placement_id: pl(1),
            process_id: pid(2),
        });
        // One session in a child's lifetime, as in simple mode.
        assert!(h.s.placeable_processes(&fleet_id()).next().is_none());
        // A child that exits frees its slot.
        h.ok(Command::ProcessExited {
            process_id: pid(3),
            reason: ExitReason::Killed,
        });
        forked(&mut h, 4).unwrap();
    }

    #[test]
    fn only_a_forking_fleet_has_forking_parents() {
        let mut h = H::new(ServerMode::Simple);
        h.ok(Command::ProcessStarted {
            process_id: pid(1),
            host_id: host_id(),
            pid: 101,
            fleet_version: 1,
        });
        assert!(matches!(
            h.refused(Command::ForkingParentReady {
                process_id: pid(1),
                log_paths: vec![]
            }),
            Rejection::InvalidState(_)
        ));
    }
}
