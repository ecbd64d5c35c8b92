//! What makes a node one member of a cluster:
//!
//! - [`Cluster::propose`]: a write from any node goes to the leader (locally
//!   if this node leads, otherwise forwarded over the transport).
//! - [`Cluster::read`]: a linearizable read from any node, by **read index**:
//!   the leader confirms it still leads (a heartbeat round to a quorum,
//!   openraft's `ensure_linearizable`) and names its commit index; this node
//!   waits until it has applied that index, then reads locally. Read index
//!   rather than a leader lease because a lease depends on bounded clock
//!   drift between machines, which nothing here guarantees.
//! - [`NodeHandler`]: answers other nodes (Raft RPCs, forwarded proposals and
//!   reads, commands for the agents linked to this node, membership changes).
//! - [`ClusterGateway`]: the actors' way to reach an agent, wherever its
//!   link is held (the replicated `host_links` says which node).
//! - [`run_leader_actors`]: the actors run on the leader only; a node that
//!   becomes leader rebuilds them from the committed state, and stops them
//!   when it loses leadership.
//! - [`Cluster::announce_leaving`]: a leader that stops names a successor,
//!   which stands for election as soon as the others would vote for it.

use crate::links::AgentLinks;
use bytes::Bytes;
use futures::future::BoxFuture;
use respawn_actors::{AgentGateway, CommandSink, Deps, GatewayError, ProposeError};
use respawn_consensus::{Consensus, ConsensusError, NodeInfo};
use respawn_net::transport::{Handler, Service, SharedTransport};
use respawn_state::{Applied, ClusterState, Command, Rejection, Request};
use respawn_types::agent::{AgentReply, ErrorCode, ServerToAgent, WireError};
use respawn_types::{HostId, NodeId, TitleRegionId, VsName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a proposal keeps looking for a leader (during an election).
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Requests between nodes on [`Service::Cluster`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterMsg {
    /// Commit this command (sent to the leader).
    Propose(Command),
    /// Confirm leadership and return the index a linearizable read must wait for.
    ReadIndex,
    /// Deliver a command to an agent whose link this node holds.
    ToAgent {
        host: HostId,
        command: ServerToAgent,
    },
    /// Change the membership (sent to the leader).
    Membership(MembershipOp),
    /// A follower's edge load, for the leader's autoscaler.
    VsLoad {
        node: NodeId,
        peaks: Vec<(TitleRegionId, VsName, u32)>,
    },
    /// The leader `leader` has stopped (its Raft no longer sends
    /// heartbeats); `successor` should stand for election as soon as the
    /// other voters' leader lease runs out (see [`Cluster::announce_leaving`]).
    LeaderLeaving { leader: NodeId, successor: NodeId },
}

/// A membership change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum MembershipOp {
    AddLearner { node_id: NodeId, info: NodeInfo },
    Promote { node_id: NodeId },
    Remove { node_id: NodeId },
}

/// Answers on [`Service::Cluster`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterReply {
    /// Committed at this log index.
    Applied(Applied, u64),
    Index(u64),
    Agent(AgentReply),
    Done,
    Err(RemoteError),
}

/// An error carried back from another node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteError {
    Rejected(Rejection),
    NotLeader(Option<NodeId>),
    Unavailable(String),
}

impl From<ConsensusError> for RemoteError {
    fn from(e: ConsensusError) -> Self {
        match e {
            ConsensusError::Rejected(r) => RemoteError::Rejected(r),
            ConsensusError::NotLeader { leader } => RemoteError::NotLeader(leader),
            other => RemoteError::Unavailable(other.to_string()),
        }
    }
}

impl From<RemoteError> for ConsensusError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::Rejected(r) => ConsensusError::Rejected(r),
            RemoteError::NotLeader(leader) => ConsensusError::NotLeader { leader },
            RemoteError::Unavailable(m) => ConsensusError::Raft(m),
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Bytes {
    // Encoding our own enums into a Vec cannot fail (no I/O, no limit).
    Bytes::from(bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap_or_default())
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    let limit = bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>();
    bincode::serde::decode_from_slice(b, limit)
        .ok()
        .map(|(v, _)| v)
}

/// This node's view of the cluster.
#[derive(Clone)]
pub struct Cluster {
    pub consensus: Consensus,
    pub transport: SharedTransport,
    pub links: Arc<AgentLinks>,
    /// Virtual servers: proxy, access logs, load board.
    pub vs: Arc<crate::vs::VsHub>,
}

impl Cluster {
    pub fn node_id(&self) -> NodeId {
        self.consensus.node_id()
    }

