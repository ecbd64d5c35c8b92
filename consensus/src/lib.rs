//! Raft plumbing for the cluster state of `respawn-state`: the openraft type
//! configuration ([`types`]), the durable log and snapshot stores on redb
//! ([`log_store`], [`sm`]), the network seam ([`network`], [`rpc`]), the
//! batching of concurrent proposals into one log entry, and the
//! [`Consensus`] handle that proposes commands and reads the applied state.
//!
//! No rule of the domain lives here: the state machine hands every
//! committed request to `respawn_state::ClusterState::apply`.
//!
//! Start with [`Consensus::open`]; see its methods for proposing commands,
//! reading the state and receiving applied events.

mod batcher;
mod codec;
pub mod compaction;
mod db;
pub mod error;
pub mod handle;
pub mod log_store;
pub mod network;
mod read_batcher;
pub mod repair;
pub mod rpc;
pub mod sm;
pub mod snapshot_store;
pub mod types;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod repair_tests;
#[cfg(test)]
mod tests;

pub use batcher::Committed;
pub use compaction::SnapshotTrigger;
pub use error::ConsensusError;
pub use handle::{Consensus, MembershipView, RaftSettings, LOG_FILE, SNAPSHOT_FILE};
pub use log_store::{LogReader, LogStore, LogStoreStats};
pub use network::{NoConnection, SingleNodeNetwork, TransportClient, TransportNetwork};
pub use openraft::SnapshotPolicy;
pub use repair::{force_new_cluster, ForcedCluster};
pub use rpc::RaftRpc;
pub use sm::{EventSink, SnapshotBuilder, StateHandle, StateMachineStore};
pub use types::{Batch, BatchResponse, NodeInfo, Raft, RaftMetrics, TypeConfig};
