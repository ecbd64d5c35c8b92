//! Running a scheduled task now (`POST /admin/title_regions/{tr}/tasks/{name}/run`):
//! the answering node delivers `/pgos_task` to the VS through the invoke
//! path, exactly as the leader's scheduler does, and records the attempt
//! in the trigger log (which also sets the task's `last_fired_at`, so an
//! interval counts again from now).

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::invoke::vs_name;
use super::vs_admin::{tr_id, trigger_view, TriggerView};
use crate::server::vs_ports::ClusterVsPorts;
use axum::extract::{Path, State};
use axum::Json;
use respawn_actors::vs_policy::{task_body, task_record, TASK_TIMEOUT};
use respawn_actors::VsPorts;
use respawn_state::Command;
use respawn_types::now_millis;

/// Fire a scheduled task once, now (also a disabled one), and answer the
/// delivery attempt as recorded in the trigger log. The schedule is not
/// otherwise changed; a run that overlaps a scheduled firing is a second,
/// separate delivery.
#[utoipa::path(post, path = "/admin/title_regions/{tr}/tasks/{name}/run", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = TriggerView, description = "the attempt, delivered or not"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn run_task(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<Json<TriggerView>, ApiError> {
    let (tr, name) = (tr_id(&tr)?, vs_name(&name)?);
    let task = edge
        .server
        .cluster
        .read(|s| s.tasks.get(&tr).and_then(|m| m.get(&name)).cloned())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task '{name}' not found")))?;
    let ports = ClusterVsPorts {
        consensus: edge.server.cluster.consensus.clone(),
        hub: edge.server.vs.clone(),
    };
    let trigger_id = uuid::Uuid::now_v7().to_string();
    let now = now_millis();
    let body = task_body(&trigger_id, &task, now);
    let d = ports
        .deliver(&tr, &task.vs, "/pgos_task", "task", body, TASK_TIMEOUT)
        .await;
    let cmd = task_record(&tr, trigger_id, &task, now, d);
    // task_record always builds a RecordTrigger.
    let Command::RecordTrigger { record, .. } = &cmd else {
        return Err(ApiError::unavailable("task record not built"));
    };
    let view = trigger_view(record);
    edge.server.cluster.propose(cmd).await?;
    Ok(Json(view))
}
