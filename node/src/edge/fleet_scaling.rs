//! The operator's desired count of a fleet's processes
//! (`PUT`/`DELETE /admin/title_regions/{tr}/fleets/{fleet_id}/desired`).

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use axum::extract::{Path, State};
use axum::Json;
use respawn_state::Command;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
