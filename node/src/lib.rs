//! The `respawn` binary's library: wiring of consensus, actors, the QUIC
//! links and the HTTP edge into a server node, and the agent runtime.
//!
//! Layers, bottom up: [`cluster`] (the consensus and transport handle),
//! [`agent_links`], [`vs_hub`] and [`vs_routing`] (each takes the handle or
//! less), [`server`] (the context that holds them, and the leader's
//! actors), [`edge`] (HTTP), [`node`] (assembly).

pub mod agent;
pub mod agent_links;
pub mod bootstrap;
pub mod cluster;
pub mod edge;
pub mod error;
pub mod node;
pub mod server;
pub mod simulated_agent;
pub mod uplink;
pub mod vs_hub;
pub mod vs_routing;

pub use error::NodeError;
pub use node::{AgentNode, ServerNode};

/// Temporary: `agent/vs.rs` still reads the cold-start wait from here; it
/// moves to `respawn_proxy::COLD_START_WAIT` with the agent crate.
#[doc(hidden)]
pub mod vs {
    pub use respawn_proxy::COLD_START_WAIT;
}
