//! The standalone DS API (`/dsm/*`): placing battle sessions and managing
//! their players from a game backend. All `POST` with JSON bodies, all
//! authenticated by the title region's server key (see [`super::auth`]).

use super::context::{Edge, Region};
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use axum::extract::State;
use axum::Json;
use respawn_state::{Applied, ClusterState, Command, StartPlacement};
use respawn_types::limits;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBattleSessionIdRequest {}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RequestBattleSessionIdResponse {
    #[schema(example = "bs-0195f2a4c1d87c3e9a4b5d6e7f801234")]
    pub battle_session_id: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayerInput {
    /// The game's id for the player.
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub player_id: String,
    /// Opaque data handed to the DS (at most 4096 bytes).
    #[serde(default)]
    pub player_data: String,
    /// The team the player plays in (at most 64 bytes; empty: none). The
    /// DS gets each player's team and the list of teams.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub team: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartPlacementRequest {
    /// Fleet to place the battle session on (of the caller's title region).
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub fleet_id: String,
    /// An id from RequestBattleSessionID, not used before.
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub battle_session_id: String,
    /// Optional placement id chosen by the caller; generated when absent.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub placement_id: Option<String>,
    /// Most players the battle session holds (1–1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_players: u32,
    /// Battle properties handed to the DS in OnStartBattleSession.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Players to reserve slots for; each gets a player battle session id.
    #[serde(default)]
    pub players: Vec<PlayerInput>,
    /// Overrides the fleet's placement timeout (seconds, 1–3600).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)]
    pub placement_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementIdRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub placement_id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlayerBattleSessionView {
    pub player_id: String,
    pub player_battle_session_id: String,
    pub battle_session_id: String,
    /// The player's team (empty: none).
    pub team: String,
    /// RESERVED, ACTIVE, DISCONNECTED or COMPLETED.
    #[schema(example = "RESERVED")]
    pub status: String,
    /// Address of the DS holding the battle session, once placed.
    pub ip: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlacementView {
    pub placement_id: String,
    pub battle_session_id: String,
    pub fleet_id: String,
    /// PENDING, FULFILLED, CANCELLED, TIMED_OUT or FAILED.
    #[schema(example = "FULFILLED")]
    pub status: String,
    /// PENDING, ACTIVATING, ACTIVE or TERMINATED.
    #[schema(example = "ACTIVE")]
    pub battle_session_status: String,
    /// The DS's address (set once FULFILLED).
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub max_players: u32,
    pub properties: BTreeMap<String, String>,
    pub players: Vec<PlayerBattleSessionView>,
    /// Unix milliseconds.
    pub created_at: u64,
    pub ended_at: Option<u64>,
    /// When PENDING: unix milliseconds at which it times out.
    pub deadline: u64,
    /// Why it ended other than FULFILLED.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlacementResponse {
    pub placement: PlacementView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPlayersRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub battle_session_id: String,
    pub players: Vec<PlayerInput>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlayerBattleSessionsResponse {
    pub player_battle_sessions: Vec<PlayerBattleSessionView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryPlayerRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub player_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminatePlayerRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub battle_session_id: String,
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 128)]
    pub player_battle_session_id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlayerBattleSessionResponse {
    pub player_battle_session: PlayerBattleSessionView,
}

fn status_name<T: Serialize>(s: &T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn parse<T>(field: &str, r: Result<T, IdError>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

fn player_view(state: &ClusterState, p: &PlayerBattleSession) -> PlayerBattleSessionView {
    let session = state.battle_sessions.get(&p.battle_session_id);
    let placed = session.filter(|s| {
        s.status == BattleSessionStatus::Active || s.status == BattleSessionStatus::Activating
    });
    PlayerBattleSessionView {
        player_id: p.player_id.to_string(),
        player_battle_session_id: p.id.to_string(),
        battle_session_id: p.battle_session_id.to_string(),
        team: p.team.clone(),
        status: status_name(&p.status),
        ip: placed.and_then(|s| s.ip.clone()),
        port: placed.and_then(|s| s.port),
    }
}

/// The view of a placement that a backend sees; `None` if it is not the caller's.
pub fn placement_view(
    state: &ClusterState,
    tr: &TitleRegionId,
    id: &PlacementId,
) -> Option<PlacementView> {
    let pl = state
        .placements
        .get(id)
        .filter(|p| &p.title_region_id == tr)?;
    let s = state.battle_sessions.get(&pl.battle_session_id)?;
    let fulfilled = pl.status == PlacementStatus::Fulfilled;
    Some(PlacementView {
        placement_id: pl.id.to_string(),
        battle_session_id: pl.battle_session_id.to_string(),
        fleet_id: pl.fleet_id.to_string(),
        status: status_name(&pl.status),
        battle_session_status: status_name(&s.status),
        ip: if fulfilled { s.ip.clone() } else { None },
        port: if fulfilled { s.port } else { None },
        max_players: s.max_players,
        properties: s.properties.clone(),
        players: pl
            .player_battle_sessions
            .iter()
            .filter_map(|id| state.player_battle_sessions.get(id).map(|r| &**r))
            .map(|p| player_view(state, p))
            .collect(),
        created_at: pl.created_at,
        ended_at: pl.ended_at,
        deadline: pl.deadline,
        reason: pl.reason.clone(),
    })
}

fn players_input(
    players: &[PlayerInput],
) -> Result<Vec<(PlayerBattleSessionId, PlayerSpec)>, ApiError> {
    if players.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 players per request"));
    }
    players
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let player_id = parse(
                &format!("players[{i}].player_id"),
                PlayerId::parse(p.player_id.clone()),
            )?;
            Ok((
                PlayerBattleSessionId::generate(),
                PlayerSpec {
                    player_id,
                    player_data: p.player_data.clone(),
                    team: p.team.clone(),
                },
            ))
        })
        .collect()
}

/// RequestBattleSessionID: reserve a new battle session id for this title region.
#[utoipa::path(post, path = "/dsm/request_battle_session_id", tag = "Battle Management",
    request_body = RequestBattleSessionIdRequest,
    responses((status = 200, body = RequestBattleSessionIdResponse), (status = 401, body = ErrorBody),
        (status = 429, description = "the title region holds as many unused issued ids as `[retention] max_issued_ids_per_title_region` allows", body = ErrorBody)),
    security(("server_ticket" = [])))]
