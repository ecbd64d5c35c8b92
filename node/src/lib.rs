//! The `respawn` binary's library: wiring of consensus, actors, the QUIC
//! links and the HTTP edge into a server node; the agent lives in
//! `respawn-agent` (re-exported here as [`AgentNode`]).
//!
//! Layers, bottom up: [`cluster`] (the consensus and transport handle),
//! [`agent_links`], [`vs_hub`] and [`vs_routing`] (each takes the handle or
//! less), [`server`] (the context that holds them, and the leader's
//! actors), [`edge`] (HTTP), [`node`] (assembly).

pub mod agent_links;
pub mod bootstrap;
pub mod cluster;
pub mod console;
pub mod edge;
pub mod error;
pub mod node;
pub mod server;
pub mod simulated_agent;
pub mod vs_hub;
pub mod vs_routing;

pub use error::NodeError;
pub use node::ServerNode;
pub use respawn_agent::{AgentNode, DrainOutcome};
