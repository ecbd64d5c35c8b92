//! The virtual servers' pages: the list, one VS (instances and their
//! states and reasons, versions, charts, event handlers and tasks, trigger
//! log, console and access logs) and its start and stop forms. They go
//! through the admin API's own handlers (`edge::vs_admin`), so the console
//! reads and changes exactly what the API does.

use super::auth::{check_csrf, CsrfForm, Me};
use super::{page, ConsoleState, PageError};
use crate::edge::admin::Admin;
use crate::edge::vs_admin::{self, LogParams, TriggerParams};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use respawn_console::sample::SAMPLE_SECS;
use respawn_types::{TaskSchedule, TitleRegionId};
use serde::Serialize;

/// The title region of a VS path, if the session may see it; otherwise the
/// same 404 as for a VS that does not exist.
pub(super) fn region(me: &Me, tr: &str, name: &str) -> Result<TitleRegionId, PageError> {
    let missing = || PageError::NotFound(format!("virtual server '{name}' not found"));
    let id = TitleRegionId::parse(tr).map_err(|_| missing())?;
    if me.scope().sees(&id) {
        Ok(id)
    } else {
        Err(missing())
    }
}

/// `GET /console/virtual_servers`.
pub async fn list(State(c): State<ConsoleState>, me: Me) -> Result<Response, PageError> {
    let regions: Vec<String> = c
        .edge
        .server
        .cluster
        .read(|s| {
            s.title_regions
                .keys()
                .filter(|tr| me.scope().sees(tr))
                .map(|tr| tr.to_string())
                .collect()
        })
        .await?;
    let mut servers = Vec::new();
    for tr in regions {
        let Json(l) = vs_admin::list(State(c.edge.clone()), Admin, Path(tr)).await?;
        servers.extend(l.virtual_servers);
    }
    page(
        &c,
        &me,
        "vs_list.html",
        "Virtual servers",
        "vs",
        minijinja::context! { servers },
    )
}

#[derive(Serialize)]
struct HandlerRow {
    name: String,
    events: Vec<String>,
}

#[derive(Serialize)]
struct TaskRow {
    name: String,
    schedule: String,
    /// `interval` or `cron`, and its value, for the edit form.
    kind: &'static str,
    secs: Option<u64>,
    cron: Option<String>,
    enabled: bool,
    last_fired_at: Option<u64>,
}

/// One VS's page.
async fn page_of(
    c: &ConsoleState,
    me: &Me,
    tr: String,
    name: String,
) -> Result<Response, PageError> {
    let tr_id = region(me, &tr, &name)?;
    let edge = c.edge.clone();
    let Json(vs) = vs_admin::get_one(State(edge.clone()), Admin, Path((tr.clone(), name.clone())))
        .await
        .map_err(|e| match e.status {
            axum::http::StatusCode::NOT_FOUND | axum::http::StatusCode::BAD_REQUEST => {
                PageError::NotFound(format!("virtual server '{name}' not found"))
            }
            _ => PageError::Api(e),
        })?;
    let (handlers, tasks) = edge
        .server
        .cluster
        .read(|s| {
            let handlers: Vec<HandlerRow> = s
                .event_handlers
                .get(&tr_id)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|h| h.vs.as_str() == name)
                .map(|h| HandlerRow {
                    name: h.name.to_string(),
                    events: h.events.clone(),
                })
                .collect();
            let tasks: Vec<TaskRow> = s
                .tasks
                .get(&tr_id)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|t| t.vs.as_str() == name)
                .map(|t| TaskRow {
                    name: t.name.to_string(),
                    schedule: match &t.schedule {
                        TaskSchedule::Interval { secs } => format!("every {secs} s"),
                        TaskSchedule::Cron { expr } => format!("cron {expr} (UTC)"),
                    },
                    kind: match &t.schedule {
                        TaskSchedule::Interval { .. } => "interval",
                        TaskSchedule::Cron { .. } => "cron",
                    },
                    secs: match &t.schedule {
                        TaskSchedule::Interval { secs } => Some(*secs),
                        TaskSchedule::Cron { .. } => None,
                    },
                    cron: match &t.schedule {
                        TaskSchedule::Interval { .. } => None,
                        TaskSchedule::Cron { expr } => Some(expr.clone()),
                    },
                    enabled: t.enabled,
                    last_fired_at: t.last_fired_at,
                })
                .collect();
            (handlers, tasks)
        })
        .await?;
    let Json(mut triggers) = vs_admin::trigger_logs(
        State(edge.clone()),
        Admin,
        Path(tr.clone()),
        Ok(Query(TriggerParams {
            kind: None,
            name: None,
            limit: Some(respawn_types::TRIGGER_LOG_KEPT),
        })),
    )
    .await?;
    triggers.records.retain(|r| r.virtual_server == name);
    let keep = triggers.records.len().saturating_sub(50);
    triggers.records.drain(..keep);
    let tail = |n| LogParams {
        version: None,
        since: None,
        until: None,
        contains: None,
        tail: Some(n),
        limit: Some(n),
    };
    let Json(logs) = vs_admin::logs(
        State(edge.clone()),
        Admin,
        Path((tr.clone(), name.clone())),
        Ok(Query(tail(100))),
    )
    .await?;
    let Json(access) = vs_admin::access_log(
        State(edge.clone()),
        Admin,
        Path((tr.clone(), name.clone())),
        Ok(Query(tail(50))),
    )
    .await?;
    let (charts, coverage) =
        super::merged::vs_charts(c, &tr, &name, respawn_types::now_millis()).await?;
    let title = format!("Virtual server {name}");
    page(
        c,
        me,
        "vs.html",
        &title,
        "vs",
        minijinja::context! {
            vs, handlers, tasks, triggers, logs,
            access => access.lines,
            charts, coverage, sample_secs => SAMPLE_SECS,
        },
    )
}

/// `GET /console/virtual_servers/{tr}/{name}`.
pub async fn show(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    page_of(&c, &me, tr, name).await
}

async fn set_desired(
    c: ConsoleState,
    me: Me,
    tr: String,
    name: String,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
    start: bool,
) -> Result<Response, PageError> {
    region(&me, &tr, &name)?;
    check_csrf(&c, &me, form)?;
    let edge = State(c.edge.clone());
    let at = Path((tr.clone(), name.clone()));
    let done = if start {
        vs_admin::start(edge, Admin, at).await
    } else {
        vs_admin::stop(edge, Admin, at).await
    };
    let _changed = done.map_err(|e| match e.status {
        axum::http::StatusCode::NOT_FOUND | axum::http::StatusCode::BAD_REQUEST => {
            PageError::NotFound(format!("virtual server '{name}' not found"))
        }
        _ => PageError::Api(e),
    })?;
    // Both were validated above (title region id, VS name): nothing to escape.
    Ok(Redirect::to(&format!("/console/virtual_servers/{tr}/{name}")).into_response())
}

/// `POST /console/virtual_servers/{tr}/{name}/start` (CSRF token required).
pub async fn start(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    set_desired(c, me, tr, name, form, true).await
}

/// `POST /console/virtual_servers/{tr}/{name}/stop` (CSRF token required).
pub async fn stop(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name)): Path<(String, String)>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    set_desired(c, me, tr, name, form, false).await
}
