//! The replicated placement state and the pure function that changes it.
//!
//! Every rule of the battle-session, placement, player-battle-session and
//! process life cycles is here, in [`ClusterState::apply`]: a function of
//! the state and one committed [`Request`] that returns the proposer's answer
//! and the [`Event`]s that the actors and agent links react to. It reads no
//! clock and performs no I/O, so every node computes the same state from the
//! same log, and every transition is unit-tested below.

use crate::command::*;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Fleet settings must lie within these bounds (milliseconds).
pub const ACTIVATION_TIMEOUT_RANGE: (u64, u64) = (1_000, 600_000);
pub const HEALTH_INTERVAL_RANGE: (u64, u64) = (1_000, 60_000);
pub const PLACEMENT_TIMEOUT_RANGE: (u64, u64) = (1_000, 3_600_000);
pub const ENDING_GRACE_RANGE: (u64, u64) = (1_000, 3_600_000);
/// Most DS processes one host may be asked to run.
pub const MAX_PROCESSES_PER_HOST: u32 = 1_024;
/// Most players one battle session may hold.
pub const MAX_PLAYERS_LIMIT: u32 = 1_000;

/// Everything Raft replicates. Maps are ordered so that snapshots of equal
/// states are equal byte for byte.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub title_regions: BTreeMap<TitleRegionId, TitleRegion>,
    pub fleets: BTreeMap<FleetId, Fleet>,
    pub hosts: BTreeMap<HostId, Host>,
    pub processes: BTreeMap<ProcessId, DsProcess>,
    pub battle_sessions: BTreeMap<BattleSessionId, BattleSession>,
    pub placements: BTreeMap<PlacementId, Placement>,
    pub player_battle_sessions: BTreeMap<PlayerBattleSessionId, PlayerBattleSession>,
    /// Battle session ids issued by RequestBattleSessionID and not yet used.
    pub issued_session_ids: BTreeMap<BattleSessionId, TitleRegionId>,
    /// Index: player → their player battle sessions that are not COMPLETED.
    pub sessions_by_player: BTreeMap<PlayerId, BTreeSet<PlayerBattleSessionId>>,
    /// Index: fleet → its processes that have not exited.
    pub live_processes_by_fleet: BTreeMap<FleetId, BTreeSet<ProcessId>>,
    /// Index: process → its ACTIVATING or ACTIVE battle sessions.
    pub sessions_by_process: BTreeMap<ProcessId, BTreeSet<BattleSessionId>>,
    /// Index: fleet → its PENDING placements not yet assigned, oldest first.
    pub waiting_by_fleet: BTreeMap<FleetId, BTreeSet<(UnixMillis, PlacementId)>>,
    /// Index: fleet → its processes that can take a session now
    /// ([`ClusterState::is_placeable`]), in id order — launch order, as
    /// process ids are time-ordered UUIDs.
    pub placeable_by_fleet: BTreeMap<FleetId, BTreeSet<ProcessId>>,
    /// Which server node holds each host's agent link (last registration wins).
    #[serde(default)]
    pub host_links: BTreeMap<HostId, NodeId>,
    /// Virtual servers by title region and name.
    #[serde(default)]
    pub virtual_servers: BTreeMap<TitleRegionId, BTreeMap<VsName, VirtualServer>>,
    #[serde(default)]
    pub vs_instances: BTreeMap<VsInstanceId, VsInstance>,
    #[serde(default)]
    pub event_handlers: BTreeMap<TitleRegionId, BTreeMap<VsName, EventHandler>>,
    #[serde(default)]
    pub tasks: BTreeMap<TitleRegionId, BTreeMap<VsName, VsTask>>,
    /// Events waiting for delivery to `/pgos_event`, per title region, in order.
    #[serde(default)]
    pub outbox: BTreeMap<TitleRegionId, VecDeque<OutboxEvent>>,
    /// Last event sequence number used per title region (never reused).
    #[serde(default)]
    pub outbox_seq: BTreeMap<TitleRegionId, u64>,
    /// Recent delivery attempts of events and tasks, per title region.
    #[serde(default)]
    pub trigger_log: BTreeMap<TitleRegionId, VecDeque<TriggerRecord>>,
}

