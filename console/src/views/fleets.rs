//! Fleets, their hosts and DS processes, and the utilization figures the
//! sampler records for the fleet charts.

use super::{status_name, time, Scope};
use respawn_state::ClusterState;
use respawn_types::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A fleet's figures now.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Utilization {
    /// Processes not exited.
    pub live_processes: u32,
    /// Battle sessions ACTIVATING or ACTIVE on its processes.
    pub sessions: u32,
    /// More sessions its READY processes could take now.
    pub available_slots: u32,
    /// PENDING placements waiting for a process.
    pub waiting_placements: u32,
}

/// One fleet, as the fleets page lists it.
#[derive(Debug, Serialize)]
pub struct FleetRow {
    pub id: String,
    pub name: String,
    pub title_region_id: String,
    pub mode: String,
    pub hosts: usize,
    /// Processes by status (LAUNCHING, READY, …; EXITED not counted).
    pub processes: BTreeMap<String, u32>,
    pub now: Utilization,
}

/// A host, as the cluster and fleet pages show it.
#[derive(Debug, Serialize)]
pub struct HostRow {
    pub id: String,
    pub fleet_id: String,
    pub ip: String,
    pub registered_at: String,
    /// The server node holding its agent link, if any.
    pub node: Option<NodeId>,
    /// Whether its agent is linked now (to any node).
    pub connected: bool,
    pub live_processes: usize,
}

/// A DS process row.
#[derive(Debug, Serialize)]
pub struct ProcessRow {
    pub id: String,
    pub host_id: String,
    pub status: String,
    /// The fleet version it was launched with (0: not known, adopted).
    pub fleet_version: u64,
    pub address: Option<String>,
    pub sessions_current: u32,
    pub sessions_hosted: u32,
    pub launched_at: String,
    pub exit: Option<String>,
}

/// One fleet's page.
#[derive(Debug, Serialize)]
pub struct FleetPage {
    pub fleet: FleetRow,
    pub activation_timeout_ms: u64,
    pub placement_timeout_ms: u64,
    pub hosts: Vec<HostRow>,
    /// Live processes, then the most recent exited ones (at most 50).
    pub processes: Vec<ProcessRow>,
    pub waiting: Vec<String>,
}

fn mode(m: ServerMode) -> String {
    match m {
        ServerMode::Simple => "simple".into(),
        ServerMode::Forking => "forking".into(),
        ServerMode::Parallel { max_sessions } => format!("parallel (≤ {max_sessions})"),
    }
}

/// A fleet's utilization now.
pub fn utilization(s: &ClusterState, fleet: &FleetId) -> Utilization {
    let mut u = Utilization::default();
    let Some(f) = s.fleets.get(fleet) else {
        return u;
    };
    for p in s.live_processes(fleet) {
        u.live_processes += 1;
        u.sessions += p.sessions_current;
    }
    for p in s.placeable_processes(fleet) {
        u.available_slots += match f.mode {
            ServerMode::Simple | ServerMode::Forking => 1,
            ServerMode::Parallel { max_sessions } => {
                max_sessions.saturating_sub(p.sessions_current)
            }
        };
    }
    u.waiting_placements = s.waiting_placements(fleet).count() as u32;
    u
}

fn row(s: &ClusterState, f: &Fleet) -> FleetRow {
    let mut processes = BTreeMap::new();
    for p in s.live_processes(&f.id) {
        *processes.entry(status_name(&p.status)).or_insert(0) += 1;
    }
    FleetRow {
        id: f.id.to_string(),
        name: f.name.clone(),
        title_region_id: f.title_region_id.to_string(),
        mode: mode(f.mode),
        hosts: s.hosts.values().filter(|h| h.fleet_id == f.id).count(),
        processes,
        now: utilization(s, &f.id),
    }
}

/// The fleets a scope sees.
pub fn fleets(s: &ClusterState, scope: Scope<'_>) -> Vec<FleetRow> {
    s.fleets
        .values()
        .filter(|f| scope.sees(&f.title_region_id))
        .map(|f| row(s, f))
        .collect()
}

/// Hosts a scope sees (those of its fleets); `connected` says which hosts
/// have an agent link now.
pub fn hosts(
    s: &ClusterState,
    scope: Scope<'_>,
    connected: &BTreeSet<HostId>,
    fleet: Option<&FleetId>,
) -> Vec<HostRow> {
    s.hosts
        .values()
        .filter(|h| fleet.is_none_or(|f| &h.fleet_id == f))
        .filter(|h| {
            s.fleets
                .get(&h.fleet_id)
                .is_some_and(|f| scope.sees(&f.title_region_id))
        })
        .map(|h| HostRow {
            id: h.id.to_string(),
            fleet_id: h.fleet_id.to_string(),
            ip: h.ip.clone(),
            registered_at: time(h.registered_at),
            node: s.host_links.get(&h.id).copied(),
            connected: connected.contains(&h.id),
            live_processes: s
                .processes
                .values()
                .map(|r| &**r)
                .filter(|p| p.host_id == h.id && p.status != ProcessStatus::Exited)
                .count(),
        })
        .collect()
}

fn exit_text(e: &ExitReason) -> String {
    match e {
        ExitReason::Exited { code, signal } => match (code, signal) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "exited".into(),
        },
        ExitReason::Unhealthy => "unhealthy".into(),
        ExitReason::EndingGraceExpired => "still alive after the ProcessEnding grace".into(),
        ExitReason::Killed => "killed on request".into(),
        ExitReason::LaunchFailed { error } => format!("launch failed: {error}"),
        ExitReason::Lost => "lost with its host".into(),
    }
}

/// A process row.
pub fn process_row(p: &DsProcess) -> ProcessRow {
    ProcessRow {
        id: p.id.to_string(),
        host_id: p.host_id.to_string(),
        status: status_name(&p.status),
        fleet_version: p.fleet_version,
        address: p.port.map(|port| format!("{}:{port}", p.ip)),
        sessions_current: p.sessions_current,
        sessions_hosted: p.sessions_hosted,
        launched_at: time(p.launched_at),
        exit: p.exit.as_ref().map(exit_text),
    }
}

/// One fleet's page, or `None` if the scope does not see such a fleet.
pub fn fleet_page(
    s: &ClusterState,
    scope: Scope<'_>,
    id: &str,
    connected: &BTreeSet<HostId>,
) -> Option<FleetPage> {
    let f = s
        .fleets
        .get(&FleetId::new_unchecked(id))
        .filter(|f| scope.sees(&f.title_region_id))?;
    let mut processes: Vec<&DsProcess> = s
        .processes
        .values()
        .map(|r| &**r)
        .filter(|p| p.fleet_id == f.id)
        .collect();
    // Live first, then newest first.
    processes.sort_by_key(|p| {
        (
            p.status == ProcessStatus::Exited,
            std::cmp::Reverse(p.launched_at),
        )
    });
    let live = processes
        .iter()
        .filter(|p| p.status != ProcessStatus::Exited)
        .count();
    processes.truncate(live + 50);
    Some(FleetPage {
        fleet: row(s, f),
        activation_timeout_ms: f.activation_timeout_ms,
        placement_timeout_ms: f.placement_timeout_ms,
        hosts: hosts(s, scope, connected, Some(&f.id)),
        processes: processes.into_iter().map(process_row).collect(),
        waiting: s.waiting_placements(&f.id).map(|p| p.to_string()).collect(),
    })
}
