//! The openraft type configuration of Respawn and short aliases for the
//! openraft types parameterised by it.

use crate::command::{Request, Response};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;

/// What a Raft member advertises about itself in the membership config.
///
/// `raft_addr` is where peers reach its Raft RPCs (QUIC), `http_addr` is
/// where the HTTP edge forwards requests that need the leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Address of the node's Raft/QUIC listener (`host:port`).
    pub raft_addr: String,
    /// Address of the node's HTTP edge (`host:port`).
    pub http_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={}", self.raft_addr, self.http_addr)
    }
}

openraft::declare_raft_types!(
    /// Respawn's openraft type configuration: log entries carry a
    /// [`Request`], applying one answers a [`Response`].
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft node type of Respawn.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (leader term + node, index).
pub type LogId = openraft::LogId<u64>;
/// A vote (term, node, committed).
pub type Vote = openraft::Vote<u64>;
/// The membership config as stored with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;
/// Metadata of a snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, NodeInfo>;
/// A snapshot with its data.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// The error type of the storage traits.
pub type StorageError = openraft::StorageError<u64>;
/// Metrics published by the Raft node.
pub type RaftMetrics = openraft::RaftMetrics<u64, NodeInfo>;
