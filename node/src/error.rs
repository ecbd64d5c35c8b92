//! Why a server node could not start ([`NodeError`]).

use respawn_consensus::ConsensusError;
use std::net::SocketAddr;

/// Why a server node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("consensus: {0}")]
    Consensus(#[from] ConsensusError),
    #[error("network: {0}")]
    Net(#[from] respawn_net::NetError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("actors: {0}")]
    Actors(#[from] respawn_actors::ActorsError),
    #[error("{0}")]
    Invalid(String),
}
