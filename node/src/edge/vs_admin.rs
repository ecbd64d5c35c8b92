//! The virtual-server admin API of the edge (`/admin/title_regions/...`,
//! admin token): define, start, stop and inspect virtual servers, read
//! their console and access logs, and manage event handlers, scheduled
//! tasks and their trigger logs.

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::invoke::{vs_name, INVOKE_PREFIX};
use super::json::ApiJson;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use respawn_actors::AgentGateway;
use respawn_runtime::LogQuery;
use respawn_state::Command;
use respawn_types::agent::{AgentReply, ServerToAgent};
use respawn_types::*;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An instance, as the admin API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    pub instance_id: String,
    pub version: u64,
    pub host_id: String,
    pub status: VsInstanceStatus,
    /// Why it is ABNORMAL: port_mismatch, listening_on_loopback, crashed,
    /// out_of_memory, image_unusable, not_listening, launch_failed.
    pub reason: Option<String>,
    /// What happened and what to do about it.
    pub detail: Option<String>,
    /// `host:port` the edge proxies to (when RUNNING).
    pub address: Option<String>,
    /// How CPU and memory limits are enforced: cgroup2, cgroup1, docker or none.
    pub limits: Option<String>,
    pub restarts: u32,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u64,
    pub created_at: u64,
    pub spec: VsSpec,
}

/// A virtual server with its instances.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VirtualServerView {
    pub title_region_id: String,
    pub name: String,
    pub version: u64,
    /// RUNNING or STOPPED (what the user asked for).
    pub desired: VsDesired,
    /// Summary: DEPLOYING, RUNNING, ABNORMAL or STOPPED.
    pub status: String,
    /// Instances the autoscaler wants now.
    pub scale: u32,
    pub spec: VsSpec,
    pub instances: Vec<InstanceView>,
    pub versions: Vec<VersionView>,
    pub created_at: u64,
    pub updated_at: u64,
    /// The backend route that invokes it.
    pub invoke_path: String,
    /// Its intranet domain (seed §8 内网域名): other VSs of the title region
    /// call `http://<intranet_domain>/<path>` through their `http_proxy`.
    pub intranet_domain: String,
}

fn instance_view(i: &VsInstance) -> InstanceView {
    InstanceView {
        instance_id: i.id.to_string(),
        version: i.version,
        host_id: i.host_id.to_string(),
        status: i.status,
        reason: i.reason.clone(),
        detail: i.detail.clone(),
        address: i.port.map(|p| format!("{}:{p}", i.ip)),
        limits: i.limits.clone(),
        restarts: i.restarts,
        created_at: i.created_at,
        updated_at: i.updated_at,
    }
}

fn view(s: &respawn_state::ClusterState, v: &VirtualServer) -> VirtualServerView {
    let instances: Vec<InstanceView> = s
        .vs_instances_of(&v.title_region_id, &v.name)
        .map(instance_view)
        .collect();
    let status = if v.desired == VsDesired::Stopped {
        "STOPPED"
    } else if instances
        .iter()
        .any(|i| i.status == VsInstanceStatus::Running)
    {
        "RUNNING"
    } else if instances
        .iter()
        .any(|i| i.status == VsInstanceStatus::Abnormal)
    {
        "ABNORMAL"
    } else {
        "DEPLOYING"
    };
    VirtualServerView {
        title_region_id: v.title_region_id.to_string(),
        name: v.name.to_string(),
        version: v.version,
        desired: v.desired,
        status: status.into(),
        scale: v.scale,
        spec: v.spec.clone(),
        instances,
        versions: v
            .versions
            .iter()
            .map(|x| VersionView {
                version: x.version,
                created_at: x.created_at,
                spec: x.spec.clone(),
            })
            .collect(),
        created_at: v.created_at,
        updated_at: v.updated_at,
        invoke_path: format!("{INVOKE_PREFIX}/{}/", v.name),
        intranet_domain: s
            .title_regions
            .get(&v.title_region_id)
            .map(|t| {
                respawn_types::intranet::intranet_domain(&v.name, &v.title_region_id, &t.title_id)
            })
            .unwrap_or_default(),
    }
}

pub(crate) fn tr_id(s: &str) -> Result<TitleRegionId, ApiError> {
    TitleRegionId::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn get_view(
    edge: &Edge,
    tr: &TitleRegionId,
    name: &VsName,
) -> Result<Json<VirtualServerView>, ApiError> {
    edge.server
        .cluster
        .read(|s| s.virtual_server(tr, name).map(|v| view(s, v)))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("virtual server '{name}' not found")))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VirtualServerList {
    pub virtual_servers: Vec<VirtualServerView>,
}

