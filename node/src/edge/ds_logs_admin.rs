//! DS log upload, the admin side: the logs the agents keep of DS processes
//! (stdout, stderr and the files collected from ProcessReady's `log_paths`
//! when the process ended, agent/src/ds_logs.rs), listed and downloaded per
//! process and per battle session. The files stay on the host that ran the
//! process; the edge asks its agent over the agent link (from any node), so
//! the host must be connected.

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use respawn_actors::AgentGateway;
use respawn_state::ClusterState;
use respawn_types::agent::{AgentReply, ServerToAgent, WireError, MAX_LOG_CHUNK};
use respawn_types::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One log file kept for a DS process.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DsLogFileView {
    /// `stdout.log`, `stderr.log` (and rotated `.1`, `.2`), files the DS
    /// wrote in its `RESPAWN_LOG_DIR`, and `collected/<n>-<file name>`: the
    /// `log_paths` files, collected when the process ended.
    pub name: String,
    pub size: u64,
    /// Last modified (Unix ms).
    pub modified: u64,
}

/// The log files of a DS process.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DsLogsView {
    pub process_id: String,
    /// The host that ran it, which keeps the files.
    pub host_id: String,
    /// The battle session asked about (battle session route only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battle_session_id: Option<String>,
    /// The process's `log_paths` from ProcessReady.
    pub log_paths: Vec<String>,
    /// LAUNCHING, READY, ENDING, TERMINATING or EXITED.
    #[schema(example = "EXITED")]
    pub status: String,
    pub files: Vec<DsLogFileView>,
}

fn tr_id(s: &str) -> Result<TitleRegionId, ApiError> {
    TitleRegionId::parse(s).map_err(|e| ApiError::bad_request(format!("title region id: {e}")))
}

fn agent_error(e: WireError) -> ApiError {
    use respawn_types::agent::ErrorCode as C;
    let status = match e.code {
        C::BadRequest => StatusCode::BAD_REQUEST,
        C::NotFound | C::Expired => StatusCode::NOT_FOUND,
        C::Forbidden => StatusCode::FORBIDDEN,
        C::Conflict | C::InvalidState => StatusCode::CONFLICT,
        C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.code, e.message)
}

/// The process `id` of title region `tr`.
fn process_in(s: &ClusterState, tr: &TitleRegionId, id: &ProcessId) -> Option<DsProcess> {
    let p = s.processes.get(id)?;
    let fleet = s.fleets.get(&p.fleet_id)?;
    (&fleet.title_region_id == tr).then(|| (**p).clone())
}

async fn process(edge: &Edge, tr: &TitleRegionId, id: &ProcessId) -> Result<DsProcess, ApiError> {
    edge.server
        .cluster
        .read(|s| process_in(s, tr, id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("process '{id}' not found in title region '{tr}'"))
        })
}

async fn ask(edge: &Edge, host: &HostId, cmd: ServerToAgent) -> Result<AgentReply, ApiError> {
    let gateway = edge.server.gateway();
    if !gateway.is_connected(host) {
        return Err(ApiError::unavailable(format!(
            "host {host} keeps these logs and is not connected now"
        )));
    }
    match gateway.send(host, cmd).await {
        Ok(AgentReply::Err(e)) => Err(agent_error(e)),
        Ok(r) => Ok(r),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

async fn list_of(
    edge: &Edge,
    p: DsProcess,
    bs: Option<String>,
) -> Result<Json<DsLogsView>, ApiError> {
    let reply = ask(
        edge,
        &p.host_id,
        ServerToAgent::ListDsLogs {
            process_id: p.id.clone(),
        },
    )
    .await?;
    let AgentReply::DsLogFiles { files } = reply else {
        return Err(ApiError::unavailable("unexpected answer from the agent"));
    };
    Ok(Json(DsLogsView {
        process_id: p.id.to_string(),
        host_id: p.host_id.to_string(),
        battle_session_id: bs,
        log_paths: p.log_paths,
        status: serde_json::to_value(p.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        files: files
            .into_iter()
            .map(|f| DsLogFileView {
                name: f.name,
                size: f.size,
                modified: f.modified,
            })
            .collect(),
    }))
}

/// Up to `len` bytes (at most [`MAX_LOG_CHUNK`]) of log file `name` of
/// process `id` of title region `tr`, from `offset`, and the file's whole
/// size: the read the download makes, for the console's tail of a file.
pub async fn read_log(
    edge: &Edge,
    tr: &str,
    id: &str,
    name: &str,
    offset: u64,
    len: u32,
) -> Result<(Vec<u8>, u64), ApiError> {
    let tr = tr_id(tr)?;
    let id = ProcessId::parse(id).map_err(|e| ApiError::bad_request(format!("process_id: {e}")))?;
    let p = process(edge, &tr, &id).await?;
    let cmd = ServerToAgent::ReadDsLog {
        process_id: id,
        name: name.to_string(),
        offset,
        len: len.min(MAX_LOG_CHUNK),
    };
    match ask(edge, &p.host_id, cmd).await? {
        AgentReply::DsLogChunk { data, size } => Ok((data, size)),
        _ => Err(ApiError::unavailable("unexpected answer from the agent")),
    }
}

/// The log files kept for a DS process (on its host, for the agent's log
/// retention).
#[utoipa::path(get, path = "/admin/title_regions/{tr}/processes/{process_id}/logs", tag = "Fleets admin",
    params(("tr" = String, Path, description = "title region id"), ("process_id" = String, Path)),
    responses((status = 200, body = DsLogsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody, description = "the host is not connected")),
    security(("admin_token" = [])))]
pub async fn process_logs(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, id)): Path<(String, String)>,
) -> Result<Json<DsLogsView>, ApiError> {
    let tr = tr_id(&tr)?;
    let id =
        ProcessId::parse(&id).map_err(|e| ApiError::bad_request(format!("process_id: {e}")))?;
    let p = process(&edge, &tr, &id).await?;
    list_of(&edge, p, None).await
}

