//! The actors of a Respawn server node.
//!
//! One actor per fleet and per DS process that is ending or terminating,
//! one for the deadlines of every battle session that is pending or
//! activating ([`session::SessionTimers`]), each a thin shell over pure
//! decision functions in [`policy`], and one per title region for its
//! virtual servers, over [`vs_policy`]. The committed
//! Raft log is their input: [`node::NodeActor`] receives the events that
//! `apply` emitted and routes them; actors act by proposing commands through
//! [`ports::CommandSink`] and by talking to agents through
//! [`ports::AgentGateway`]. After a restart (or, later, a change of leader)
//! they are rebuilt from the replicated state, deadlines included, so no
//! timer is lost.

pub mod autoscale;
pub mod fleet;
pub mod node;
pub mod policy;
pub mod ports;
pub mod process;
pub mod session;
pub mod vs;
pub mod vs_policy;

pub use node::{start_runtime, NodeMsg, Runtime};
pub use ports::{
    AgentGateway, CommandSink, Delivery, Deps, GatewayError, ProposeError, Site, StateReader,
    VsPorts,
};

/// Errors of the actor runtime.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    #[error("failed to spawn actor: {0}")]
    Spawn(String),
}
