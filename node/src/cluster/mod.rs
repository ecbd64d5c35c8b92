//! What makes a node one member of a cluster, [`Cluster`]:
//!
//! - [`Cluster::propose`]: a write from any node goes to the leader (locally
//!   if this node leads, otherwise forwarded over the transport).
//! - [`Cluster::read`]: a linearizable read from any node, by **read index**:
//!   the leader confirms it still leads (a heartbeat round to a quorum,
//!   openraft's `ensure_linearizable`) and names its commit index; this node
//!   waits until it has applied that index, then reads locally. Read index
//!   rather than a leader lease because a lease depends on bounded clock
//!   drift between machines, which nothing here guarantees.
//! - [`Cluster::change_membership`] ([`membership`]): checked, bounded
//!   membership changes, carried out by the leader.
//! - [`Cluster::announce_leaving`] ([`handover`]): a leader that stops names
//!   a successor, which stands for election as soon as the others would
//!   vote for it.
//!
//! The messages between nodes are in [`wire`]; how a node answers them is
//! the server's (`crate::server::inbound`).

pub mod handover;
pub mod membership;
pub mod wire;

use respawn_consensus::{Consensus, ConsensusError};
use respawn_net::transport::{Service, SharedTransport};
use respawn_state::{Applied, Command, Request};
use respawn_types::NodeId;
use std::time::Duration;
use wire::{decode, encode, ClusterMsg, ClusterReply, RemoteError};

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a proposal keeps looking for a leader (during an election).
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// This node's view of the cluster: its Raft member and the transport to
/// the other nodes. It knows nothing of agents or virtual servers.
#[derive(Clone)]
pub struct Cluster {
    pub consensus: Consensus,
    pub transport: SharedTransport,
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
                let reply = match self
                    .ask_node(l, &ClusterMsg::Propose(command.clone()))
                    .await
                {
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

    /// Whether this node can reach a quorum now: a read-index round (the
    /// leader's heartbeat to a quorum), bounded by `within`.
    pub async fn in_quorum(&self, within: Duration) -> bool {
        let probe = async {
            if self.consensus.is_leader() {
                self.consensus.read_index().await.is_ok()
            } else if let Some((leader, _)) = self.consensus.leader() {
                matches!(
                    self.ask_node(leader, &ClusterMsg::ReadIndex).await,
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
            match self.ask_node(leader, &ClusterMsg::ReadIndex).await? {
                ClusterReply::Index(i) => i,
                ClusterReply::Err(e) => return Err(e.into()),
                other => return Err(ConsensusError::Raft(format!("unexpected reply {other:?}"))),
            }
        };
        self.consensus.wait_applied(index, FORWARD_TIMEOUT).await?;
        Ok(self.consensus.read(f))
    }
}
