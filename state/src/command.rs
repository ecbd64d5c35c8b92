//! Commands: every change to the cluster state is one of these, committed
//! through Raft and applied by `ClusterState::apply`; with the answer to the
//! proposer ([`Response`]) and the [`Event`]s that the actors react to.

pub use crate::retention::{PruneBatch, RetentionWindows};
use respawn_types::agent::LiveProcess;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A log entry's payload: a command stamped with the proposer's clock.
///
/// `at` is chosen once, by the node that proposes, so applying the same log
/// on every node gives the same state (deadlines derive from it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub at: UnixMillis,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace a title region (its key included).
    PutTitleRegion(TitleRegion),
    /// Create a fleet (version 1) or change it (a new version; the same
    /// definition again changes nothing).
    PutFleet(Fleet),
    /// Delete a fleet. Refused (conflict) while a session is ACTIVATING or
    /// ACTIVE on it, unless `force`: then its live processes are asked to
    /// terminate and their sessions end.
    DeleteFleet {
        fleet_id: FleetId,
        #[serde(default)]
        force: bool,
    },
    /// Start (`draining`) or end a host's drain: a draining host takes no
    /// new session, its idle processes are asked to terminate, its busy
    /// ones finish.
    SetHostDraining {
        host_id: HostId,
        draining: bool,
    },
    /// An agent (re)registered. Processes of this host that are not in
    /// `live` and not yet exited are reconciled as lost; unknown live ones are adopted.
    RegisterHost {
        host: Host,
        live: Vec<LiveProcess>,
        /// Virtual server instances the agent is running.
        #[serde(default)]
        live_vs: Vec<VsInstanceId>,
    },
    /// The host's agent link is now held by server node `node_id` (commands
    /// for the host's processes are delivered through that node).
    HostLinked {
        host_id: HostId,
        node_id: NodeId,
    },
    ProcessStarted {
        process_id: ProcessId,
        host_id: HostId,
        pid: u32,
        /// The fleet version it was launched with (0: the fleet's current one).
        #[serde(default)]
        fleet_version: u64,
    },
    /// The autoscaler's decision for a fleet: per-host process targets
    /// (empty: every host runs `processes_per_host`), the idle processes to
    /// stop (a process that holds a session when this applies is skipped,
    /// never stopped: invariant 2) and the decision record.
    Autoscale {
        fleet_id: FleetId,
        targets: BTreeMap<HostId, u32>,
        stop: Vec<(ProcessId, String)>,
        decision: respawn_types::scaling::ScalingDecision,
    },
    /// An operator's desired process count for a fleet (`None`: back to the policy).
    SetFleetDesired {
        fleet_id: FleetId,
        desired: Option<u32>,
    },
    /// The autoscaler's scale-in clock of a fleet: since when it has had
    /// more processes than desired (`None`: no surplus now). Committed when
    /// a surplus begins and when it ends, so a new leader counts the same
    /// scale-in delay.
    SetScaleInClock {
        fleet_id: FleetId,
        surplus_since: Option<UnixMillis>,
    },
    ProcessReady {
        process_id: ProcessId,
        port: u16,
        log_paths: Vec<String>,
    },
    /// Forking mode: a process forked by `parent_id` (a forking parent of
    /// the same host) registered; it is LAUNCHING until its ProcessReady.
    ProcessForked {
        process_id: ProcessId,
        host_id: HostId,
        parent_id: ProcessId,
        pid: u32,
    },
    /// Forking mode: the launched process is a forking parent: READY, and
    /// never placeable.
    ForkingParentReady {
        process_id: ProcessId,
        log_paths: Vec<String>,
    },
    ProcessEnding {
        process_id: ProcessId,
    },
    /// The cluster asks a process to go away (it will report its exit).
    ProcessTerminating {
        process_id: ProcessId,
        reason: String,
    },
    ProcessExited {
        process_id: ProcessId,
        reason: ExitReason,
    },
    /// Reserve a battle session id for a title region (RequestBattleSessionID).
    IssueBattleSessionId {
        title_region_id: TitleRegionId,
        battle_session_id: BattleSessionId,
        /// Most ids issued and not yet used a title region may hold; past
        /// it the command is refused ([`Rejection::TooMany`]). `None`: no cap.
        #[serde(default)]
        max_outstanding: Option<u32>,
    },
    StartPlacement(StartPlacement),
    /// The fleet's placement policy chose `process_id` for a PENDING placement.
    AssignPlacement {
        placement_id: PlacementId,
        process_id: ProcessId,
    },
    /// The DS on `process_id` called ActivateBattleSession.
    ActivateBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
    },
    /// The ACTIVATING attempt on `process_id` passed its deadline.
    ActivationTimedOut {
        battle_session_id: BattleSessionId,
        process_id: ProcessId,
    },
    PlacementTimedOut {
        placement_id: PlacementId,
    },
    CancelPlacement {
        title_region_id: TitleRegionId,
        placement_id: PlacementId,
    },
    AddPlayers {
        title_region_id: TitleRegionId,
        battle_session_id: BattleSessionId,
        players: Vec<(PlayerBattleSessionId, PlayerSpec)>,
    },
    /// DS-side player calls (AcceptPlayerBattleSession and friends).
    PlayerUpdate {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
        player_battle_session_id: PlayerBattleSessionId,
        action: PlayerAction,
    },
    /// Backend-side TerminatePlayerBattleSession.
    TerminatePlayerBattleSession {
        title_region_id: TitleRegionId,
        battle_session_id: BattleSessionId,
        player_battle_session_id: PlayerBattleSessionId,
    },
    /// The DS ended one battle session (parallel mode's TerminateBattleSession).
    TerminateBattleSession {
        process_id: ProcessId,
        battle_session_id: BattleSessionId,
    },
    /// Create a virtual server (version 1, running) or update it (a new version).
    PutVirtualServer {
        title_region_id: TitleRegionId,
        name: VsName,
        spec: VsSpec,
    },
    /// Start or stop a virtual server.
    SetVirtualServerDesired {
        title_region_id: TitleRegionId,
        name: VsName,
        desired: VsDesired,
    },
    DeleteVirtualServer {
        title_region_id: TitleRegionId,
        name: VsName,
    },
    /// Create or change a VS storage. `password`: the generated password a
    /// new managed Redis gets (an existing one keeps its own).
    PutStorage {
        title_region_id: TitleRegionId,
        name: StorageName,
        spec: StorageSpec,
        password: String,
    },
    /// Delete a VS storage; refused while a virtual server names it, unless `force`.
    DeleteStorage {
        title_region_id: TitleRegionId,
        name: StorageName,
        force: bool,
    },
    /// The autoscaler's decision: this many instances (clamped to 1..=max).
    ScaleVirtualServer {
        title_region_id: TitleRegionId,
        name: VsName,
        scale: u32,
    },
    /// The scheduler chose `host_id` for a new instance of the current version.
    PlaceVsInstance {
        instance_id: VsInstanceId,
        title_region_id: TitleRegionId,
        name: VsName,
        version: u64,
        host_id: HostId,
    },
    /// The scheduler wants an instance gone (surplus, old version, stopped VS).
    RetireVsInstance {
        instance_id: VsInstanceId,
        reason: String,
    },
    /// An agent reports an instance's state.
    ReportVsInstance {
        instance_id: VsInstanceId,
        host_id: HostId,
        report: VsInstanceReport,
    },
    PutEventHandler(EventHandler),
    DeleteEventHandler {
        title_region_id: TitleRegionId,
        name: VsName,
    },
    PutTask {
        title_region_id: TitleRegionId,
        name: VsName,
        vs: VsName,
        schedule: TaskSchedule,
        args: String,
        enabled: bool,
    },
    DeleteTask {
        title_region_id: TitleRegionId,
        name: VsName,
    },
    /// Removes records past their retention window and issued battle
    /// session ids past theirs (the leader's bounded batch, see
    /// `crate::retention`). Each is checked again against `at`; one that
    /// is not prunable (any more) is skipped.
    Prune(PruneBatch),
    /// One delivery attempt of an event or a task. `pop_seq` removes the
    /// outbox head with that sequence number (delivered, or given up).
    RecordTrigger {
        title_region_id: TitleRegionId,
        record: TriggerRecord,
        pop_seq: Option<u64>,
        /// The task that fired (its `last_fired_at` becomes `record.at`).
        task: Option<VsName>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlayerAction {
    Accept,
    Disconnect,
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartPlacement {
    pub placement_id: PlacementId,
    pub title_region_id: TitleRegionId,
    pub fleet_id: FleetId,
    pub battle_session_id: BattleSessionId,
    pub max_players: u32,
    pub properties: BTreeMap<String, String>,
    /// Players with the player battle session ids minted for them.
    pub players: Vec<(PlayerBattleSessionId, PlayerSpec)>,
    /// Overrides the fleet's placement timeout when set.
    pub timeout_ms: Option<u64>,
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("{kind} '{id}' not found")]
    NotFound { kind: String, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    BadRequest(String),
    /// The record existed but was removed after its retention window.
    #[error("{kind} '{id}' has expired: it ended more than the retention window ago and is no longer kept")]
    Expired { kind: String, id: String },
    /// A bound on outstanding records was reached (issued battle session ids).
    #[error("{0}")]
    TooMany(String),
    /// The caller may not act on this record (a DS process on a battle
    /// session of another process).
    #[error("{0}")]
    Forbidden(String),
}

impl Rejection {
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        Rejection::NotFound {
            kind: kind.to_string(),
            id: id.to_string(),
        }
    }

    /// `Expired` when `expired`, else `NotFound`.
    pub fn missing(kind: &str, id: impl std::fmt::Display, expired: bool) -> Self {
        if expired {
            Rejection::Expired {
                kind: kind.to_string(),
                id: id.to_string(),
            }
        } else {
            Rejection::not_found(kind, id)
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Rejection::BadRequest(msg.into())
    }

    pub fn invalid_state(msg: impl Into<String>) -> Self {
        Rejection::InvalidState(msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Rejection::Forbidden(msg.into())
    }
}

/// What an applied command answers its proposer.
pub type Response = Result<Applied, Rejection>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Done,
    /// The command made no change (a repeated report, say).
    Unchanged,
}

/// What happened, emitted by `apply` for the actors and agent links of every
/// node. The committed log is the bus: side effects come from these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    TitleRegionPut {
        title_region_id: TitleRegionId,
    },
    FleetPut {
        fleet_id: FleetId,
    },
    FleetDeleted {
        fleet_id: FleetId,
    },
    HostDraining {
        host_id: HostId,
        draining: bool,
    },
    /// A fleet's per-host process targets changed: tell its agents.
    ProcessTargetsChanged {
        fleet_id: FleetId,
    },
    HostLinked {
        host_id: HostId,
        node_id: NodeId,
    },
    ProcessChanged {
        process_id: ProcessId,
        status: ProcessStatus,
    },
    PlacementCreated {
        placement_id: PlacementId,
        fleet_id: FleetId,
    },
    /// A session was assigned to a process: deliver OnStartBattleSession.
    SessionAssigned {
        battle_session_id: BattleSessionId,
        process_id: ProcessId,
    },
    SessionActivated {
        battle_session_id: BattleSessionId,
        process_id: ProcessId,
    },
    /// A session attempt on a process was withdrawn (activation timeout,
    /// cancel, DS gone); the DS must be told if it is still alive.
    SessionRevoked {
        battle_session_id: BattleSessionId,
        process_id: ProcessId,
    },
    SessionTerminated {
        battle_session_id: BattleSessionId,
    },
    PlacementFinished {
        placement_id: PlacementId,
        status: PlacementStatus,
    },
    /// A placement needs a process again (new or retried).
    PlacementNeedsProcess {
        placement_id: PlacementId,
        fleet_id: FleetId,
    },
    PlayerChanged {
        player_battle_session_id: PlayerBattleSessionId,
        status: PlayerBattleSessionStatus,
    },
    /// The game backend added players to a battle session
    /// (OnBattleSessionUpdated for the process holding it).
    PlayersAdded {
        battle_session_id: BattleSessionId,
    },
    /// The game backend ended player battle sessions
    /// (OnPlayerBattleSessionsTerminated for the process holding it).
    PlayersTerminated {
        battle_session_id: BattleSessionId,
        player_battle_session_ids: Vec<PlayerBattleSessionId>,
    },
    /// A virtual server's definition, desired state or scale changed (or it was deleted).
    VsChanged {
        title_region_id: TitleRegionId,
        name: VsName,
    },
    /// An instance changed status. `Deploying` right after placement means
    /// "start it on the host"; `Stopping` means "stop it"; `removed` means
    /// the record is gone.
    VsInstanceChanged {
        instance_id: VsInstanceId,
        host_id: HostId,
        status: VsInstanceStatus,
        removed: bool,
    },
    /// The agent of `host_id` runs an instance the state does not know: stop it.
    VsInstanceOrphaned {
        instance_id: VsInstanceId,
        host_id: HostId,
    },
    /// A title region's event outbox has new events.
    OutboxAppended {
        title_region_id: TitleRegionId,
    },
    /// Event handlers or tasks of a title region changed.
    TriggersChanged {
        title_region_id: TitleRegionId,
    },
}
