//! The fleet and host admin API of the edge (admin token): fleets managed
//! like virtual servers (`/admin/title_regions/{tr}/fleets/...`: create or
//! update = a new version, read, list, delete) and hosts
//! (`/admin/hosts`: list, drain, undrain).

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use respawn_actors::AgentGateway;
use respawn_state::{ClusterState, Command};
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Battle sessions of a fleet by state.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SessionCounts {
    pub activating: u32,
    pub active: u32,
}

/// A fleet, as the admin API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FleetView {
    pub title_region_id: String,
    pub fleet_id: String,
    /// 1 when created, +1 on every change.
    pub version: u64,
    /// When the current version was made (Unix ms).
    pub updated_at: u64,
    pub spec: FleetDefinition,
    /// Hosts registered for the fleet.
    pub hosts: Vec<String>,
    /// Live processes by state (LAUNCHING, READY, ENDING, TERMINATING).
    pub processes: BTreeMap<String, u32>,
    pub sessions: SessionCounts,
    /// Sessions the fleet could take now (free slots of placeable processes).
    pub available_slots: u32,
    /// Placements waiting for a process.
    pub waiting_placements: u32,
    /// The autoscaler and the rollout.
    pub scaling: super::fleet_scaling_view::ScalingView,
}

fn status_name(s: ProcessStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn view(s: &ClusterState, f: &Fleet) -> FleetView {
    let mut processes = BTreeMap::new();
    let mut sessions = SessionCounts::default();
    for p in s.live_processes(&f.id) {
        *processes.entry(status_name(p.status)).or_insert(0) += 1;
        for b in s.sessions_on(&p.id) {
            match b.status {
                BattleSessionStatus::Activating => sessions.activating += 1,
                BattleSessionStatus::Active => sessions.active += 1,
                _ => {}
            }
        }
    }
    let available_slots = s
        .placeable_processes(&f.id)
        .map(|p| match f.mode {
            ServerMode::Simple | ServerMode::Forking => 1,
            ServerMode::Parallel { max_sessions } => {
                max_sessions.saturating_sub(p.sessions_current)
            }
        })
        .sum();
    FleetView {
        title_region_id: f.title_region_id.to_string(),
        fleet_id: f.id.to_string(),
        version: f.version,
        updated_at: f.updated_at,
        spec: FleetDefinition::of(f),
        hosts: s
            .hosts
            .values()
            .filter(|h| h.fleet_id == f.id)
            .map(|h| h.id.to_string())
            .collect(),
        processes,
        sessions,
        available_slots,
        waiting_placements: s.waiting_placements(&f.id).count() as u32,
        scaling: super::fleet_scaling_view::scaling_view(s, f, status_name),
    }
}

/// The title region and fleet ids of a path.
pub(super) fn ids(tr: &str, id: &str) -> Result<(TitleRegionId, FleetId), ApiError> {
    Ok((tr_id(tr)?, fleet_id(id)?))
}

fn tr_id(s: &str) -> Result<TitleRegionId, ApiError> {
    TitleRegionId::parse(s).map_err(|e| ApiError::bad_request(format!("title region id: {e}")))
}

fn fleet_id(s: &str) -> Result<FleetId, ApiError> {
    FleetId::parse(s).map_err(|e| ApiError::bad_request(format!("fleet_id: {e}")))
}

fn host_id(s: &str) -> Result<HostId, ApiError> {
    HostId::parse(s).map_err(|e| ApiError::bad_request(format!("host_id: {e}")))
}

pub(super) async fn get_view(
    edge: &Edge,
    tr: &TitleRegionId,
    id: &FleetId,
) -> Result<Json<FleetView>, ApiError> {
    edge.server
        .cluster
        .read(|s| {
            s.fleets
                .get(id)
                .filter(|f| &f.title_region_id == tr)
                .map(|f| view(s, f))
        })
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!("fleet '{id}' not found in title region '{tr}'"))
        })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FleetList {
    pub fleets: Vec<FleetView>,
}

