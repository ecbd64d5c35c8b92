//! Records of the replicated placement state and their status enums.
//!
//! Status names are the seed's (PENDING, ACTIVATING, ACTIVE, TERMINATED;
//! RESERVED, ACTIVE, DISCONNECTED, COMPLETED; FULFILLED, CANCELLED,
//! TIMED_OUT, FAILED) and serialize in upper case as PGOS shows them.

use crate::ids::*;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A title region: tenancy unit, owner of fleets and of one server key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TitleRegion {
    pub id: TitleRegionId,
    pub title_id: TitleId,
    pub name: String,
    pub title_name: String,
    /// Public half of the server key: sent in the `SecretId` header.
    pub secret_id: SecretId,
    /// Private half of the server key: never sent, only used to sign tickets.
    pub secret_key: String,
}

/// How many battle sessions a DS process may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMode {
    /// One battle session per process lifetime (the seed's simple mode).
    Simple,
    /// Up to `max_sessions` battle sessions at once.
    Parallel { max_sessions: u32 },
    /// Shared-memory mode (the seed's §5.1): the agent launches one forking
    /// parent per host, which holds no battle session; the processes it
    /// forks register with ProcessReady and each hosts one battle session
    /// in its lifetime, as in simple mode.
    Forking,
}

impl ServerMode {
    /// May a process that has hosted `lifetime` sessions, `current` of them
    /// not yet terminated, take one more?
    pub fn admits(self, lifetime: u32, current: u32) -> bool {
        match self {
            ServerMode::Simple | ServerMode::Forking => lifetime == 0,
            ServerMode::Parallel { max_sessions } => current < max_sessions,
        }
    }
}

/// How the agent runs a fleet's DS processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Executable to launch (absolute, or relative to the agent's working dir).
    pub launch_path: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables for the DS.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Number of DS processes the agent keeps running on each host.
    pub processes_per_host: u32,
}

/// A fleet and its settings. Timeouts are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    pub id: FleetId,
    pub title_region_id: TitleRegionId,
    pub name: String,
    pub mode: ServerMode,
    pub runtime: RuntimeConfig,
    /// A session not activated within this time is terminated (seed/GameLift: 1–600 s, default 60 s).
    pub activation_timeout_ms: u64,
    /// A placement that finds no process within this time is TIMED_OUT.
    pub placement_timeout_ms: u64,
    /// Agent asks each DS for its health this often (1–60 s, default 5 s).
    pub health_check_interval_ms: u64,
    /// After ProcessEnding, a process still alive after this long is killed (default 120 s).
    pub process_ending_grace_ms: u64,
    /// Processes a placement may try before it FAILS.
    pub max_placement_attempts: u32,
    /// How many processes the fleet should run.
    #[serde(default)]
    pub scaling: crate::scaling::ScalingPolicy,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// 1 when created, +1 on every change (set by the replicated state).
    #[serde(default)]
    pub version: u64,
    /// When the current version was made.
    #[serde(default)]
    pub updated_at: UnixMillis,
    /// Only in the copy sent to one agent (`Welcome`, `FleetUpdated`): the
    /// processes the autoscaler wants on that host (never above
    /// `processes_per_host`); `None`: `processes_per_host`. Always `None`
    /// in the replicated state.
    #[serde(default)]
    pub host_target: Option<u32>,
}

/// Lifecycle of a DS process as the cluster sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessStatus {
    /// Launched, ProcessReady not yet called.
    Launching,
    /// Ready to host battle sessions.
    Ready,
    /// The DS called ProcessEnding; it should exit within the grace.
    Ending,
    /// The cluster asked it to terminate (failed activation, cancelled session in simple mode).
    Terminating,
    /// Gone. Records are kept for history and never reused.
    Exited,
}

/// A process's part in its fleet's server mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessRole {
    /// Launched by the agent; hosts battle sessions (simple and parallel mode).
    #[default]
    Standalone,
    /// Launched by the agent in a forking fleet; forks the processes that
    /// host battle sessions and holds none itself.
    ForkingParent,
    /// Forked by the forking parent `parent` and registered by ProcessReady.
    Forked { parent: ProcessId },
}

