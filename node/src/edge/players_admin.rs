//! Admin calls about a player that the DS processes holding the player's
//! battle sessions are told about: the player's game client went offline
//! (OnBattlePlayerOffline), or the player was banned (OnBattlePlayerBanned).
//!
//! Respawn has no client connection of its own to see a client go offline,
//! nor a ban list: the game's backend (or an operator) says so here, and
//! the platform relays it. Nothing in the replicated state changes; each
//! holding process is sent the notification once (at most once, like every
//! callback of the event stream).

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use axum::extract::{Path, State};
use axum::Json;
use respawn_actors::AgentGateway;
use respawn_state::ClusterState;
use respawn_types::agent::{AgentReply, ServerToAgent};
use respawn_types::sdk::SdkEvent;
use respawn_types::text::truncate_utf8;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest ban reason passed on.
const MAX_REASON_BYTES: usize = 1024;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayerOfflineRequest {}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayerBannedRequest {
    /// Why, for the DS (at most 1024 bytes).
    #[serde(default)]
    pub reason: String,
}

/// One process told about the player.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotifiedProcess {
    pub battle_session_id: String,
    pub player_battle_session_id: String,
    pub process_id: String,
    /// The process's agent took the notification.
    pub delivered: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotifiedView {
    /// Processes holding a battle session the player is in (reserved,
    /// connected or disconnected; the session ACTIVATING or ACTIVE).
    pub notified: Vec<NotifiedProcess>,
}

struct Target {
    host: HostId,
    process: ProcessId,
    battle_session: BattleSessionId,
    player_battle_session: PlayerBattleSessionId,
}

/// The processes holding a live battle session of `player` in `tr`.
fn targets(s: &ClusterState, tr: &TitleRegionId, player: &PlayerId) -> Vec<Target> {
    let Some(ids) = s.sessions_by_player.get(player) else {
        return Vec::new();
    };
    ids.iter()
        .filter_map(|id| {
            let p = s.player_battle_sessions.get(id)?;
            if &p.title_region_id != tr || p.status == PlayerBattleSessionStatus::Completed {
                return None;
            }
            let b = s.battle_sessions.get(&p.battle_session_id)?;
            if !matches!(
                b.status,
                BattleSessionStatus::Activating | BattleSessionStatus::Active
            ) {
                return None;
            }
            let process = b.process_id.clone()?;
            let host = s.processes.get(&process)?.host_id.clone();
            Some(Target {
                host,
                process,
                battle_session: b.id.clone(),
                player_battle_session: id.clone(),
            })
        })
        .collect()
}

async fn notify_player(
    edge: &Edge,
    tr: &str,
    player: &str,
    event: impl Fn(&Target, &PlayerId) -> SdkEvent,
) -> Result<Json<NotifiedView>, ApiError> {
    let tr = TitleRegionId::parse(tr).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let player = PlayerId::parse(player).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let found = {
        let (tr, player) = (tr.clone(), player.clone());
        edge.server
            .cluster
            .read(move |s| {
                s.title_regions
                    .contains_key(&tr)
                    .then(|| targets(s, &tr, &player))
            })
            .await?
    };
    let Some(targets) = found else {
        return Err(ApiError::not_found(format!(
            "title region '{tr}' not found"
        )));
    };
    let gateway = edge.server.gateway();
    let mut notified = Vec::new();
    for t in targets {
        let delivered = match serde_json::to_string(&event(&t, &player)) {
            Ok(event_json) => matches!(
                gateway
                    .send(
                        &t.host,
                        ServerToAgent::Notify {
                            process_id: t.process.clone(),
                            event_json,
                        },
                    )
                    .await,
                Ok(AgentReply::Ok)
            ),
            Err(_) => false,
        };
        notified.push(NotifiedProcess {
            battle_session_id: t.battle_session.to_string(),
            player_battle_session_id: t.player_battle_session.to_string(),
            process_id: t.process.to_string(),
            delivered,
        });
    }
    Ok(Json(NotifiedView { notified }))
}

/// The player's game client went offline: every DS process holding one of
/// the player's battle sessions gets OnBattlePlayerOffline.
#[utoipa::path(post, path = "/admin/title_regions/{tr}/players/{player_id}/offline", tag = "Admin",
    params(("tr" = String, Path), ("player_id" = String, Path)),
    request_body = PlayerOfflineRequest,
    responses((status = 200, body = NotifiedView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn player_offline(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, player)): Path<(String, String)>,
    ApiJson(_req): ApiJson<PlayerOfflineRequest>,
) -> Result<Json<NotifiedView>, ApiError> {
    notify_player(&edge, &tr, &player, |t, player| {
        SdkEvent::BattlePlayerOffline {
            battle_session_id: t.battle_session.clone(),
            player_id: player.clone(),
            player_battle_session_id: t.player_battle_session.clone(),
        }
    })
    .await
}

/// The player was banned: every DS process holding one of the player's
/// battle sessions gets OnBattlePlayerBanned with the reason.
#[utoipa::path(post, path = "/admin/title_regions/{tr}/players/{player_id}/banned", tag = "Admin",
    params(("tr" = String, Path), ("player_id" = String, Path)),
    request_body = PlayerBannedRequest,
    responses((status = 200, body = NotifiedView), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn player_banned(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, player)): Path<(String, String)>,
    ApiJson(req): ApiJson<PlayerBannedRequest>,
) -> Result<Json<NotifiedView>, ApiError> {
    let reason = truncate_utf8(&req.reason, MAX_REASON_BYTES).to_string();
    notify_player(&edge, &tr, &player, |t, player| {
        SdkEvent::BattlePlayerBanned {
            battle_session_id: t.battle_session.clone(),
            player_id: player.clone(),
            player_battle_session_id: t.player_battle_session.clone(),
            reason: reason.clone(),
        }
    })
    .await
}
