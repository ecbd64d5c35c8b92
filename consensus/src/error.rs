//! The one error type of this crate, and its conversions from openraft's
//! errors.

use crate::types::NodeInfo;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use respawn_state::Rejection;

/// Errors of the consensus layer: opening the stores, proposing commands,
/// waiting on Raft.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// The command was committed and applied, and the state machine refused
    /// it. The state is unchanged.
    #[error("rejected: {0}")]
    Rejected(#[from] Rejection),
    /// This node is not the leader; `leader` is the one it knows of, if any.
    #[error("not the leader (known leader: {leader:?})")]
    NotLeader {
        /// The current leader, when this node knows it.
        leader: Option<u64>,
    },
    /// Raft refused or failed the operation (fatal error, quorum lost, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// A wait on Raft metrics ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Raft is shutting down or has stopped.
    #[error("raft is shutting down")]
    ShuttingDown,
    /// The durable stores (redb files, codec) failed.
    #[error("storage: {0}")]
    Storage(String),
    /// The Raft settings are invalid.
    #[error("invalid raft settings: {0}")]
    Config(String),
    /// A peer cannot be reached (the single-node network answers this for
    /// every target).
    #[error("node {node} is unreachable: {reason}")]
    Unreachable {
        /// The target node.
        node: u64,
        /// Why.
        reason: String,
    },
}

impl ConsensusError {
    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        ConsensusError::Storage(e.to_string())
    }
}

pub(crate) fn fatal(e: Fatal<u64>) -> ConsensusError {
    match e {
        Fatal::Stopped => ConsensusError::ShuttingDown,
        other => ConsensusError::Raft(other.to_string()),
    }
}

pub(crate) fn client_write_error(
    e: RaftError<u64, ClientWriteError<u64, NodeInfo>>,
) -> ConsensusError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ConsensusError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(e) => ConsensusError::Raft(e.to_string()),
        RaftError::Fatal(e) => fatal(e),
    }
}
