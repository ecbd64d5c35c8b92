//! One DS process's page: its state, host, the battle sessions it held and
//! a timeline built from its record and theirs.

use super::fleets::{process_row, ProcessRow};
use super::placements::TimelineEntry;
use super::{status_name, time, time_ms, Scope};
use respawn_state::ClusterState;
use respawn_types::*;
use serde::Serialize;

/// A battle session a process held.
#[derive(Debug, Serialize)]
pub struct HeldSession {
    pub battle_session_id: String,
    pub placement_id: String,
    pub status: String,
    pub created_at: String,
    pub terminated_at: Option<String>,
}

/// One process's page.
#[derive(Debug, Serialize)]
pub struct ProcessPage {
    pub process: ProcessRow,
    pub fleet_id: String,
    pub title_region_id: String,
    pub pid: Option<u32>,
    /// Files the DS named in ProcessReady (`log_paths`).
    pub log_paths: Vec<String>,
    /// Whether the host is registered (its record may outlive the host).
    pub host_ip: Option<String>,
    pub sessions: Vec<HeldSession>,
    pub timeline: Vec<TimelineEntry>,
}

/// Most battle sessions the page lists (newest first).
pub const MAX_SESSIONS: usize = 100;

/// A process's page, or `None` if the scope does not see such a process.
pub fn process_page(s: &ClusterState, scope: Scope<'_>, id: &str) -> Option<ProcessPage> {
    let p = s.processes.get(&ProcessId::new_unchecked(id))?;
    let fleet = s.fleets.get(&p.fleet_id)?;
    if !scope.sees(&fleet.title_region_id) {
        return None;
    }
    let mut held: Vec<&BattleSession> = s
        .battle_sessions
        .values()
        .map(|r| &**r)
        .filter(|b| b.process_id.as_ref() == Some(&p.id))
        .collect();
    held.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id.clone())));
    let mut t: Vec<(u64, String)> =
        vec![(p.launched_at, format!("launched on host {}", p.host_id))];
    for b in &held {
        t.push((b.created_at, format!("battle session {} placed", b.id)));
        if let Some(at) = b.terminated_at {
            let why = b
                .termination_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            t.push((at, format!("battle session {} terminated{why}", b.id)));
        }
    }
    if let Some(at) = p.ending_since {
        t.push((at, "ProcessEnding: the DS said it is ending".into()));
    }
    if let Some(at) = p.exited_at {
        let row = process_row(p);
        let why = row.exit.map(|e| format!(": {e}")).unwrap_or_default();
        t.push((at, format!("exited{why}")));
    }
    t.sort_by_key(|e| e.0);
    held.truncate(MAX_SESSIONS);
    Some(ProcessPage {
        process: process_row(p),
        fleet_id: p.fleet_id.to_string(),
        title_region_id: fleet.title_region_id.to_string(),
        pid: p.pid,
        log_paths: p.log_paths.clone(),
        host_ip: s.hosts.get(&p.host_id).map(|h| h.ip.clone()),
        sessions: held
            .into_iter()
            .map(|b| HeldSession {
                battle_session_id: b.id.to_string(),
                placement_id: b.placement_id.to_string(),
                status: status_name(&b.status),
                created_at: time(b.created_at),
                terminated_at: b.terminated_at.map(time),
            })
            .collect(),
        timeline: t
            .into_iter()
            .map(|(at, what)| TimelineEntry {
                at: time_ms(at),
                what,
            })
            .collect(),
    })
}
