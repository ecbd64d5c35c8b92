//! Fleets and hosts: a fleet's settings within their bounds and its
//! versions, deletion and host drains (`drain.rs`), an agent's
//! (re)registration reconciling the processes and instances it reports, and
//! which server node holds each host's agent link.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::limits::{
    ACTIVATION_TIMEOUT_RANGE, ENDING_GRACE_RANGE, HEALTH_INTERVAL_RANGE, MAX_PROCESSES_PER_HOST,
    PLACEMENT_TIMEOUT_RANGE,
};
use respawn_types::*;
use std::collections::BTreeSet;

impl ClusterState {
    /// `PutFleet`, `RegisterHost`, `HostLinked`.
    pub(super) fn apply_fleet_host(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::PutFleet(fleet) => self.put_fleet(at, fleet, ev),
            Command::DeleteFleet { fleet_id, force } => self.delete_fleet(at, fleet_id, *force, ev),
            Command::SetHostDraining { host_id, draining } => {
                self.set_host_draining(host_id, *draining, ev)
            }
            Command::RegisterHost {
                host,
                live,
                live_vs,
            } => {
                let r = self.register_host(at, host, live, ev)?;
                self.reconcile_vs_host(at, &host.id, live_vs, ev);
                Ok(r)
            }
            Command::HostLinked { host_id, node_id } => {
                if !self.hosts.contains_key(host_id) {
                    return Err(Rejection::not_found("host", host_id));
                }
                if self.host_links.get(host_id) == Some(node_id) {
                    return Ok(Applied::Unchanged);
                }
                self.host_links.insert(host_id.clone(), *node_id);
                ev.push(Event::HostLinked {
                    host_id: host_id.clone(),
                    node_id: *node_id,
                });
                Ok(Applied::Done)
            }
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request("not a fleet or host command")),
        }
    }

    fn put_fleet(&mut self, at: UnixMillis, fleet: &Fleet, ev: &mut Vec<Event>) -> Response {
        self.title_region(&fleet.title_region_id)?;
        let in_range = |name: &str, v: u64, (lo, hi): (u64, u64)| {
            if v < lo || v > hi {
                Err(Rejection::bad_request(format!(
                    "{name} must be between {lo} and {hi} ms, got {v}"
                )))
            } else {
                Ok(())
            }
        };
        in_range(
            "activation_timeout_ms",
            fleet.activation_timeout_ms,
            ACTIVATION_TIMEOUT_RANGE,
        )?;
        in_range(
            "health_check_interval_ms",
            fleet.health_check_interval_ms,
            HEALTH_INTERVAL_RANGE,
        )?;
        in_range(
            "placement_timeout_ms",
            fleet.placement_timeout_ms,
            PLACEMENT_TIMEOUT_RANGE,
        )?;
        in_range(
            "process_ending_grace_ms",
            fleet.process_ending_grace_ms,
            ENDING_GRACE_RANGE,
        )?;
        if fleet.runtime.launch_path.trim().is_empty() {
            return Err(Rejection::bad_request(
                "runtime.launch_path must not be empty",
            ));
        }
        if fleet.runtime.processes_per_host == 0
            || fleet.runtime.processes_per_host > MAX_PROCESSES_PER_HOST
        {
            return Err(Rejection::bad_request(format!(
                "runtime.processes_per_host must be between 1 and {MAX_PROCESSES_PER_HOST}"
            )));
        }
        if fleet.max_placement_attempts == 0 {
            return Err(Rejection::bad_request(
                "max_placement_attempts must be at least 1",
            ));
        }
        if let ServerMode::Parallel { max_sessions: 0 } = fleet.mode {
            return Err(Rejection::bad_request(
                "parallel mode needs max_sessions >= 1",
            ));
        }
        fleet
            .scaling
            .validate()
            .map_err(|e| Rejection::bad_request(e.to_string()))?;
        respawn_types::fleet::validate_labels(&fleet.labels)
            .map_err(|e| Rejection::bad_request(e.to_string()))?;
        let mut fleet = fleet.clone();
        if let Some(old) = self.fleets.get(&fleet.id) {
            if old.mode != fleet.mode {
                return Err(Rejection::bad_request(
                    "a fleet's server mode cannot change after creation",
                ));
            }
            if old.title_region_id != fleet.title_region_id {
                return Err(Rejection::bad_request(
                    "a fleet cannot move to another title region",
                ));
            }
        }
        // Versions are the state's: the same definition is no new version.
        match self.fleets.get(&fleet.id) {
            Some(old) => {
                fleet.version = old.version;
                fleet.updated_at = old.updated_at;
                if *old == fleet {
                    return Ok(Applied::Unchanged);
                }
                fleet.version = old.version + 1;
            }
            None => fleet.version = 1,
        }
        fleet.updated_at = at;
        let fleet_id = fleet.id.clone();
        self.fleets.insert(fleet_id.clone(), fleet);
        ev.push(Event::FleetPut { fleet_id });
        Ok(Applied::Done)
    }

    fn register_host(
        &mut self,
        at: UnixMillis,
        host: &Host,
        live: &[agent::LiveProcess],
        ev: &mut Vec<Event>,
    ) -> Response {
        if !self.fleets.contains_key(&host.fleet_id) {
            return Err(Rejection::not_found("fleet", &host.fleet_id));
        }
        if let Some(old) = self.hosts.get(&host.id) {
            if old.fleet_id != host.fleet_id {
                return Err(Rejection::bad_request(format!(
                    "host {} belongs to fleet {}, not {}",
                    host.id, old.fleet_id, host.fleet_id
                )));
            }
        }
        for lp in live {
            if let Some(p) = self.processes.get(&lp.process_id) {
                if p.host_id != host.id {
                    return Err(Rejection::bad_request(format!(
                        "process {} belongs to another host",
                        lp.process_id
                    )));
                }
            }
        }
        let mut host = host.clone();
        if let Some(old) = self.hosts.get(&host.id) {
            host.registered_at = old.registered_at;
        } else {
            host.registered_at = at;
        }
        self.hosts.insert(host.id.clone(), host.clone());

        // Reconcile: what the cluster believes runs here but the agent does not report.
        let live_ids: BTreeSet<&ProcessId> = live.iter().map(|l| &l.process_id).collect();
        let gone: Vec<ProcessId> = self
            .live_processes_by_fleet
            .get(&host.fleet_id)
            .into_iter()
            .flatten()
            .filter(|id| {
                self.processes
                    .get(*id)
                    .is_some_and(|p| p.host_id == host.id && !live_ids.contains(id))
            })
            .cloned()
            .collect();
        for id in gone {
            self.exit_process(at, &id, ExitReason::Lost, ev);
        }
        // Adopt or refresh what the agent reports.
        for lp in live {
            match self.processes.get_mut(&lp.process_id) {
                Some(p) if p.status == ProcessStatus::Exited => {}
                Some(p) => {
                    if p.status == ProcessStatus::Launching && lp.role == ProcessRole::ForkingParent
                    {
                        p.status = ProcessStatus::Ready;
                        p.role = ProcessRole::ForkingParent;
                        ev.push(Event::ProcessChanged {
                            process_id: p.id.clone(),
                            status: ProcessStatus::Ready,
                        });
                    } else if p.status == ProcessStatus::Launching {
                        if let Some(port) = lp.port.filter(|p| *p != 0) {
                            p.status = ProcessStatus::Ready;
                            p.port = Some(port);
                            p.log_paths = lp.log_paths.clone();
                            ev.push(Event::ProcessChanged {
                                process_id: p.id.clone(),
                                status: ProcessStatus::Ready,
                            });
                        }
                    }
                    if lp.ending && p.status != ProcessStatus::Ending {
                        p.status = ProcessStatus::Ending;
                        p.ending_since = Some(at);
                        let id = p.id.clone();
                        ev.push(Event::ProcessChanged {
                            process_id: id.clone(),
                            status: ProcessStatus::Ending,
                        });
                        self.release_process_sessions(at, &id, "process ending", ev);
                    }
                }
                None => {
                    let port = lp.port.filter(|p| *p != 0);
                    let status = if lp.ending {
                        ProcessStatus::Ending
                    } else if port.is_some() || lp.role == ProcessRole::ForkingParent {
                        ProcessStatus::Ready
                    } else {
                        ProcessStatus::Launching
                    };
                    // An adopted process may have hosted sessions we never
                    // saw; in simple mode, only a fresh one is trusted.
                    let p = DsProcess {
                        id: lp.process_id.clone(),
                        fleet_id: host.fleet_id.clone(),
                        host_id: host.id.clone(),
                        status,
                        ip: host.ip.clone(),
                        port,
                        log_paths: lp.log_paths.clone(),
                        pid: Some(lp.pid),
                        sessions_hosted: 0,
                        sessions_current: 0,
                        launched_at: at,
                        ending_since: lp.ending.then_some(at),
                        exit: None,
                        exited_at: None,
                        // Not known: taken as the fleet's current version.
                        fleet_version: self.fleets.get(&host.fleet_id).map_or(0, |f| f.version),
                        role: lp.role.clone(),
                    };
                    self.insert_process(p, ev);
                }
            }
        }
        Ok(Applied::Done)
    }
}

mod autoscale;
mod drain;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod autoscale_tests;

#[cfg(test)]
#[path = "fleets_hosts/drain_tests.rs"]
mod drain_tests;
