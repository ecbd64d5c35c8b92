//! [`Consensus`]: one Raft member with its durable stores, and the API the
//! rest of Respawn uses (propose, read, events, waits).

use crate::batcher::{Committed, ProposalBatcher};
use crate::compaction::{self, SnapshotTrigger};
use crate::db::Closed;
use crate::error::{client_write_error, fatal, ConsensusError};
use crate::log_store::{LogProbe, LogStore, LogStoreStats};
use crate::read_batcher::ReadIndexBatcher;
use crate::rpc::{RaftRpc, WireReply, MAX_RPC_LEN};
use crate::sm::{EventSink, StateHandle, StateMachineStore};
use crate::types::{NodeInfo, Raft, RaftMetrics, TypeConfig};
use bytes::Bytes;
use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::{RaftNetworkFactory, ServerState, SnapshotPolicy};
use respawn_state::ClusterState;
use respawn_state::{Applied, Command, Request};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// File name of the Raft log inside the data directory.
pub const LOG_FILE: &str = "raft.redb";
/// File name of the latest snapshot inside the data directory.
pub const SNAPSHOT_FILE: &str = crate::snapshot_store::SNAPSHOT_DATA_FILE;

/// How long [`Consensus::shutdown`] waits for the store files to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Raft timing and log compaction settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftSettings {
    /// Name of the cluster (for logs and metrics).
    pub cluster_name: String,
    /// The leader sends heartbeats this often (ms).
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in
    /// `[election_timeout_min_ms, election_timeout_max_ms)` starts an election.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Timeout for sending and installing a snapshot on a follower (ms).
    pub install_snapshot_timeout_ms: u64,
    /// When openraft builds a snapshot by itself (default: every 5000 log
    /// entries). An entry holds up to `max_batch` commands, so
    /// `snapshot_trigger` bounds the log by commands and bytes as well.
    pub snapshot_policy: SnapshotPolicy,
    /// Snapshots after so many commands or log bytes since the last one
    /// ([`crate::compaction`]).
    pub snapshot_trigger: SnapshotTrigger,
    /// Log entries kept after a snapshot, so that a slightly lagging
    /// follower catches up from the log rather than a snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Most proposals packed into one log entry.
    pub max_batch: usize,
    /// Largest piece of a snapshot sent to a follower in one RPC (bytes).
    /// Must leave room in a node frame (16 MiB) for the RPC around it.
    pub snapshot_chunk_bytes: u64,
    /// Most log entries sent to a follower in one AppendEntries (each
    /// entry holds up to `max_batch` requests). Requests above 1 MiB
    /// encoded are split further (`rpc::APPEND_ENTRIES_BUDGET`).
    pub max_payload_entries: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            cluster_name: "respawn".into(),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            install_snapshot_timeout_ms: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
            snapshot_trigger: SnapshotTrigger::default(),
            max_in_snapshot_log_to_keep: 1000,
            max_batch: 512,
            snapshot_chunk_bytes: 4 * 1024 * 1024,
            max_payload_entries: 64,
        }
    }
}

/// Room left in a frame for the snapshot chunk's header (vote, snapshot
/// meta with the membership).
const SNAPSHOT_CHUNK_HEADROOM: u64 = 1024 * 1024;

impl RaftSettings {
    /// The openraft configuration, validated.
    pub fn to_openraft(&self) -> Result<openraft::Config, ConsensusError> {
        let config = openraft::Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            snapshot_policy: self.snapshot_policy.clone(),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            max_payload_entries: self.max_payload_entries,
            ..Default::default()
        };
        let max_chunk = MAX_RPC_LEN as u64 - SNAPSHOT_CHUNK_HEADROOM;
        if self.snapshot_chunk_bytes == 0 || self.snapshot_chunk_bytes > max_chunk {
            return Err(ConsensusError::Config(format!(
                "snapshot_chunk_bytes must be in 1..={max_chunk}, not {}",
                self.snapshot_chunk_bytes
            )));
        }
        config
            .validate()
            .map_err(|e| ConsensusError::Config(e.to_string()))
    }
}

/// The cluster membership as this member last applied or appended it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// Members that vote (during a joint change: of either config).
    pub voters: BTreeSet<u64>,
    /// Members that receive the log but do not vote.
    pub learners: BTreeSet<u64>,
    /// What every member (voter or learner) advertises.
    pub nodes: BTreeMap<u64, NodeInfo>,
    /// True during a joint change (old and new voter sets both count).
    pub joint: bool,
    /// Log index of the entry that set this membership.
    pub log_index: Option<u64>,
}

