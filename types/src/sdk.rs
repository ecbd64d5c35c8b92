//! The agent's local SDK API, spoken by DS processes over HTTP/JSON on
//! loopback. `docs/sdk-protocol.md` is the normative description; these are
//! the bodies it names.

use crate::agent::BattleSessionSpec;
use crate::ids::*;
use serde::{Deserialize, Serialize};

/// Base URL of the agent's local API, e.g. `http://127.0.0.1:7601`.
pub const ENV_SDK_ENDPOINT: &str = "RESPAWN_SDK_ENDPOINT";
/// The process's id.
pub const ENV_PROCESS_ID: &str = "RESPAWN_PROCESS_ID";
/// Bearer token the process presents on every call.
pub const ENV_PROCESS_TOKEN: &str = "RESPAWN_PROCESS_TOKEN";
pub const ENV_FLEET_ID: &str = "RESPAWN_FLEET_ID";
pub const ENV_HOST_ID: &str = "RESPAWN_HOST_ID";
/// Directory where the agent keeps this process's stdout/stderr; a DS may log there too.
pub const ENV_LOG_DIR: &str = "RESPAWN_LOG_DIR";

pub const PATH_EVENTS: &str = "/v1/events";
pub const PATH_PROCESS_READY: &str = "/v1/process_ready";
pub const PATH_HEALTH: &str = "/v1/health";
pub const PATH_ACTIVATE: &str = "/v1/activate_battle_session";
pub const PATH_ACCEPT_PLAYER: &str = "/v1/accept_player_battle_session";
pub const PATH_DISCONNECT_PLAYER: &str = "/v1/disconnect_player_battle_session";
pub const PATH_REMOVE_PLAYER: &str = "/v1/remove_player_battle_session";
pub const PATH_TERMINATE_BATTLE_SESSION: &str = "/v1/terminate_battle_session";
pub const PATH_PROCESS_ENDING: &str = "/v1/process_ending";
pub const PATH_DESCRIBE_BATTLE_SESSION: &str = "/v1/describe_battle_session";
/// Forking mode (the seed's ServerHostingForking module).
pub const PATH_FORKING_PROCESS_READY: &str = "/v1/forking/process_ready";
pub const PATH_QUERY_DS_INSTANCE_PER_CVM_CONFIG: &str =
    "/v1/forking/query_ds_instance_per_cvm_config";
pub const PATH_QUERY_AVAILABLE_DS_INSTANCE_COUNT: &str =
    "/v1/forking/query_available_ds_instance_count";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessReadyRequest {
    pub port: u16,
    #[serde(default)]
    pub log_paths: Vec<String>,
    /// Forking mode: the caller's own pid, when it is a forked process
    /// calling with its forking parent's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// The answer to ProcessReady. A forked process registering with its
/// parent's token gets its own identity: it uses `process_token` from then on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessReadyAnswer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_id: Option<ProcessId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_token: Option<String>,
    /// The forked process's own log directory (its `RESPAWN_LOG_DIR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
}

/// Body of the forking ProcessReady (a forking parent; no game port).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkingProcessReadyRequest {
    #[serde(default)]
    pub log_paths: Vec<String>,
}

/// Answer to QueryDsInstancePerCVMConfig.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsInstancePerCvm {
    /// Forked processes the fleet wants on this host (its `processes_per_host`).
    pub ds_instance_per_cvm: u32,
}

/// Answer to QueryAvailableDsInstanceCount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailableDsInstanceCount {
    /// Forked processes registered on this host and still running.
    pub available_ds_instance_count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthAnswer {
    pub seq: u64,
    pub healthy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BattleSessionRequest {
    pub battle_session_id: BattleSessionId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerBattleSessionRequest {
    pub battle_session_id: BattleSessionId,
    pub player_battle_session_id: PlayerBattleSessionId,
}

/// Body of every successful call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkOk {
    pub ok: bool,
}

/// Body of every failed call (4xx/5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkError {
    pub error: crate::agent::ErrorCode,
    pub message: String,
}

/// One line of the `GET /v1/events` NDJSON stream: a callback for the DS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SdkEvent {
    /// OnHealthCheck: answer with `POST /v1/health {seq, healthy}`.
    HealthCheck { seq: u64 },
    /// OnStartBattleSession: prepare, then `POST /v1/activate_battle_session`.
    StartBattleSession { battle_session: BattleSessionSpec },
    /// OnTerminateBattleSession.
    TerminateBattleSession { battle_session_id: BattleSessionId },
    /// OnProcessTerminate: shut down; the agent kills the process shortly after.
    ProcessTerminate { reason: String },
    /// OnBattleSessionUpdated: players were added to a battle session the
    /// process holds; `battle_session` is the session as it is now.
    BattleSessionUpdated { battle_session: BattleSessionSpec },
    /// OnPlayerBattleSessionsTerminated: the game backend ended these
    /// players' reservations (TerminatePlayerBattleSession); they are
    /// COMPLETED and will not be accepted again.
    PlayerBattleSessionsTerminated {
        battle_session_id: BattleSessionId,
        player_battle_session_ids: Vec<PlayerBattleSessionId>,
    },
    /// OnBattlePlayerOffline: the player's game client went offline.
    BattlePlayerOffline {
        battle_session_id: BattleSessionId,
        player_id: PlayerId,
        player_battle_session_id: PlayerBattleSessionId,
    },
    /// OnBattlePlayerBanned: the player was banned.
    BattlePlayerBanned {
        battle_session_id: BattleSessionId,
        player_id: PlayerId,
        player_battle_session_id: PlayerBattleSessionId,
        reason: String,
    },
}

impl SdkEvent {
    /// A notification about a battle session the process holds (the events
    /// a server may send through [`crate::agent::ServerToAgent::Notify`]).
    pub fn is_notification(&self) -> bool {
        matches!(
            self,
            SdkEvent::BattleSessionUpdated { .. }
                | SdkEvent::PlayerBattleSessionsTerminated { .. }
                | SdkEvent::BattlePlayerOffline { .. }
                | SdkEvent::BattlePlayerBanned { .. }
        )
    }
}

/// Answer of `POST /v1/describe_battle_session`: a battle session the
/// process holds, as the cluster has it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BattleSessionDescription {
    pub battle_session_id: BattleSessionId,
    pub placement_id: PlacementId,
    pub title_region_id: TitleRegionId,
    pub fleet_id: FleetId,
    /// ACTIVATING, ACTIVE or TERMINATED.
    pub status: crate::model::BattleSessionStatus,
    pub max_players: u32,
    pub properties: std::collections::BTreeMap<String, String>,
    /// Every player battle session of the session, with its status.
    pub players: Vec<PlayerDescription>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    /// Why it ended, once TERMINATED.
    pub termination_reason: Option<String>,
}

/// A player battle session in a [`BattleSessionDescription`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerDescription {
    pub player_id: PlayerId,
    pub player_battle_session_id: PlayerBattleSessionId,
    pub player_data: String,
    /// The player's team (empty: none).
    pub team: String,
    /// RESERVED, ACTIVE, DISCONNECTED or COMPLETED.
    pub status: crate::model::PlayerBattleSessionStatus,
}