    /// Sends one message to another node and waits for its answer.
    pub async fn ask_node(
        &self,
        to: NodeId,
        msg: &ClusterMsg,
    ) -> Result<ClusterReply, ConsensusError> {
        self.ask(to, msg).await
    }

    async fn ask(&self, to: NodeId, msg: &ClusterMsg) -> Result<ClusterReply, ConsensusError> {
        // Followers' Raft never dials the others: tell the transport where
        // the target listens, from the membership.
        if let Some(info) = self.consensus.membership().nodes.get(&to) {
            self.transport.set_address(to, &info.raft_addr);
        }
        let raw = self
            .transport
            .call(to, Service::Cluster, encode(msg), FORWARD_TIMEOUT)
            .await
            .map_err(|e| ConsensusError::Unreachable {
                node: to,
                reason: e.to_string(),
            })?;
        decode(&raw)
            .ok_or_else(|| ConsensusError::Raft(format!("undecodable reply from node {to}")))
    }

    /// Commits `command` through the leader, wherever it is, and returns once
    /// this node has applied it too (so a caller reads its own writes here).
    /// Retries only while no leader is known or the answer is "not the
    /// leader" (then the command was certainly not committed); any other
    /// failure is returned.
    pub async fn propose(&self, command: Command) -> Result<Applied, ConsensusError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let req = Request {
                at: respawn_types::now_millis(),
                command: command.clone(),
            };
            // A leader cut off from its quorum would hold the proposal open
            // until the partition heals: bound it. (The outcome is then
            // unknown to the caller, as with any timeout.)
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(100));
            let leader = match tokio::time::timeout(left, self.consensus.propose_request(req)).await
            {
                Err(_) => {
                    tracing::debug!(node = self.node_id(), "proposal timed out: no quorum");
                    return Err(ConsensusError::Timeout("no quorum answered in time".into()));
                }
                Ok(Err(ConsensusError::NotLeader { leader })) => leader,
                Ok(other) => return other.map(|c| c.applied),
            };
            tracing::debug!(node = self.node_id(), ?leader, "not the leader: forwarding");
            if let Some(l) = leader.filter(|l| *l != self.node_id()) {
                let reply = match self.ask(l, &ClusterMsg::Propose(command.clone())).await {
                    Ok(r) => r,
                    // Not delivered (refused, partitioned, or the node shut
                    // down): the leader hint may be stale during an
                    // election; retry as soon as it changes.
                    Err(ConsensusError::Unreachable { .. })
                        if tokio::time::Instant::now() < deadline =>
                    {
                        self.leader_changed(leader, Duration::from_millis(100))
                            .await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match reply {
                    ClusterReply::Applied(a, index) => {
                        self.consensus.wait_applied(index, FORWARD_TIMEOUT).await?;
                        return Ok(a);
                    }
                    ClusterReply::Err(RemoteError::NotLeader(_)) => {}
                    ClusterReply::Err(e) => return Err(e.into()),
                    other => {
                        return Err(ConsensusError::Raft(format!("unexpected reply {other:?}")))
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConsensusError::NotLeader { leader });
            }
            self.leader_changed(leader, Duration::from_millis(50)).await;
        }
    }

    /// Waits until this node's idea of the leader is no longer `hint`, for
    /// at most `max`: a retry then goes to the new leader the moment it is
    /// elected, not at the next tick.
    async fn leader_changed(&self, hint: Option<NodeId>, max: Duration) {
        let mut metrics = self.consensus.metrics();
        let changed = metrics.wait_for(|m| m.current_leader != hint);
        let _ = tokio::time::timeout(max, changed).await;
    }

    /// What this node would hand over if it stopped now: `None` unless it
    /// leads a cluster with other voters. Read it before stopping Raft.
    pub fn handover(&self) -> Option<Handover> {
        let me = self.node_id();
        let metrics = self.consensus.metrics();
        let m = metrics.borrow();
        if m.state != openraft::ServerState::Leader || m.current_leader != Some(me) {
            return None;
        }
        let others: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != me)
            .collect();
        // The voter whose log matches the leader's furthest (the lowest id
        // among equals): the other voters grant it their vote.
        let matched = |v: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(v).copied().flatten())
                .map(|l| l.index)
        };
        let successor = others
            .iter()
            .copied()
            .max_by_key(|v| (matched(v), std::cmp::Reverse(*v)))?;
        Some(Handover { successor, others })
    }

    /// Tells the other voters that this leader has stopped, naming the
    /// successor picked by [`Cluster::handover`]. Call it once Raft has
    /// stopped (no heartbeat will follow) and before the transport closes;
    /// best effort, within 500 ms.
    ///
    /// Why: openraft 0.9 makes a follower wait for its leader lease
    /// (`election_timeout_max` since the last heartbeat, during which it
    /// refuses to vote) **plus** a random election timeout (between
    /// `election_timeout_min` and `_max`) before it stands for election: 3
    /// to 4 s with the defaults. The successor instead stands as soon as the
    /// lease has run out on the others (they heard the last heartbeat
    /// before this message), so a planned stop costs the lease only. A
    /// crashed leader still costs lease plus timeout.
    pub async fn announce_leaving(&self, handover: Handover) {
        let msg = ClusterMsg::LeaderLeaving {
            leader: self.node_id(),
            successor: handover.successor,
        };
        let calls = handover.others.iter().map(|n| {
            let msg = &msg;
            async move {
                match tokio::time::timeout(Duration::from_millis(500), self.ask(*n, msg)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(node = n, error = %e, "leaving: not told"),
                    Err(_) => tracing::debug!(node = n, "leaving: not told in time"),
                }
            }
        });
        futures::future::join_all(calls).await;
    }

    /// Whether this node can reach a quorum now: a read-index round (the
    /// leader's heartbeat to a quorum), bounded by `within`.
    pub async fn in_quorum(&self, within: Duration) -> bool {
        let probe = async {
            if self.consensus.is_leader() {
                self.consensus.read_index().await.is_ok()
            } else if let Some((leader, _)) = self.consensus.leader() {
                matches!(
                    self.ask(leader, &ClusterMsg::ReadIndex).await,
                    Ok(ClusterReply::Index(_))
                )
            } else {
                false
            }
        };
        tokio::time::timeout(within, probe).await.unwrap_or(false)
    }

    /// Linearizable read (read index; see the module docs).
    pub async fn read<T>(
        &self,
        f: impl FnOnce(&respawn_state::ClusterState) -> T,
    ) -> Result<T, ConsensusError> {
        let index = if self.consensus.is_leader() {
            self.consensus.read_index().await?
        } else {
            let leader = self
                .consensus
                .leader()
                .map(|(id, _)| id)
                .ok_or(ConsensusError::NotLeader { leader: None })?;
            match self.ask(leader, &ClusterMsg::ReadIndex).await? {
                ClusterReply::Index(i) => i,
                ClusterReply::Err(e) => return Err(e.into()),
                other => return Err(ConsensusError::Raft(format!("unexpected reply {other:?}"))),
            }
        };
        self.consensus.wait_applied(index, FORWARD_TIMEOUT).await?;
        Ok(self.consensus.read(f))
    }

    /// Applies a membership change on the leader.
    pub async fn change_membership(&self, op: MembershipOp) -> Result<(), ConsensusError> {
        if !self.consensus.is_leader() {
            let leader = self
                .consensus
                .leader()
                .map(|(id, _)| id)
                .ok_or(ConsensusError::NotLeader { leader: None })?;
            return match self.ask(leader, &ClusterMsg::Membership(op)).await? {
                ClusterReply::Done => Ok(()),
                ClusterReply::Err(e) => Err(e.into()),
                other => Err(ConsensusError::Raft(format!("unexpected reply {other:?}"))),
            };
        }
        let voters = self.consensus.membership().voters;
        match op {
            MembershipOp::AddLearner { node_id, info } => {
                self.consensus.add_learner(node_id, info).await
            }
            MembershipOp::Promote { node_id } => {
                let mut v: BTreeSet<NodeId> = voters;
                v.insert(node_id);
                self.consensus.change_membership(v).await
            }
            MembershipOp::Remove { node_id } => {
                let mut v: BTreeSet<NodeId> = voters;
                v.remove(&node_id);
                if v.is_empty() {
                    return Err(ConsensusError::Rejected(Rejection::BadRequest(
                        "cannot remove the last voter".into(),
                    )));
                }
                self.consensus.change_membership(v).await
            }
        }
    }
}