/// List a title region's fleets.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/fleets", tag = "Fleets admin",
    params(("tr" = String, Path, description = "title region id")),
    responses((status = 200, body = FleetList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn list(
    State(edge): State<Edge>,
    _: Admin,
    Path(tr): Path<String>,
) -> Result<Json<FleetList>, ApiError> {
    let tr = tr_id(&tr)?;
    let fleets = edge
        .server
        .cluster
        .read(|s| {
            s.title_regions.contains_key(&tr).then(|| {
                s.fleets
                    .values()
                    .filter(|f| f.title_region_id == tr)
                    .map(|f| view(s, f))
                    .collect()
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("title region '{tr}' not found")))?;
    Ok(Json(FleetList { fleets }))
}

/// Create a fleet (version 1) or update it (a new version: processes
/// launched from then on use the new launch spec; the same definition again
/// changes nothing). The server mode cannot change after creation.
#[utoipa::path(put, path = "/admin/title_regions/{tr}/fleets/{fleet_id}", tag = "Fleets admin",
    params(("tr" = String, Path), ("fleet_id" = String, Path)),
    request_body = FleetDefinition,
    responses((status = 200, body = FleetView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn put(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, id)): Path<(String, String)>,
    ApiJson(def): ApiJson<FleetDefinition>,
) -> Result<Json<FleetView>, ApiError> {
    let tr = tr_id(&tr)?;
    let id = fleet_id(&id)?;
    def.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let other_region = edge
        .server
        .cluster
        .read(|s| {
            s.fleets
                .get(&id)
                .filter(|f| f.title_region_id != tr)
                .map(|f| f.title_region_id.clone())
        })
        .await?;
    if let Some(other) = other_region {
        return Err(ApiError::bad_request(format!(
            "fleet_id: fleet '{id}' belongs to title region '{other}'"
        )));
    }
    edge.server
        .cluster
        .propose(Command::PutFleet(def.to_fleet(id.clone(), tr.clone())))
        .await?;
    get_view(&edge, &tr, &id).await
}

/// One fleet: its definition, version, hosts, processes, sessions and demand.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/fleets/{fleet_id}", tag = "Fleets admin",
    params(("tr" = String, Path), ("fleet_id" = String, Path)),
    responses((status = 200, body = FleetView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn get_one(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, id)): Path<(String, String)>,
) -> Result<Json<FleetView>, ApiError> {
    get_view(&edge, &tr_id(&tr)?, &fleet_id(&id)?).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Delete even while sessions run: they end, and the fleet's processes
    /// are asked to terminate.
    #[serde(default)]
    pub force: bool,
}

/// Delete a fleet; refused (409) while battle sessions are ACTIVATING or
/// ACTIVE on it, unless `force=true`. Its processes are asked to terminate.
#[utoipa::path(delete, path = "/admin/title_regions/{tr}/fleets/{fleet_id}", tag = "Fleets admin",
    params(("tr" = String, Path), ("fleet_id" = String, Path), DeleteParams),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn delete(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, id)): Path<(String, String)>,
    q: Result<Query<DeleteParams>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let tr = tr_id(&tr)?;
    let id = fleet_id(&id)?;
    let _found = get_view(&edge, &tr, &id).await?;
    edge.server
        .cluster
        .propose(Command::DeleteFleet {
            fleet_id: id,
            force: q.force,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A host (one agent), as the admin API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HostView {
    pub host_id: String,
    pub fleet_id: String,
    pub ip: String,
    /// Server node holding its agent link (as last committed).
    pub node_id: Option<u64>,
    /// Is its agent linked now?
    pub connected: bool,
    /// ACTIVE, DRAINING (sessions still run), DRAINED (none left) or LOST
    /// (agent not linked).
    pub state: String,
    /// DS processes its agent keeps (the fleet's processes_per_host).
    pub capacity: u32,
    /// Live processes by state.
    pub processes: BTreeMap<String, u32>,
    /// ACTIVATING or ACTIVE battle sessions on it.
    pub sessions: u32,
}

/// A host's state from its drain and its link.
pub fn host_state(draining_sessions: Option<usize>, connected: bool) -> &'static str {
    match (draining_sessions, connected) {
        (Some(n), _) if n > 0 => "DRAINING",
        (Some(_), _) => "DRAINED",
        (None, true) => "ACTIVE",
        (None, false) => "LOST",
    }
}

fn host_view(s: &ClusterState, h: &Host, connected: bool) -> HostView {
    let mut processes = BTreeMap::new();
    let mut sessions = 0u32;
    for p in s.live_processes(&h.fleet_id).filter(|p| p.host_id == h.id) {
        *processes.entry(status_name(p.status)).or_insert(0) += 1;
        sessions += s
            .sessions_by_process
            .get(&p.id)
            .map_or(0, |b| b.len() as u32);
    }
    HostView {
        host_id: h.id.to_string(),
        fleet_id: h.fleet_id.to_string(),
        ip: h.ip.clone(),
        node_id: s.host_links.get(&h.id).copied(),
        connected,
        state: host_state(s.drain_progress(&h.id), connected).into(),
        capacity: s
            .fleets
            .get(&h.fleet_id)
            .map_or(0, |f| f.runtime.processes_per_host),
        processes,
        sessions,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HostList {
    pub hosts: Vec<HostView>,
}

async fn hosts_view(edge: &Edge, only: Option<&HostId>) -> Result<Vec<HostView>, ApiError> {
    let gateway = edge.server.gateway();
    let hosts: Vec<Host> = edge
        .server
        .cluster
        .read(|s| {
            s.hosts
                .values()
                .filter(|h| only.is_none_or(|o| &h.id == o))
                .cloned()
                .collect()
        })
        .await?;
    let connected: BTreeMap<HostId, bool> = hosts
        .iter()
        .map(|h| (h.id.clone(), gateway.is_connected(&h.id)))
        .collect();
    Ok(edge
        .server
        .cluster
        .read(|s| {
            hosts
                .iter()
                .map(|h| host_view(s, h, connected.get(&h.id).copied().unwrap_or(false)))
                .collect()
        })
        .await?)
}

/// Every host with its fleet, link, capacity, processes, sessions and state.
#[utoipa::path(get, path = "/admin/hosts", tag = "Fleets admin",
    responses((status = 200, body = HostList), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn hosts(State(edge): State<Edge>, _: Admin) -> Result<Json<HostList>, ApiError> {
    Ok(Json(HostList {
        hosts: hosts_view(&edge, None).await?,
    }))
}

async fn set_draining(edge: Edge, id: String, draining: bool) -> Result<Json<HostView>, ApiError> {
    let id = host_id(&id)?;
    edge.server
        .cluster
        .propose(Command::SetHostDraining {
            host_id: id.clone(),
            draining,
        })
        .await?;
    hosts_view(&edge, Some(&id))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("host '{id}' not found")))
}

/// Drain a host: it takes no new session, its idle processes are asked to
/// terminate (OnProcessTerminate), its busy ones finish; DRAINED when no
/// session is left.
#[utoipa::path(post, path = "/admin/hosts/{host_id}/drain", tag = "Fleets admin",
    params(("host_id" = String, Path)),
    responses((status = 200, body = HostView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn drain(
    State(edge): State<Edge>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    set_draining(edge, id, true).await
}

/// End a host's drain: it takes sessions again.
#[utoipa::path(post, path = "/admin/hosts/{host_id}/undrain", tag = "Fleets admin",
    params(("host_id" = String, Path)),
    responses((status = 200, body = HostView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn undrain(
    State(edge): State<Edge>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    set_draining(edge, id, false).await
}

#[cfg(test)]
mod tests {
    use super::host_state;

    #[test]
    fn host_states() {
        assert_eq!(host_state(Some(2), true), "DRAINING");
        assert_eq!(host_state(Some(0), false), "DRAINED");
        assert_eq!(host_state(None, true), "ACTIVE");
        assert_eq!(host_state(None, false), "LOST");
    }
}
