//! The `respawn` binary's library: wiring of consensus, actors, the QUIC
//! links and the HTTP edge into a server node; the agent lives in
//! `respawn-agent` (re-exported here as [`AgentNode`]).

pub mod cluster;
pub mod edge;
pub mod links;
pub mod node;
pub mod vs;

pub use node::{NodeError, ServerNode};
pub use respawn_agent::AgentNode;