/// List a title region's virtual servers.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/virtual_servers", tag = "Virtual servers admin",
    params(("tr" = String, Path, description = "title region id")),
    responses((status = 200, body = VirtualServerList), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn list(
    State(edge): State<Edge>,
    _: Admin,
    Path(tr): Path<String>,
) -> Result<Json<VirtualServerList>, ApiError> {
    let tr = tr_id(&tr)?;
    let virtual_servers = edge
        .server
        .cluster
        .read(|s| {
            s.title_regions.contains_key(&tr).then(|| {
                s.virtual_servers
                    .get(&tr)
                    .map(|m| m.values().map(|v| view(s, v)).collect())
                    .unwrap_or_default()
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("title region '{tr}' not found")))?;
    Ok(Json(VirtualServerList { virtual_servers }))
}

/// Create a virtual server (running, version 1) or update it (a new version;
/// instances are replaced by instances of the new version, rolling).
#[utoipa::path(put, path = "/admin/title_regions/{tr}/virtual_servers/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path, description = "letters, digits and '-'")),
    request_body = VsSpec,
    responses((status = 200, body = VirtualServerView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn put(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<VsSpec>,
) -> Result<Json<VirtualServerView>, ApiError> {
    let tr = tr_id(&tr)?;
    let name = vs_name(&name)?;
    spec.validate().map_err(ApiError::bad_request)?;
    edge.server
        .cluster
        .propose(Command::PutVirtualServer {
            title_region_id: tr.clone(),
            name: name.clone(),
            spec,
        })
        .await?;
    get_view(&edge, &tr, &name).await
}

/// One virtual server, with its instances and versions.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/virtual_servers/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = VirtualServerView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn get_one(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<Json<VirtualServerView>, ApiError> {
    get_view(&edge, &tr_id(&tr)?, &vs_name(&name)?).await
}

/// Delete a virtual server; its instances are stopped.
#[utoipa::path(delete, path = "/admin/title_regions/{tr}/virtual_servers/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn delete(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    edge.server
        .cluster
        .propose(Command::DeleteVirtualServer {
            title_region_id: tr_id(&tr)?,
            name: vs_name(&name)?,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_desired(
    edge: Edge,
    tr: String,
    name: String,
    desired: VsDesired,
) -> Result<Json<VirtualServerView>, ApiError> {
    let (tr, name) = (tr_id(&tr)?, vs_name(&name)?);
    edge.server
        .cluster
        .propose(Command::SetVirtualServerDesired {
            title_region_id: tr.clone(),
            name: name.clone(),
            desired,
        })
        .await?;
    get_view(&edge, &tr, &name).await
}

/// Start a stopped virtual server (one instance first; the autoscaler adds more).
#[utoipa::path(post, path = "/admin/title_regions/{tr}/virtual_servers/{name}/start", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = VirtualServerView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn start(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<Json<VirtualServerView>, ApiError> {
    set_desired(edge, tr, name, VsDesired::Running).await
}

/// Stop a virtual server: every instance is stopped and its resources reclaimed.
#[utoipa::path(post, path = "/admin/title_regions/{tr}/virtual_servers/{name}/stop", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = VirtualServerView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn stop(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<Json<VirtualServerView>, ApiError> {
    set_desired(edge, tr, name, VsDesired::Stopped).await
}

/// Log query parameters (all optional).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// One version only (default: every version).
    pub version: Option<u64>,
    /// From this time (Unix ms).
    pub since: Option<u64>,
    /// Until this time (Unix ms).
    pub until: Option<u64>,
    /// Only lines containing this text.
    pub contains: Option<String>,
    /// The last N matching lines (1–10000).
    #[param(minimum = 1, maximum = 10000)]
    pub tail: Option<usize>,
    /// At most this many lines (default 1000; 1–10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Most lines one logs or access-log query returns.
const MAX_LOG_LINES: usize = 10_000;

/// A count parameter within `lo..=hi`, or 400 naming it.
fn in_range(name: &str, v: Option<usize>, lo: usize, hi: usize) -> Result<(), ApiError> {
    match v {
        Some(n) if !(lo..=hi).contains(&n) => Err(ApiError::bad_request(format!(
            "query: {name} must be between {lo} and {hi}, got {n}"
        ))),
        _ => Ok(()),
    }
}

impl LogParams {
    fn checked(self) -> Result<Self, ApiError> {
        in_range("tail", self.tail, 1, MAX_LOG_LINES)?;
        in_range("limit", self.limit, 1, MAX_LOG_LINES)?;
        Ok(self)
    }
}

/// One line a VS instance printed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogLineView {
    pub ts_ms: u64,
    pub version: u64,
    pub instance_id: String,
    /// stdout or stderr.
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogsView {
    pub lines: Vec<LogLineView>,
    /// Hosts that could not be asked (not connected now).
    pub unreachable_hosts: Vec<String>,
}

fn params<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))
}

/// Console output (stdout/stderr) of a VS's instances, kept per version on
/// the hosts that ran them: time range, text filter, tail.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/virtual_servers/{name}/logs", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path), LogParams),
    responses((status = 200, body = LogsView), (status = 400, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn logs(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
    q: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LogsView>, ApiError> {
    let (tr, name) = (tr_id(&tr)?, vs_name(&name)?);
    let p = params(q)?.checked()?;
    let limit = p.limit.unwrap_or(1000);
    let query = LogQuery {
        title_region: tr.to_string(),
        vs_name: name.to_string(),
        version: p.version,
        since_ms: p.since,
        until_ms: p.until,
        contains: p.contains,
        tail: p.tail,
        limit,
    };
    // Serializing a plain struct of strings and numbers cannot fail.
    let query = serde_json::to_string(&query).unwrap_or_default();
    let hosts: Vec<HostId> = edge
        .server
        .cluster
        .consensus
        .read(|s| s.hosts.keys().cloned().collect());
    let gateway = edge.server.gateway();
    let mut lines: Vec<LogLineView> = Vec::new();
    let mut unreachable = Vec::new();
    for h in hosts {
        if !gateway.is_connected(&h) {
            unreachable.push(h.to_string());
            continue;
        }
        let reply = gateway
            .send(
                &h,
                ServerToAgent::QueryVsLogs {
                    query_json: query.clone(),
                },
            )
            .await;
        match reply {
            Ok(AgentReply::VsLogs { lines_json }) => {
                if let Ok(mut got) = serde_json::from_str::<Vec<LogLineView>>(&lines_json) {
                    lines.append(&mut got);
                }
            }
            _ => unreachable.push(h.to_string()),
        }
    }
    lines.sort_by_key(|l| l.ts_ms);
    if let Some(t) = p.tail {
        let drop = lines.len().saturating_sub(t.min(limit));
        lines.drain(..drop);
    }
    lines.truncate(limit);
    Ok(Json(LogsView {
        lines,
        unreachable_hosts: unreachable,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessLogView {
    /// nginx "combined" lines, oldest first.
    pub lines: Vec<String>,
}

/// The access log of a VS on the node that answers (each node's edge keeps
/// the log of the calls it proxied), in nginx's default format. Switch it on
/// with `access_log: true` in the VS spec.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/virtual_servers/{name}/access_log", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path), LogParams),
    responses((status = 200, body = AccessLogView), (status = 400, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn access_log(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
    q: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AccessLogView>, ApiError> {
    let (tr, name) = (tr_id(&tr)?, vs_name(&name)?);
    let p = params(q)?.checked()?;
    let store = edge.server.vs.access_logs.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let limit = p.tail.or(p.limit).unwrap_or(1000);
        store.query(
            tr.as_str(),
            name.as_str(),
            p.since,
            p.until,
            p.contains.as_deref(),
            p.tail.is_some(),
            limit,
        )
    })
    .await
    .map_err(|e| ApiError::unavailable(e.to_string()))?
    .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(AccessLogView { lines }))
}

/// Binds PGOS events to a VS's `/pgos_event`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventHandlerSpec {
    /// The virtual server that receives the events.
    pub virtual_server: String,
    /// Event names (empty: all). Known: event_battle_session_placement_fulfilled,
    /// event_battle_session_placement_timedout, event_battle_session_placement_failed,
    /// event_battle_session_started, event_battle_session_ended,
    /// event_player_joined_battle_session, event_player_left_battle_session.
    #[serde(default)]
    pub events: Vec<String>,
    /// Passed as `args` in every event body.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Option<serde_json::Value>,
}

fn args_text(v: Option<serde_json::Value>) -> Result<String, ApiError> {
    match v {
        None => Ok("{}".into()),
        Some(v @ serde_json::Value::Object(_)) => Ok(v.to_string()),
        Some(_) => Err(ApiError::bad_request("args must be a JSON object")),
    }
}

/// Create or replace an event handler.
#[utoipa::path(put, path = "/admin/title_regions/{tr}/event_handlers/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)), request_body = EventHandlerSpec,
    responses((status = 204), (status = 400, body = ErrorBody)), security(("admin_token" = [])))]
pub async fn put_event_handler(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<EventHandlerSpec>,
) -> Result<StatusCode, ApiError> {
    let h = EventHandler {
        title_region_id: tr_id(&tr)?,
        name: vs_name(&name)?,
        vs: vs_name(&spec.virtual_server)?,
        events: spec.events,
        args: args_text(spec.args)?,
    };
    edge.server
        .cluster
        .propose(Command::PutEventHandler(h))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete an event handler.
#[utoipa::path(delete, path = "/admin/title_regions/{tr}/event_handlers/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("admin_token" = [])))]
pub async fn delete_event_handler(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    edge.server
        .cluster
        .propose(Command::DeleteEventHandler {
            title_region_id: tr_id(&tr)?,
            name: vs_name(&name)?,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A scheduled task that POSTs `/pgos_task` to a VS.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub virtual_server: String,
    /// `{"interval": {"secs": 60}}` or `{"cron": {"expr": "*/5 * * * *"}}` (UTC).
    pub schedule: TaskSchedule,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub args: Option<serde_json::Value>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Create or replace a scheduled task.
#[utoipa::path(put, path = "/admin/title_regions/{tr}/tasks/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)), request_body = TaskSpec,
    responses((status = 204), (status = 400, body = ErrorBody)), security(("admin_token" = [])))]
pub async fn put_task(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<TaskSpec>,
) -> Result<StatusCode, ApiError> {
    edge.server
        .cluster
        .propose(Command::PutTask {
            title_region_id: tr_id(&tr)?,
            name: vs_name(&name)?,
            vs: vs_name(&spec.virtual_server)?,
            schedule: spec.schedule,
            args: args_text(spec.args)?,
            enabled: spec.enabled,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a scheduled task.
#[utoipa::path(delete, path = "/admin/title_regions/{tr}/tasks/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("admin_token" = [])))]
pub async fn delete_task(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    edge.server
        .cluster
        .propose(Command::DeleteTask {
            title_region_id: tr_id(&tr)?,
            name: vs_name(&name)?,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TriggerView {
    pub trigger_id: String,
    pub kind: TriggerKind,
    /// Event name or task name.
    pub name: String,
    pub virtual_server: String,
    /// When the attempt was made (Unix ms).
    pub at: u64,
    pub attempt: u32,
    pub status_code: Option<u16>,
    /// The VS's answer (at most 1 KiB) or the delivery error.
    pub response: String,
    pub latency_ms: u64,
    pub outcome: TriggerOutcome,
}

/// A trigger record as the API shows it.
pub(crate) fn trigger_view(r: &TriggerRecord) -> TriggerView {
    TriggerView {
        trigger_id: r.trigger_id.clone(),
        kind: r.kind,
        name: r.name.clone(),
        virtual_server: r.vs.to_string(),
        at: r.at,
        attempt: r.attempt,
        status_code: r.status_code,
        response: r.response.clone(),
        latency_ms: r.latency_ms,
        outcome: r.outcome,
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TriggerLogView {
    pub records: Vec<TriggerView>,
    /// Events waiting for delivery, in order.
    pub pending_events: usize,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TriggerParams {
    /// event or task.
    pub kind: Option<TriggerKind>,
    /// Only this event or task name.
    pub name: Option<String>,
    /// The last N records (default 100; 1–2000, what a title region keeps).
    #[param(minimum = 1, maximum = 2000)]
    pub limit: Option<usize>,
}

/// Trigger logs: every delivery attempt of an event or a task.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/trigger_logs", tag = "Virtual servers admin",
    params(("tr" = String, Path), TriggerParams),
    responses((status = 200, body = TriggerLogView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)), security(("admin_token" = [])))]
pub async fn trigger_logs(
    State(edge): State<Edge>,
    _: Admin,
    Path(tr): Path<String>,
    q: Result<Query<TriggerParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TriggerLogView>, ApiError> {
    let tr = tr_id(&tr)?;
    let p = params(q)?;
    in_range("limit", p.limit, 1, TRIGGER_LOG_KEPT)?;
    let limit = p.limit.unwrap_or(100);
    let (mut records, pending_events) = edge
        .server
        .cluster
        .read(|s| {
            let recs: Vec<TriggerView> = s
                .trigger_log
                .get(&tr)
                .into_iter()
                .flatten()
                .filter(|r| p.kind.is_none_or(|k| k == r.kind))
                .filter(|r| p.name.as_ref().is_none_or(|n| *n == r.name))
                .map(trigger_view)
                .collect();
            (recs, s.outbox.get(&tr).map_or(0, |q| q.len()))
        })
        .await?;
    let drop = records.len().saturating_sub(limit);
    records.drain(..drop);
    Ok(Json(TriggerLogView {
        records,
        pending_events,
    }))
}
