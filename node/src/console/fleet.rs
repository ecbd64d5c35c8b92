//! One fleet's page and the changes it makes: its figures and utilization
//! chart, its scaling policy and the autoscaler's decisions, its processes
//! by version (the rollout), its hosts with their state and **Drain** /
//! **Undrain** buttons, and the desired count set by hand. Reads and
//! changes go through the admin API's own handlers (`edge::fleets_admin`,
//! `edge::fleet_scaling`), after the session's scope (another title
//! region's fleet or host is answered 404, like a missing one) and its
//! CSRF token are checked.

use super::auth::{check_csrf, check_token, CsrfForm, Me};
use super::pages::{connected, host_ids};
use super::{page, ConsoleState, PageError};
use crate::edge::admin::Admin;
use crate::edge::error::ApiError;
use crate::edge::fleet_scaling::{self, DesiredBody};
use crate::edge::fleets_admin;
use crate::edge::json::ApiJson;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use respawn_console::views::{fleets, rollout};
use respawn_types::{FleetId, HostId};
use serde::Deserialize;

/// `GET /console/fleets/{id}`: figures, utilization chart, autoscaling,
/// versions and rollout, hosts (with drain and undrain), processes,
/// waiting placements.
pub async fn show(
    State(c): State<ConsoleState>,
    me: Me,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let linked = connected(&c, host_ids(&c).await?);
    let found = c
        .edge
        .server
        .cluster
        .read(|s| {
            let p = fleets::fleet_page(s, me.scope(), &id, &linked)?;
            let versions = rollout::versions(s, &FleetId::new_unchecked(id.as_str()));
            Some((p, versions))
        })
        .await?;
    let (p, versions) =
        found.ok_or_else(|| PageError::NotFound(format!("fleet '{id}' not found")))?;
    let missing = |e: ApiError| match e.status {
        StatusCode::NOT_FOUND => PageError::NotFound(format!("fleet '{id}' not found")),
        _ => PageError::Api(e),
    };
    let at = Path((p.fleet.title_region_id.clone(), id.clone()));
    let Json(view) = fleets_admin::get_one(State(c.edge.clone()), Admin, at)
        .await
        .map_err(missing)?;
    let Json(all) = fleets_admin::hosts(State(c.edge.clone()), Admin).await?;
    let hosts: Vec<_> = all
        .hosts
        .into_iter()
        .filter(|h| h.fleet_id == view.fleet_id)
        .collect();
    let chart = c
        .sampler()
        .fleet_chart(&p.fleet.id, respawn_types::now_millis(), &p.fleet.now)?;
    let title = format!("Fleet {}", p.fleet.id);
    page(
        &c,
        &me,
        "fleet.html",
        &title,
        "fleets",
        minijinja::context! {
            page => p, chart, versions, hosts,
            spec => view.spec, scaling => view.scaling, version => view.version,
        },
    )
}

/// The fleet of host `id`, if the session may see it; otherwise the same
/// 404 as for a host that does not exist.
async fn fleet_of_host(c: &ConsoleState, me: &Me, id: &str) -> Result<FleetId, PageError> {
    let missing = || PageError::NotFound(format!("host '{id}' not found"));
    let host = HostId::parse(id).map_err(|_| missing())?;
    c.edge
        .server
        .cluster
        .read(|s| {
            let h = s.hosts.get(&host)?;
            let f = s.fleets.get(&h.fleet_id)?;
            me.scope().sees(&f.title_region_id).then(|| f.id.clone())
        })
        .await?
        .ok_or_else(missing)
}

async fn set_draining(
    c: ConsoleState,
    me: Me,
    id: String,
    form: Result<Form<CsrfForm>, FormRejection>,
    draining: bool,
) -> Result<Response, PageError> {
    let fleet = fleet_of_host(&c, &me, &id).await?;
    check_csrf(&c, &me, form)?;
    let at = Path(id.clone());
    let done = if draining {
        fleets_admin::drain(State(c.edge.clone()), Admin, at).await
    } else {
        fleets_admin::undrain(State(c.edge.clone()), Admin, at).await
    };
    let _host = done.map_err(|e| match e.status {
        StatusCode::NOT_FOUND => PageError::NotFound(format!("host '{id}' not found")),
        _ => PageError::Api(e),
    })?;
    Ok(Redirect::to(&format!("/console/fleets/{fleet}#hosts")).into_response())
}

/// `POST /console/hosts/{id}/drain` (field `csrf`): as
/// `POST /admin/hosts/{id}/drain`; back to the host's fleet page.
pub async fn drain(
    State(c): State<ConsoleState>,
    me: Me,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    set_draining(c, me, id, form, true).await
}

/// `POST /console/hosts/{id}/undrain` (field `csrf`): as
/// `POST /admin/hosts/{id}/undrain`.
pub async fn undrain(
    State(c): State<ConsoleState>,
    me: Me,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    set_draining(c, me, id, form, false).await
}

/// The title region of fleet `id`, if the session may see it; otherwise
/// the same 404 as for a fleet that does not exist.
async fn fleet_region(c: &ConsoleState, me: &Me, id: &str) -> Result<String, PageError> {
    let missing = || PageError::NotFound(format!("fleet '{id}' not found"));
    let fleet = FleetId::parse(id).map_err(|_| missing())?;
    c.edge
        .server
        .cluster
        .read(|s| {
            let f = s.fleets.get(&fleet)?;
            me.scope()
                .sees(&f.title_region_id)
                .then(|| f.title_region_id.to_string())
        })
        .await?
        .ok_or_else(missing)
}

#[derive(Debug, Deserialize)]
pub struct DesiredForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub desired_processes: String,
}

/// `POST /console/fleets/{id}/desired` (fields `csrf`,
/// `desired_processes`): as `PUT /admin/title_regions/{tr}/fleets/{id}/desired`.
/// A value that is not a number, or outside the policy's min and max, is
/// answered 400 naming the field; nothing changes.
pub async fn set_desired(
    State(c): State<ConsoleState>,
    me: Me,
    Path(id): Path<String>,
    form: Result<Form<DesiredForm>, FormRejection>,
) -> Result<Response, PageError> {
    let tr = fleet_region(&c, &me, &id).await?;
    let f = form.map(|Form(f)| f).map_err(|_| PageError::Csrf)?;
    check_token(&c, &me, &f.csrf)?;
    let desired_processes = f.desired_processes.trim().parse().map_err(|_| {
        PageError::BadInput(format!(
            "desired_processes: a number of processes, got '{}'",
            f.desired_processes
        ))
    })?;
    let at = Path((tr, id.clone()));
    let body = ApiJson(DesiredBody { desired_processes });
    let _view = fleet_scaling::put_desired(State(c.edge.clone()), Admin, at, body).await?;
    Ok(Redirect::to(&format!("/console/fleets/{id}#scaling")).into_response())
}

/// `POST /console/fleets/{id}/desired/clear` (field `csrf`): as
/// `DELETE /admin/title_regions/{tr}/fleets/{id}/desired`: the scaling
/// policy applies again.
pub async fn clear_desired(
    State(c): State<ConsoleState>,
    me: Me,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let tr = fleet_region(&c, &me, &id).await?;
    check_csrf(&c, &me, form)?;
    let at = Path((tr, id.clone()));
    let _view = fleet_scaling::delete_desired(State(c.edge.clone()), Admin, at).await?;
    Ok(Redirect::to(&format!("/console/fleets/{id}#scaling")).into_response())
}
