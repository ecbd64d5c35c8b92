//! The autoscaler's commands: a fleet's per-host process targets with the
//! idle processes to stop, and an operator's desired count. A process
//! named to stop that holds a session by the time the command applies is
//! skipped: scale-in and rollouts never stop a busy process (invariant 2).

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::*;

impl ClusterState {
    /// The fleet as host `host`'s agent gets it: with the host's process
    /// target (`host_target`): 0 for a draining host, whatever the policy
    /// (its agent launches nothing, so the processes the drain ends are not
    /// relaunched); else the committed one; 0 for a host of an autoscaled
    /// fleet that has none yet (the autoscaler gives it one); `None` (run
    /// `processes_per_host`, or one forking parent) for a fleet with the
    /// fill policy or in forking mode.
    pub fn fleet_for_host(&self, fleet_id: &FleetId, host: &HostId) -> Option<Fleet> {
        let mut fleet = self.fleets.get(fleet_id)?.clone();
        let rec = self.scaling.get(fleet_id);
        let autoscaled =
            fleet.scaling.is_autoscaled() || rec.is_some_and(|r| r.manual_desired.is_some());
        fleet.host_target = if self.draining_hosts.contains(host) {
            Some(0)
        } else if fleet.mode == ServerMode::Forking {
            // The autoscaler leaves forking fleets alone: one parent per host.
            None
        } else {
            match rec.and_then(|r| r.targets.get(host)) {
                Some(t) => Some(*t),
                None if autoscaled => Some(0),
                None => None,
            }
        };
        Some(fleet)
    }

    /// `Autoscale`, `SetFleetDesired`, `SetScaleInClock`.
    pub(in crate::apply) fn apply_autoscale(
        &mut self,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::Autoscale {
                fleet_id,
                targets,
                stop,
                decision,
            } => {
                let fleet = self
                    .fleets
                    .get(fleet_id)
                    .ok_or_else(|| Rejection::not_found("fleet", fleet_id))?;
                let per_host = fleet.runtime.processes_per_host;
                for (host, t) in targets {
                    if self.hosts.get(host).is_none_or(|h| &h.fleet_id != fleet_id) {
                        return Err(Rejection::bad_request(format!(
                            "host {host} is not a host of fleet {fleet_id}"
                        )));
                    }
                    if *t > per_host {
                        return Err(Rejection::bad_request(format!(
                            "target {t} for host {host} is above processes_per_host {per_host}"
                        )));
                    }
                }
                let idle: Vec<ProcessId> = stop
                    .iter()
                    .filter(|(id, _)| {
                        self.processes.get(id).is_some_and(|p| {
                            &p.fleet_id == fleet_id
                                && matches!(
                                    p.status,
                                    ProcessStatus::Launching | ProcessStatus::Ready
                                )
                                && p.sessions_current == 0
                                && !self.sessions_by_process.contains_key(id)
                        })
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                let at = decision.at;
                let rec = self.scaling.entry(fleet_id.clone()).or_default();
                let changed = rec.targets != *targets;
                rec.targets = targets.clone();
                rec.last = Some(decision.clone());
                rec.decisions += 1;
                if changed {
                    ev.push(Event::ProcessTargetsChanged {
                        fleet_id: fleet_id.clone(),
                    });
                }
                for id in idle {
                    let reason = stop
                        .iter()
                        .find(|(p, _)| p == &id)
                        .map_or("scale-in", |(_, r)| r.as_str());
                    self.ask_to_terminate(at, &id, reason, ev);
                }
                Ok(Applied::Done)
            }
            Command::SetFleetDesired { fleet_id, desired } => {
                let fleet = self
                    .fleets
                    .get(fleet_id)
                    .ok_or_else(|| Rejection::not_found("fleet", fleet_id))?;
                if let Some(d) = desired {
                    let p = &fleet.scaling;
                    if *d < p.min_processes || *d > p.max_processes {
                        return Err(Rejection::bad_request(format!(
                            "desired: must be between scaling.min_processes ({}) and \
                             scaling.max_processes ({}), got {d}",
                            p.min_processes, p.max_processes
                        )));
                    }
                }
                let rec = self.scaling.entry(fleet_id.clone()).or_default();
                if rec.manual_desired == *desired {
                    return Ok(Applied::Unchanged);
                }
                rec.manual_desired = *desired;
                Ok(Applied::Done)
            }
            Command::SetScaleInClock {
                fleet_id,
                surplus_since,
            } => {
                if !self.fleets.contains_key(fleet_id) {
                    return Err(Rejection::not_found("fleet", fleet_id));
                }
                let current = self.scaling.get(fleet_id).and_then(|r| r.surplus_since);
                if current == *surplus_since {
                    return Ok(Applied::Unchanged);
                }
                self.scaling
                    .entry(fleet_id.clone())
                    .or_default()
                    .surplus_since = *surplus_since;
                Ok(Applied::Done)
            }
            // The dispatch in `apply` sends only these here.
            _ => Err(Rejection::bad_request("not an autoscaler command")),
        }
    }
}