/// Answers other nodes.
pub struct NodeHandler {
    pub cluster: Cluster,
}

impl Handler for NodeHandler {
    fn handle(&self, _from: NodeId, service: Service, payload: Bytes) -> BoxFuture<'static, Bytes> {
        let cluster = self.cluster.clone();
        Box::pin(async move {
            match service {
                Service::Raft => cluster.consensus.handle_raft(payload).await,
                Service::Cluster => {
                    let reply = match decode::<ClusterMsg>(&payload) {
                        None => ClusterReply::Err(RemoteError::Unavailable(
                            "undecodable request".into(),
                        )),
                        Some(msg) => serve(&cluster, msg).await,
                    };
                    encode(&reply)
                }
            }
        })
    }
}

async fn serve(cluster: &Cluster, msg: ClusterMsg) -> ClusterReply {
    let c = &cluster.consensus;
    let done = |r: Result<(), ConsensusError>| match r {
        Ok(()) => ClusterReply::Done,
        Err(e) => ClusterReply::Err(e.into()),
    };
    match msg {
        // Local only: a forwarded proposal is never forwarded again.
        ClusterMsg::Propose(command) => match c
            .propose_request(Request {
                at: respawn_types::now_millis(),
                command,
            })
            .await
        {
            Ok(done) => ClusterReply::Applied(done.applied, done.index),
            Err(e) => ClusterReply::Err(e.into()),
        },
        ClusterMsg::ReadIndex => match c.read_index().await {
            Ok(i) => ClusterReply::Index(i),
            Err(e) => ClusterReply::Err(e.into()),
        },
        ClusterMsg::ToAgent { host, command } => match cluster.links.send(&host, command).await {
            Ok(r) => ClusterReply::Agent(r),
            Err(e) => ClusterReply::Err(RemoteError::Unavailable(e.to_string())),
        },
        ClusterMsg::LeaderLeaving { leader, successor } => {
            if successor == c.node_id() {
                tokio::spawn(stand_for_election(c.clone(), leader));
            }
            ClusterReply::Done
        }
        ClusterMsg::VsLoad { node, peaks } => {
            cluster
                .vs
                .load
                .record_remote(node, peaks.into_iter().take(10_000).collect());
            ClusterReply::Done
        }
        ClusterMsg::Membership(op) => {
            if c.is_leader() {
                done(cluster.change_membership(op).await)
            } else {
                ClusterReply::Err(RemoteError::NotLeader(c.leader().map(|(id, _)| id)))
            }
        }
    }
}

