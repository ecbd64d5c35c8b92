//! The messages between server nodes on [`Service::Cluster`] and their
//! encoding.
//!
//! [`Service::Cluster`]: respawn_net::transport::Service::Cluster

use bytes::Bytes;
use respawn_consensus::{ConsensusError, NodeInfo};
use respawn_state::{Applied, Command, Rejection};
use respawn_types::agent::{AgentReply, ServerToAgent};
use respawn_types::{HostId, NodeId, TitleRegionId, VsName};
use serde::{Deserialize, Serialize};

/// Requests between nodes on [`Service::Cluster`].
///
/// [`Service::Cluster`]: respawn_net::transport::Service::Cluster
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
    /// other voters' leader lease runs out (see
    /// [`Cluster::announce_leaving`](super::Cluster::announce_leaving)).
    LeaderLeaving { leader: NodeId, successor: NodeId },
    /// Who are you? Sent to a node before it is made a member: the answer
    /// (over a link whose certificate the transport checked) proves it is
    /// there and is who it claims.
    Identify,
}

/// A membership change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum MembershipOp {
    AddLearner { node_id: NodeId, info: NodeInfo },
    Promote { node_id: NodeId },
    Remove { node_id: NodeId },
}

/// How far a membership change got within the time a call waits for it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Committed (or there was nothing to change).
    Done,
    /// Proposed but not committed yet: it goes on; poll the cluster status.
    InProgress,
}

/// Answers on [`Service::Cluster`].
///
/// [`Service::Cluster`]: respawn_net::transport::Service::Cluster
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClusterReply {
    /// Committed at this log index.
    Applied(Applied, u64),
    Index(u64),
    Agent(AgentReply),
    Done,
    /// A membership change carried out by the leader, and how far it got.
    Membership(ChangeOutcome),
    /// The answer to [`ClusterMsg::Identify`]: this node's id and the
    /// voters of the cluster it belongs to (empty before it joins one).
    Identity {
        node_id: NodeId,
        voters: Vec<NodeId>,
    },
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

pub fn encode<T: Serialize>(v: &T) -> Bytes {
    // Encoding our own enums into a Vec cannot fail (no I/O, no limit).
    Bytes::from(bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap_or_default())
}

pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    let limit = bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>();
    bincode::serde::decode_from_slice(b, limit)
        .ok()
        .map(|(v, _)| v)
}
