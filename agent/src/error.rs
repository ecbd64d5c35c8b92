//! Why the agent could not start, or refused a fleet.

use respawn_types::FleetId;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the agent could not start or refused a fleet.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The local SDK API may only listen on loopback.
    #[error("the local SDK API must listen on a loopback address, not {0}")]
    NotLoopback(SocketAddr),
    /// The local SDK API could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cluster sent another fleet than the one this host serves.
    #[error("fleet {got} is not this host's fleet {expected}")]
    WrongFleet {
        /// This host's fleet.
        expected: FleetId,
        /// The fleet received.
        got: FleetId,
    },
    /// The fleet's runtime configuration cannot be run.
    #[error("invalid fleet runtime configuration: {0}")]
    InvalidFleet(String),
    /// The agent's QUIC endpoint could not be set up.
    #[error("network: {0}")]
    Net(#[from] respawn_net::NetError),
    /// The agent's configuration cannot be used.
    #[error("{0}")]
    InvalidConfig(String),
}
