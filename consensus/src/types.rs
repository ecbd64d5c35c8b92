//! The openraft type configuration of Respawn and short aliases for the
//! openraft types parameterised by it.

use respawn_state::{Request, Response};
use serde::{Deserialize, Serialize};
use std::fmt;

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

/// A log entry's payload: requests proposed together, applied in order.
///
/// openraft 0.9 waits for each append to be flushed before it appends the
/// next, one append per `client_write`; concurrent proposals therefore
/// share an fsync only if they share a log entry. `Consensus`
/// gathers the requests queued while the previous entry commits into one
/// `Batch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Batch(pub Vec<Request>);

/// What applying a [`Batch`] answers: one [`Response`] per request, in
/// order. Blank and membership entries answer an empty vector.
pub type BatchResponse = Vec<Response>;

openraft::declare_raft_types!(
    /// Respawn's openraft type configuration: log entries carry a
    /// [`Batch`] of requests, applying one answers a [`BatchResponse`].
    pub TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
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