pub async fn request_battle_session_id(
    State(edge): State<Edge>,
    Region(tr): Region,
    ApiJson(_req): ApiJson<RequestBattleSessionIdRequest>,
) -> Result<Json<RequestBattleSessionIdResponse>, ApiError> {
    let id = BattleSessionId::generate();
    edge.server
        .cluster
        .propose(Command::IssueBattleSessionId {
            title_region_id: tr,
            battle_session_id: id.clone(),
            max_outstanding: Some(edge.max_issued_ids),
        })
        .await?;
    Ok(Json(RequestBattleSessionIdResponse {
        battle_session_id: id.to_string(),
    }))
}

/// StartBattleSessionPlacement: ask for a DS and place the battle session on it.
/// A fleet with no free process is not an error: the placement stays PENDING
/// until a process frees up or its timeout passes.
#[utoipa::path(post, path = "/dsm/start_battle_session_placement", tag = "Battle Management",
    request_body = StartPlacementRequest,
    responses((status = 200, body = PlacementResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "unknown fleet or battle session id", body = ErrorBody),
        (status = 409, description = "battle session id or placement id already used", body = ErrorBody)),
    security(("server_ticket" = [])))]
pub async fn start_battle_session_placement(
    State(edge): State<Edge>,
    Region(tr): Region,
    ApiJson(req): ApiJson<StartPlacementRequest>,
) -> Result<Json<PlacementResponse>, ApiError> {
    let fleet_id = parse("fleet_id", FleetId::parse(req.fleet_id))?;
    let battle_session_id = parse(
        "battle_session_id",
        BattleSessionId::parse(req.battle_session_id),
    )?;
    let placement_id = match req.placement_id {
        Some(p) => parse("placement_id", PlacementId::parse(p))?,
        None => placement_id_of(&battle_session_id),
    };
    let (lo, hi) = limits::in_secs(limits::PLACEMENT_TIMEOUT_RANGE);
    let timeout_ms = match req.placement_timeout_secs {
        Some(s) if !(lo..=hi).contains(&s) => {
            return Err(ApiError::bad_request(format!(
                "placement_timeout_secs must be between {lo} and {hi}"
            )))
        }
        Some(s) => Some(s * 1000),
        None => None,
    };
    if req.properties.len() > 64
        || req
            .properties
            .iter()
            .any(|(k, v)| k.len() > 128 || v.len() > 4096)
    {
        return Err(ApiError::bad_request(
            "properties: at most 64 entries, keys ≤128 and values ≤4096 bytes",
        ));
    }
    let players = players_input(&req.players)?;
    let command = Command::StartPlacement(StartPlacement {
        placement_id: placement_id.clone(),
        title_region_id: tr.clone(),
        fleet_id,
        battle_session_id,
        max_players: req.max_players,
        properties: req.properties,
        players,
        timeout_ms,
    });
    let (applied, view) = edge
        .server
        .cluster
        .propose_then_read(command, |s| placement_answer(s, &tr, &placement_id))
        .await?;
    // `Unchanged`: a repeat of the request that made this placement.
    if applied == Applied::Done {
        metrics::counter!("respawn_placements_started_total").increment(1);
    }
    view
}

