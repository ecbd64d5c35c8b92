//! DS processes: started, ready, ending, terminating, exited; a process
//! that can no longer host its sessions hands them back (ACTIVATING ones to
//! their placement, ACTIVE ones end).

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::*;

impl ClusterState {
    /// `ProcessStarted`, `ProcessReady`, `ProcessEnding`, `ProcessTerminating`, `ProcessExited`.
    pub(super) fn apply_process(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::ProcessStarted {
                process_id,
                host_id,
                pid,
                fleet_version,
            } => {
                if self.processes.contains_key(process_id) {
                    return Ok(Applied::Unchanged);
                }
                let host = self
                    .hosts
                    .get(host_id)
                    .ok_or_else(|| Rejection::not_found("host", host_id))?;
                let current = self.fleets.get(&host.fleet_id).map_or(0, |f| f.version);
                let p = DsProcess {
                    fleet_version: if *fleet_version == 0 {
                        current
                    } else {
                        *fleet_version
                    },
                    id: process_id.clone(),
                    fleet_id: host.fleet_id.clone(),
                    host_id: host_id.clone(),
                    status: ProcessStatus::Launching,
                    ip: host.ip.clone(),
                    port: None,
                    log_paths: Vec::new(),
                    pid: Some(*pid),
                    sessions_hosted: 0,
                    sessions_current: 0,
                    launched_at: at,
                    ending_since: None,
                    exit: None,
                    exited_at: None,
                    role: ProcessRole::Standalone,
                };
                self.insert_process(p, ev);
                Ok(Applied::Done)
            }
            Command::ProcessForked {
                process_id,
                host_id,
                parent_id,
                pid,
            } => self.process_forked(at, process_id, host_id, parent_id, *pid, ev),
            Command::ForkingParentReady {
                process_id,
                log_paths,
            } => self.forking_parent_ready(process_id, log_paths, ev),
            Command::ProcessReady {
                process_id,
                port,
                log_paths,
            } => {
                if *port == 0 {
                    return Err(Rejection::bad_request("port must be between 1 and 65535"));
                }
                let p = self.process_mut(process_id)?;
                if p.role == ProcessRole::ForkingParent {
                    return Err(Rejection::invalid_state(format!(
                        "process {process_id} is a forking parent: it hosts no battle session"
                    )));
                }
                match p.status {
                    ProcessStatus::Launching => {
                        p.status = ProcessStatus::Ready;
                        p.port = Some(*port);
                        p.log_paths = log_paths.clone();
                        ev.push(Event::ProcessChanged {
                            process_id: process_id.clone(),
                            status: ProcessStatus::Ready,
                        });
                        Ok(Applied::Done)
                    }
                    ProcessStatus::Ready if p.port == Some(*port) => Ok(Applied::Unchanged),
                    s => Err(Rejection::invalid_state(format!(
                        "process {process_id} is {s:?}; ProcessReady is allowed once, after launch"
                    ))),
                }
            }
            Command::ProcessEnding { process_id } => {
                let p = self.process_mut(process_id)?;
                match p.status {
                    ProcessStatus::Ending => return Ok(Applied::Unchanged),
                    ProcessStatus::Exited => {
                        return Err(Rejection::invalid_state(format!(
                            "process {process_id} has exited"
                        )))
                    }
                    _ => {}
                }
                p.status = ProcessStatus::Ending;
                p.ending_since = Some(at);
                ev.push(Event::ProcessChanged {
                    process_id: process_id.clone(),
                    status: ProcessStatus::Ending,
                });
                self.release_process_sessions(at, process_id, "process ending", ev);
                Ok(Applied::Done)
            }
            Command::ProcessTerminating { process_id, reason } => {
                let p = self.process_mut(process_id)?;
                match p.status {
                    ProcessStatus::Terminating | ProcessStatus::Exited => {
                        return Ok(Applied::Unchanged)
                    }
                    _ => {}
                }
                p.status = ProcessStatus::Terminating;
                ev.push(Event::ProcessChanged {
                    process_id: process_id.clone(),
                    status: ProcessStatus::Terminating,
                });
                self.release_process_sessions(at, process_id, reason, ev);
                Ok(Applied::Done)
            }
            Command::ProcessExited { process_id, reason } => {
                if self.process_mut(process_id)?.status == ProcessStatus::Exited {
                    return Ok(Applied::Unchanged);
                }
                self.exit_process(at, process_id, reason.clone(), ev);
                Ok(Applied::Done)
            }
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request("not a process command")),
        }
    }

    pub(super) fn insert_process(&mut self, p: DsProcess, ev: &mut Vec<Event>) {
        self.live_processes_by_fleet
            .entry(p.fleet_id.clone())
            .or_default()
            .insert(p.id.clone());
        ev.push(Event::ProcessChanged {
            process_id: p.id.clone(),
            status: p.status,
        });
        self.processes.insert(p.id.clone(), p.into());
    }

    pub(super) fn exit_process(
        &mut self,
        at: UnixMillis,
        id: &ProcessId,
        reason: ExitReason,
        ev: &mut Vec<Event>,
    ) {
        let fleet = match self.processes.get_mut(id) {
            Some(p) => {
                p.status = ProcessStatus::Exited;
                p.exit = Some(reason);
                p.exited_at = Some(at);
                p.fleet_id.clone()
            }
            None => return,
        };
        if let Some(set) = self.live_processes_by_fleet.get_mut(&fleet) {
            set.remove(id);
        }
        ev.push(Event::ProcessChanged {
            process_id: id.clone(),
            status: ProcessStatus::Exited,
        });
        self.release_process_sessions(at, id, "process exited", ev);
    }

    /// The process can no longer host its sessions: ACTIVE ones end,
    /// ACTIVATING ones go back to their placement to try another process.
    pub(super) fn release_process_sessions(
        &mut self,
        at: UnixMillis,
        id: &ProcessId,
        reason: &str,
        ev: &mut Vec<Event>,
    ) {
        let sessions: Vec<BattleSessionId> = self
            .sessions_by_process
            .get(id)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for bs in sessions {
            match self.battle_sessions.get(&bs).map(|s| s.status) {
                Some(BattleSessionStatus::Activating) => self.revoke(at, &bs, reason, ev),
                Some(BattleSessionStatus::Active) => self.terminate_session(at, &bs, reason, ev),
                _ => {}
            }
        }
    }
}

#[path = "processes/forking.rs"]
mod forking;

#[cfg(test)]
mod tests;
