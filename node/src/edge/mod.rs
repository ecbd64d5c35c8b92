//! The HTTP edge (axum): its router over the standalone DS API ([`dsm`]),
//! the cluster admin API ([`admin`]), the virtual servers' invoke routes
//! ([`invoke`]) and admin API ([`vs_admin`]); health and readiness,
//! Prometheus metrics and the OpenAPI document generated from the handlers.

pub mod admin;
pub mod auth;
pub mod context;
pub mod ds_logs_admin;
pub mod dsm;
pub mod error;
pub mod fleet_metrics;
pub mod fleet_scaling;
pub mod fleet_scaling_view;
pub mod fleets_admin;
mod http_metrics;
pub mod invoke;
pub mod json;
pub mod players_admin;
pub mod serve;
pub mod storages_admin;
pub mod tasks_admin;
pub mod tickets;
pub mod vs_admin;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::Router;
pub use context::{Configured, Edge};
use error::ApiError;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use respawn_types::agent::ErrorCode;
use std::sync::OnceLock;
use std::time::Instant;
use utoipa::OpenApi;

/// The process-wide Prometheus recorder (installed once; several nodes in
/// one test process share it), beside the console's recorder of VS calls
/// (`respawn_console::recorder`): both see every metric.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let both = metrics_util::layers::FanoutBuilder::default()
            .add_recorder(recorder)
            .add_recorder(respawn_console::recorder::global().clone())
            .build();
        // Fails only if another recorder was installed first; then metrics
        // go there and this handle renders an empty page.
        let _ = metrics::set_global_recorder(both);
        handle
    })
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Respawn HTTP API", description = "Standalone DS API (PGOS /dsm/*), health and metrics. \
        Backend calls are authenticated with the TitleId, TitleRegionId, SecretId and ServerTicket headers; \
        see docs/http-api.md."),
    paths(
        dsm::request_battle_session_id,
        dsm::start_battle_session_placement,
        dsm::describe_battle_session_placement,
        dsm::cancel_battle_session_placement,
        dsm::add_players_to_battle_session,
        dsm::query_player_battle_sessions,
        dsm::terminate_player_battle_session,
        healthz, readyz, metrics_page,
        admin::status, admin::add_learner, admin::promote, admin::remove, admin::join,
        players_admin::player_offline, players_admin::player_banned,
        invoke::invoke_backend, invoke::invoke_client,
        vs_admin::list, vs_admin::put, vs_admin::get_one, vs_admin::delete, vs_admin::start, vs_admin::stop,
        vs_admin::logs, vs_admin::access_log,
        vs_admin::put_event_handler, vs_admin::delete_event_handler, vs_admin::put_task, vs_admin::delete_task, tasks_admin::run_task,
        vs_admin::trigger_logs,
        storages_admin::list, storages_admin::put, storages_admin::get_one, storages_admin::delete,
        fleets_admin::list, fleets_admin::put, fleets_admin::get_one, fleets_admin::delete,
        fleets_admin::hosts, fleets_admin::drain, fleets_admin::undrain,
        fleet_scaling::put_desired, fleet_scaling::delete_desired,
        ds_logs_admin::process_logs, ds_logs_admin::session_logs, ds_logs_admin::download,
    ),
    modifiers(&TicketScheme),
    tags((name = "Battle Management", description = "Battle session placement (standalone mode)"),
         (name = "Operations", description = "Health, readiness and metrics"),
         (name = "Admin", description = "Cluster membership; Authorization: Bearer <admin token>"),
         (name = "Virtual servers", description = "Invoke game developers' web servers (backend: ServerTicket; client: PlayerTicket)"),
         (name = "Virtual servers admin", description = "Define, start, stop and inspect virtual servers and their storages; Authorization: Bearer <admin token>"),
         (name = "Fleets admin", description = "Define, inspect and delete fleets; list, drain and undrain hosts; Authorization: Bearer <admin token>"))
)]
pub struct ApiDoc;

struct TicketScheme;

impl utoipa::Modify for TicketScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "server_ticket",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "ServerTicket",
                "v1.<unix seconds>.<hex HMAC-SHA256>; also send TitleId, TitleRegionId and SecretId headers",
            ))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(utoipa::openapi::security::Http::new(
                utoipa::openapi::security::HttpAuthScheme::Bearer,
            )),
        );
    }
}

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
        Ok(v) => v,
        Err(e) => return format!("{{\"error\":\"{e}\"}}"),
    };
    add_common_errors(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The errors every operation of a kind can answer, whether or not its
/// handler lists them: 401 where it needs credentials, 400 and 415 where
/// it takes a JSON body (the [`json::ApiJson`] extractor's answers), 400
/// where it takes path or query parameters.
fn add_common_errors(doc: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let error = |description: &str| {
        json!({"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    };
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in item.values_mut().filter_map(Value::as_object_mut) {
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let json_body = op
                .get("requestBody")
                .and_then(|b| b.get("content"))
                .and_then(|c| c.get("application/json"))
                .is_some();
            let params = op
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty());
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut add = |code: &str, description: &str| {
                if !responses.contains_key(code) {
                    responses.insert(code.to_string(), error(description));
                }
            };
            if secured {
                add("401", "missing or invalid credentials");
            }
            if json_body {
                add("400", "malformed body: not a JSON object, a missing or unknown field, a bad id or value (the message names it)");
                add(
                    "415",
                    "the body is not sent as 'Content-Type: application/json'",
                );
            } else if params {
                add(
                    "400",
                    "a bad path or query parameter (the message names it)",
                );
            }
        }
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "Operations", responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the cluster can commit through this node now — a leader is
/// known and a quorum confirmed it within 1 s (a read-index round) — and
/// this node has applied the title regions and fleets its configuration
/// names. 503 says why not (see `GET /admin/cluster`).
#[utoipa::path(get, path = "/readyz", tag = "Operations",
    responses((status = 200, description = "ready"), (status = 503, body = error::ErrorBody)))]
async fn readyz(State(edge): State<Edge>) -> Result<&'static str, ApiError> {
    let cluster = &edge.server.cluster;
    if cluster.consensus.leader().is_none() {
        return Err(ApiError::unavailable("no Raft leader"));
    }
    if !cluster.in_quorum(std::time::Duration::from_secs(1)).await {
        return Err(ApiError::unavailable(
            "no quorum answered within 1 s: this node cannot commit writes",
        ));
    }
    let configured = edge.configured.clone();
    let missing = cluster
        .read(move |s| configured.missing_in(s))
        .await
        .map_err(|e| ApiError::unavailable(format!("read: {e}")))?;
    if let Some(why) = missing {
        return Err(ApiError::unavailable(why));
    }
    Ok("ready")
}

/// Prometheus metrics in text format.
#[utoipa::path(get, path = "/metrics", tag = "Operations", responses((status = 200, description = "Prometheus text")))]
async fn metrics_page(State(edge): State<Edge>) -> impl IntoResponse {
    let mut text = prometheus().render();
    text.push_str(&edge.server.cluster.consensus.read(fleet_metrics::render));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

async fn openapi_page() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn track(req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().cloned();
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status();
    http_metrics::record(
        path.as_ref().map_or("unmatched", MatchedPath::as_str),
        status.as_u16(),
        start.elapsed().as_secs_f64(),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return ApiError::new(status, ErrorCode::BadRequest, "method not allowed").into_response();
    }
    res
}

/// The edge's router.
pub fn router(edge: Edge, max_body_bytes: usize) -> Router {
    prometheus();
    Router::new()
        .route(
            "/dsm/request_battle_session_id",
            post(dsm::request_battle_session_id),
        )
        .route(
            "/dsm/start_battle_session_placement",
            post(dsm::start_battle_session_placement),
        )
        .route(
            "/dsm/describe_battle_session_placement",
            post(dsm::describe_battle_session_placement),
        )
        .route(
            "/dsm/cancel_battle_session_placement",
            post(dsm::cancel_battle_session_placement),
        )
        .route(
            "/dsm/add_players_to_battle_session",
            post(dsm::add_players_to_battle_session),
        )
        .route(
            "/dsm/query_player_battle_sessions",
            post(dsm::query_player_battle_sessions),
        )
        .route(
            "/dsm/terminate_player_battle_session",
            post(dsm::terminate_player_battle_session),
        )
        .route("/admin/cluster", get(admin::status))
        .route("/admin/cluster/add_learner", post(admin::add_learner))
        .route("/admin/cluster/promote", post(admin::promote))
        .route("/admin/cluster/remove", post(admin::remove))
        .route("/admin/cluster/join", post(admin::join))
        .route(
            "/virtualserver/invoke/{vs_name}",
            any(invoke::invoke_backend),
        )
        .route(
            "/virtualserver/invoke/{vs_name}/{*path}",
            any(invoke::invoke_backend),
        )
        .route(
            "/virtualserver/client/invoke/{vs_name}",
            any(invoke::invoke_client),
        )
        .route(
            "/virtualserver/client/invoke/{vs_name}/{*path}",
            any(invoke::invoke_client),
        )
        .route(
            "/admin/title_regions/{tr}/virtual_servers",
            get(vs_admin::list),
        )
        .route(
            "/admin/title_regions/{tr}/virtual_servers/{name}",
            get(vs_admin::get_one)
                .put(vs_admin::put)
                .delete(vs_admin::delete),
        )
        .route(
            "/admin/title_regions/{tr}/virtual_servers/{name}/start",
            post(vs_admin::start),
        )
        .route(
            "/admin/title_regions/{tr}/virtual_servers/{name}/stop",
            post(vs_admin::stop),
        )
        .route(
            "/admin/title_regions/{tr}/virtual_servers/{name}/logs",
            get(vs_admin::logs),
        )
        .route(
            "/admin/title_regions/{tr}/virtual_servers/{name}/access_log",
            get(vs_admin::access_log),
        )
        .route(
            "/admin/title_regions/{tr}/storages",
            get(storages_admin::list),
        )
        .route(
            "/admin/title_regions/{tr}/storages/{name}",
            get(storages_admin::get_one)
                .put(storages_admin::put)
                .delete(storages_admin::delete),
        )
        .route(
            "/admin/title_regions/{tr}/event_handlers/{name}",
            put(vs_admin::put_event_handler).delete(vs_admin::delete_event_handler),
        )
        .route(
            "/admin/title_regions/{tr}/tasks/{name}",
            put(vs_admin::put_task).delete(vs_admin::delete_task),
        )
        .route(
            "/admin/title_regions/{tr}/tasks/{name}/run",
            post(tasks_admin::run_task),
        )
        .route(
            "/admin/title_regions/{tr}/trigger_logs",
            get(vs_admin::trigger_logs),
        )
        .route(
            "/admin/title_regions/{tr}/players/{player_id}/offline",
            post(players_admin::player_offline),
        )
        .route(
            "/admin/title_regions/{tr}/players/{player_id}/banned",
            post(players_admin::player_banned),
        )
        .route("/admin/title_regions/{tr}/fleets", get(fleets_admin::list))
        .route(
            "/admin/title_regions/{tr}/fleets/{fleet_id}",
            get(fleets_admin::get_one)
                .put(fleets_admin::put)
                .delete(fleets_admin::delete),
        )
        .route(
            "/admin/title_regions/{tr}/fleets/{fleet_id}/desired",
            put(fleet_scaling::put_desired).delete(fleet_scaling::delete_desired),
        )
        .route(
            "/admin/title_regions/{tr}/processes/{process_id}/logs",
            get(ds_logs_admin::process_logs),
        )
        .route(
            "/admin/title_regions/{tr}/processes/{process_id}/logs/{*name}",
            get(ds_logs_admin::download),
        )
        .route(
            "/admin/title_regions/{tr}/battle_sessions/{battle_session_id}/logs",
            get(ds_logs_admin::session_logs),
        )
        .route("/admin/hosts", get(fleets_admin::hosts))
        .route("/admin/hosts/{host_id}/drain", post(fleets_admin::drain))
        .route(
            "/admin/hosts/{host_id}/undrain",
            post(fleets_admin::undrain),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route("/openapi.json", get(openapi_page))
        .merge(crate::console::router(edge.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn(track))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(edge)
}

#[cfg(test)]
mod tests {
    /// Every operation lists the errors its extractors answer, and every id
    /// of a /dsm body has the pattern and length of `validate_id`.
    #[test]
    fn operations_list_their_common_errors_and_ids_their_patterns() {
        let doc: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let r = &op["responses"];
                if op["requestBody"]["content"]["application/json"].is_object() {
                    assert!(r["400"].is_object(), "{method} {path}: 400");
                    assert!(r["415"].is_object(), "{method} {path}: 415");
                    checked += 1;
                }
                if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                    assert!(r["401"].is_object(), "{method} {path}: 401");
                }
            }
        }
        assert!(checked >= 7, "{checked}");
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("StartPlacementRequest", "fleet_id"),
            ("StartPlacementRequest", "battle_session_id"),
            ("StartPlacementRequest", "placement_id"),
            ("PlayerInput", "player_id"),
            ("PlacementIdRequest", "placement_id"),
            ("AddPlayersRequest", "battle_session_id"),
            ("QueryPlayerRequest", "player_id"),
            ("TerminatePlayerRequest", "battle_session_id"),
            ("TerminatePlayerRequest", "player_battle_session_id"),
        ] {
            let f = &schemas[schema]["properties"][field];
            assert_eq!(f["minLength"], 1, "{schema}.{field}: {f}");
            assert_eq!(
                f["maxLength"],
                respawn_types::MAX_ID_LEN,
                "{schema}.{field}"
            );
            let pattern = id_pattern(f["pattern"].as_str().unwrap());
            for (id, ok) in [("bs-1", true), ("", false), ("a b", false), ("x/y", false)] {
                assert_eq!(pattern(id), ok, "{schema}.{field} {id:?}");
                assert_eq!(respawn_types::validate_id("id", id).is_ok(), ok, "{id:?}");
            }
        }
    }

    /// The one pattern the document uses, `^[A-Za-z0-9._-]+$`, as a predicate.
    fn id_pattern(p: &str) -> impl Fn(&str) -> bool {
        assert_eq!(p, "^[A-Za-z0-9._-]+$");
        |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
    }

    /// docs/openapi.json is generated from the code; it must not go stale.
    /// Regenerate with `respawn openapi > docs/openapi.json`.
    #[test]
    fn committed_openapi_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            committed.trim(),
            super::openapi_json().trim(),
            "docs/openapi.json is stale: run `respawn openapi > docs/openapi.json`"
        );
    }
}
