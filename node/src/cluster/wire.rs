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
    /// Commit this command (sent to the leader). Carried as JSON inside the
    /// bincode frame, as the Raft log carries it: some commands hold
    /// internally tagged enums or skipped fields, which bincode cannot carry.
    Propose(#[serde(with = "command_as_json")] Command),
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

/// A [`Command`] as JSON bytes (see [`ClusterMsg::Propose`]).
mod command_as_json {
    use respawn_state::Command;
    use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(c: &Command, s: S) -> Result<S::Ok, S::Error> {
        serde_json::to_vec(c)
            .map_err(ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Command, D::Error> {
        let bytes = Vec::<u8>::deserialize(d)?;
        serde_json::from_slice(&bytes).map_err(de::Error::custom)
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

#[cfg(test)]
mod tests {
    use super::*;
    use respawn_types::storage::{StorageName, StorageSpec};

    /// A proposal forwarded to the leader survives the node link's encoding,
    /// whatever serde shape its command has (a storage spec is internally
    /// tagged and has optional fields).
    #[test]
    fn proposals_cross_the_node_link() {
        let command = Command::PutStorage {
            title_region_id: TitleRegionId::new_unchecked("tr-1"),
            name: StorageName::parse("MongoA").unwrap(),
            spec: serde_json::from_value::<StorageSpec>(serde_json::json!({
                "kind": "external_mongodb",
                "network": [{"inner_ip": "10.0.0.1", "port": 27017}],
                "account": "u",
                "password": "p"
            }))
            .unwrap(),
            password: String::new(),
        };
        let back: ClusterMsg = decode(&encode(&ClusterMsg::Propose(command.clone()))).unwrap();
        let ClusterMsg::Propose(got) = back else {
            panic!("not a proposal: {back:?}");
        };
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&command).unwrap()
        );
    }
}