type Step = Result<Applied, Rejection>;

fn bad(msg: impl Into<String>) -> Rejection {
    Rejection::BadRequest(msg.into())
}
fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::InvalidState(msg.into())
}

impl ClusterState {
    /// Applies one committed request. Deterministic: the same state and
    /// request give the same result on every node. A rejected request leaves
    /// the state untouched (checks come before changes in every arm; the
    /// multi-step arms only change state once every check has passed).
    pub fn apply(&mut self, req: &Request) -> (Response, Vec<Event>) {
        let mut events = Vec::new();
        let res = self.apply_inner(req.at, &req.command, &mut events);
        if res.is_err() {
            events.clear();
        }
        if res.is_ok() {
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

    /// Can `process` take one more battle session now?
    pub fn is_placeable(&self, process: &DsProcess) -> bool {
        if process.status != ProcessStatus::Ready || process.port.is_none() {
            return false;
        }
        match self.fleets.get(&process.fleet_id) {
            Some(f) => f
                .mode
                .admits(process.sessions_hosted, process.sessions_current),
            None => false,
        }
    }

    /// Processes of a fleet that can take a session now, in id order.
    pub fn placeable_processes<'a>(
        &'a self,
        fleet_id: &FleetId,
    ) -> impl Iterator<Item = &'a DsProcess> + 'a {
        self.placeable_by_fleet
            .get(fleet_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.processes.get(id))
    }

    /// Placements of a fleet waiting for a process, oldest first.
    pub fn waiting_placements<'a>(
        &'a self,
        fleet_id: &FleetId,
    ) -> impl Iterator<Item = &'a PlacementId> + 'a {
        self.waiting_by_fleet
            .get(fleet_id)
            .into_iter()
            .flatten()
            .map(|(_, id)| id)
    }

