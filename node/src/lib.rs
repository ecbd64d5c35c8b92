//! The `respawn` binary's library: wiring of consensus, actors, the QUIC
//! links and the HTTP edge into a server node, and the agent runtime.

pub mod agent;
pub mod cluster;
pub mod edge;
pub mod links;
pub mod node;
pub mod simulated_agent;
pub mod uplink;
pub mod vs;

pub use node::{AgentNode, NodeError, ServerNode};