/// What a stopping leader hands over (see [`Cluster::announce_leaving`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The voter that should stand for election first.
    pub successor: NodeId,
    /// Every other voter (the successor included), to be told.
    pub others: Vec<NodeId>,
}

/// On the successor named by a stopping leader: waits until the other
/// voters' leader lease has run out (`election_timeout_max` after the last
/// heartbeat, which came before the announcement), then stands for
/// election, unless an election has started or ended meanwhile.
///
/// A voter that handled the last heartbeat late (a busy machine) refuses
/// that first round: this node, still the candidate of its own round,
/// stands again every 100 ms, until a leader is known or until shortly
/// before the voters' own election timers could fire
/// (`election_timeout_min` after the lease), so as never to compete with
/// an election another voter started.
async fn stand_for_election(consensus: Consensus, left: NodeId) {
    let me = consensus.node_id();
    let (lease, timeout_min) = {
        let config = consensus.raft().config();
        (
            Duration::from_millis(config.election_timeout_max),
            Duration::from_millis(config.election_timeout_min),
        )
    };
    let start = tokio::time::Instant::now();
    let until = start + lease + timeout_min.saturating_sub(Duration::from_millis(100));
    tokio::time::sleep_until(start + lease + Duration::from_millis(20)).await;
    let mut rounds = 0u32;
    while tokio::time::Instant::now() < until {
        let (state, leader, voted_for) = {
            let metrics = consensus.metrics();
            let m = metrics.borrow();
            (m.state, m.current_leader, m.vote.leader_id().voted_for())
        };
        let stand = match state {
            // Still following the leader that left (or nobody).
            openraft::ServerState::Follower => {
                leader.is_none_or(|l| l == left) && voted_for.is_none_or(|v| v == left || v == me)
            }
            // The candidate of a round of ours that has not won.
            openraft::ServerState::Candidate => rounds > 0 && voted_for == Some(me),
            _ => false,
        };
        if !stand {
            break;
        }
        tracing::info!(
            node = me,
            left,
            round = rounds + 1,
            "the leader stopped: standing for election"
        );
        if let Err(e) = consensus.raft().trigger().elect().await {
            tracing::debug!(error = %e, "cannot stand for election");
            break;
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The actors' [`CommandSink`]: proposals go through the leader.
pub struct ClusterCommandSink(pub Cluster);

impl CommandSink for ClusterCommandSink {
    fn propose(&self, command: Command) -> BoxFuture<'static, Result<Applied, ProposeError>> {
        let c = self.0.clone();
        Box::pin(async move {
            c.propose(command).await.map_err(|e| match e {
                ConsensusError::Rejected(r) => ProposeError::Rejected(r),
                other => ProposeError::Unavailable(other.to_string()),
            })
        })
    }
}

/// The actors' [`AgentGateway`]: local link, else the node that holds it.
pub struct ClusterGateway(pub Cluster);

impl AgentGateway for ClusterGateway {
    fn send(
        &self,
        host: &HostId,
        command: ServerToAgent,
    ) -> BoxFuture<'static, Result<AgentReply, GatewayError>> {
        let c = self.0.clone();
        let host = host.clone();
        Box::pin(async move {
            if c.links.is_connected(&host) {
                return c.links.send(&host, command).await;
            }
            let holder = c.consensus.read(|s| s.host_links.get(&host).copied());
            let Some(node) = holder.filter(|n| *n != c.node_id()) else {
                return Err(GatewayError::NotConnected(host));
            };
            match c
                .ask(
                    node,
                    &ClusterMsg::ToAgent {
                        host: host.clone(),
                        command,
                    },
                )
                .await
            {
                Ok(ClusterReply::Agent(r)) => Ok(r),
                Ok(ClusterReply::Err(e)) => Err(GatewayError::Link(host, format!("{e:?}"))),
                Ok(other) => Err(GatewayError::Link(
                    host,
                    format!("unexpected reply {other:?}"),
                )),
                Err(e) => Err(GatewayError::Link(host, e.to_string())),
            }
        })
    }

    fn is_connected(&self, host: &HostId) -> bool {
        let c = &self.0;
        c.links.is_connected(host)
            || c.consensus
                .read(|s| s.host_links.get(host).is_some_and(|n| *n != c.node_id()))
    }
}

/// Keeps the actors running on this node exactly while it is the leader:
/// on gaining leadership it applies everything committed (read index),
/// applies the configured title regions and fleets, rebuilds the actors
/// from the committed state and feeds them every later event; on losing it
/// (or on shutdown) it stops them.
pub async fn run_leader_actors(
    cluster: Cluster,
    links: Arc<AgentLinks>,
    cfg: Arc<respawn_config::Config>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut metrics = cluster.consensus.metrics();
    loop {
        // Wait to become leader.
        while !cluster.consensus.is_leader() {
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
        if let Err(e) = cluster.consensus.read_index().await {
            tracing::warn!(error = %e, "new leader could not confirm its state; retrying");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if let Err(e) = crate::node::bootstrap_config(&cluster, &cfg).await {
            tracing::warn!(error = %e, "could not apply the configured title regions and fleets");
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = cluster.consensus.go_live(tx);
        let state = cluster.consensus.state();
        let deps = Deps {
            state: Arc::new(move |f: &mut dyn FnMut(&ClusterState)| state.read(|s| f(s))),
            commands: Arc::new(ClusterCommandSink(cluster.clone())),
            gateway: Arc::new(ClusterGateway(cluster.clone())),
            vs: Arc::new(crate::vs::ClusterVsPorts(cluster.clone())),
        };
        let runtime = match respawn_actors::start_runtime(deps, rx).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the actors");
                cluster.consensus.state().go_dark();
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        links.set_node(runtime.node.clone());
        tracing::info!(node = cluster.node_id(), "leader: actors running");
        let mut stop = false;
        while cluster.consensus.is_leader() {
            tokio::select! {
                r = metrics.changed() => if r.is_err() { stop = true; break },
                _ = shutdown.changed() => { stop = true; break },
            }
        }
        runtime.stop();
        cluster.consensus.state().go_dark();
        links.clear_node();
        tracing::info!(node = cluster.node_id(), "actors stopped");
        if stop {
            return;
        }
    }
}

/// Closes this node's agent links while it cannot reach a quorum for longer
/// than `cutoff`, so that agents move to a node on the majority side (their
/// reports could not be committed here, and the leader could not reach them).
pub async fn quorum_watchdog(cluster: Cluster, cutoff: Duration) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if cluster.in_quorum(Duration::from_secs(1)).await {
            last_ok = tokio::time::Instant::now();
        } else if last_ok.elapsed() > cutoff && !cluster.links.connected_hosts().is_empty() {
            tracing::warn!(
                node = cluster.node_id(),
                "cut off from the cluster majority: closing agent links"
            );
            cluster.links.close_all();
        }
    }
}

/// Converts a cluster error for the agent protocol.
pub fn wire_error(e: ConsensusError) -> WireError {
    match e {
        ConsensusError::Rejected(r) => crate::links::rejection(r),
        ConsensusError::NotLeader { .. } => WireError::new(ErrorCode::NotLeader, e.to_string()),
        other => WireError::new(ErrorCode::Unavailable, other.to_string()),
    }
}