/// The placement id of a request that names none: `pl-` and the battle
/// session id's own suffix, so a repeated request names the same placement
/// (and is answered with it rather than refused).
fn placement_id_of(battle_session_id: &BattleSessionId) -> PlacementId {
    let s = battle_session_id.as_str();
    PlacementId::parse(format!("pl-{}", s.strip_prefix("bs-").unwrap_or(s)))
        .unwrap_or_else(|_| PlacementId::generate())
}

/// DescribeBattleSessionPlacement: status of a placement; when FULFILLED, the
/// DS's address and each player's player battle session id.
#[utoipa::path(post, path = "/dsm/describe_battle_session_placement", tag = "Battle Management",
    request_body = PlacementIdRequest,
    responses((status = 200, body = PlacementResponse),
        (status = 404, description = "unknown placement (`not_found`), or one removed after the retention window (`expired`)", body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("server_ticket" = [])))]
pub async fn describe_battle_session_placement(
    State(edge): State<Edge>,
    Region(tr): Region,
    ApiJson(req): ApiJson<PlacementIdRequest>,
) -> Result<Json<PlacementResponse>, ApiError> {
    let id = parse("placement_id", PlacementId::parse(req.placement_id))?;
    placement(&edge, &tr, &id).await
}

/// CancelBattleSessionPlacement: cancel a PENDING placement.
#[utoipa::path(post, path = "/dsm/cancel_battle_session_placement", tag = "Battle Management",
    request_body = PlacementIdRequest,
    responses((status = 200, body = PlacementResponse), (status = 404, body = ErrorBody),
        (status = 409, description = "already in a terminal state", body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("server_ticket" = [])))]
pub async fn cancel_battle_session_placement(
    State(edge): State<Edge>,
    Region(tr): Region,
    ApiJson(req): ApiJson<PlacementIdRequest>,
) -> Result<Json<PlacementResponse>, ApiError> {
    let id = parse("placement_id", PlacementId::parse(req.placement_id))?;
    let command = Command::CancelPlacement {
        title_region_id: tr.clone(),
        placement_id: id.clone(),
    };
    edge.server
        .cluster
        .propose_then_read(command, |s| placement_answer(s, &tr, &id))
        .await?
        .1
}

/// AddPlayersToBattleSession: reserve slots for more players.
#[utoipa::path(post, path = "/dsm/add_players_to_battle_session", tag = "Battle Management",
    request_body = AddPlayersRequest,
    responses((status = 200, body = PlayerBattleSessionsResponse), (status = 404, body = ErrorBody),
        (status = 409, description = "session full, terminated, or player already in it", body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("server_ticket" = [])))]
