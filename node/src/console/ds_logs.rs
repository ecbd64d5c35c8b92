//! A DS process's logs on its page: the files its host's agent keeps
//! (stdout, stderr, the collected `log_paths` files), the last
//! [`TAIL_BYTES`] of one of them, and a download of a whole file. They go
//! through the DS log API's own code (`edge::ds_logs_admin`: the same agent
//! requests as `GET /admin/title_regions/{tr}/processes/{id}/logs[/{name}]`),
//! so a host that is not connected is said so (the API's 503).

use super::auth::Me;
use super::{ConsoleState, PageError};
use crate::edge::admin::Admin;
use crate::edge::ds_logs_admin;
use crate::edge::error::ApiError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use respawn_console::views::ds_logs::{self, LogFileRow, LogTail, TAIL_BYTES};
use respawn_types::ProcessId;
use serde::Serialize;

/// The logs section of a process page.
#[derive(Debug, Serialize)]
pub struct LogsSection {
    /// Why the logs cannot be read now (the host is not connected), if so.
    pub unavailable: Option<String>,
    /// Why the host has no logs of the process (past its log retention), if so.
    pub gone: Option<String>,
    pub files: Vec<LogFileRow>,
    /// The end of the chosen file.
    pub tail: Option<LogTail>,
    /// The most the page shows of a file.
    pub tail_kib: u32,
}

/// Said on the page instead of the logs: the host is not connected (503),
/// or keeps no such logs (404: past its log retention, or a file rotated
/// away). Any other error is the page's.
fn say(out: &mut LogsSection, e: ApiError) -> Result<(), PageError> {
    match e.status {
        StatusCode::SERVICE_UNAVAILABLE => out.unavailable = Some(e.message),
        StatusCode::NOT_FOUND => out.gone = Some(e.message),
        _ => return Err(PageError::Api(e)),
    }
    Ok(())
}

/// The logs section of process `id` (title region `tr`), showing file
/// `asked` (`file=`), or `stdout.log`, or the first file.
pub async fn section(
    c: &ConsoleState,
    tr: &str,
    id: &str,
    asked: Option<&str>,
) -> Result<LogsSection, PageError> {
    let mut out = LogsSection {
        unavailable: None,
        gone: None,
        files: Vec::new(),
        tail: None,
        tail_kib: TAIL_BYTES / 1024,
    };
    let at = Path((tr.to_string(), id.to_string()));
    let listed = match ds_logs_admin::process_logs(State(c.edge.clone()), Admin, at).await {
        Ok(Json(v)) => v,
        Err(e) => {
            say(&mut out, e)?;
            return Ok(out);
        }
    };
    out.files = listed
        .files
        .into_iter()
        .map(|f| LogFileRow::new(f.name, f.size, f.modified))
        .collect();
    let Some(name) = ds_logs::pick(&out.files, asked).map_err(PageError::BadInput)? else {
        return Ok(out);
    };
    let listed_size = out
        .files
        .iter()
        .find(|f| f.name == name)
        .map_or(0, |f| f.size);
    let read = |offset| ds_logs_admin::read_log(&c.edge, tr, id, &name, offset, TAIL_BYTES);
    let mut from = ds_logs::tail_offset(listed_size);
    let mut got = read(from).await;
    // The file grew since it was listed: read its new end once more.
    if let Ok((data, size)) = &got {
        if *size > from + data.len() as u64 {
            from = ds_logs::tail_offset(*size);
            got = read(from).await;
        }
    }
    let (data, size) = match got {
        Ok(r) => r,
        Err(e) => {
            say(&mut out, e)?;
            return Ok(out);
        }
    };
    out.tail = Some(ds_logs::tail(&name, size, from, &data));
    Ok(out)
}

/// `GET /console/processes/{id}/logs/{*name}`: one whole log file, as the
/// API's download gives it (`Content-Disposition: attachment`).
pub async fn download(
    State(c): State<ConsoleState>,
    me: Me,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let missing = || PageError::NotFound(format!("DS process '{id}' not found"));
    let pid = ProcessId::parse(&id).map_err(|_| missing())?;
    let tr = c
        .edge
        .server
        .cluster
        .read(|s| {
            let p = s.processes.get(&pid)?;
            let tr = &s.fleets.get(&p.fleet_id)?.title_region_id;
            me.scope().sees(tr).then(|| tr.to_string())
        })
        .await?
        .ok_or_else(missing)?;
    let at = Path((tr, id.clone(), name.clone()));
    ds_logs_admin::download(State(c.edge.clone()), Admin, at)
        .await
        .map_err(|e| match e.status {
            StatusCode::NOT_FOUND => PageError::NotFound(format!("log file '{name}' not found")),
            _ => PageError::Api(e),
        })
}
