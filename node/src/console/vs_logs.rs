//! A VS's log page: its console log (the instances' stdout and stderr, read
//! from the hosts through the admin API's handler) or its access log (this
//! node's edge), filtered by instance, stream, level, text and time range.
//! The form is a plain GET, so the filters are in the address and work
//! without JavaScript.

use super::auth::Me;
use super::vs::region;
use super::{page, ConsoleState, PageError};
use crate::edge::admin::Admin;
use crate::edge::vs_admin::{self, LogParams};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use respawn_console::views::logs::{LogForm, LogKind, SCAN_LINES};
use serde::Serialize;

#[derive(Serialize)]
struct Line {
    at: u64,
    version: u64,
    instance_id: String,
    stream: String,
    line: String,
}

/// `GET /console/virtual_servers/{tr}/{name}/logs?kind=&instance=&stream=&level=&q=&since=&until=&limit=`.
pub async fn logs(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name)): Path<(String, String)>,
    q: Result<Query<LogForm>, QueryRejection>,
) -> Result<Response, PageError> {
    region(&me, &tr, &name)?;
    let form = q
        .map(|Query(f)| f)
        .map_err(|e| PageError::BadInput(format!("query: {}", e.body_text())))?;
    let f = form.check().map_err(PageError::BadInput)?;
    let missing = |e: crate::edge::error::ApiError| match e.status {
        StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => {
            PageError::NotFound(format!("virtual server '{name}' not found"))
        }
        _ => PageError::Api(e),
    };
    let Json(vs) = vs_admin::get_one(
        State(c.edge.clone()),
        Admin,
        Path((tr.clone(), name.clone())),
    )
    .await
    .map_err(missing)?;
    let asked = if f.filters_here() {
        SCAN_LINES
    } else {
        f.limit
    };
    let params = LogParams {
        version: None,
        since: f.since_ms,
        until: f.until_ms,
        contains: f.contains.clone(),
        tail: Some(asked),
        limit: Some(asked),
    };
    let at = Path((tr.clone(), name.clone()));
    let (lines, access, unreachable) = match f.kind {
        LogKind::Console => {
            let Json(l) =
                vs_admin::logs(State(c.edge.clone()), Admin, at, Ok(Query(params))).await?;
            let mut lines: Vec<Line> = l
                .lines
                .into_iter()
                .filter(|l| f.keeps(&l.instance_id, &l.stream, &l.line))
                .map(|l| Line {
                    at: l.ts_ms,
                    version: l.version,
                    instance_id: l.instance_id,
                    stream: l.stream,
                    line: l.line,
                })
                .collect();
            let drop = lines.len().saturating_sub(f.limit);
            lines.drain(..drop);
            (lines, Vec::new(), l.unreachable_hosts)
        }
        LogKind::Access => {
            let Json(a) =
                vs_admin::access_log(State(c.edge.clone()), Admin, at, Ok(Query(params))).await?;
            let mut access = a.lines;
            let drop = access.len().saturating_sub(f.limit);
            access.drain(..drop);
            (Vec::new(), access, Vec::new())
        }
    };
    let instances: Vec<String> = vs.instances.iter().map(|i| i.instance_id.clone()).collect();
    let title = format!("Logs of {name}");
    page(
        &c,
        &me,
        "vs_logs.html",
        &title,
        "vs",
        minijinja::context! {
            vs, form, lines, access, unreachable, instances,
            access_kind => f.kind == LogKind::Access,
        },
    )
}
