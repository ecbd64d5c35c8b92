//! The changes a VS page makes besides start and stop: roll back to an
//! earlier version, edit a task's schedule and switch it on or off, run a
//! task now. Each checks the session's scope and CSRF token, then calls the
//! admin API's own handler, so the console changes exactly what the API
//! would, and answers bad input 400 with the field named.

use super::auth::{check_token, Me};
use super::vs::region;
use super::{ConsoleState, PageError};
use crate::edge::admin::Admin;
use crate::edge::error::ApiError;
use crate::edge::json::ApiJson;
use crate::edge::{tasks_admin, vs_admin};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use respawn_types::{TaskSchedule, VsName};
use serde::Deserialize;

/// 404 for what the admin API could not find or parse (a path the session
/// made up), otherwise the API's own answer.
fn api(what: String) -> impl Fn(ApiError) -> PageError {
    move |e| match e.status {
        StatusCode::NOT_FOUND => PageError::NotFound(format!("{what} not found")),
        _ => PageError::Api(e),
    }
}

/// The VS page (tr and name were validated before any redirect).
fn back(tr: &str, name: &str, anchor: &str) -> Response {
    Redirect::to(&format!("/console/virtual_servers/{tr}/{name}{anchor}")).into_response()
}

/// A form's fields, or the CSRF refusal when the body cannot be read (a
/// browser always sends the form; a forged request learns nothing more).
fn fields<T>(form: Result<Form<T>, FormRejection>) -> Result<T, PageError> {
    form.map(|Form(f)| f).map_err(|_| PageError::Csrf)
}

#[derive(Debug, Deserialize)]
pub struct RollbackForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub version: String,
}

/// `POST /console/virtual_servers/{tr}/{name}/rollback` (fields `csrf`,
/// `version`): the old version's spec is put again and becomes a new
/// version, as `PUT` with the old spec does through the API.
pub async fn rollback(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name)): Path<(String, String)>,
    form: Result<Form<RollbackForm>, FormRejection>,
) -> Result<Response, PageError> {
    region(&me, &tr, &name)?;
    let f = fields(form)?;
    check_token(&c, &me, &f.csrf)?;
    let version: u64 = f.version.trim().parse().map_err(|_| {
        PageError::BadInput(format!("version: a version number, got '{}'", f.version))
    })?;
    let vs_what = format!("virtual server '{name}'");
    let at = Path((tr.clone(), name.clone()));
    let Json(vs) = vs_admin::get_one(State(c.edge.clone()), Admin, at)
        .await
        .map_err(api(vs_what.clone()))?;
    if version == vs.version {
        return Err(PageError::BadInput(format!(
            "version: {version} is already the current version"
        )));
    }
    let spec = vs
        .versions
        .into_iter()
        .find(|v| v.version == version)
        .map(|v| v.spec)
        .ok_or_else(|| {
            PageError::BadInput(format!("version: '{name}' has no version {version}"))
        })?;
    let at = Path((tr.clone(), name.clone()));
    let _new_version = vs_admin::put(State(c.edge.clone()), Admin, at, ApiJson(spec))
        .await
        .map_err(api(vs_what))?;
    Ok(back(&tr, &name, "#versions"))
}

#[derive(Debug, Deserialize)]
pub struct TaskForm {
    #[serde(default)]
    pub csrf: String,
    /// `interval` or `cron`.
    #[serde(default)]
    pub schedule: String,
    /// Seconds between firings (interval).
    #[serde(default)]
    pub secs: String,
    /// Five-field cron expression, UTC (cron).
    #[serde(default)]
    pub cron: String,
    /// Present (any value) when the box is ticked.
    pub enabled: Option<String>,
}

impl TaskForm {
    fn schedule(&self) -> Result<TaskSchedule, PageError> {
        match self.schedule.trim() {
            "interval" => {
                let secs = self.secs.trim().parse().map_err(|_| {
                    PageError::BadInput(format!("secs: a number of seconds, got '{}'", self.secs))
                })?;
                Ok(TaskSchedule::Interval { secs })
            }
            "cron" => Ok(TaskSchedule::Cron {
                expr: self.cron.trim().to_string(),
            }),
            other => Err(PageError::BadInput(format!(
                "schedule: 'interval' or 'cron', got '{other}'"
            ))),
        }
    }
}

/// The task `task` of VS `name` (404 when it is another VS's or missing).
async fn task_of(
    c: &ConsoleState,
    tr: &respawn_types::TitleRegionId,
    name: &str,
    task: &str,
) -> Result<respawn_types::VsTask, PageError> {
    let missing = || PageError::NotFound(format!("task '{task}' not found"));
    let id = VsName::parse(task).map_err(|_| missing())?;
    c.edge
        .server
        .cluster
        .read(|s| s.tasks.get(tr).and_then(|m| m.get(&id)).cloned())
        .await?
        .filter(|t| t.vs.as_str() == name)
        .ok_or_else(missing)
}

/// `POST /console/virtual_servers/{tr}/{name}/tasks/{task}` (fields `csrf`,
/// `schedule`, `secs` or `cron`, `enabled`): the task's schedule and
/// switch; its arguments stay as they are.
pub async fn edit_task(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name, task)): Path<(String, String, String)>,
    form: Result<Form<TaskForm>, FormRejection>,
) -> Result<Response, PageError> {
    let tr_id = region(&me, &tr, &name)?;
    let f = fields(form)?;
    check_token(&c, &me, &f.csrf)?;
    let t = task_of(&c, &tr_id, &name, &task).await?;
    let spec = vs_admin::TaskSpec {
        virtual_server: name.clone(),
        schedule: f.schedule()?,
        args: serde_json::from_str(&t.args).ok(),
        enabled: f.enabled.is_some(),
    };
    let at = Path((tr.clone(), task.clone()));
    vs_admin::put_task(State(c.edge.clone()), Admin, at, ApiJson(spec))
        .await
        .map_err(api(format!("task '{task}'")))?;
    Ok(back(&tr, &name, "#tasks"))
}

#[derive(Debug, Deserialize)]
pub struct RunForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /console/virtual_servers/{tr}/{name}/tasks/{task}/run` (field
/// `csrf`): fires the task once now; the attempt shows in the trigger log.
pub async fn run_task(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name, task)): Path<(String, String, String)>,
    form: Result<Form<RunForm>, FormRejection>,
) -> Result<Response, PageError> {
    let tr_id = region(&me, &tr, &name)?;
    let f = fields(form)?;
    check_token(&c, &me, &f.csrf)?;
    task_of(&c, &tr_id, &name, &task).await?;
    let at = Path((tr.clone(), task.clone()));
    let _attempt = tasks_admin::run_task(State(c.edge.clone()), Admin, at)
        .await
        .map_err(api(format!("task '{task}'")))?;
    Ok(back(&tr, &name, "#triggers"))
}
