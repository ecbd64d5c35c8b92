//! The autoscaling part of the fleet admin API: what a fleet view shows of
//! the autoscaler and the rollout, and the operator's desired count
//! (`PUT`/`DELETE /admin/title_regions/{tr}/fleets/{fleet_id}/desired`).

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use axum::extract::{Path, State};
use axum::Json;
use respawn_actors::autoscale::{decide, ScaleInput};
use respawn_state::{ClusterState, Command};
use respawn_types::scaling::ScalingDecision;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A rolling update's progress: live processes of the current version and
/// of older ones (idle old ones are replaced at once, busy ones finish first).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RolloutView {
    /// The version new processes launch with.
    pub version: u64,
    pub current_version_processes: u32,
    pub older_version_processes: u32,
    /// Older-version processes still holding sessions.
    pub older_busy: u32,
    /// No older-version process is left.
    pub done: bool,
}

/// What the autoscaler wants of a fleet, and what it last did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScalingView {
    /// `fill` (every host runs processes_per_host) or `autoscaled`.
    pub policy: String,
    /// Processes the fleet should run now.
    pub desired_processes: u32,
    /// Hosts needed for them: desired processes ÷ processes_per_host, rounded up.
    pub desired_hosts: u32,
    /// Why, as the autoscaler would decide now.
    pub reason: String,
    /// Set by an operator (`PUT .../desired`), overriding the buffer.
    pub manual_desired: Option<u32>,
    /// The last decision the autoscaler committed (targets changed or processes stopped).
    pub last_decision: Option<ScalingDecision>,
    /// Decisions committed so far.
    pub decisions: u64,
    /// Process targets per host (empty: processes_per_host each).
    pub host_targets: BTreeMap<String, u32>,
    /// Live processes by fleet version, then by state.
    pub processes_by_version: BTreeMap<u64, BTreeMap<String, u32>>,
    pub rollout: RolloutView,
}

/// The scaling part of fleet `f`'s view.
pub fn scaling_view(
    s: &ClusterState,
    f: &Fleet,
    status_name: impl Fn(ProcessStatus) -> String,
) -> ScalingView {
    let rec = s.scaling.get(&f.id).cloned().unwrap_or_default();
    let now = now_millis();
    let plan = ScaleInput::of(s, &f.id, |_| true, now, None).map(|i| decide(&i));
    let mut by_version: BTreeMap<u64, BTreeMap<String, u32>> = BTreeMap::new();
    let mut rollout = RolloutView {
        version: f.version,
        ..Default::default()
    };
    for p in s
        .live_processes_by_fleet
        .get(&f.id)
        .into_iter()
        .flatten()
        .filter_map(|id| s.processes.get(id))
    {
        *by_version
            .entry(p.fleet_version)
            .or_default()
            .entry(status_name(p.status))
            .or_insert(0) += 1;
        if p.fleet_version == f.version {
            rollout.current_version_processes += 1;
        } else {
            rollout.older_version_processes += 1;
            if p.sessions_current > 0 {
                rollout.older_busy += 1;
            }
        }
    }
    rollout.done = rollout.older_version_processes == 0;
    let autoscaled = f.scaling.is_autoscaled() || rec.manual_desired.is_some();
    ScalingView {
        policy: if autoscaled { "autoscaled" } else { "fill" }.into(),
        desired_processes: plan.as_ref().map_or(0, |p| p.decision.desired_processes),
        desired_hosts: plan.as_ref().map_or(0, |p| p.decision.desired_hosts),
        reason: plan.map(|p| p.decision.reason).unwrap_or_default(),
        manual_desired: rec.manual_desired,
        last_decision: rec.last,
        decisions: rec.decisions,
        host_targets: rec
            .targets
            .iter()
            .map(|(h, t)| (h.to_string(), *t))
            .collect(),
        processes_by_version: by_version,
        rollout,
    }
}

/// The body of `PUT .../desired`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredBody {
    /// Processes the fleet should run (within scaling.min_processes and
    /// scaling.max_processes); overrides the buffer until deleted.
    pub desired_processes: u32,
}

async fn set_desired(
    edge: Edge,
    tr: String,
    id: String,
    desired: Option<u32>,
) -> Result<Json<super::fleets_admin::FleetView>, ApiError> {
    let (tr, id) = super::fleets_admin::ids(&tr, &id)?;
    let _found = super::fleets_admin::get_view(&edge, &tr, &id).await?;
    edge.server
        .cluster
        .propose(Command::SetFleetDesired {
            fleet_id: id.clone(),
            desired,
        })
        .await?;
    super::fleets_admin::get_view(&edge, &tr, &id).await
}

/// Set a fleet's desired process count by hand: it overrides the buffer
/// (still within min/max) until deleted. Scale-out is immediate, scale-in
/// waits for `scaling.scale_in_delay_secs` and stops only idle processes.
#[utoipa::path(put, path = "/admin/title_regions/{tr}/fleets/{fleet_id}/desired", tag = "Fleets admin",
    params(("tr" = String, Path), ("fleet_id" = String, Path)),
    request_body = DesiredBody,
    responses((status = 200, body = super::fleets_admin::FleetView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn put_desired(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<DesiredBody>,
) -> Result<Json<super::fleets_admin::FleetView>, ApiError> {
    set_desired(edge, tr, id, Some(body.desired_processes)).await
}

/// Clear the desired count set by hand: the scaling policy applies again.
#[utoipa::path(delete, path = "/admin/title_regions/{tr}/fleets/{fleet_id}/desired", tag = "Fleets admin",
    params(("tr" = String, Path), ("fleet_id" = String, Path)),
    responses((status = 200, body = super::fleets_admin::FleetView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn delete_desired(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, id)): Path<(String, String)>,
) -> Result<Json<super::fleets_admin::FleetView>, ApiError> {
    set_desired(edge, tr, id, None).await
}
