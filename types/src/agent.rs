//! The protocol between an agent and the cluster, carried over QUIC.
//!
//! Each message is one bincode frame on its own bidirectional QUIC stream:
//! the side that opens the stream sends a request and reads one reply.
//! Agents open streams for [`AgentToServer`] (answered by [`ServerReply`]);
//! the server opens streams on the same connection for [`ServerToAgent`]
//! (answered by [`AgentReply`]). Every field is untrusted on receipt.

use crate::ids::*;
use crate::model::{ExitReason, Fleet};
use crate::vs::{VsInstanceReport, VsName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any incompatible change of the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame larger than this closes the link (1 MiB).
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// A process the agent is running, sent on (re)registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveProcess {
    pub process_id: ProcessId,
    pub pid: u32,
    /// Set once the process has called ProcessReady.
    pub port: Option<u16>,
    pub log_paths: Vec<String>,
    /// The DS called ProcessEnding.
    pub ending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHello {
    pub protocol_version: u32,
    pub host_id: HostId,
    /// Fleet whose processes this host runs.
    pub fleet_id: FleetId,
    /// Address game clients use to reach this host's DS processes.
    pub ip: String,
    pub live_processes: Vec<LiveProcess>,
    /// Virtual server instances the agent runs.
    pub live_vs: Vec<VsInstanceId>,
}

/// What the DS receives in OnStartBattleSession.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BattleSessionSpec {
    pub battle_session_id: BattleSessionId,
    pub placement_id: PlacementId,
    pub title_region_id: TitleRegionId,
    pub fleet_id: FleetId,
    pub max_players: u32,
    pub properties: BTreeMap<String, String>,
    pub players: Vec<PlayerSlot>,
    pub ip: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerSlot {
    pub player_id: PlayerId,
    pub player_battle_session_id: PlayerBattleSessionId,
    pub player_data: String,
}

/// Agent → server requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentToServer {
    /// First message on every connection; answered by [`ServerReply::Welcome`].
    Hello(AgentHello),
    ProcessStarted {
        process_id: ProcessId,
        pid: u32,
    },
    ProcessReady {
        process_id: ProcessId,
        port: u16,
        log_paths: Vec<String>,
    },
    ProcessExited {
        process_id: ProcessId,
        reason: ExitReason,
    },
    ProcessEnding {
        process_id: ProcessId,
    },
    ActivateBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
    },
    AcceptPlayerBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
        player_battle_session_id: PlayerBattleSessionId,
    },
    DisconnectPlayerBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
        player_battle_session_id: PlayerBattleSessionId,
    },
    RemovePlayerBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
        player_battle_session_id: PlayerBattleSessionId,
    },
    TerminateBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
    },
    /// A virtual server instance changed state.
    VsInstanceReport {
        instance_id: VsInstanceId,
        report: VsInstanceReport,
    },
    /// Resource use of the host's instances (for metrics), answered `Ok`.
    VsUsage {
        samples: Vec<VsUsageSample>,
    },
    /// Where can a VS of this title region be reached? Answered by
    /// [`ServerReply::VsEndpoints`]. The agent uses it to proxy calls from
    /// its DS processes and VS instances (intranet).
    ResolveVs {
        title_region_id: TitleRegionId,
        vs: VsName,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsUsageSample {
    pub instance_id: VsInstanceId,
    pub cpu_millicores: u32,
    pub memory_bytes: u64,
}

/// Machine-readable error kinds, shared by the wire protocol and the HTTP APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    InvalidState,
    NotLeader,
    Unavailable,
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Server → agent answer to an [`AgentToServer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerReply {
    Ok,
    /// Answer to Hello: the fleet the host serves, with its runtime config.
    Welcome {
        fleet: Fleet,
    },
    Err(WireError),
    /// Answer to ResolveVs: `host:port` of the VS's running instances.
    VsEndpoints {
        exists: bool,
        running: bool,
        title_id: String,
        endpoints: Vec<String>,
        /// Why no endpoint can serve, when `endpoints` is empty.
        reason: String,
    },
}

/// Server → agent commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerToAgent {
    /// Deliver OnStartBattleSession to the process.
    StartBattleSession {
        process_id: ProcessId,
        session: BattleSessionSpec,
    },
    /// Deliver OnTerminateBattleSession to the process.
    TerminateBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
    },
    /// Deliver OnProcessTerminate, then kill the process if it does not exit.
    TerminateProcess {
        process_id: ProcessId,
        reason: String,
    },
    /// Kill now (ProcessEnding grace expired).
    KillProcess { process_id: ProcessId },
    /// The fleet's configuration changed.
    FleetUpdated { fleet: Fleet },
    /// Run a virtual server instance (idempotent). The spec is a JSON
    /// [`crate::vs::VsInstanceSpec`], so that the spec's optional fields and
    /// defaults evolve without a protocol version bump.
    StartVsInstance { spec_json: String },
    /// Stop an instance; the agent reports `Stopped` (also for one it does not know).
    StopVsInstance { instance_id: VsInstanceId },
    /// Query instance logs: JSON query in, answered by [`AgentReply::VsLogs`].
    QueryVsLogs { query_json: String },
}

/// Agent → server answer to a [`ServerToAgent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentReply {
    Ok,
    Err(WireError),
    /// JSON array of log lines.
    VsLogs {
        lines_json: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn roundtrip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap();
        let (back, _): (T, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, v);
    }

    /// Every wire message must survive bincode (no internally tagged enums).
    #[test]
    fn wire_messages_roundtrip_through_bincode() {
        let fleet = Fleet {
            id: FleetId::new_unchecked("f"),
            title_region_id: TitleRegionId::new_unchecked("tr"),
            name: "f".into(),
            mode: ServerMode::Parallel { max_sessions: 3 },
            runtime: RuntimeConfig {
                launch_path: "/x".into(),
                args: vec!["a".into()],
                env: [("K".to_string(), "V".to_string())].into(),
                processes_per_host: 2,
            },
            activation_timeout_ms: 1,
            placement_timeout_ms: 2,
            health_check_interval_ms: 3,
            process_ending_grace_ms: 4,
            max_placement_attempts: 5,
            scaling: Default::default(),
            labels: Default::default(),
            version: 0,
            updated_at: 0,
        };
        roundtrip(ServerReply::Welcome {
            fleet: fleet.clone(),
        });
        roundtrip(ServerToAgent::FleetUpdated { fleet });
        for reason in [
            ExitReason::Exited {
                code: Some(1),
                signal: None,
            },
            ExitReason::Unhealthy,
            ExitReason::LaunchFailed { error: "x".into() },
            ExitReason::Lost,
        ] {
            roundtrip(AgentToServer::ProcessExited {
                process_id: ProcessId::new_unchecked("p"),
                reason,
            });
        }
        roundtrip(ServerReply::Err(WireError::new(ErrorCode::Forbidden, "no")));
    }
}
