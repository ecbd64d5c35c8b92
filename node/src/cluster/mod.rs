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
/// The deadline of a proposal or a linearizable read, all retries
/// included: it keeps looking for a leader (during an election) until then.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// The outcome of [`Cluster::ask_leader`].
enum Forwarded {
    /// The leader answered.
    Reply(ClusterReply),
    /// This node learnt of another leader (or of an election) before the
    /// answer came.
    LeaderChanged,
    /// The leader could not be reached; there is time left to retry.
    Unreachable,
}

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

    /// Sends one message to another node and waits for its answer (at most
    /// [`FORWARD_TIMEOUT`]).
    pub async fn ask_node(
        &self,
        to: NodeId,
        msg: &ClusterMsg,
    ) -> Result<ClusterReply, ConsensusError> {
        self.ask_node_within(to, msg, FORWARD_TIMEOUT).await
    }

    /// [`Cluster::ask_node`] with another time limit.
    pub async fn ask_node_within(
        &self,
        to: NodeId,
        msg: &ClusterMsg,
        within: Duration,
    ) -> Result<ClusterReply, ConsensusError> {
        // Followers' Raft never dials the others: tell the transport where
        // the target listens, from the membership.
        if let Some(info) = self.consensus.membership().nodes.get(&to) {
            self.transport.set_address(to, &info.raft_addr);
        }
        let raw = self
            .transport
            .call(to, Service::Cluster, encode(msg), within)
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
    ///
    /// Bounded by [`CALL_DEADLINE`] in all. During an election the call
    /// waits for the new leader and goes to it: it retries while no leader
    /// is known, when the answer is "not the leader" (then the command was
    /// certainly not committed), when the leader cannot be reached, and
    /// when this node learns of another leader while a forward is
    /// outstanding (the old one crashed or was deposed). In the last two
    /// cases the first attempt may have been committed all the same, so a
    /// command can be applied twice: the commands that edges and agents
    /// propose are idempotent or rejected the second time (a rejection
    /// then reaches the caller). Any other failure is returned.
    pub async fn propose(&self, command: Command) -> Result<Applied, ConsensusError> {
        let deadline = tokio::time::Instant::now() + CALL_DEADLINE;
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
                match self
                    .ask_leader(l, &ClusterMsg::Propose(command.clone()), deadline)
                    .await?
                {
                    Forwarded::Reply(ClusterReply::Applied(a, index)) => {
                        self.consensus.wait_applied(index, FORWARD_TIMEOUT).await?;
                        return Ok(a);
                    }
                    Forwarded::Reply(ClusterReply::Err(RemoteError::NotLeader(_))) => {}
                    Forwarded::Reply(ClusterReply::Err(e)) => return Err(e.into()),
                    Forwarded::Reply(other) => {
                        return Err(ConsensusError::Raft(format!("unexpected reply {other:?}")))
                    }
                    // A retry goes to the new leader as soon as it is known.
                    Forwarded::LeaderChanged | Forwarded::Unreachable => continue,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConsensusError::NotLeader { leader });
            }
            self.leader_changed(leader, Duration::from_millis(50)).await;
        }
    }

    /// [`Cluster::propose`], then `f` on this node's applied state: the view
    /// a write returns, without a read-index round.
    ///
    /// Linearizable all the same: `propose` returns only once this node
    /// has applied the command's entry (index `i`), so the state read holds
    /// every entry up to some `j ≥ i`. Every write that completed before
    /// this call began was committed before the command was appended, so
    /// its index is below `i` and it is in the view; and the state at `j`
    /// was the cluster's committed state at the moment entry `j` committed,
    /// which lies between this call's start and its end. A read index
    /// would only confirm what the commit already proved, at the price of
    /// a heartbeat round to a quorum (and, on a follower, a round trip to
    /// the leader).
    pub async fn propose_then_read<T>(
        &self,
        command: Command,
        f: impl FnOnce(&respawn_state::ClusterState) -> T,
    ) -> Result<(Applied, T), ConsensusError> {
        let applied = self.propose(command).await?;
        Ok((applied, self.consensus.read(f)))
    }

    /// Sends `msg` to `leader` and waits for its answer, but gives up as
    /// soon as this node stops taking `leader` for the leader (an election
    /// started or ended elsewhere: the leader crashed, was cut off or
    /// stepped down) — [`Forwarded::LeaderChanged`] — so that the caller
    /// retries with the new leader instead of waiting for an answer that
    /// may never come. A call that cannot be delivered waits (up to 100 ms)
    /// for a new leader hint and returns [`Forwarded::Unreachable`] while
    /// there is time left before `deadline`; at the deadline, the error.
    async fn ask_leader(
        &self,
        leader: NodeId,
        msg: &ClusterMsg,
        deadline: tokio::time::Instant,
    ) -> Result<Forwarded, ConsensusError> {
        let mut metrics = self.consensus.metrics();
        let moved = async move {
            // An error means Raft stopped: then no answer will come either.
            let _ = metrics.wait_for(|m| m.current_leader != Some(leader)).await;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let asked = self.ask_node_within(leader, msg, left.min(FORWARD_TIMEOUT));
        let outcome = tokio::select! {
            r = asked => r,
            () = moved => {
                tracing::debug!(node = self.node_id(), leader, "leader changed while forwarding: retrying");
                return Ok(Forwarded::LeaderChanged);
            }
        };
        match outcome {
            Ok(reply) => Ok(Forwarded::Reply(reply)),
            // Not delivered (refused, partitioned, the node shut down or
            // crashed): the leader hint may be stale during an election.
            Err(ConsensusError::Unreachable { .. }) if tokio::time::Instant::now() < deadline => {
                self.leader_changed(Some(leader), Duration::from_millis(100))
                    .await;
                Ok(Forwarded::Unreachable)
            }
            Err(e) => Err(e),
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

    /// Linearizable read (read index; see the module docs). Like
    /// [`Cluster::propose`], it waits for a new leader during an election
    /// (a read index is asked again safely), within [`CALL_DEADLINE`].
    pub async fn read<T>(
        &self,
        f: impl FnOnce(&respawn_state::ClusterState) -> T,
    ) -> Result<T, ConsensusError> {
        let index = self.read_index().await?;
        self.consensus.wait_applied(index, FORWARD_TIMEOUT).await?;
        Ok(self.consensus.read(f))
    }

    /// The leader's commit index, confirmed by a quorum.
    async fn read_index(&self) -> Result<u64, ConsensusError> {
        let deadline = tokio::time::Instant::now() + CALL_DEADLINE;
        loop {
            if self.consensus.is_leader() {
                match self.consensus.read_index().await {
                    // Deposed meanwhile: ask the new leader.
                    Err(ConsensusError::NotLeader { .. })
                        if tokio::time::Instant::now() < deadline => {}
                    other => return other,
                }
            }
            let leader = self.consensus.leader().map(|(id, _)| id);
            if let Some(l) = leader.filter(|l| *l != self.node_id()) {
                match self.ask_leader(l, &ClusterMsg::ReadIndex, deadline).await? {
                    Forwarded::Reply(ClusterReply::Index(i)) => return Ok(i),
                    Forwarded::Reply(ClusterReply::Err(RemoteError::NotLeader(_))) => {}
                    Forwarded::Reply(ClusterReply::Err(e)) => return Err(e.into()),
                    Forwarded::Reply(other) => {
                        return Err(ConsensusError::Raft(format!("unexpected reply {other:?}")))
                    }
                    Forwarded::LeaderChanged | Forwarded::Unreachable => continue,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConsensusError::NotLeader { leader });
            }
            self.leader_changed(leader, Duration::from_millis(50)).await;
        }
    }
}