pub async fn add_players_to_battle_session(
    State(edge): State<Edge>,
    Region(tr): Region,
    ApiJson(req): ApiJson<AddPlayersRequest>,
) -> Result<Json<PlayerBattleSessionsResponse>, ApiError> {
    let bs = parse(
        "battle_session_id",
        BattleSessionId::parse(req.battle_session_id),
    )?;
    let players = players_input(&req.players)?;
    let ids: Vec<PlayerBattleSessionId> = players.iter().map(|(id, _)| id.clone()).collect();
    let command = Command::AddPlayers {
        title_region_id: tr,
        battle_session_id: bs,
        players,
    };
    let (_, views) = edge
        .server
        .cluster
        .propose_then_read(command, |s| {
            ids.iter()
                .filter_map(|id| s.player_battle_sessions.get(id).map(|r| &**r))
                .map(|p| player_view(s, p))
                .collect()
        })
        .await?;
    Ok(Json(PlayerBattleSessionsResponse {
        player_battle_sessions: views,
    }))
}

/// QueryPlayerBattleSessions: a player's current (not COMPLETED) player
/// battle sessions in this title region, with each DS's address.
#[utoipa::path(post, path = "/dsm/query_player_battle_sessions", tag = "Battle Management",
    request_body = QueryPlayerRequest,
    responses((status = 200, body = PlayerBattleSessionsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("server_ticket" = [])))]
pub async fn query_player_battle_sessions(
    State(edge): State<Edge>,
    Region(tr): Region,
    ApiJson(req): ApiJson<QueryPlayerRequest>,
) -> Result<Json<PlayerBattleSessionsResponse>, ApiError> {
    let player = parse("player_id", PlayerId::parse(req.player_id))?;
    let views = edge
        .server
        .cluster
        .read(|s| {
            s.sessions_by_player
                .get(&player)
                .into_iter()
                .flatten()
                .filter_map(|id| s.player_battle_sessions.get(id).map(|r| &**r))
                .filter(|p| p.title_region_id == tr)
                .map(|p| player_view(s, p))
                .collect()
        })
        .await?;
    Ok(Json(PlayerBattleSessionsResponse {
        player_battle_sessions: views,
    }))
}

/// TerminatePlayerBattleSession: remove a player from a battle session; the
/// player cannot enter it again.
#[utoipa::path(post, path = "/dsm/terminate_player_battle_session", tag = "Battle Management",
    request_body = TerminatePlayerRequest,
    responses((status = 200, body = PlayerBattleSessionResponse), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("server_ticket" = [])))]
pub async fn terminate_player_battle_session(
    State(edge): State<Edge>,
    Region(tr): Region,
    ApiJson(req): ApiJson<TerminatePlayerRequest>,
) -> Result<Json<PlayerBattleSessionResponse>, ApiError> {
    let bs = parse(
        "battle_session_id",
        BattleSessionId::parse(req.battle_session_id),
    )?;
    let pbs = parse(
        "player_battle_session_id",
        PlayerBattleSessionId::parse(req.player_battle_session_id),
    )?;
    let command = Command::TerminatePlayerBattleSession {
        title_region_id: tr,
        battle_session_id: bs,
        player_battle_session_id: pbs.clone(),
    };
    let (_, view) = edge
        .server
        .cluster
        .propose_then_read(command, |s| {
            s.player_battle_sessions
                .get(&pbs)
                .map(|p| player_view(s, p))
        })
        .await?;
    let view = view
        .ok_or_else(|| ApiError::not_found(format!("player battle session '{pbs}' not found")))?;
    Ok(Json(PlayerBattleSessionResponse {
        player_battle_session: view,
    }))
}

/// A linearizable view of a placement (read index).
async fn placement(
    edge: &Edge,
    tr: &TitleRegionId,
    id: &PlacementId,
) -> Result<Json<PlacementResponse>, ApiError> {
    edge.server
        .cluster
        .read(|s| placement_answer(s, tr, id))
        .await?
}

/// The answer about placement `id` in `state`: its view, or why there is none.
fn placement_answer(
    state: &ClusterState,
    tr: &TitleRegionId,
    id: &PlacementId,
) -> Result<Json<PlacementResponse>, ApiError> {
    match placement_view(state, tr, id) {
        Some(placement) => Ok(Json(PlacementResponse { placement })),
        None if state.pruned.placement(id) => Err(ApiError::expired(format!(
            "placement '{id}' has expired: it ended more than the retention window ago \
             and is no longer kept"
        ))),
        None => Err(ApiError::not_found(format!("placement '{id}' not found"))),
    }
}