    fn apply_inner(&mut self, at: UnixMillis, cmd: &Command, ev: &mut Vec<Event>) -> Step {
        match cmd {
            Command::PutTitleRegion(tr) => {
                if tr.secret_key.len() < 16 {
                    return Err(bad("secret_key must be at least 16 characters"));
                }
                self.title_regions.insert(tr.id.clone(), tr.clone());
                ev.push(Event::TitleRegionPut {
                    title_region_id: tr.id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::PutFleet(fleet) => self.put_fleet(fleet, ev),
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
            Command::ProcessStarted {
                process_id,
                host_id,
                pid,
            } => {
                if self.processes.contains_key(process_id) {
                    return Ok(Applied::Unchanged);
                }
                let host = self
                    .hosts
                    .get(host_id)
                    .ok_or_else(|| Rejection::not_found("host", host_id))?;
                let p = DsProcess {
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
                };
                self.insert_process(p, ev);
                Ok(Applied::Done)
            }
            Command::ProcessReady {
                process_id,
                port,
                log_paths,
            } => {
                if *port == 0 {
                    return Err(bad("port must be between 1 and 65535"));
                }
                let p = self.process_mut(process_id)?;
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
                    s => Err(invalid(format!(
                        "process {process_id} is {s:?}; ProcessReady is allowed once, after launch"
                    ))),
                }
            }
            Command::ProcessEnding { process_id } => {
                let p = self.process_mut(process_id)?;
                match p.status {
                    ProcessStatus::Ending => return Ok(Applied::Unchanged),
                    ProcessStatus::Exited => {
                        return Err(invalid(format!("process {process_id} has exited")))
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
            Command::IssueBattleSessionId {
                title_region_id,
                battle_session_id,
            } => {
                self.title_region(title_region_id)?;
                if self.battle_sessions.contains_key(battle_session_id)
                    || self.issued_session_ids.contains_key(battle_session_id)
                {
                    return Err(Rejection::Conflict(format!(
                        "battle session id {battle_session_id} already exists"
                    )));
                }
                self.issued_session_ids
                    .insert(battle_session_id.clone(), title_region_id.clone());
                Ok(Applied::Done)
            }
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
                self.finish_placement(at, placement_id, PlacementStatus::TimedOut, None, ev);
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
                    .ok_or_else(|| Rejection::not_found("placement", placement_id))?;
                if pl.status.is_terminal() {
                    return Err(invalid(format!(
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
                    return Err(invalid(format!(
                        "battle session {battle_session_id} is not hosted by process {process_id}"
                    )));
                }
                if s.status != BattleSessionStatus::Active {
                    return Err(invalid(format!(
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
                self.player_transition(
                    at,
                    battle_session_id,
                    player_battle_session_id,
                    PlayerAction::Remove,
                    ev,
                )
            }
            Command::PutVirtualServer { .. }
            | Command::SetVirtualServerDesired { .. }
            | Command::DeleteVirtualServer { .. }
            | Command::ScaleVirtualServer { .. }
            | Command::PlaceVsInstance { .. }
            | Command::RetireVsInstance { .. }
            | Command::ReportVsInstance { .. }
            | Command::PutEventHandler(_)
            | Command::DeleteEventHandler { .. }
            | Command::PutTask { .. }
            | Command::DeleteTask { .. }
            | Command::RecordTrigger { .. } => self.apply_vs(at, cmd, ev),
            Command::TerminateBattleSession {
                process_id,
                battle_session_id,
            } => {
                let s = self.session(battle_session_id)?;
                if s.process_id.as_ref() != Some(process_id) {
                    return Err(invalid(format!(
                        "battle session {battle_session_id} is not hosted by process {process_id}"
                    )));
                }
                match s.status {
                    BattleSessionStatus::Terminated => Ok(Applied::Unchanged),
                    BattleSessionStatus::Active => {
                        self.terminate_session(at, battle_session_id, "terminated by the DS", ev);
                        Ok(Applied::Done)
                    }
                    st => Err(invalid(format!(
                        "battle session {battle_session_id} is {st:?}; only an ACTIVE session can be terminated"
                    ))),
                }
            }
        }
    }

    // ----- lookups -----

    pub(crate) fn title_region(&self, id: &TitleRegionId) -> Result<&TitleRegion, Rejection> {
        self.title_regions
            .get(id)
            .ok_or_else(|| Rejection::not_found("title region", id))
    }

    fn session(&self, id: &BattleSessionId) -> Result<&BattleSession, Rejection> {
        self.battle_sessions
            .get(id)
            .ok_or_else(|| Rejection::not_found("battle session", id))
    }

    fn process_mut(&mut self, id: &ProcessId) -> Result<&mut DsProcess, Rejection> {
        self.processes
            .get_mut(id)
            .ok_or_else(|| Rejection::not_found("process", id))
    }

    // ----- fleets and hosts -----

    fn put_fleet(&mut self, fleet: &Fleet, ev: &mut Vec<Event>) -> Step {
        self.title_region(&fleet.title_region_id)?;
        let in_range = |name: &str, v: u64, (lo, hi): (u64, u64)| {
            if v < lo || v > hi {
                Err(bad(format!(
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
            return Err(bad("runtime.launch_path must not be empty"));
        }
        if fleet.runtime.processes_per_host == 0
            || fleet.runtime.processes_per_host > MAX_PROCESSES_PER_HOST
        {
            return Err(bad(format!(
                "runtime.processes_per_host must be between 1 and {MAX_PROCESSES_PER_HOST}"
            )));
        }
        if fleet.max_placement_attempts == 0 {
            return Err(bad("max_placement_attempts must be at least 1"));
        }
        if let ServerMode::Parallel { max_sessions: 0 } = fleet.mode {
            return Err(bad("parallel mode needs max_sessions >= 1"));
        }
        if let Some(old) = self.fleets.get(&fleet.id) {
            if old.mode != fleet.mode {
                return Err(bad("a fleet's server mode cannot change after creation"));
            }
            if old.title_region_id != fleet.title_region_id {
                return Err(bad("a fleet cannot move to another title region"));
            }
        }
        self.fleets.insert(fleet.id.clone(), fleet.clone());
        ev.push(Event::FleetPut {
            fleet_id: fleet.id.clone(),
        });
        Ok(Applied::Done)
    }

    fn register_host(
        &mut self,
        at: UnixMillis,
        host: &Host,
        live: &[agent::LiveProcess],
        ev: &mut Vec<Event>,
    ) -> Step {
        if !self.fleets.contains_key(&host.fleet_id) {
            return Err(Rejection::not_found("fleet", &host.fleet_id));
        }
        if let Some(old) = self.hosts.get(&host.id) {
            if old.fleet_id != host.fleet_id {
                return Err(bad(format!(
                    "host {} belongs to fleet {}, not {}",
                    host.id, old.fleet_id, host.fleet_id
                )));
            }
        }
        for lp in live {
            if let Some(p) = self.processes.get(&lp.process_id) {
                if p.host_id != host.id {
                    return Err(bad(format!(
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
                    if p.status == ProcessStatus::Launching {
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
                    } else if port.is_some() {
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
                    };
                    self.insert_process(p, ev);
                }
            }
        }
        Ok(Applied::Done)
    }

    fn insert_process(&mut self, p: DsProcess, ev: &mut Vec<Event>) {
        self.live_processes_by_fleet
            .entry(p.fleet_id.clone())
            .or_default()
            .insert(p.id.clone());
        ev.push(Event::ProcessChanged {
            process_id: p.id.clone(),
            status: p.status,
        });
        self.processes.insert(p.id.clone(), p);
    }

    fn exit_process(
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
    fn release_process_sessions(
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

    // ----- placements and battle sessions -----

    fn start_placement(
        &mut self,
        at: UnixMillis,
        sp: &StartPlacement,
        ev: &mut Vec<Event>,
    ) -> Step {
        self.title_region(&sp.title_region_id)?;
        let fleet = self
            .fleets
            .get(&sp.fleet_id)
            .filter(|f| f.title_region_id == sp.title_region_id)
            .ok_or_else(|| Rejection::not_found("fleet", &sp.fleet_id))?;
        if self.placements.contains_key(&sp.placement_id) {
            return Err(Rejection::Conflict(format!(
                "placement id {} already exists",
                sp.placement_id
            )));
        }
        if self.battle_sessions.contains_key(&sp.battle_session_id) {
            return Err(Rejection::Conflict(format!(
                "battle session id {} is already in use",
                sp.battle_session_id
            )));
        }
        match self.issued_session_ids.get(&sp.battle_session_id) {
            Some(tr) if tr == &sp.title_region_id => {}
            _ => {
                return Err(Rejection::NotFound {
                    kind: "battle session id".into(),
                    id: format!(
                        "{} (request one with RequestBattleSessionID first)",
                        sp.battle_session_id
                    ),
                })
            }
        }
        if sp.max_players == 0 || sp.max_players > MAX_PLAYERS_LIMIT {
            return Err(bad(format!(
                "max_players must be between 1 and {MAX_PLAYERS_LIMIT}"
            )));
        }
        if sp.players.len() as u64 > u64::from(sp.max_players) {
            return Err(bad(format!(
                "{} players given but max_players is {}",
                sp.players.len(),
                sp.max_players
            )));
        }
        self.check_new_players(&sp.players, &[])?;
        let timeout = sp.timeout_ms.unwrap_or(fleet.placement_timeout_ms);
        if timeout < PLACEMENT_TIMEOUT_RANGE.0 || timeout > PLACEMENT_TIMEOUT_RANGE.1 {
            return Err(bad(format!(
                "placement timeout must be between {} and {} ms",
                PLACEMENT_TIMEOUT_RANGE.0, PLACEMENT_TIMEOUT_RANGE.1
            )));
        }

        self.issued_session_ids.remove(&sp.battle_session_id);
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
            },
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
            },
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

    fn assign(
        &mut self,
        at: UnixMillis,
        placement_id: &PlacementId,
        process_id: &ProcessId,
        ev: &mut Vec<Event>,
    ) -> Step {
        let pl = self
            .placements
            .get(placement_id)
            .ok_or_else(|| Rejection::not_found("placement", placement_id))?;
        if pl.status != PlacementStatus::Pending {
            return Err(invalid(format!(
                "placement {placement_id} is {:?}",
                pl.status
            )));
        }
        if at >= pl.deadline {
            return Err(invalid(format!(
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
            return Err(bad(format!(
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
    ) -> Step {
        let s = self.session(bs_id)?;
        if s.process_id.as_ref() != Some(process_id) {
            return Err(invalid(format!(
                "battle session {bs_id} is not assigned to process {process_id}"
            )));
        }
        match s.status {
            BattleSessionStatus::Active => return Ok(Applied::Unchanged),
            BattleSessionStatus::Activating => {}
            st => {
                return Err(invalid(format!(
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
            .is_some_and(|f| f.mode == ServerMode::Simple);
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
    fn revoke(
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

    fn terminate_session(
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

    // ----- players -----

    fn check_new_players(
        &self,
        players: &[(PlayerBattleSessionId, PlayerSpec)],
        existing: &[PlayerBattleSessionId],
    ) -> Result<(), Rejection> {
        let mut seen_pbs = BTreeSet::new();
        let mut seen_players: BTreeSet<&PlayerId> = existing
            .iter()
            .filter_map(|id| self.player_battle_sessions.get(id))
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
            if spec.player_data.len() > 4096 {
                return Err(bad("player_data is limited to 4096 bytes"));
            }
        }
        Ok(())
    }

    fn insert_players(
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
                    created_at: at,
                    updated_at: at,
                },
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
    ) -> Step {
        let s = self
            .battle_sessions
            .get(bs_id)
            .filter(|s| &s.title_region_id == tr)
            .ok_or_else(|| Rejection::not_found("battle session", bs_id))?;
        if s.status == BattleSessionStatus::Terminated {
            return Err(invalid(format!("battle session {bs_id} is TERMINATED")));
        }
        if players.is_empty() {
            return Err(bad("players must not be empty"));
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
            .filter_map(|id| self.player_battle_sessions.get(id))
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
        Ok(Applied::Done)
    }

    fn player_transition(
        &mut self,
        at: UnixMillis,
        bs_id: &BattleSessionId,
        pbs_id: &PlayerBattleSessionId,
        action: PlayerAction,
        ev: &mut Vec<Event>,
    ) -> Step {
        use PlayerBattleSessionStatus as S;
        let p = self
            .player_battle_sessions
            .get(pbs_id)
            .filter(|p| &p.battle_session_id == bs_id)
            .ok_or_else(|| Rejection::not_found("player battle session", pbs_id))?;
        let next = match (action, p.status) {
            (PlayerAction::Accept, S::Active)
            | (PlayerAction::Disconnect, S::Disconnected)
            | (PlayerAction::Remove, S::Completed) => return Ok(Applied::Unchanged),
            (PlayerAction::Accept, S::Reserved | S::Disconnected) => S::Active,
            (PlayerAction::Disconnect, S::Active) => S::Disconnected,
            (PlayerAction::Remove, S::Reserved | S::Active | S::Disconnected) => S::Completed,
            (a, s) => {
                return Err(invalid(format!(
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

    fn complete_player(
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
#[path = "state_tests.rs"]
mod tests;