/// The log files of the DS process that hosted a battle session.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/battle_sessions/{battle_session_id}/logs", tag = "Fleets admin",
    params(("tr" = String, Path, description = "title region id"), ("battle_session_id" = String, Path)),
    responses((status = 200, body = DsLogsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such session, or it never reached a process"),
        (status = 503, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn session_logs(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, bs)): Path<(String, String)>,
) -> Result<Json<DsLogsView>, ApiError> {
    let tr = tr_id(&tr)?;
    let bs = BattleSessionId::parse(&bs)
        .map_err(|e| ApiError::bad_request(format!("battle_session_id: {e}")))?;
    let p = edge
        .server
        .cluster
        .read(|s| {
            let session = s
                .battle_sessions
                .get(&bs)
                .filter(|b| b.title_region_id == tr)
                .ok_or_else(|| format!("battle session '{bs}' not found in title region '{tr}'"))?;
            let pid = session
                .process_id
                .as_ref()
                .ok_or_else(|| format!("battle session '{bs}' never reached a process"))?;
            process_in(s, &tr, pid).ok_or_else(|| format!("process '{pid}' is no longer kept"))
        })
        .await?
        .map_err(ApiError::not_found)?;
    list_of(&edge, p, Some(bs.to_string())).await
}

/// Download one log file of a DS process (`name` as the listing gives it;
/// it may contain `/`).
#[utoipa::path(get, path = "/admin/title_regions/{tr}/processes/{process_id}/logs/{name}", tag = "Fleets admin",
    params(("tr" = String, Path, description = "title region id"), ("process_id" = String, Path),
        ("name" = String, Path, description = "file name from the listing, e.g. stdout.log or collected/0-server.log")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn download(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, id, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let tr = tr_id(&tr)?;
    let id =
        ProcessId::parse(&id).map_err(|e| ApiError::bad_request(format!("process_id: {e}")))?;
    let p = process(&edge, &tr, &id).await?;
    let read = {
        let (id, name) = (id.clone(), name.clone());
        move |offset: u64| ServerToAgent::ReadDsLog {
            process_id: id.clone(),
            name: name.clone(),
            offset,
            len: MAX_LOG_CHUNK,
        }
    };
    // The first chunk answers errors with a status; the rest stream.
    let first_read = read(0);
    let AgentReply::DsLogChunk { data, size } = ask(&edge, &p.host_id, first_read).await? else {
        return Err(ApiError::unavailable("unexpected answer from the agent"));
    };
    let first = Bytes::from(data);
    let host = p.host_id.clone();
    let rest = futures::stream::unfold(first.len() as u64, move |offset| {
        let edge = edge.clone();
        let host = host.clone();
        let cmd = read(offset);
        async move {
            if offset >= size {
                return None;
            }
            match ask(&edge, &host, cmd).await {
                Ok(AgentReply::DsLogChunk { data, .. }) if !data.is_empty() => {
                    let next = offset + data.len() as u64;
                    Some((Ok::<_, std::io::Error>(Bytes::from(data)), next))
                }
                Ok(_) => None,
                Err(e) => Some((Err(std::io::Error::other(e.message)), size)),
            }
        }
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<_, std::io::Error>(first) }),
        rest,
    );
    let file = name.rsplit('/').next().unwrap_or("log").replace('"', "");
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, size)
        .header(
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        )
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::unavailable(e.to_string()))
}
