//! The web console at `/console` (HTML rendered on the server; see
//! docs/console.md): [`auth`] signs people in and out and checks their
//! session on every page, [`pages`] serves the cluster, fleets,
//! placements, players and DS process pages, [`fleet`] one fleet's page
//! with its autoscaling, rollout, drain and undrain and desired-count
//! forms, [`ds_logs`] a DS process's logs, [`vs`] the virtual servers' pages and
//! their start and stop forms, and [`sampler`] records, every 10 s, the
//! series the charts draw. Templates, charts, sessions and series are the
//! `respawn-console` crate's; this module wires them to the node.
//!
//! Pages read the state the way the admin API does: linearizably (read
//! index), so any node serves any page.

pub mod auth;
pub mod ds_logs;
pub mod fleet;
pub mod merged;
pub mod pages;
pub mod sampler;
pub mod vs;
pub mod vs_logs;
pub mod vs_open;
pub mod vs_ops;

use crate::edge::context::Edge;
use crate::edge::error::ApiError;
use auth::Me;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::Router;
use respawn_console::sample::Sampler;
use respawn_console::session::Signer;
use respawn_console::{render, views, ConsoleError};
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};

/// What the console's handlers share.
pub struct Console {
    pub edge: Edge,
    pub signer: Signer,
    /// The series behind the charts (bounded: see `respawn_console::series`).
    pub sampler: Mutex<Sampler>,
    /// Asks peers for their part of the charts (see [`merged`]).
    pub http: reqwest::Client,
}

/// The router's state.
pub type ConsoleState = Arc<Console>;

impl Console {
    pub fn sampler(&self) -> std::sync::MutexGuard<'_, Sampler> {
        // Only plain data behind it, updated without panicking paths.
        self.sampler.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The console's routes, and its sampler (which stops when the router is
/// dropped). Call inside a Tokio runtime.
pub fn router(edge: Edge) -> Router<Edge> {
    let console = Arc::new(Console {
        signer: Signer::from_admin_token(&edge.admin_token),
        edge,
        sampler: Mutex::new(Sampler::default()),
        http: reqwest::Client::new(),
    });
    tokio::spawn(sampler::run(Arc::downgrade(&console)));
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/cluster") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/cluster") }),
        )
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/assets/{name}", get(asset))
        .route("/console/cluster", get(pages::cluster))
        .route("/console/fleets", get(pages::fleets))
        .route("/console/fleets/{id}", get(fleet::show))
        .route("/console/fleets/{id}/desired", post(fleet::set_desired))
        .route(
            "/console/fleets/{id}/desired/clear",
            post(fleet::clear_desired),
        )
        .route("/console/hosts/{id}/drain", post(fleet::drain))
        .route("/console/hosts/{id}/undrain", post(fleet::undrain))
        .route("/console/placements", get(pages::placements))
        .route("/console/placements/{id}", get(pages::placement))
        .route("/console/players", get(pages::players))
        .route("/console/processes/{id}", get(pages::process))
        .route(
            "/console/processes/{id}/logs/{*name}",
            get(ds_logs::download),
        )
        .route("/console/virtual_servers", get(vs::list))
        .route("/console/virtual_servers/{tr}/{name}", get(vs::show))
        .route(
            "/console/virtual_servers/{tr}/{name}/start",
            post(vs::start),
        )
        .route("/console/virtual_servers/{tr}/{name}/stop", post(vs::stop))
        .route(
            "/console/virtual_servers/{tr}/{name}/rollback",
            post(vs_ops::rollback),
        )
        .route(
            "/console/internal/vs_part/{tr}/{name}",
            get(merged::vs_part),
        )
        .route(
            "/console/virtual_servers/{tr}/{name}/open",
            get(vs_open::open),
        )
        .route("/console/browse/{tr}/{name}/{token}", any(vs_open::browse))
        .route(
            "/console/browse/{tr}/{name}/{token}/{*path}",
            any(vs_open::browse),
        )
        .route(
            "/console/virtual_servers/{tr}/{name}/logs",
            get(vs_logs::logs),
        )
        .route(
            "/console/virtual_servers/{tr}/{name}/tasks/{task}",
            post(vs_ops::edit_task),
        )
        .route(
            "/console/virtual_servers/{tr}/{name}/tasks/{task}/run",
            post(vs_ops::run_task),
        )
        .with_state(console)
}

async fn asset(Path(name): Path<String>) -> Response {
    match render::asset(&name) {
        Some((ct, body)) => (
            [
                (header::CONTENT_TYPE, ct),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// An HTML answer (every console page): the content type and a policy that
/// lets the page load only its own scripts and styles.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Why a page could not be shown; answered as an HTML error page.
#[derive(Debug)]
pub enum PageError {
    /// No such record, or not one the session may see (the same answer).
    NotFound(String),
    /// A change without a valid CSRF token.
    Csrf,
    /// A form or query field with a bad value (the message names it).
    BadInput(String),
    /// The edge's own error (a read or a write that failed).
    Api(ApiError),
    Render(ConsoleError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Api(e)
    }
}

impl From<respawn_consensus::ConsensusError> for PageError {
    fn from(e: respawn_consensus::ConsensusError) -> Self {
        PageError::Api(e.into())
    }
}

impl From<ConsoleError> for PageError {
    fn from(e: ConsoleError) -> Self {
        PageError::Render(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Refused",
                "missing or wrong CSRF token: reload the page and try again".to_string(),
            ),
            PageError::BadInput(m) => (StatusCode::BAD_REQUEST, "Bad input", m),
            PageError::Api(e) => (e.status, "Error", e.message),
            PageError::Render(e) => {
                tracing::error!(error = %e, "console page failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, "Error", e.to_string())
            }
        };
        let body = render::render(
            "error.html",
            minijinja::context! { title, message, now => now_text() },
        )
        .unwrap_or_else(|_| message.clone());
        html(status, body)
    }
}

fn now_text() -> String {
    views::time(respawn_types::now_millis())
}

/// Renders a signed-in page: `template` with `ctx` and the common parts.
pub fn page<C: Serialize>(
    c: &Console,
    me: &Me,
    template: &str,
    title: &str,
    section: &str,
    ctx: C,
) -> Result<Response, PageError> {
    let body = render::render(
        template,
        minijinja::context! {
            title, section,
            me => minijinja::context! { who => me.who(), csrf => me.csrf.clone() },
            node_id => c.edge.server.cluster.node_id(),
            now => now_text(),
            ..minijinja::Value::from_serialize(&ctx)
        },
    )?;
    Ok(html(StatusCode::OK, body))
}
