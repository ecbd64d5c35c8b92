//! [`ClusterState`]: everything Raft replicates, with the indexes that
//! `apply` keeps in step with it and the queries the actors, the edge and
//! `apply` itself read it through. The transitions are in the `apply` module.

use crate::command::Rejection;
use crate::shared::Shared;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Everything Raft replicates. Maps are ordered so that snapshots of equal
/// states are equal byte for byte. The records of the large maps are
/// [`Shared`], so that a copy of the state (a snapshot's) is cheap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub title_regions: BTreeMap<TitleRegionId, TitleRegion>,
    pub fleets: BTreeMap<FleetId, Fleet>,
    pub hosts: BTreeMap<HostId, Host>,
    pub processes: BTreeMap<ProcessId, Shared<DsProcess>>,
    pub battle_sessions: BTreeMap<BattleSessionId, Shared<BattleSession>>,
    pub placements: BTreeMap<PlacementId, Shared<Placement>>,
    pub player_battle_sessions: BTreeMap<PlayerBattleSessionId, Shared<PlayerBattleSession>>,
    /// Battle session ids issued by RequestBattleSessionID and not yet used.
    pub issued_session_ids: BTreeMap<BattleSessionId, crate::retention_marks::IssuedId>,
    /// Index: the ids of `issued_session_ids` by issue time, oldest first
    /// (they expire after the issued-id window, see `crate::retention`).
    #[serde(default)]
    pub issued_by_time: BTreeSet<(UnixMillis, BattleSessionId)>,
    /// Index: how many ids of `issued_session_ids` each title region holds
    /// (capped per title region).
    #[serde(default)]
    pub issued_per_region: BTreeMap<TitleRegionId, u32>,
    /// What retention removed so far, to tell an expired id from an unknown one.
    #[serde(default)]
    pub pruned: crate::retention_marks::PrunedWatermarks,
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
    /// The autoscaler's record per fleet: host targets, manual desired
    /// count, last decision (bounded by the fleets; removed with the fleet).
    #[serde(default)]
    pub scaling: BTreeMap<FleetId, respawn_types::scaling::FleetScaling>,
    /// Hosts being drained (bounded by the hosts; cleared by undrain).
    #[serde(default)]
    pub draining_hosts: BTreeSet<HostId>,
    /// Which server node holds each host's agent link (last registration wins).
    #[serde(default)]
    pub host_links: BTreeMap<HostId, NodeId>,
    /// Virtual servers by title region and name.
    #[serde(default)]
    pub virtual_servers: BTreeMap<TitleRegionId, BTreeMap<VsName, VirtualServer>>,
    #[serde(default)]
    pub vs_instances: BTreeMap<VsInstanceId, VsInstance>,
    /// VS storages by title region and name (at most
    /// `storage::MAX_STORAGES_PER_REGION` per title region).
    #[serde(default)]
    pub storages: BTreeMap<TitleRegionId, BTreeMap<StorageName, Storage>>,
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

impl ClusterState {
    /// Can `process` take one more battle session now?
    pub fn is_placeable(&self, process: &DsProcess) -> bool {
        if process.status != ProcessStatus::Ready
            || process.port.is_none()
            || !process.role.hosts_sessions()
            || self.draining_hosts.contains(&process.host_id)
        {
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
            .filter_map(|id| self.processes.get(id).map(|p| &**p))
    }

    /// The live (not exited) processes of a fleet, in id order.
    pub fn live_processes<'a>(
        &'a self,
        fleet_id: &FleetId,
    ) -> impl Iterator<Item = &'a DsProcess> + 'a {
        self.live_processes_by_fleet
            .get(fleet_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.processes.get(id).map(|p| &**p))
    }

    /// The battle sessions a process holds (any status it still tracks).
    pub fn sessions_on<'a>(
        &'a self,
        process_id: &ProcessId,
    ) -> impl Iterator<Item = &'a BattleSession> + 'a {
        self.sessions_by_process
            .get(process_id)
            .into_iter()
            .flatten()
            .filter_map(|b| self.battle_sessions.get(b).map(|r| &**r))
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

    /// A virtual server by title region and name.
    pub fn virtual_server(&self, tr: &TitleRegionId, name: &VsName) -> Option<&VirtualServer> {
        self.virtual_servers.get(tr).and_then(|m| m.get(name))
    }

    /// Instances of a virtual server, any version, in id order.
    pub fn vs_instances_of<'a>(
        &'a self,
        tr: &'a TitleRegionId,
        name: &'a VsName,
    ) -> impl Iterator<Item = &'a VsInstance> + 'a {
        self.vs_instances
            .values()
            .filter(move |i| &i.title_region_id == tr && &i.vs == name)
    }

    // ----- lookups that answer a missing record with a rejection -----

    pub(crate) fn title_region(&self, id: &TitleRegionId) -> Result<&TitleRegion, Rejection> {
        self.title_regions
            .get(id)
            .ok_or_else(|| Rejection::not_found("title region", id))
    }

    pub(crate) fn session(&self, id: &BattleSessionId) -> Result<&BattleSession, Rejection> {
        self.battle_sessions
            .get(id)
            .map(|s| &**s)
            .ok_or_else(|| Rejection::missing("battle session", id, self.pruned.session(id)))
    }

    pub(crate) fn process_mut(&mut self, id: &ProcessId) -> Result<&mut DsProcess, Rejection> {
        let expired = self.pruned.process(id);
        self.processes
            .get_mut(id)
            .map(|p| &mut **p)
            .ok_or_else(|| Rejection::missing("process", id, expired))
    }

    pub(crate) fn vs_mut(
        &mut self,
        tr: &TitleRegionId,
        name: &VsName,
    ) -> Result<&mut VirtualServer, Rejection> {
        self.virtual_servers
            .get_mut(tr)
            .and_then(|m| m.get_mut(name))
            .ok_or_else(|| Rejection::not_found("virtual server", name))
    }
}
