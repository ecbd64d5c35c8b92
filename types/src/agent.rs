//! The protocol between an agent and the cluster, carried over QUIC.
//!
//! Each message is one bincode frame on its own bidirectional QUIC stream:
//! the side that opens the stream sends a request and reads one reply.
//! Agents open streams for [`AgentToServer`] (answered by [`ServerReply`]);
//! the server opens streams on the same connection for [`ServerToAgent`]
//! (answered by [`AgentReply`]). Every field is untrusted on receipt.

use crate::ids::*;
use crate::model::{ExitReason, Fleet, ProcessRole};
use crate::vs::{VsInstanceReport, VsName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any incompatible change of the messages below.
pub const PROTOCOL_VERSION: u32 = 2;

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
    /// Forking mode: a ready forking parent, or a forked process.
    #[serde(default)]
    pub role: ProcessRole,
}

/// One log file the agent keeps for a DS process (`ListDsLogs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsLogFile {
    /// Its name in the process's log directory (`stdout.log`,
    /// `stderr.log`, rotated ones, `collected/<n>-<file name>`).
    pub name: String,
    pub size: u64,
    /// Last modified, Unix milliseconds.
    pub modified: u64,
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
    /// The teams of `players`, in the order they first appear (players
    /// without a team are in none).
    #[serde(default)]
    pub teams: Vec<Team>,
    pub ip: String,
    pub port: u16,
}

/// A team of a battle session: its name and members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub player_battle_session_ids: Vec<PlayerBattleSessionId>,
}

