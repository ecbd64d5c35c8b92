//! The local SDK API DS processes call (HTTP/JSON on loopback). The
//! normative description is `docs/sdk-protocol.md`.

use crate::events::Next;
use crate::forking;
use crate::health::{HealthTracker, Verdict};
use crate::health_actor::HealthActor;
#[cfg(test)]
use crate::request::status_for;
use crate::request::{
    authenticate, check_bs, check_log_paths, check_pbs, ok, parse, read, with_proc, SdkApiResult,
};
use crate::request::{SdkApiError, MAX_BODY};
use crate::state::Shared;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use respawn_types::agent::{AgentToServer, ErrorCode, ServerReply};
use respawn_types::sdk::{
    self as api, BattleSessionRequest, HealthAnswer, PlayerBattleSessionRequest,
    ProcessReadyAnswer, ProcessReadyRequest, SdkEvent,
};
use respawn_types::text::truncate_utf8;
use respawn_types::ExitReason;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How long a forwarded call may wait for the cluster.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest error message passed on from the cluster.
const MAX_MESSAGE_LEN: usize = 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(api::PATH_EVENTS, get(events))
        .route(api::PATH_PROCESS_READY, post(process_ready))
        .route(api::PATH_HEALTH, post(health))
        .route(api::PATH_ACTIVATE, post(activate))
        .route(api::PATH_ACCEPT_PLAYER, post(accept_player))
        .route(api::PATH_DISCONNECT_PLAYER, post(disconnect_player))
        .route(api::PATH_REMOVE_PLAYER, post(remove_player))
        .route(
            api::PATH_TERMINATE_BATTLE_SESSION,
            post(terminate_battle_session),
        )
        .route(api::PATH_PROCESS_ENDING, post(process_ending))
        .route(
            api::PATH_DESCRIBE_BATTLE_SESSION,
            post(describe_battle_session),
        )
        .route(
            api::PATH_FORKING_PROCESS_READY,
            post(forking::forking_process_ready),
        )
        .route(
            api::PATH_QUERY_DS_INSTANCE_PER_CVM_CONFIG,
            post(forking::query_ds_instance_per_cvm_config),
        )
        .route(
            api::PATH_QUERY_AVAILABLE_DS_INSTANCE_COUNT,
            post(forking::query_available_ds_instance_count),
        )
        .route("/v1/vs/invoke/{vs}", any(invoke_vs))
        .route("/v1/vs/invoke/{vs}/{*path}", any(invoke_vs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

async fn not_found(method: Method, uri: Uri) -> SdkApiError {
    SdkApiError::new(
        ErrorCode::NotFound,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> SdkApiError {
    SdkApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::BadRequest,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// Forwards a DS call to the cluster and answers with the cluster's reply.
async fn forward(shared: &Shared, msg: AgentToServer) -> SdkApiResult {
    match tokio::time::timeout(FORWARD_TIMEOUT, shared.link.call(msg)).await {
        Err(_) => Err(SdkApiError::new(
            ErrorCode::Unavailable,
            "the cluster did not answer in time",
        )),
        Ok(Err(down)) => Err(SdkApiError::new(ErrorCode::Unavailable, down.to_string())),
        Ok(Ok(ServerReply::Ok)) => ok(),
        Ok(Ok(ServerReply::Err(e))) => {
            let message = truncate_utf8(&e.message, MAX_MESSAGE_LEN).to_owned();
            Err(SdkApiError::new(e.code, message))
        }
        Ok(Ok(
            ServerReply::Welcome { .. }
            | ServerReply::VsEndpoints { .. }
            | ServerReply::BattleSession { .. },
        )) => Err(SdkApiError::new(
            ErrorCode::Internal,
            "unexpected reply from the cluster",
        )),
    }
}

async fn process_ready(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ProcessReadyAnswer>, SdkApiError> {
    let id = authenticate(&shared, &headers)?;
    let req: ProcessReadyRequest = parse(body)?;
    if req.port == 0 {
        return Err(SdkApiError::bad_request("port must be between 1 and 65535"));
    }
    check_log_paths(&req.log_paths)?;
    if let Some(answer) = forking::ready_via_parent(&shared, &id, &req)? {
        return Ok(Json(answer));
    }
    let newly_ready = with_proc(&shared, &id, |shared, p| {
        if p.ending || p.terminating {
            return Err(SdkApiError::new(
                ErrorCode::InvalidState,
                "the process is ending",
            ));
        }
        match p.port {
            Some(port) if port == req.port && p.log_paths == req.log_paths => return Ok(false),
            Some(port) => {
                return Err(SdkApiError::new(
                    ErrorCode::Conflict,
                    format!("ProcessReady was already called with port {port}"),
                ))
            }
            None => {}
        }
        p.port = Some(req.port);
        p.log_paths = req.log_paths.clone();
        p.health = Some(HealthTracker::new());
        shared.reporter.send(AgentToServer::ProcessReady {
            process_id: p.id.clone(),
            port: req.port,
            log_paths: req.log_paths,
        });
        Ok(true)
    })?;
    if newly_ready {
        tracing::info!(process_id = %id, port = req.port, "process ready");
        HealthActor::start(shared.clone(), id);
    }
    Ok(Json(ProcessReadyAnswer {
        ok: true,
        process_id: None,
        process_token: None,
        log_dir: None,
    }))
}

async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, SdkApiError> {
    let id = authenticate(&shared, &headers)?;
    let (generation, wake) = with_proc(&shared, &id, |_, p| Ok(p.events.attach()))?;
    tracing::debug!(process_id = %id, generation, "event stream connected");
    let stream = futures::stream::unfold((), move |()| {
        let shared = shared.clone();
        let id = id.clone();
        let wake = wake.clone();
        async move {
            loop {
                let next = match shared.reg().procs.get_mut(&id) {
                    Some(p) => p.events.next_for(generation),
                    None => Next::End,
                };
                match next {
                    Next::Event(event) => {
                        return Some((Ok::<_, Infallible>(event_line(&event)), ()))
                    }
                    Next::End => return None,
                    Next::Wait => wake.notified().await,
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/x-ndjson")
        .header(CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .map_err(|e| SdkApiError::new(ErrorCode::Internal, e.to_string()))
}

/// One NDJSON line.
fn event_line(event: &SdkEvent) -> Bytes {
    // Serializing these plain structs cannot fail; an empty line is ignored
    // by readers if it ever did.
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

async fn health(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> SdkApiResult {
    let id = authenticate(&shared, &headers)?;
    let answer: HealthAnswer = parse(body)?;
    with_proc(&shared, &id, |shared, p| {
        if p.terminating {
            return ok();
        }
        let Some(tracker) = p.health.as_mut() else {
            return Err(SdkApiError::new(
                ErrorCode::InvalidState,
                "no health check is outstanding: call ProcessReady first",
            ));
        };
        match tracker.on_answer(answer.seq, answer.healthy) {
            Verdict::Healthy => ok(),
            Verdict::Unhealthy { failures } => {
                tracing::info!(process_id = %p.id, failures, "process reports unhealthy");
                ok()
            }
            Verdict::Terminate => {
                shared.begin_terminate(
                    p,
                    format!(
                        "unhealthy: {} consecutive failed health checks",
                        crate::health::UNHEALTHY_THRESHOLD
                    ),
                    ExitReason::Unhealthy,
                );
                ok()
            }
            Verdict::Stale => Err(SdkApiError::new(
                ErrorCode::Conflict,
                format!(
                    "health check {} is not outstanding (late or unknown seq)",
                    answer.seq
                ),
            )),
        }
    })
}

async fn activate(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> SdkApiResult {
    let process_id = authenticate(&shared, &headers)?;
    let req: BattleSessionRequest = parse(body)?;
    check_bs(&req.battle_session_id)?;
    forward(
        &shared,
        AgentToServer::ActivateBattleSession {
            process_id,
            battle_session_id: req.battle_session_id,
        },
    )
    .await
}

/// DescribeBattleSession: a battle session this process holds, as the
/// cluster has it now (players added since OnStartBattleSession included).
async fn describe_battle_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, SdkApiError> {
    let process_id = authenticate(&shared, &headers)?;
    let req: BattleSessionRequest = parse(body)?;
    check_bs(&req.battle_session_id)?;
    let msg = AgentToServer::DescribeBattleSession {
        process_id,
        battle_session_id: req.battle_session_id,
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, shared.link.call(msg)).await {
        Err(_) => Err(SdkApiError::new(
            ErrorCode::Unavailable,
            "the cluster did not answer in time",
        )),
        Ok(Err(down)) => Err(SdkApiError::new(ErrorCode::Unavailable, down.to_string())),
        Ok(Ok(ServerReply::BattleSession { description_json })) => {
            let description: api::BattleSessionDescription =
                serde_json::from_str(&description_json).map_err(|e| {
                    SdkApiError::new(
                        ErrorCode::Internal,
                        format!("bad reply from the cluster: {e}"),
                    )
                })?;
            Ok(Json(serde_json::json!({ "battle_session": description })))
        }
        Ok(Ok(ServerReply::Err(e))) => {
            let message = truncate_utf8(&e.message, MAX_MESSAGE_LEN).to_owned();
            Err(SdkApiError::new(e.code, message))
        }
        Ok(Ok(_)) => Err(SdkApiError::new(
            ErrorCode::Internal,
            "unexpected reply from the cluster",
        )),
    }
}

async fn terminate_battle_session(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> SdkApiResult {
    let process_id = authenticate(&shared, &headers)?;
    let req: BattleSessionRequest = parse(body)?;
    check_bs(&req.battle_session_id)?;
    forward(
        &shared,
        AgentToServer::TerminateBattleSession {
            process_id,
            battle_session_id: req.battle_session_id,
        },
    )
    .await
}

/// Which player call.
#[derive(Clone, Copy)]
enum PlayerCall {
    Accept,
    Disconnect,
    Remove,
}

async fn player_call(
    shared: Arc<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    call: PlayerCall,
) -> SdkApiResult {
    let process_id = authenticate(&shared, &headers)?;
    let req: PlayerBattleSessionRequest = parse(body)?;
    check_bs(&req.battle_session_id)?;
    check_pbs(&req.player_battle_session_id)?;
    let PlayerBattleSessionRequest {
        battle_session_id,
        player_battle_session_id,
    } = req;
    let msg = match call {
        PlayerCall::Accept => AgentToServer::AcceptPlayerBattleSession {
            process_id,
            battle_session_id,
            player_battle_session_id,
        },
        PlayerCall::Disconnect => AgentToServer::DisconnectPlayerBattleSession {
            process_id,
            battle_session_id,
            player_battle_session_id,
        },
        PlayerCall::Remove => AgentToServer::RemovePlayerBattleSession {
            process_id,
            battle_session_id,
            player_battle_session_id,
        },
    };
    forward(&shared, msg).await
}

async fn accept_player(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> SdkApiResult {
    player_call(shared, headers, body, PlayerCall::Accept).await
}

async fn disconnect_player(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> SdkApiResult {
    player_call(shared, headers, body, PlayerCall::Disconnect).await
}

async fn remove_player(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> SdkApiResult {
    player_call(shared, headers, body, PlayerCall::Remove).await
}

async fn process_ending(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> SdkApiResult {
    let id = authenticate(&shared, &headers)?;
    let bytes = read(body)?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).map_err(
            |e| SdkApiError::bad_request(format!("invalid JSON body (expected {{}}): {e}")),
        )?;
    }
    with_proc(&shared, &id, |shared, p| {
        if !p.ending {
            tracing::info!(process_id = %p.id, "process ending");
            p.ending = true;
            shared.reporter.send(AgentToServer::ProcessEnding {
                process_id: p.id.clone(),
            });
        }
        ok()
    })
}

/// A DS invokes a virtual server of its fleet's title region
/// (`Invoker: backend`): `ANY /v1/vs/invoke/<vs>/<path>`, authenticated by
/// the process token like every other call.
async fn invoke_vs(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let id = match authenticate(&shared, req.headers()) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let tr = shared
        .reg()
        .fleet
        .as_ref()
        .map(|f| f.title_region_id.clone());
    let Some(tr) = tr else {
        return SdkApiError::new(ErrorCode::Unavailable, "this host has no fleet yet")
            .into_response();
    };
    let vs = req.uri().path().split('/').nth(4).unwrap_or("").to_string();
    let upstream = crate::vs::rest_after(req.uri(), 4);
    tracing::debug!(process_id = %id, %vs, "DS invokes a virtual server");
    let (mut parts, body) = req.into_parts();
    // The process token is for the agent, not for the VS.
    parts.headers.remove(AUTHORIZATION);
    let req = axum::extract::Request::from_parts(parts, body);
    shared
        .vs
        .call(tr, &vs, respawn_proxy::Invoker::Backend, upstream, req)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_statuses() {
        assert_eq!(status_for(ErrorCode::BadRequest), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_for(ErrorCode::Unauthorized),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status_for(ErrorCode::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status_for(ErrorCode::InvalidState), StatusCode::CONFLICT);
        assert_eq!(
            status_for(ErrorCode::NotLeader),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_for(ErrorCode::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_for(ErrorCode::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn event_lines_are_one_json_object_per_line() {
        let line = event_line(&SdkEvent::HealthCheck { seq: 3 });
        assert_eq!(&line[..], b"{\"type\":\"health_check\",\"seq\":3}\n");
    }
}