impl ProcessRole {
    /// May a process of this role hold battle sessions?
    pub fn hosts_sessions(&self) -> bool {
        !matches!(self, ProcessRole::ForkingParent)
    }
}

/// Why a DS process is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The process exited by itself with this status (None: killed by a signal).
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Three consecutive failed health checks.
    Unhealthy,
    /// Still alive after the ProcessEnding grace.
    EndingGraceExpired,
    /// Killed on the cluster's request.
    Killed,
    /// Could not be started.
    LaunchFailed { error: String },
    /// Its agent re-registered without it, or the host was lost.
    Lost,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsProcess {
    pub id: ProcessId,
    pub fleet_id: FleetId,
    pub host_id: HostId,
    pub status: ProcessStatus,
    /// Address game clients connect to (the host's public address).
    pub ip: String,
    /// Port given in ProcessReady.
    pub port: Option<u16>,
    pub log_paths: Vec<String>,
    pub pid: Option<u32>,
    /// Battle sessions ever assigned to this process.
    pub sessions_hosted: u32,
    /// Battle sessions currently ACTIVATING or ACTIVE on it.
    pub sessions_current: u32,
    pub launched_at: UnixMillis,
    pub ending_since: Option<UnixMillis>,
    pub exit: Option<ExitReason>,
    /// When it was reported EXITED (retention counts from here).
    #[serde(default)]
    pub exited_at: Option<UnixMillis>,
    /// The fleet version it was launched with (0: not known, an adopted process).
    #[serde(default)]
    pub fleet_version: u64,
    /// Forking mode: a forking parent or a forked process.
    #[serde(default)]
    pub role: ProcessRole,
}

/// A host (one agent), as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: HostId,
    pub fleet_id: FleetId,
    /// Address game clients use to reach DS processes on this host.
    pub ip: String,
    pub registered_at: UnixMillis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BattleSessionStatus {
    Pending,
    Activating,
    Active,
    Terminated,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BattleSession {
    pub id: BattleSessionId,
    pub title_region_id: TitleRegionId,
    pub fleet_id: FleetId,
    pub placement_id: PlacementId,
    pub status: BattleSessionStatus,
    pub process_id: Option<ProcessId>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub max_players: u32,
    pub properties: BTreeMap<String, String>,
    pub created_at: UnixMillis,
    /// Set while ACTIVATING: when the activation times out.
    pub activation_deadline: Option<UnixMillis>,
    /// Processes this session's placement has tried.
    pub attempts: u32,
    pub terminated_at: Option<UnixMillis>,
    pub termination_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlacementStatus {
    Pending,
    Fulfilled,
    Cancelled,
    TimedOut,
    Failed,
}

impl PlacementStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, PlacementStatus::Pending)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub id: PlacementId,
    pub title_region_id: TitleRegionId,
    pub fleet_id: FleetId,
    pub battle_session_id: BattleSessionId,
    pub status: PlacementStatus,
    pub created_at: UnixMillis,
    /// When a PENDING placement becomes TIMED_OUT.
    pub deadline: UnixMillis,
    pub ended_at: Option<UnixMillis>,
    /// Why it FAILED (or was cancelled/timed out), for humans.
    pub reason: Option<String>,
    /// Player battle sessions created with the placement, in request order.
    pub player_battle_sessions: Vec<PlayerBattleSessionId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlayerBattleSessionStatus {
    Reserved,
    Active,
    Disconnected,
    Completed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerBattleSession {
    pub id: PlayerBattleSessionId,
    pub player_id: PlayerId,
    pub battle_session_id: BattleSessionId,
    pub title_region_id: TitleRegionId,
    pub status: PlayerBattleSessionStatus,
    pub player_data: String,
    /// The player's team (empty: none).
    #[serde(default)]
    pub team: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A player named in a placement or an AddPlayers request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerSpec {
    pub player_id: PlayerId,
    #[serde(default)]
    pub player_data: String,
    /// The team the player plays in (empty: none).
    #[serde(default)]
    pub team: String,
}