/// One Raft member: the `openraft::Raft` node, its redb log and snapshot
/// files in one directory, and the applied [`ClusterState`].
///
/// Cloning is cheap; clones share the node.
#[derive(Clone)]
pub struct Consensus {
    node_id: u64,
    raft: Raft,
    state: StateHandle,
    batcher: ProposalBatcher,
    reads: ReadIndexBatcher,
    log: LogProbe,
    closed: Vec<Closed>,
}

fn wait_error(e: WaitError) -> ConsensusError {
    match e {
        WaitError::Timeout(..) => ConsensusError::Timeout(e.to_string()),
        WaitError::ShuttingDown => ConsensusError::ShuttingDown,
    }
}

impl Consensus {
    /// Opens the stores in `dir` (creating it and them if needed), loads
    /// the latest snapshot, and starts the Raft node; committed entries
    /// after the snapshot are re-applied before this returns.
    ///
    /// `network` is how openraft reaches the other members
    /// ([`crate::SingleNodeNetwork`] for a cluster of one). Must be called
    /// inside a Tokio runtime. Before opening the same `dir` again in this
    /// process, await [`Consensus::shutdown`].
    pub async fn open<N>(
        node_id: u64,
        dir: &Path,
        settings: RaftSettings,
        network: N,
    ) -> Result<Consensus, ConsensusError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let config = settings.to_openraft()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| ConsensusError::Storage(format!("create {}: {e}", dir.display())))?;
        let (log_store, log_closed) = LogStore::open(&dir.join(LOG_FILE))?;
        let log = log_store.probe();
        let (sm, sm_closed) = StateMachineStore::open(dir)?;
        let state = sm.handle();
        let raft = openraft::Raft::new(node_id, Arc::new(config), network, log_store, sm)
            .await
            .map_err(fatal)?;
        let batcher = ProposalBatcher::spawn(raft.clone(), settings.max_batch);
        let reads = ReadIndexBatcher::spawn(raft.clone());
        compaction::spawn_watcher(
            raft.clone(),
            compaction::Counters {
                state: state.clone(),
                log: log.clone(),
            },
            settings.snapshot_trigger.clone(),
        );
        Ok(Consensus {
            node_id,
            raft,
            state,
            batcher,
            reads,
            log,
            closed: vec![log_closed, sm_closed],
        })
    }

    /// This member's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The openraft node, for what this handle does not wrap.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Makes this node the one member of a new cluster. Does nothing if
    /// the node is already part of a cluster (e.g. after a restart).
    pub async fn initialize_single_node(&self, node: NodeInfo) -> Result<(), ConsensusError> {
        if self.raft.is_initialized().await.map_err(fatal)? {
            return Ok(());
        }
        let members = BTreeMap::from([(self.node_id, node)]);
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(ConsensusError::Raft(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Makes these members a new cluster (every member must be reachable
    /// through the network given to [`Consensus::open`]). Call it on one
    /// node, with the same map wherever it is called. Does nothing if this
    /// node is already part of a cluster (e.g. after a restart, or when
    /// another member initialised it first and replicated to it).
    pub async fn initialize(&self, members: BTreeMap<u64, NodeInfo>) -> Result<(), ConsensusError> {
        if self.raft.is_initialized().await.map_err(fatal)? {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(ConsensusError::Raft(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Adds `id` as a learner (it receives the log, does not vote) and
    /// waits until it has caught up with the leader's log. Leader only
    /// ([`ConsensusError::NotLeader`] otherwise). Adding a member that is
    /// already there updates its [`NodeInfo`].
    pub async fn add_learner(&self, id: u64, node: NodeInfo) -> Result<(), ConsensusError> {
        self.raft
            .add_learner(id, node, true)
            .await
            .map_err(client_write_error)?;
        Ok(())
    }

    /// Adds `id` as a learner and returns once that membership is
    /// committed, without waiting for the learner to catch up (see
    /// [`Consensus::matched_index`]). Leader only.
    pub async fn add_learner_committed(
        &self,
        id: u64,
        node: NodeInfo,
    ) -> Result<(), ConsensusError> {
        self.raft
            .add_learner(id, node, false)
            .await
            .map_err(client_write_error)?;
        Ok(())
    }

    /// Removes the learner `id` (one step: the voters do not change, so the
    /// current quorum commits it). Leader only.
    pub async fn remove_learner(&self, id: u64) -> Result<(), ConsensusError> {
        self.raft
            .change_membership(
                openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                false,
            )
            .await
            .map_err(client_write_error)?;
        Ok(())
    }

    /// Whether the latest membership this member knows is committed (no
    /// change in progress, as far as it knows). On the leader this is
    /// exactly whether openraft would accept another change.
    pub async fn membership_committed(&self) -> Result<bool, ConsensusError> {
        self.raft
            .with_raft_state(|st| {
                st.membership_state.committed().log_id() == st.membership_state.effective().log_id()
            })
            .await
            .map_err(fatal)
    }

    /// On the leader: the last log index known to be stored on `id`
    /// (`Some(None)` while nothing is), from the replication metrics;
    /// `None` if this member does not lead or does not replicate to `id`.
    pub fn matched_index(&self, id: u64) -> Option<Option<u64>> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let matched = m.replication.as_ref()?.get(&id)?;
        Some(matched.map(|l| l.index))
    }

    /// The last log index appended on this member.
    pub fn last_log_index(&self) -> Option<u64> {
        self.raft.metrics().borrow().last_log_index
    }

    /// Makes `voters` the voting members (a joint change, committed in two
    /// steps; this returns after both). Every new voter must be a learner
    /// already ([`Consensus::add_learner`]). Members left out are removed
    /// from the cluster altogether. Leader only
    /// ([`ConsensusError::NotLeader`] otherwise).
    ///
    /// A change still in its joint phase makes openraft refuse the next one;
    /// that resolves by itself, so this waits (up to 10 s) and retries.
    pub async fn change_membership(&self, voters: BTreeSet<u64>) -> Result<(), ConsensusError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.raft.change_membership(voters.clone(), false).await {
                Ok(_) => return Ok(()),
                Err(openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ChangeMembershipError(
                        openraft::error::ChangeMembershipError::InProgress(_),
                    ),
                )) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(client_write_error(e)),
            }
        }
    }

    /// The membership this member knows (the latest one in its log, which
    /// may not be committed yet).
    pub fn membership(&self) -> MembershipView {
        let m = self.raft.metrics();
        let m = m.borrow();
        let stored = &m.membership_config;
        view_of(stored.membership(), stored.log_id().map(|l| l.index))
    }

    /// [`Consensus::membership`] asked of the Raft core itself rather than
    /// its published metrics: exact also right after [`Consensus::open`].
    pub async fn membership_now(&self) -> Result<MembershipView, ConsensusError> {
        self.raft
            .with_raft_state(|st| {
                let e = st.membership_state.effective();
                view_of(e.membership(), e.log_id().map(|l| l.index))
            })
            .await
            .map_err(fatal)
    }

    /// True while this member believes it is the leader. Another member may
    /// have been elected meanwhile; [`Consensus::read_index`] checks with a
    /// quorum.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// Read index, on the leader: confirms with a quorum that this member
    /// is still the leader and returns the log index a member must have
    /// applied before its state reflects every write committed before this
    /// call. A follower serves a linearizable read by asking the leader
    /// for it and then [`Consensus::wait_applied`]`(index, ..)`.
    ///
    /// Concurrent calls share one round (`crate::read_batcher`): a call
    /// waits for the round in progress, if any, to end and is answered by
    /// the next, so that a quorum confirms the leadership after the call.
    ///
    /// Errors: [`ConsensusError::NotLeader`] if another member leads (or
    /// none is known); `Raft` if a quorum did not answer. Returns within a
    /// few heartbeat timeouts; wrap it in a timeout for a hard bound.
    pub async fn read_index(&self) -> Result<u64, ConsensusError> {
        self.reads.read_index().await
    }

    /// Answers one Raft RPC sent by another member's
    /// [`crate::TransportNetwork`]: route every `Service::Raft` request the
    /// node receives here and send back what it returns. Undecodable input
    /// gets a refusal, never a panic.
    pub async fn handle_raft(&self, payload: Bytes) -> Bytes {
        let reply = match RaftRpc::decode(&payload) {
            Err(why) => {
                tracing::warn!(reason = %why, "undecodable raft request");
                WireReply::Refused(why)
            }
            Ok(RaftRpc::AppendEntries(req)) => WireReply::of(&self.raft.append_entries(req).await),
            Ok(RaftRpc::Vote(req)) => WireReply::of(&self.raft.vote(req).await),
            Ok(RaftRpc::InstallSnapshot(req)) => {
                WireReply::of(&self.raft.install_snapshot(req).await)
            }
        };
        Bytes::from(reply.encode())
    }

    /// Commits `command`, stamped with this node's clock, and returns what
    /// applying it answered.
    ///
    /// Errors: [`ConsensusError::Rejected`] when the state machine refused
    /// it (nothing changed), [`ConsensusError::NotLeader`] when this node
    /// cannot commit (forward to the leader), `Raft`/`ShuttingDown`
    /// otherwise.
    pub async fn propose(&self, command: Command) -> Result<Applied, ConsensusError> {
        let req = Request {
            at: respawn_types::now_millis(),
            command,
        };
        Ok(self.propose_request(req).await?.applied)
    }

    /// Commits a request stamped by the caller and returns its log index
    /// with the answer.
    ///
    /// Requests proposed concurrently on this node share a log entry (and
    /// its index); see [`crate::types::Batch`].
    pub async fn propose_request(&self, req: Request) -> Result<Committed, ConsensusError> {
        self.batcher.propose(req).await
    }

    /// Proposals waiting for the log entry being written to commit.
    pub fn queued_proposals(&self) -> usize {
        self.batcher.queued()
    }

    /// Returns once this node is the leader of a quorum and has applied
    /// everything committed before the call: reads of the state after it
    /// are linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), ConsensusError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ConsensusError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e)) => Err(ConsensusError::Raft(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// A handle on the applied state (cheap to clone, usable from any
    /// thread).
    pub fn state(&self) -> StateHandle {
        self.state.clone()
    }

    /// Runs `f` on the applied state under its read lock.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        self.state.read(f)
    }

    /// Starts event delivery to `sink`; see [`StateHandle::go_live`].
    ///
    /// The owner learns that delivery stopped when its receiver reports the
    /// channel closed (`recv()` answers `None`), provided the sink was the
    /// channel's only sender: this happens when a snapshot from the leader
    /// replaces the whole state (a follower that fell behind), and the owner
    /// must then rebuild from a new `go_live`.
    pub fn go_live(&self, sink: EventSink) -> ClusterState {
        self.state.go_live(sink)
    }

    /// Stops event delivery (for example when this node loses the
    /// leadership and its actors stand down). Entries applied afterwards
    /// send nothing; the sink is dropped, which closes the channel if it
    /// was its only sender. [`Consensus::go_live`] starts again.
    pub fn go_dark(&self) {
        self.state.go_dark()
    }

    /// Waits until the entry at `index` has been applied on this node.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ConsensusError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "wait_applied")
            .await
            .map(|_| ())
            .map_err(wait_error)
    }

    /// Waits until a leader is known and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ConsensusError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "wait_for_leader")
            .await
            .map_err(wait_error)?;
        m.current_leader
            .ok_or_else(|| ConsensusError::Raft("no leader".into()))
    }

    /// The current leader and what it advertises, if known.
    pub fn leader(&self) -> Option<(u64, NodeInfo)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let info = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, info))
    }

    /// Raft metrics (state, leader, log and applied indexes, ...).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.raft.metrics()
    }

    /// Counters of the log writer (transactions, fsyncs, entries).
    pub fn log_stats(&self) -> LogStoreStats {
        self.log.stats()
    }

    /// Stops the Raft node and waits until its files are closed, so that
    /// the directory can be opened again.
    pub async fn shutdown(&self) -> Result<(), ConsensusError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| ConsensusError::Raft(format!("raft task failed: {e}")))?;
        let closed = futures_join(self.closed.clone());
        tokio::time::timeout(CLOSE_TIMEOUT, closed)
            .await
            .map_err(|_| ConsensusError::Timeout("store files still open after shutdown".into()))
    }

    /// The log writer's gate and counters (tests hold the writer with it).
    #[cfg(test)]
    pub(crate) fn log_probe(&self) -> &LogProbe {
        &self.log
    }
}

fn view_of(
    membership: &openraft::Membership<u64, NodeInfo>,
    log_index: Option<u64>,
) -> MembershipView {
    MembershipView {
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        nodes: membership
            .nodes()
            .map(|(id, info)| (*id, info.clone()))
            .collect(),
        joint: membership.get_joint_config().len() > 1,
        log_index,
    }
}

/// Waits for all of `closed`.
async fn futures_join(closed: Vec<Closed>) {
    for c in closed {
        c.wait().await;
    }
}