impl Team {
    /// The teams of `players`, by first appearance.
    pub fn of(players: &[PlayerSlot]) -> Vec<Team> {
        let mut teams: Vec<Team> = Vec::new();
        for p in players.iter().filter(|p| !p.team.is_empty()) {
            match teams.iter_mut().find(|t| t.name == p.team) {
                Some(t) => t
                    .player_battle_session_ids
                    .push(p.player_battle_session_id.clone()),
                None => teams.push(Team {
                    name: p.team.clone(),
                    player_battle_session_ids: vec![p.player_battle_session_id.clone()],
                }),
            }
        }
        teams
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerSlot {
    pub player_id: PlayerId,
    pub player_battle_session_id: PlayerBattleSessionId,
    pub player_data: String,
    /// The player's team (empty: none).
    #[serde(default)]
    pub team: String,
}

/// Agent → server requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentToServer {
    /// First message on every connection; answered by [`ServerReply::Welcome`].
    Hello(AgentHello),
    ProcessStarted {
        process_id: ProcessId,
        pid: u32,
        /// The version of the fleet it was launched with.
        #[serde(default)]
        fleet_version: u64,
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
    /// A DS asks about a battle session it holds; answered by
    /// [`ServerReply::BattleSession`].
    DescribeBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
    },
    /// Drain this host (`true`: no new session, idle processes asked to
    /// terminate, busy ones finish) or end its drain (`false`): what
    /// `POST /admin/hosts/{host_id}/drain|undrain` do, asked by the agent
    /// itself (on SIGTERM, and when it starts again after that drain).
    SetDraining {
        draining: bool,
    },
    /// Forking mode: a process forked by `parent_id` registered with
    /// ProcessReady; the agent gave it `process_id` (a ProcessReady report follows).
    ProcessForked {
        process_id: ProcessId,
        parent_id: ProcessId,
        pid: u32,
    },
    /// Forking mode: the launched process called the forking ProcessReady.
    ForkingParentReady {
        process_id: ProcessId,
        log_paths: Vec<String>,
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
    /// The record existed but is no longer kept (past the retention window).
    Expired,
    /// A bound on outstanding requests was reached; retry later.
    TooManyRequests,
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
// `Welcome` carries a whole fleet (its scaling policy included): it is
// answered once per connection, so its size does not matter; boxing it
// would only change every agent's match on it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerReply {
    Ok,
    /// Answer to Hello: the fleet the host serves, with its runtime config.
    Welcome {
        fleet: Fleet,
    },
    Err(WireError),
    /// Answer to DescribeBattleSession: a JSON
    /// [`crate::sdk::BattleSessionDescription`].
    BattleSession {
        description_json: String,
    },
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
    /// Deliver a notification about a battle session the process holds: a
    /// JSON [`crate::sdk::SdkEvent`] for which `is_notification()` holds
    /// (JSON because that enum is internally tagged, which bincode cannot carry).
    Notify {
        process_id: ProcessId,
        event_json: String,
    },
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
    /// The log files kept for a DS process; answered by [`AgentReply::DsLogFiles`].
    ListDsLogs { process_id: ProcessId },
    /// Up to `len` bytes (at most [`MAX_LOG_CHUNK`]) of one of them from
    /// `offset`; answered by [`AgentReply::DsLogChunk`].
    ReadDsLog {
        process_id: ProcessId,
        name: String,
        offset: u64,
        len: u32,
    },
}

/// Largest chunk of a DS log file one `ReadDsLog` returns (512 KiB, under
/// the frame cap).
pub const MAX_LOG_CHUNK: u32 = 512 * 1024;

/// Agent → server answer to a [`ServerToAgent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentReply {
    Ok,
    Err(WireError),
    /// JSON array of log lines.
    VsLogs {
        lines_json: String,
    },
    DsLogFiles {
        files: Vec<DsLogFile>,
    },
    /// `data` from the requested offset; `size` is the file's whole size.
    DsLogChunk {
        data: Vec<u8>,
        size: u64,
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
            host_target: None,
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

    fn pid() -> ProcessId {
        ProcessId::new_unchecked("p")
    }
    fn bsid() -> BattleSessionId {
        BattleSessionId::new_unchecked("bs")
    }
    fn pbs() -> PlayerBattleSessionId {
        PlayerBattleSessionId::new_unchecked("pbs")
    }
    fn inst() -> VsInstanceId {
        VsInstanceId::new_unchecked("vsi")
    }

    /// Which variant, numbered: exhaustive (no `_`), so a new message does
    /// not compile until it is added to the test below.
    fn a2s(m: &AgentToServer) -> usize {
        use AgentToServer::*;
        match m {
            Hello(_) => 0,
            ProcessStarted { .. } => 1,
            ProcessReady { .. } => 2,
            ProcessExited { .. } => 3,
            ProcessEnding { .. } => 4,
            ActivateBattleSession { .. } => 5,
            AcceptPlayerBattleSession { .. } => 6,
            DisconnectPlayerBattleSession { .. } => 7,
            RemovePlayerBattleSession { .. } => 8,
            TerminateBattleSession { .. } => 9,
            VsInstanceReport { .. } => 10,
            VsUsage { .. } => 11,
            ResolveVs { .. } => 12,
            DescribeBattleSession { .. } => 13,
            SetDraining { .. } => 14,
            ProcessForked { .. } => 15,
            ForkingParentReady { .. } => 16,
        }
    }
    fn s2a(m: &ServerToAgent) -> usize {
        use ServerToAgent::*;
        match m {
            StartBattleSession { .. } => 0,
            TerminateBattleSession { .. } => 1,
            TerminateProcess { .. } => 2,
            KillProcess { .. } => 3,
            FleetUpdated { .. } => 4,
            StartVsInstance { .. } => 5,
            StopVsInstance { .. } => 6,
            QueryVsLogs { .. } => 7,
            Notify { .. } => 8,
            ListDsLogs { .. } => 9,
            ReadDsLog { .. } => 10,
        }
    }
    fn reply(m: &ServerReply) -> usize {
        match m {
            ServerReply::Ok => 0,
            ServerReply::Welcome { .. } => 1,
            ServerReply::Err(_) => 2,
            ServerReply::VsEndpoints { .. } => 3,
            ServerReply::BattleSession { .. } => 4,
        }
    }
    fn agent_reply(m: &AgentReply) -> usize {
        match m {
            AgentReply::Ok => 0,
            AgentReply::Err(_) => 1,
            AgentReply::VsLogs { .. } => 2,
            AgentReply::DsLogFiles { .. } => 3,
            AgentReply::DsLogChunk { .. } => 4,
        }
    }

    /// Every variant of every message, each through bincode and back.
    #[test]
    fn every_wire_message_roundtrips() {
        let agent_to_server = vec![
            AgentToServer::Hello(AgentHello {
                protocol_version: PROTOCOL_VERSION,
                host_id: HostId::new_unchecked("h"),
                fleet_id: FleetId::new_unchecked("f"),
                ip: "10.0.0.1".into(),
                live_processes: vec![LiveProcess {
                    process_id: pid(),
                    pid: 7,
                    port: Some(7000),
                    log_paths: vec!["/l".into()],
                    ending: true,
                    role: ProcessRole::Forked { parent: pid() },
                }],
                live_vs: vec![inst()],
            }),
            AgentToServer::ProcessStarted {
                process_id: pid(),
                pid: 7,
                fleet_version: 3,
            },
            AgentToServer::ProcessReady {
                process_id: pid(),
                port: 7000,
                log_paths: vec!["/l".into()],
            },
            AgentToServer::ProcessExited {
                process_id: pid(),
                reason: ExitReason::Exited {
                    code: None,
                    signal: Some(9),
                },
            },
            AgentToServer::ProcessExited {
                process_id: pid(),
                reason: ExitReason::EndingGraceExpired,
            },
            AgentToServer::ProcessExited {
                process_id: pid(),
                reason: ExitReason::Killed,
            },
            AgentToServer::ProcessEnding { process_id: pid() },
            AgentToServer::ActivateBattleSession {
                process_id: pid(),
                battle_session_id: bsid(),
            },
            AgentToServer::AcceptPlayerBattleSession {
                process_id: pid(),
                battle_session_id: bsid(),
                player_battle_session_id: pbs(),
            },
            AgentToServer::DisconnectPlayerBattleSession {
                process_id: pid(),
                battle_session_id: bsid(),
                player_battle_session_id: pbs(),
            },
            AgentToServer::RemovePlayerBattleSession {
                process_id: pid(),
                battle_session_id: bsid(),
                player_battle_session_id: pbs(),
            },
            AgentToServer::TerminateBattleSession {
                process_id: pid(),
                battle_session_id: bsid(),
            },
            AgentToServer::VsInstanceReport {
                instance_id: inst(),
                report: VsInstanceReport::Deploying,
            },
            AgentToServer::VsInstanceReport {
                instance_id: inst(),
                report: VsInstanceReport::Running {
                    port: 8080,
                    limits: "cgroup2".into(),
                },
            },
            AgentToServer::VsInstanceReport {
                instance_id: inst(),
                report: VsInstanceReport::Abnormal {
                    reason: "CRASHED".into(),
                    detail: "exit 1".into(),
                },
            },
            AgentToServer::VsInstanceReport {
                instance_id: inst(),
                report: VsInstanceReport::Stopped,
            },
            AgentToServer::VsUsage {
                samples: vec![VsUsageSample {
                    instance_id: inst(),
                    cpu_millicores: 250,
                    memory_bytes: 1 << 20,
                }],
            },
            AgentToServer::ResolveVs {
                title_region_id: TitleRegionId::new_unchecked("tr"),
                vs: VsName::parse("vs-a").unwrap(),
            },
            AgentToServer::DescribeBattleSession {
                process_id: pid(),
                battle_session_id: bsid(),
            },
            AgentToServer::SetDraining { draining: true },
            AgentToServer::SetDraining { draining: false },
            AgentToServer::ProcessForked {
                process_id: pid(),
                parent_id: pid(),
                pid: 8,
            },
            AgentToServer::ForkingParentReady {
                process_id: pid(),
                log_paths: vec!["/l".into()],
            },
        ];
        let server_to_agent = vec![
            ServerToAgent::StartBattleSession {
                process_id: pid(),
                session: BattleSessionSpec {
                    battle_session_id: bsid(),
                    placement_id: PlacementId::new_unchecked("pl"),
                    title_region_id: TitleRegionId::new_unchecked("tr"),
                    fleet_id: FleetId::new_unchecked("f"),
                    max_players: 4,
                    properties: [("k".to_string(), "v".to_string())].into(),
                    players: vec![PlayerSlot {
                        player_id: PlayerId::new_unchecked("alice"),
                        player_battle_session_id: pbs(),
                        player_data: "{}".into(),
                        team: "red".into(),
                    }],
                    teams: vec![Team {
                        name: "red".into(),
                        player_battle_session_ids: vec![pbs()],
                    }],
                    ip: "10.0.0.1".into(),
                    port: 7000,
                },
            },
            ServerToAgent::TerminateBattleSession {
                process_id: pid(),
                battle_session_id: bsid(),
            },
            ServerToAgent::TerminateProcess {
                process_id: pid(),
                reason: "scale in".into(),
            },
            ServerToAgent::KillProcess { process_id: pid() },
            ServerToAgent::StartVsInstance {
                spec_json: "{}".into(),
            },
            ServerToAgent::StopVsInstance {
                instance_id: inst(),
            },
            ServerToAgent::QueryVsLogs {
                query_json: "{}".into(),
            },
            ServerToAgent::Notify {
                process_id: pid(),
                event_json: "{}".into(),
            },
            ServerToAgent::ListDsLogs { process_id: pid() },
            ServerToAgent::ReadDsLog {
                process_id: pid(),
                name: "stdout.log".into(),
                offset: 3,
                len: 10,
            },
        ];
        let replies = vec![
            ServerReply::Ok,
            ServerReply::VsEndpoints {
                exists: true,
                running: false,
                title_id: "t".into(),
                endpoints: vec!["10.0.0.1:8080".into()],
                reason: "deploying".into(),
            },
            ServerReply::BattleSession {
                description_json: "{}".into(),
            },
        ];
        let agent_replies = vec![
            AgentReply::Ok,
            AgentReply::Err(WireError::new(ErrorCode::NotFound, "no such process")),
            AgentReply::VsLogs {
                lines_json: "[]".into(),
            },
            AgentReply::DsLogFiles {
                files: vec![DsLogFile {
                    name: "stdout.log".into(),
                    size: 3,
                    modified: 4,
                }],
            },
            AgentReply::DsLogChunk {
                data: b"abc".to_vec(),
                size: 3,
            },
        ];
        let mut seen = std::collections::BTreeSet::new();
        for m in agent_to_server {
            seen.insert(("AgentToServer", a2s(&m)));
            roundtrip(m);
        }
        for m in server_to_agent {
            seen.insert(("ServerToAgent", s2a(&m)));
            roundtrip(m);
        }
        for m in replies {
            seen.insert(("ServerReply", reply(&m)));
            roundtrip(m);
        }
        for m in agent_replies {
            seen.insert(("AgentReply", agent_reply(&m)));
            roundtrip(m);
        }
        // The other test covers Welcome, Err (ServerReply) and FleetUpdated.
        seen.insert(("ServerReply", 1));
        seen.insert(("ServerReply", 2));
        seen.insert(("ServerToAgent", 4));
        for (name, n) in [
            ("AgentToServer", 17),
            ("ServerToAgent", 11),
            ("ServerReply", 5),
            ("AgentReply", 5),
        ] {
            for i in 0..n {
                assert!(seen.contains(&(name, i)), "{name} variant {i} not covered");
            }
        }
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::InvalidState,
            ErrorCode::NotLeader,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            roundtrip(ServerReply::Err(WireError::new(code, "x")));
        }
    }
}
